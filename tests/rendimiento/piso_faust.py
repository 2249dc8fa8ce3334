"""Línea base «piso de faust»: una app faust con los mismos ajustes que el procesador cuyo
agente no hace nada con cada registro. Mide lo que cuesta la maquinaria de faust por
registro (consumo, flujo, confirmación de offsets), el techo de cualquier agente.

Se lanza como subproceso: `python tests/rendimiento/piso_faust.py`, con GPR_KAFKA_BOOTSTRAP,
BENCH_APP_ID y BENCH_PROGRESO (archivo JSON donde deja, cada 50 ms, cuántos registros lleva y
el instante —time.time()— del último). Con BENCH_ENTREGA=lotes los registros llegan como al
procesador (`entrega_por_lotes.py`: listas por partición directo del consumidor de faust, sin
su flujo por registro) y se confirman uno a uno: lo que le cuesta al procesador recibirlos.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import faust
import mode.loop

from servicios.terceros.aiokafka import acotar_espera_de_fetch, corregir_fin_de_log
from servicios.comun.topicos import EVENTOS
from servicios.procesador import config
from servicios.procesador.app import opciones_faust
from servicios.terceros.faust.entrega_por_lotes import EntregaPorLotes

PARTICIONES = 4


def main() -> None:
    progreso = Path(os.environ["BENCH_PROGRESO"])
    # Los mismos ajustes que el procesador (`opciones_faust` y los dos parches del broker de
    # su `__main__`), con el almacén en memoria: el piso no tiene tablas. faust escribe igual
    # en su directorio de datos: uno propio junto al progreso, que en un clon nuevo no existe.
    datos = progreso.parent / "piso-datos"
    datos.mkdir(parents=True, exist_ok=True)
    cfg = config.leer({"GPR_KAFKA_BOOTSTRAP": os.environ["GPR_KAFKA_BOOTSTRAP"], "GPR_ALMACEN": "memoria",
                       "GPR_DIRECTORIO_DATOS": str(datos),
                       "GPR_PARTICIONES": str(PARTICIONES), "GPR_BUCLE": os.environ.get("GPR_BUCLE", "")})
    mode.loop.use("uvloop" if cfg.bucle == "uvloop" else "aio")
    corregir_fin_de_log()
    acotar_espera_de_fetch(cfg.espera_fetch_s)
    app = faust.App(os.environ.get("BENCH_APP_ID", "bench-piso"), **opciones_faust(cfg))
    topico = app.topic(EVENTOS, partitions=PARTICIONES)
    estado = {"n": 0, "ultimo": 0.0}

    if os.environ.get("BENCH_ENTREGA", "faust") == "lotes":
        entrega = EntregaPorLotes(app, topico)

        @app.task
        async def piso_por_lotes():
            async for lote in entrega.lotes(cfg.lote_maximo, cfg.lote_espera_s):
                for registro in lote:
                    registro.ack()
                estado["n"] += len(lote)
                estado["ultimo"] = time.time()
    else:
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
