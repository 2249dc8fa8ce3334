"""El broker embebido: arranca, muere con su padre y su fin de log se corrige (docs/decisiones.md)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest
from kafka import KafkaProducer

from servicios.comun.broker import BrokerEmbebido
from servicios.terceros.aiokafka import corregir_fin_de_log


@pytest.mark.integracion
def test_fin_de_log_corregido_es_el_numero_de_registros(bootstrap):
    # linger_ms agrupa los registros en lotes de varios: Tansu contesta con el inicio del último.
    productor = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=50, acks="all")
    cuantos = {0: 1000, 1: 7, 2: 0}
    for particion, n in cuantos.items():
        for _ in range(n):
            productor.send("fin-de-log", b"x" * 20, partition=particion)
    productor.flush()
    productor.close()

    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def fines():
        corregir_fin_de_log()
        consumidor = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumidor.start()
        try:
            return await consumidor.end_offsets([TopicPartition("fin-de-log", p) for p in cuantos])
        finally:
            await consumidor.stop()

    assert {tp.partition: fin for tp, fin in asyncio.run(fines()).items()} == cuantos


@pytest.mark.integracion
def test_el_broker_muere_con_su_padre_aunque_este_reciba_sigkill(tmp_path):
    guion = tmp_path / "padre.py"
    guion.write_text(
        "import time\n"
        "from servicios.comun.broker import BrokerEmbebido\n"
        "b = BrokerEmbebido(); b.iniciar()\n"
        "print(b._proceso.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    padre = subprocess.Popen([sys.executable, str(guion)], stdout=subprocess.PIPE, text=True)
    pid_broker = int(padre.stdout.readline())
    os.kill(pid_broker, 0)  # vive
    padre.kill()
    padre.wait()
    fin = time.monotonic() + 10
    while time.monotonic() < fin:
        try:
            os.kill(pid_broker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail("el broker embebido sobrevivió a su padre")


@pytest.mark.integracion
def test_detener_es_rapido_con_clientes_conectados():
    with BrokerEmbebido() as broker:
        productor = KafkaProducer(bootstrap_servers=broker.bootstrap)
        productor.send("t", b"x").get(10)
        inicio = time.monotonic()
        broker.detener()
        assert time.monotonic() - inicio < 5
        productor.close(timeout=1)
