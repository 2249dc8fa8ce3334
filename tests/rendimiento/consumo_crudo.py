"""Línea base «consumo crudo»: un consumidor aiokafka sin grupo lee gpr.eventos.v1 desde el
principio y decodifica cada registro (Evento, o LoteEventos con la cabecera de lote) como lo
hace el procesador. Es el límite físico de leer y decodificar en esta máquina.

`python tests/rendimiento/consumo_crudo.py BOOTSTRAP REGISTROS` lee REGISTROS registros e
imprime en la última línea un JSON con registros, eventos y segundos (desde la primera
petición de datos hasta decodificar el último).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from servicios.comun.eventos import decodificar
from servicios.comun.topicos import EVENTOS


async def consumir(bootstrap: str, total: int) -> dict:
    consumidor = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                  auto_offset_reset="earliest")
    await consumidor.start()
    try:
        particiones = [TopicPartition(EVENTOS, p) for p in sorted(consumidor.partitions_for_topic(EVENTOS))]
        consumidor.assign(particiones)
        await consumidor.seek_to_beginning(*particiones)
        registros = eventos = 0
        inicio = time.perf_counter()
        while registros < total:
            for lote in (await consumidor.getmany(timeout_ms=1000)).values():
                for r in lote:
                    eventos += len(decodificar(r.value, r.headers))
                registros += len(lote)
        return {"registros": registros, "eventos": eventos, "segundos": time.perf_counter() - inicio}
    finally:
        await consumidor.stop()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(consumir(sys.argv[1], int(sys.argv[2])))))
