"""Escritura en bloque de una tabla de faust: el almacén al instante, el changelog por lote.

`tabla[clave] = valor` en faust pasa cada escritura por su búfer de changelog, que se vacía
mensaje a mensaje en una tarea aparte; con miles de claves por lote, vaciarlo antes de
enviar los agregados (regla 1 del exactamente-una-vez) costaba más que procesar el lote.
Aquí las escrituras van al almacén de la tabla (memoria o RocksDB, en la partición del
evento en curso: ver `app.en_particion`) y se anotan; `enviar` las manda al changelog
directamente al productor de Kafka, y `confirmar` anota en el almacén el último offset
confirmado, como hace faust tras cada envío (RocksDB lo usa para recuperar solo lo que
falta). La recuperación, el reparto de particiones y las lecturas siguen siendo de faust.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

_AUSENTE = object()


class TablaEnBloque:
    def __init__(self, tabla: Any):
        self.tabla = tabla
        self._pendientes: list[tuple[bytes, bytes | None]] = []
        self._envios: dict[int, Any] = {}

    def get(self, clave: bytes, defecto: Any = None) -> Any:
        return self.tabla.get(clave, defecto)

    def __contains__(self, clave: bytes) -> bool:
        return clave in self.tabla

    def keys(self) -> Iterator[bytes]:
        return iter(list(self.tabla.keys()))

    def __setitem__(self, clave: bytes, valor: bytes) -> None:
        self.tabla.data[clave] = valor
        self._pendientes.append((clave, valor))

    def pop(self, clave: bytes, defecto: Any = _AUSENTE) -> Any:
        valor = self.tabla.data.get(clave)
        if valor is None:
            if defecto is _AUSENTE:
                raise KeyError(clave)
            return defecto
        del self.tabla.data[clave]
        # Un valor nulo en el changelog es la lápida: la recuperación borra la clave.
        self._pendientes.append((clave, None))
        return valor

    async def enviar(self, productor: Any, particion: int) -> int:
        """Manda al changelog lo escrito desde el último envío; devuelve cuántos registros."""
        pendientes, self._pendientes = self._pendientes, []
        topico = self.tabla.changelog_topic.get_topic_name()
        envio = None
        for clave, valor in pendientes:
            envio = await productor.send(topico, clave, valor, particion, None, None)
        if envio is not None:
            self._envios[particion] = envio
        return len(pendientes)

    def confirmar(self) -> None:
        """Anota el último offset confirmado de cada partición (los envíos aún en vuelo se
        anotan en una llamada posterior)."""
        for particion, envio in list(self._envios.items()):
            if not envio.done():
                continue
            del self._envios[particion]
            if not envio.cancelled() and envio.exception() is None:
                metadatos = envio.result()
                self.tabla.data.set_persisted_offset(metadatos.topic_partition, metadatos.offset)
