"""Línea base «piso de faust»: una app faust con los mismos ajustes que el procesador cuyo
agente no hace nada con cada registro. Mide lo que cuesta la maquinaria de faust por
registro (consumo, flujo, confirmación de offsets), el techo de cualquier agente.

Se lanza como subproceso: `python tests/rendimiento/piso_faust.py`, con GPR_KAFKA_BOOTSTRAP,
BENCH_APP_ID y BENCH_PROGRESO (archivo JSON donde deja, cada 50 ms, cuántos registros lleva y
el instante —time.time()— del último).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import faust

from servicios.comun.broker import corregir_fin_de_log
from servicios.comun.topicos import EVENTOS

PARTICIONES = 4


def main() -> None:
    corregir_fin_de_log()
    progreso = Path(os.environ["BENCH_PROGRESO"])
    # Los mismos ajustes que servicios/procesador/app.py, salvo las tablas (no hay estado).
    app = faust.App(
        os.environ.get("BENCH_APP_ID", "bench-piso"),
        broker=f"kafka://{os.environ['GPR_KAFKA_BOOTSTRAP']}",
        store="memory://",
        topic_partitions=PARTICIONES,
        topic_replication_factor=1,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        broker_rebalance_timeout=6.0,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        producer_acks=-1,
        web_enabled=False,
        table_standby_replicas=0,
    )
    topico = app.topic(EVENTOS, partitions=PARTICIONES)
    estado = {"n": 0, "ultimo": 0.0}

    @app.agent(topico, name="piso")
    async def piso(stream):
        async for _ in stream.events():
            estado["n"] += 1
            estado["ultimo"] = time.time()

    @app.timer(interval=0.05, name="progreso")
    async def informar():
        temporal = progreso.with_suffix(".tmp")
        temporal.write_text(json.dumps(estado))
        temporal.replace(progreso)

    faust.Worker(app, loglevel=logging.INFO, quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
