"""Que un registro con una cabecera rara no detenga a un consumidor de aiokafka.

El protocolo de Kafka dice que la clave de una cabecera es texto, pero el broker no lo
comprueba: cualquiera que escriba en un tópico puede mandar bytes arbitrarios. aiokafka
decodifica esa clave como UTF-8 estricto mientras recorre un lote del fetch (en su extensión
en C) y lanza `UnicodeDecodeError` desde `getmany()` sin avanzar. Un consumidor simple queda
para siempre en ese lote (y con él todo lo que viene detrás en la partición); el de faust
falla, el trabajador termina y al reiniciar vuelve a leer el mismo registro: el procesador
entero queda en un bucle de caídas por un solo registro. (No encontramos un issue de aiokafka
al respecto; el comportamiento es el de aiokafka 0.14, la versión fijada.)

La corrección envuelve los `MemoryRecords` que crea el fetcher: cada lote se recorre con la
extensión en C como siempre y, solo si falla al decodificar, el resto de ese lote se lee con
la implementación en Python de aiokafka sobre los mismos bytes, decodificando las claves de
cabecera con `surrogateescape` (los bytes no válidos quedan como U+DC80–U+DCFF y nada se
pierde). El registro sigue su camino y el procesador decide qué hacer con él.
"""

from __future__ import annotations

import logging
import struct

log = logging.getLogger(__name__)
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
