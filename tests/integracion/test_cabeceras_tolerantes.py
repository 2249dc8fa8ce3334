"""aiokafka ante una clave de cabecera que no es UTF-8, con el broker embebido real.

Sin `tolerar_cabeceras_no_utf8` (en un subproceso, para no tocar el aiokafka de las demás
pruebas), `getmany` lanza UnicodeDecodeError una y otra vez sin avanzar: el consumidor queda
detenido en ese lote. Con ella se leen todos los registros, con y sin compresión, y el
registro raro trae su clave de cabecera con los bytes inválidos como U+DC80–U+DCFF (surrogateescape).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from kafka import KafkaProducer

from conftest import RAIZ
from servicios.comun.topicos import crear_topicos

pytestmark = [pytest.mark.integracion, pytest.mark.timeout(60)]


class _ClaveCruda(str):
    def encode(self, *_argumentos, **_opciones):
        return b"\xff\xfe"


_LEER = textwrap.dedent("""
    import asyncio, sys
    from aiokafka import AIOKafkaConsumer, TopicPartition
    if sys.argv[2] == "tolerante":
        from servicios.terceros.aiokafka import tolerar_cabeceras_no_utf8
        tolerar_cabeceras_no_utf8()

    async def leer():
        consumidor = AIOKafkaConsumer(bootstrap_servers=sys.argv[1], group_id=None, auto_offset_reset="none")
        await consumidor.start()
        tp = TopicPartition("t", 0)
        consumidor.assign([tp])
        await consumidor.seek_to_beginning(tp)
        for _ in range(4):
            try:
                lotes = await consumidor.getmany(timeout_ms=500)
                for registros in lotes.values():
                    for r in registros:
                        print("registro", r.offset, r.value.decode(), [k for k, _ in r.headers])
            except Exception as error:
                print("error", type(error).__name__, await consumidor.position(tp))
        await consumidor.stop()

    asyncio.run(leer())
""")


def _leer(bootstrap, modo):
    salida = subprocess.run([sys.executable, "-c", _LEER, bootstrap, modo], capture_output=True, text=True,
                            cwd=RAIZ, timeout=40)
    assert salida.returncode == 0, salida.stderr
    return salida.stdout.splitlines()


def test_una_clave_de_cabecera_no_utf8_no_detiene_al_consumidor(bootstrap):
    crear_topicos(bootstrap, 1, ["t"])
    for compresion in (None, "gzip"):
        productor = KafkaProducer(bootstrap_servers=bootstrap, compression_type=compresion, linger_ms=50)
        productor.send("t", b"antes", key=b"k")
        productor.send("t", b"raro", key=b"k", headers=[(_ClaveCruda("x"), b"v"), ("gpr-motivo", b"m")])
        productor.send("t", b"despues", key=b"k")
        productor.flush()
        productor.close()
    # Sin la lectura tolerante: detenido en el primer lote, cuatro veces.
    assert _leer(bootstrap, "estricto") == ["error UnicodeDecodeError 0"] * 4
    assert _leer(bootstrap, "tolerante") == [
        f"registro {n + base} {valor} {claves}"
        for base in (0, 3)
        for n, (valor, claves) in enumerate([("antes", []), ("raro", ["\udcff\udcfe", "gpr-motivo"]), ("despues", [])])
    ]
