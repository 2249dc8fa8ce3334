"""Ayudas de las pruebas de integración: publicar eventos y leer tópicos del broker real."""

from __future__ import annotations

import asyncio
import time

from kafka import KafkaProducer

from servicios.comun.eventos import clave_kafka
from servicios.comun.topicos import EVENTOS


def publicar(bootstrap: str, registros, topico: str = EVENTOS) -> None:
    """Publica (clave, valor[, cabeceras]) con un productor idempotente y espera el acuse."""
    productor = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    for registro in registros:
        clave, valor, *resto = registro
        productor.send(topico, valor, key=clave, headers=resto[0] if resto else None)
    productor.flush()
    productor.close()


def publicar_eventos(bootstrap: str, eventos) -> None:
    publicar(bootstrap, [(clave_kafka(e), e.SerializeToString()) for e in eventos])


def leer_todo(bootstrap: str, topico: str, hasta, limite_s: float = 60.0):
    """Lee el tópico desde el principio hasta que `hasta(registros)` sea cierto o venza el plazo."""
    from aiokafka import AIOKafkaConsumer

    async def leer():
        consumidor = AIOKafkaConsumer(topico, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                      enable_auto_commit=False)
        await consumidor.start()
        registros = []
        try:
            fin = time.monotonic() + limite_s
            while time.monotonic() < fin and not hasta(registros):
                for mensajes in (await consumidor.getmany(timeout_ms=300)).values():
                    registros.extend(mensajes)
        finally:
            await consumidor.stop()
        return registros

    return asyncio.run(leer())


def observado_desde_indicadores(indicadores):
    """{(servicio, indicador, ventana, etapa): (valor|None, muestras)} y {(servicio, ventana): cuello}."""
    valores, cuellos = {}, {}
    for i in indicadores:
        valores[(i.servicio_id, i.indicador, i.ventana, i.etapa_id)] = (None if i.sin_datos else i.valor, i.muestras)
        valores[(i.servicio_id, "_rango", i.ventana, "")] = (i.desde.seconds, i.hasta.seconds)
        cuellos[(i.servicio_id, i.ventana)] = i.etapa_cuello_botella
    return valores, cuellos
