"""Correcciones a aiokafka (y, a través de él, a faust) que el proyecto necesita.

Es uno de los dos lugares del proyecto que tocan el interior de una biblioteca de terceros
(el otro es `servicios/terceros/faust/`); `docs/terceros.md` dice, de cada corrección, por qué
hace falta, contra qué broker y qué issue de la biblioteca la motiva.

- `tolerar_cabeceras_no_utf8`: con cualquier broker (un registro con una clave de cabecera que
  no es UTF-8 detenía al consumidor).
- `corregir_fin_de_log` y `acotar_espera_de_fetch`: solo con el broker embebido (Tansu), que
  informa mal el fin del log y no despierta una lectura en espera; quien las instala pregunta
  antes `es_tansu` (`servicios/comun/broker.py`).
"""

from __future__ import annotations

import logging
import struct
import time

log = logging.getLogger(__name__)


# --- Cabeceras que no son UTF-8 (cualquier broker) ---
#
# El protocolo de Kafka dice que la clave de una cabecera es texto, pero el broker no lo
# comprueba: cualquiera que escriba en un tópico puede mandar bytes arbitrarios. aiokafka
# decodifica esa clave como UTF-8 estricto mientras recorre un lote del fetch (en su extensión
# en C) y lanza `UnicodeDecodeError` desde `getmany()` sin avanzar. Un consumidor simple queda
# para siempre en ese lote (y con él todo lo que viene detrás en la partición); el de faust
# falla, el trabajador termina y al reiniciar vuelve a leer el mismo registro: el procesador
# entero queda en un bucle de caídas por un solo registro. (No encontramos un issue de aiokafka
# al respecto; el comportamiento es el de aiokafka 0.14, la versión fijada.)
#
# La corrección envuelve los `MemoryRecords` que crea el fetcher: cada lote se recorre con la
# extensión en C como siempre y, solo si falla al decodificar, el resto de ese lote se lee con
# la implementación en Python de aiokafka sobre los mismos bytes, decodificando las claves de
# cabecera con `surrogateescape` (los bytes no válidos quedan como U+DC80–U+DCFF y nada se
# pierde). El registro sigue su camino y el procesador decide qué hacer con él.

_INSTALADO = "_gpr_cabeceras_tolerantes"
# Un lote de registros empieza por base_offset (int64) y su largo (int32) sin contar esos 12 bytes.
_CABECERA_LOTE = struct.Struct(">qi")


def tolerar_cabeceras_no_utf8() -> None:
    """Instala la corrección en todo consumidor aiokafka del proceso (idempotente)."""
    from aiokafka.consumer import fetcher

    if getattr(fetcher, _INSTALADO, False):
        return
    fetcher.MemoryRecords = _registros_tolerantes(fetcher.MemoryRecords)
    setattr(fetcher, _INSTALADO, True)


def _registros_tolerantes(original):
    class RegistrosTolerantes:
        """Los `MemoryRecords` de aiokafka con lotes que no fallan por una cabecera."""

        __slots__ = ("_registros", "_datos")

        def __init__(self, datos: bytes) -> None:
            self._registros = original(datos)
            self._datos = datos

        def size_in_bytes(self) -> int:
            return self._registros.size_in_bytes()

        def has_next(self) -> bool:
            return self._registros.has_next()

        def next_batch(self):
            lote = self._registros.next_batch()
            return None if lote is None else LoteTolerante(lote, self._datos)

    return RegistrosTolerantes


class LoteTolerante:
    """Un lote del fetch que, si la extensión en C no puede decodificarlo, sigue en Python."""

    __slots__ = ("_lote", "_datos")

    def __init__(self, lote, datos: bytes) -> None:
        self._lote = lote
        self._datos = datos

    def __getattr__(self, nombre):
        return getattr(self._lote, nombre)

    def __next__(self):
        return next(self._lote)

    def __iter__(self):
        ultimo = None
        try:
            for registro in self._lote:
                ultimo = registro.offset
                yield registro
            return
        except UnicodeDecodeError:
            log.warning("lote con una clave de cabecera que no es UTF-8 (offsets %d–%d): se lee en Python sin "
                        "perder los bytes", self._lote.base_offset, self._lote.next_offset - 1)
        for registro in _lote_en_python(self._datos, self._lote.base_offset):
            if ultimo is None or registro.offset > ultimo:
                yield registro


def _lote_en_python(datos: bytes, base_offset: int):
    """El lote de `datos` que empieza en `base_offset`, leído por la implementación en Python
    de aiokafka con las claves de cabecera decodificadas sin fallar."""
    from aiokafka.record.default_records import _DefaultRecordBatchPy

    class LotePython(_DefaultRecordBatchPy):
        def _read_msg(self, *argumentos, **opciones):
            if not isinstance(self._buffer, _BytesTolerantes):
                self._buffer = _BytesTolerantes(self._buffer)
            return super()._read_msg(*argumentos, **opciones)

    posicion = 0
    vista = memoryview(datos)
    while posicion + _CABECERA_LOTE.size <= len(datos):
        offset, largo = _CABECERA_LOTE.unpack_from(vista, posicion)
        fin = posicion + _CABECERA_LOTE.size + largo
        if offset == base_offset:
            return LotePython(bytes(vista[posicion:fin]))
        posicion = fin
    return ()


