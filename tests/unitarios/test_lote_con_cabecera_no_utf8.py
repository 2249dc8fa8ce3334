"""Un lote de Kafka con una clave de cabecera que no es UTF-8, leído con el código de aiokafka."""

from __future__ import annotations

import pytest
from aiokafka.record.memory_records import MemoryRecords
from kafka.record.default_records import DefaultRecordBatchBuilder

from servicios.terceros.aiokafka import _registros_tolerantes


class ClaveCruda(str):
    """Una clave de cabecera cuyos bytes en el cable no son UTF-8 (kafka-python la codifica con
    `.encode("utf-8")`; cualquier otro cliente puede escribir bytes cualesquiera)."""

    def __new__(cls, crudo: bytes):
        objeto = super().__new__(cls, "x")
        objeto.crudo = crudo
        return objeto

    def encode(self, *argumentos, **opciones):
        return self.crudo


def _lotes(*lotes) -> bytes:
    """Los bytes de un fetch con estos lotes: [(offset, clave, valor, cabeceras)...] cada uno."""
    datos = b""
    for registros in lotes:
        constructor = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0, producer_id=-1,
                                                producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
        for offset, clave, valor, cabeceras in registros:
            constructor.append(offset - registros[0][0], timestamp=1000, key=clave, value=valor, headers=cabeceras)
        lote = bytearray(constructor.build())
        lote[0:8] = registros[0][0].to_bytes(8, "big")  # base_offset del lote
        datos += bytes(lote)
    return datos


def _leer(registros_de_memoria):
    leidos = []
    while registros_de_memoria.has_next():
        for registro in registros_de_memoria.next_batch():
            leidos.append((registro.offset, registro.value, list(registro.headers)))
    return leidos


def test_una_clave_de_cabecera_no_utf8_ya_no_detiene_la_lectura():
    datos = _lotes(
        [(0, b"k", b"a", [("gpr-lote", b"1")])],
        [(1, b"k", b"b", []), (2, b"k", b"c", [(ClaveCruda(b"\xff\xfe"), b"v")]), (3, b"k", b"d", [])],
        [(4, b"k", b"e", [])],
    )
    # Sin la corrección, la extensión en C de aiokafka falla a mitad del segundo lote.
    with pytest.raises(UnicodeDecodeError):
        _leer(MemoryRecords(datos))
    leidos = _leer(_registros_tolerantes(MemoryRecords)(datos))
    assert [(o, v) for o, v, _ in leidos] == [(0, b"a"), (1, b"b"), (2, b"c"), (3, b"d"), (4, b"e")]
    assert leidos[0][2] == [("gpr-lote", b"1")]
    assert leidos[2][2] == [("\udcff\udcfe", b"v")]
    assert "\udcff\udcfe".encode("utf-8", "surrogateescape") == b"\xff\xfe"
