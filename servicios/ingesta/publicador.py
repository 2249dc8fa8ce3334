"""Productor de Kafka de la ingesta: kafka-python idempotente (`acks=all`).

Por qué kafka-python y no aiokafka: el productor idempotente de aiokafka falla contra el
broker embebido (`InitProducerId` → UnknownError, DISENO §6) y el de kafka-python funciona
contra él y contra Apache Kafka.

Por qué un servidor grpc.aio con el productor síncrono en un ejecutor de hilos: `send()`
puede bloquearse (esperando metadatos o espacio en el búfer, hasta `max_block_ms`), así que
se llama desde un hilo del ejecutor y no desde el bucle; pero la espera del acuse no ocupa
ningún hilo: cada futuro de kafka-python avisa al bucle asyncio con `call_soon_threadsafe`
cuando el hilo emisor del productor recibe la respuesta del broker. Así cientos de
peticiones pueden esperar a Kafka a la vez con un puñado de hilos, y el bucle de gRPC nunca
se bloquea. Un servidor gRPC síncrono habría necesitado un hilo por petición en espera.

Plazos: todo lo que hace un envío cabe en `plazo_s` (`GPR_INGESTA_PLAZO_KAFKA`): el bloqueo
de `send()`, la entrega (`delivery_timeout_ms`) y, como red de seguridad, la espera asyncio.
Pasado el plazo la petición recibe UNAVAILABLE, nunca OK. Un registro no confirmado a
tiempo puede haberse escrito igual (Kafka no permite deshacerlo): reintentar es seguro porque
el procesador descarta los eventos repetidos por (fuente, evento_id).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from kafka import KafkaProducer
from kafka.errors import KafkaError

from servicios.comun.topicos import EVENTOS, RECHAZADOS, crear_topicos
from servicios.comun.lotes import Registro

log = logging.getLogger(__name__)


class KafkaNoDisponible(Exception):
    """Kafka no aceptó o no confirmó a tiempo un envío."""


class Publicador:
    """Un `KafkaProducer` compartido por todas las peticiones (es seguro entre hilos)."""

    def __init__(self, bootstrap: str, plazo_s: float, particiones_al_crear: int):
        self._bootstrap = bootstrap
        self.plazo_s = plazo_s
        self._particiones_al_crear = particiones_al_crear
        self._productor: KafkaProducer | None = None
        self._cerrado = False

    @property
    def listo(self) -> bool:
        return self._productor is not None

    def conectar(self) -> None:
        """Bloqueante: crea los tópicos que falten y conecta el productor; lanza si no puede.

        Los tópicos se crean con `GPR_PARTICIONES`, como lo hace el procesador, para que no
        los cree el broker al vuelo (autocreación) con otro número de particiones.
        """
        crear_topicos(self._bootstrap, self._particiones_al_crear, [EVENTOS, RECHAZADOS], limite_s=self.plazo_s)
        plazo_ms = int(self.plazo_s * 1000)
        productor = KafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id="gpr-ingesta",
            acks="all",
            enable_idempotence=True,
            # Junta en una petición de Kafka los registros de peticiones gRPC concurrentes.
            linger_ms=5,
            max_block_ms=plazo_ms,
            # delivery_timeout_ms debe ser al menos linger_ms + request_timeout_ms.
            request_timeout_ms=max(500, plazo_ms // 2),
            delivery_timeout_ms=plazo_ms,
            bootstrap_timeout_ms=plazo_ms,
            # Tras una caída del broker, volver a intentar pronto y no cada 30 s.
            reconnect_backoff_max_ms=1000,
        )
        try:
            # Sin los metadatos de gpr.eventos.v1 no se puede repartir en particiones.
            productor.partitions_for(EVENTOS)
        except BaseException:
            productor.close(timeout=0)
            raise
        if self._cerrado:
            # La ingesta se detuvo mientras este hilo conectaba: nadie cerraría este productor.
            productor.close(timeout=0)
            raise KafkaNoDisponible("la ingesta se está deteniendo")
        self._productor = productor

    def particiones(self, topico: str = EVENTOS) -> int:
        """Particiones del tópico según los metadatos del productor (bloqueante si no los tiene)."""
        return len(self._productor.partitions_for(topico))

    def enviar(self, registros: Sequence[Registro]) -> list:
        """Bloqueante: entrega los registros al productor; devuelve sus futuros (sin esperarlos)."""
        if self._productor is None:
            raise KafkaNoDisponible("el productor de Kafka no está conectado")
        futuros = []
        try:
            for r in registros:
                futuros.append(self._productor.send(r.topico, r.valor, key=r.clave, headers=r.cabeceras,
                                                    partition=r.particion))
        except KafkaError as error:
            raise KafkaNoDisponible(f"Kafka no aceptó el envío: {error}") from None
        return futuros

    async def confirmar(self, futuros: Sequence, limite_s: float) -> None:
        """Espera, sin ocupar hilos, a que Kafka confirme todos los futuros.

        Lanza `KafkaNoDisponible` si alguno falla o si no llegan todos en `limite_s`.
        """
        if not futuros:
            return
        bucle = asyncio.get_running_loop()
        esperas = [self._puente(bucle, f) for f in futuros]
        try:
            hechos, pendientes = await asyncio.wait(esperas, timeout=max(limite_s, 0.1))
        finally:
            # Vencido el plazo o cancelada la petición, nadie espera ya: un acuse tardío no
            # debe dejar futuros con excepciones sin leer.
            for espera in esperas:
                if not espera.done():
                    espera.cancel()
        if pendientes:
            raise KafkaNoDisponible(f"Kafka no confirmó los registros en {self.plazo_s:g} s")
        errores = [e.exception() for e in hechos if e.exception() is not None]
        if errores:
            raise KafkaNoDisponible(f"Kafka no confirmó {len(errores)} de {len(futuros)} registro(s): {errores[0]}")

    @staticmethod
    def _puente(bucle: asyncio.AbstractEventLoop, futuro) -> asyncio.Future:
        """Un futuro asyncio que se resuelve cuando el de kafka-python (en otro hilo) lo hace."""
        espera = bucle.create_future()

        def resolver(error: BaseException | None) -> None:
            if espera.done():
                return
            if error is None:
                espera.set_result(None)
            else:
                espera.set_exception(error)

        def avisar(error: BaseException | None) -> None:
            try:
                bucle.call_soon_threadsafe(resolver, error)
            except RuntimeError:
                # El bucle ya se cerró (parada): nadie espera esta respuesta.
                pass

        futuro.add_callback(lambda _metadatos: avisar(None))
        futuro.add_errback(avisar)
        return espera

    def cerrar(self) -> None:
        """Bloqueante: espera lo pendiente y cierra el productor.

        `close()` de kafka-python vacía el búfer y, si eso vence, lanza sin cerrar el hilo
        emisor. Por eso el límite es el plazo de entrega más un margen: para entonces todo
        registro pendiente está confirmado o vencido (`delivery_timeout_ms`), nunca colgado.
        """
        self._cerrado = True
        productor, self._productor = self._productor, None
        if productor is None:
            return
        try:
            productor.close(timeout=self.plazo_s + 1)
        except KafkaError as error:
            log.warning("el productor de Kafka no cerró limpio: %s", error)