class _BytesTolerantes(bytearray):
    """Los bytes de un lote cuyas rebanadas se decodifican sin fallar (la implementación en
    Python de aiokafka decodifica cada clave de cabecera con `rebanada.decode("utf-8")`)."""

    def __getitem__(self, indice):
        parte = bytearray.__getitem__(self, indice)
        return _BytesTolerantes(parte) if isinstance(indice, slice) else parte

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytearray.decode(self, encoding, "surrogateescape")


# --- Tansu: fin del log y espera de las lecturas ---

async def marcas_de_agua(consumidor, fines: dict, limite_s: float = 5.0) -> dict:
    """El fin del log de cada partición de `fines` según la marca de agua de un Fetch desde
    `fines[tp]` (lo que dijo ListOffsets). Con Apache Kafka coinciden y el Fetch vuelve vacío;
    con Tansu ListOffsets da el inicio del último lote y el Fetch, que lo lee, el final. Asigna
    las particiones a `consumidor` (uno propio, de la API pública de aiokafka)."""
    particiones = list(fines)
    consumidor.assign(particiones)
    for tp in particiones:
        consumidor.seek(tp, fines[tp])
    fin = time.monotonic() + limite_s
    while time.monotonic() < fin and any(consumidor.highwater(tp) is None for tp in particiones):
        await consumidor.getmany(*particiones, timeout_ms=100, max_records=1)
    return {tp: max(fines[tp], consumidor.highwater(tp) or 0) for tp in particiones}


# Lo que el consumidor auxiliar copia del cliente del consumidor corregido.
_SEGURIDAD = ("security_protocol", "ssl_context", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password",
              "sasl_kerberos_service_name", "sasl_kerberos_domain_name", "sasl_oauth_token_provider")


async def _fin_real(bootstrap, fines: dict, opciones: dict) -> dict:
    from aiokafka import AIOKafkaConsumer

    lector = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, **opciones)
    await lector.start()
    try:
        return await marcas_de_agua(lector, fines)
    finally:
        await lector.stop()


def acotar_espera_de_fetch(segundos: float) -> None:
    """Acota `fetch_max_wait_ms` de todo consumidor aiokafka del proceso (GPR_ESPERA_FETCH).

    Tansu no despierta una lectura en espera cuando llegan datos: cada Fetch dura toda su
    espera máxima, que faust fija en más de un segundo, y cada registro tardaba en llegar
    del orden de esa espera (docs/decisiones.md). Con tres saltos por Kafka entre un evento y
    su efecto en la consulta, eso eran segundos de frescura sin carga. Con Apache Kafka la
    espera acaba en cuanto hay datos, así que acotarla solo añade alguna lectura vacía más
    cuando no hay tráfico.
    """
    from aiokafka import AIOKafkaConsumer

    original = AIOKafkaConsumer.__init__
    tope_ms = max(1, int(segundos * 1000))

    def __init__(self, *args, **kwargs):
        kwargs["fetch_max_wait_ms"] = min(kwargs.get("fetch_max_wait_ms", 500), tope_ms)
        original(self, *args, **kwargs)

    AIOKafkaConsumer.__init__ = __init__


def corregir_fin_de_log() -> None:
    """Corrige `AIOKafkaConsumer.end_offsets` para Tansu (docs/decisiones.md, broker embebido).

    Tansu responde a ListOffsets(latest) con el offset base del *último lote* de la partición,
    no con el fin del log. faust dimensiona con ese valor la recuperación de sus tablas desde
    el changelog, así que un trabajador reiniciado dejaba de recuperar antes del último lote
    y perdía las últimas actualizaciones (visto: vencidos 17 en vez de 20 tras un SIGKILL con
    el almacén en memoria). Tras la respuesta de ListOffsets se lee desde ese offset y se toma
    el high watermark del Fetch, que sí es correcto. Con Apache Kafka no hace falta y no se
    instala (cuesta una conexión breve por llamada, en cada recuperación).
    """
    from aiokafka import AIOKafkaConsumer

    original = AIOKafkaConsumer.end_offsets
    if getattr(original, "_gpr_corregido", False):
        return

    async def end_offsets(self, partitions):
        fines = await original(self, partitions)
        if not fines:
            return fines
        # El consumidor auxiliar, con la misma seguridad (TLS, SASL) que el corregido.
        cliente = self._client
        seguridad = {nombre: getattr(cliente, f"_{nombre}") for nombre in _SEGURIDAD}
        return await _fin_real(cliente._bootstrap_servers, dict(fines), seguridad)

    end_offsets._gpr_corregido = True
    AIOKafkaConsumer.end_offsets = end_offsets
