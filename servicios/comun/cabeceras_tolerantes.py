"""Lectura con aiokafka de registros cuya clave de cabecera no es UTF-8.

El protocolo de Kafka dice que la clave de una cabecera es texto, pero el broker no lo
comprueba: cualquiera que escriba en un tópico puede mandar bytes arbitrarios. El lector de
registros de aiokafka (la extensión en C) decodifica la clave como UTF-8 estricto y lanza
`UnicodeDecodeError` desde `getmany()` sin avanzar: el consumidor se queda para siempre en
ese lote, y con él todo lo que venga después en la partición (medido con el broker embebido:
cuatro `getmany` seguidos, los cuatro con el error y la posición quieta).

`tolerar_cabeceras_no_utf8()` envuelve los lotes que entrega aiokafka: se leen con la
extensión en C como siempre y, solo si un lote falla por eso, se relee con el lector en
Python de aiokafka decodificando esas claves con reemplazo (U+FFFD). El contenido del
registro queda intacto; quien lo consume decide si le sirve. Se apoya en detalles internos
de aiokafka 0.14 (la versión fijada en pyproject.toml): `aiokafka.consumer.fetcher.MemoryRecords`
y `_MemoryRecordsPy._next_slice`.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class _Tolerante(bytearray):
    """Búfer cuyos trozos decodifican con reemplazo (el lector en Python decodifica
    `buffer[i:j].decode("utf-8")` la clave de cada cabecera)."""

    def __getitem__(self, indice):
        trozo = super().__getitem__(indice)
        return _Trozo(trozo) if isinstance(indice, slice) else trozo


class _Trozo(bytearray):
    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytearray.decode(self, encoding, "replace")


def _lote_python_tolerante(trozo):
    from aiokafka.record.default_records import _DefaultRecordBatchPy

    class LotePython(_DefaultRecordBatchPy):
        def __init__(self, datos):
            super().__init__(datos)
            self._buffer = _Tolerante(self._buffer)

        def _maybe_uncompress(self) -> None:
            super()._maybe_uncompress()
            if not isinstance(self._buffer, _Tolerante):
                self._buffer = _Tolerante(self._buffer)

    return LotePython(trozo)


class _LoteTolerante:
    """Un lote de la extensión en C; si una clave de cabecera no es UTF-8, se relee en Python."""

    def __init__(self, lote, trozo: memoryview | None):
        self._lote = lote
        self._trozo = trozo

    def __getattr__(self, nombre):
        return getattr(self._lote, nombre)

    def __next__(self):
        return next(self._lote)

    def __iter__(self):
        try:
            registros = list(self._lote)
        except UnicodeDecodeError:
            if self._trozo is None or self._lote.magic < 2:
                raise
            registros = list(_lote_python_tolerante(self._trozo))
            log.warning("lote con una clave de cabecera que no es UTF-8 (offsets %d–%d): se lee reemplazando "
                        "los bytes inválidos", self._lote.base_offset, self._lote.next_offset - 1)
        return iter(registros)


def _memoria_tolerante(memoria_c, memoria_py):
    class MemoriaTolerante:
        """MemoryRecords de aiokafka cuyos lotes son `_LoteTolerante`."""

        def __init__(self, datos):
            self._c = memoria_c(datos)
            # Solo para saber qué bytes corresponden a cada lote (el de C no lo expone).
            self._py = memoria_py(datos)

        def __getattr__(self, nombre):
            return getattr(self._c, nombre)

        def has_next(self) -> bool:
            return self._c.has_next()

        def next_batch(self):
            trozo = self._py._next_slice
            if trozo is not None:
                self._py._cache_next()
            lote = self._c.next_batch()
            return None if lote is None else _LoteTolerante(lote, trozo)

    return MemoriaTolerante


def tolerar_cabeceras_no_utf8() -> None:
    """Instala la lectura tolerante en todo consumidor aiokafka del proceso (idempotente)."""
    from aiokafka.consumer import fetcher
    from aiokafka.record.memory_records import _MemoryRecordsPy

    if getattr(fetcher.MemoryRecords, "_gpr_tolerante", False):
        return
    tolerante = _memoria_tolerante(fetcher.MemoryRecords, _MemoryRecordsPy)
    tolerante._gpr_tolerante = True
    fetcher.MemoryRecords = tolerante
