"""Escritura en bloque de una tabla de faust: el almacén al instante, el changelog por lote.

`tabla[clave] = valor` en faust pasa cada escritura por su búfer de changelog, que se vacía
mensaje a mensaje en una tarea aparte; con miles de claves por lote, vaciarlo antes de
enviar los agregados (regla 1 del exactamente-una-vez) costaba más que procesar el lote.
Aquí las escrituras van al almacén de la tabla (memoria o RocksDB, en la partición del
evento en curso: ver `PuertoFaust.en_particion`) y se anotan; `enviar` las manda al changelog
directamente al productor de Kafka, y `confirmar` anota en el almacén el último offset
confirmado, como hace faust tras cada envío (RocksDB lo usa para recuperar solo lo que
falta). La recuperación, el reparto de particiones y las lecturas siguen siendo de faust.

La tabla de casos, con una lectura y una escritura por evento, va aún más directo: lee de la
base de su partición (`en`) y escribe el lote entero de una vez (`escribir`, un `WriteBatch`
de RocksDB), sin buscar la partición del evento en curso clave a clave.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from rocksdict import WriteBatch

_AUSENTE = object()


async def enviar_en_lotes(kafka: Any, topico: str, particion: int, registros: Iterable[tuple]) -> list[tuple[Any, int]]:
    """Manda `registros` (clave, valor, instante en ms o None, cabeceras) a una partición en
    lotes de Kafka armados aquí (`create_batch`/`send_batch` de aiokafka): un envío por
    registro crea un futuro y pasa por el acumulador del productor uno a uno, y con miles de
    registros por lote eso se notaba. Devuelve, por lote, su futuro y cuántos registros trae."""
    envios = []
    lote, en_lote = kafka.create_batch(), 0
    for clave, valor, marca, cabeceras in registros:
        if lote.append(key=clave, value=valor, timestamp=marca, headers=cabeceras) is None:
            envios.append((await kafka.send_batch(lote, topico, partition=particion), en_lote))
            lote, en_lote = kafka.create_batch(), 0
            # Un lote vacío acepta siempre el primer registro, aunque supere el tamaño.
            lote.append(key=clave, value=valor, timestamp=marca, headers=cabeceras)
        en_lote += 1
    envios.append((await kafka.send_batch(lote, topico, partition=particion), en_lote))
    return envios


class TablaEnBloque:
    """`tabla`: una tabla de faust de claves y valores en bytes; `app`: su app (el productor
    existe una vez arrancada)."""

    def __init__(self, tabla: Any, app: Any):
        self.tabla = tabla
        self.app = app
        self._pendientes: list[tuple[bytes, bytes | None]] = []
        self._envios: dict[int, Any] = {}
        # Claves y valores ya son bytes: se lee y escribe en el almacén sin las capas de
        # faust de por medio (tabla → diccionario gestionado → serializadores → almacén, con
        # una excepción por cada clave ausente), que costaban más que la lectura misma.
        # La partición de cada clave es la del evento que la escribe (la del registro de
        # entrada): así lo hace faust en una tabla ni global ni con particionador propio.
        if tabla.is_global or tabla.use_partitioner:
            raise ValueError(f"TablaEnBloque no sirve para la tabla {tabla.name}: es global o usa particionador")
        almacen = tabla.data
        self._rocksdb = hasattr(almacen, "_db_for_partition")
        if self._rocksdb and not almacen.use_rocksdict:
            # `en` y `escribir` hablan con la base de rocksdict (dependencia del proyecto);
            # faust usa python-rocksdb solo si rocksdict no se puede importar.
            raise RuntimeError("el almacén RocksDB necesita rocksdict instalado (pip install rocksdict)")
        if self._rocksdb:
            self._leer, self._escribir = almacen._get, almacen._set
        else:
            self._leer, self._escribir = almacen.data.get, almacen.data.__setitem__

    def en(self, particion: int) -> Any:
        """Lo que se lee de `particion`: un objeto con `get(clave)` sobre su base."""
        if self._rocksdb:
            return self.tabla.data._db_for_partition(particion)
        return self.tabla.data.data

    def escribir(self, particion: int, escrituras: dict[bytes, bytes | None]) -> None:
        """Escribe `escrituras` en la base de `particion` de una vez y las anota para el
        changelog; un valor None borra la clave (y va al changelog como lápida)."""
        if not escrituras:
            return
        if self._rocksdb:
            lote = WriteBatch(raw_mode=True)
            for clave, valor in escrituras.items():
                if valor is None:
                    lote.delete(clave)
                else:
                    lote.put(clave, valor)
            self.tabla.data._db_for_partition(particion).write(lote)
        else:
            datos = self.tabla.data.data
            for clave, valor in escrituras.items():
                if valor is None:
                    datos.pop(clave, None)
                else:
                    datos[clave] = valor
        self._pendientes.extend(escrituras.items())

    def get(self, clave: bytes, defecto: Any = None) -> Any:
        valor = self._leer(clave)
        return defecto if valor is None else valor

    def __contains__(self, clave: bytes) -> bool:
        return self._leer(clave) is not None

    def keys(self) -> Iterator[bytes]:
        return iter(list(self.tabla.keys()))

    def __setitem__(self, clave: bytes, valor: bytes) -> None:
        self._escribir(clave, valor)
        self._pendientes.append((clave, valor))

    def pop(self, clave: bytes, defecto: Any = _AUSENTE) -> Any:
        valor = self._leer(clave)
        if valor is None:
            if defecto is _AUSENTE:
                raise KeyError(clave)
            return defecto
        del self.tabla.data[clave]
        # Un valor nulo en el changelog es la lápida: la recuperación borra la clave.
        self._pendientes.append((clave, None))
        return valor

    async def enviar(self, particion: int) -> int:
        """Manda al changelog lo escrito desde el último envío (`enviar_en_lotes`); devuelve
        cuántos registros."""
        pendientes, self._pendientes = self._pendientes, []
        if not pendientes:
            return 0
        envios = await enviar_en_lotes(self.app.producer._ensure_producer(),
                                       self.tabla.changelog_topic.get_topic_name(), particion,
                                       ((clave, valor, None, []) for clave, valor in pendientes))
        # `confirmar` anota el offset del último registro del último lote.
        self._envios[particion] = envios[-1]
        return len(pendientes)

    def confirmar(self) -> None:
        """Anota el último offset confirmado de cada partición (los envíos aún en vuelo se
        anotan en una llamada posterior)."""
        for particion, (envio, cuantos) in list(self._envios.items()):
            if not envio.done():
                continue
            del self._envios[particion]
            if not envio.cancelled() and envio.exception() is None:
                # El futuro de un lote da el offset de su primer registro.
                metadatos = envio.result()
                self.tabla.data.set_persisted_offset(metadatos.topic_partition, metadatos.offset + cuantos - 1)
