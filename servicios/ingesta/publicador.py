"""Productor de Kafka de la ingesta: kafka-python idempotente (`acks=all`).

Por qué kafka-python y no aiokafka: el productor idempotente de aiokafka falla contra el
broker embebido (`InitProducerId` → UnknownError, docs/decisiones.md) y el de kafka-python funciona
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

Sanar: un productor idempotente guarda su identidad (producer id, época, números de
secuencia) en el broker. Un broker que vuelve vacío (el embebido solo guarda en memoria; un
clúster restaurado) no la reconoce: `UnknownProducerIdError`, kafka-python intenta subir la
época (KIP-360), el broker no la conoce y el productor queda en error fatal para siempre
(visto: todo envío UNAVAILABLE hasta reiniciar la ingesta). Por eso el productor no es para
siempre: `sondear` dice si aún sirve y `descartar` lo deja para crear otro (`servidor.py`
lleva el ciclo). Lo mismo tras un lote vencido (`delivery_timeout_ms`) o un envío sin acuse
dentro del plazo: kafka-python 3.0.12, al vencer un lote ya enviado, olvida su producer id
(`reset_producer_id`) sin volver al estado que pide otro (`init_producer_id` solo lo pide desde
UNINITIALIZED), y el hilo emisor espera para siempre: ningún envío posterior se confirma ni
vence (no hallamos ese caso en las issues de dpkp/kafka-python; ver docs/ingesta.md). Un
productor así se cierra con plazo (`cerrar_productor`) y se crea otro, con producer id nuevo.
El sondeo pide al broker los metadatos de los tópicos con un cliente de
administración propio: falla si el broker no responde, si falta un tópico o una partición no
tiene líder, si el productor quedó en error fatal, o si el tópico cambió de identidad
(`topic_id`: lo borraron y lo volvieron a crear, o el broker volvió vacío y alguien los
recreó), porque entonces el broker tampoco conoce ya a este productor.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import (
    InvalidProducerEpochError,
    KafkaError,
    KafkaTimeoutError,
    OutOfOrderSequenceNumberError,
    ProducerFencedError,
    TopicAlreadyExistsError,
    UnknownProducerIdError,
)

from gpr_cliente.kafka import cerrar_productor, describir_error
from servicios.comun.kafka_conexion import ConexionKafka, comprobar_saludo_tls
from servicios.comun.topicos import EVENTOS, RECHAZADOS, configuracion_topico
from servicios.comun.lotes import Registro

log = logging.getLogger(__name__)


# Errores del estado idempotente del productor: este productor ya no escribirá, hay que crear
# otro (Apache Kafka ≥ 2.5 a veces se recupera subiendo la época; crear otro sirve igual).
_ERRORES_DEL_PRODUCTOR = (UnknownProducerIdError, OutOfOrderSequenceNumberError, InvalidProducerEpochError,
                          ProducerFencedError)
TOPICOS = (EVENTOS, RECHAZADOS)


class KafkaNoDisponible(Exception):
    """Kafka no aceptó o no confirmó a tiempo un envío. `productor_roto`: el error dice que el
    productor no volverá a escribir (hay que crear otro)."""

    def __init__(self, mensaje: str, productor_roto: bool = False):
        super().__init__(mensaje)
        self.productor_roto = productor_roto


class Publicador:
    """Un `KafkaProducer` compartido por todas las peticiones (es seguro entre hilos)."""

    def __init__(self, bootstrap: "str | ConexionKafka", plazo_s: float, particiones_al_crear: int):
        # La dirección, o una ConexionKafka con TLS y SASL (GPR_KAFKA_*).
        self._conexion = ConexionKafka.de(bootstrap)
        self.plazo_s = plazo_s
        self._particiones_al_crear = particiones_al_crear
        self._productor: KafkaProducer | None = None
        self._admin: KafkaAdminClient | None = None
        # topic_id de cada tópico al conectar (None si el broker no los informa).
        self._identidades: dict[str, str | None] = {}
        # Sube con cada productor: el fallo tardío de un envío del productor anterior no debe
        # hacer descartar al nuevo.
        self.generacion = 0
        self._cerrado = False

    @property
    def listo(self) -> bool:
        return self._productor is not None

    def conectar(self) -> None:
        """Bloqueante: crea los tópicos que falten y conecta el productor; lanza si no puede.

        Los tópicos se crean con `GPR_PARTICIONES`, como lo hace el procesador, para que no
        los cree el broker al vuelo (autocreación) con otro número de particiones; por lo
        mismo el productor no pide autocrearlos. Tras un broker que volvió vacío, esto es lo
        que los vuelve a crear.
        """
        plazo_ms = int(self.plazo_s * 1000)
        # Con plazos propios: los del cliente por omisión (30 s para el primer contacto) harían
        # de cada intento de reconexión una espera de medio minuto con Kafka caído.
        # El saludo TLS de kafka-python no tiene plazo (ver comprobar_saludo_tls).
        comprobar_saludo_tls(self._conexion, self.plazo_s)
        admin = KafkaAdminClient(**self._conexion.para_kafka_python(), client_id="gpr-ingesta",
                                 bootstrap_timeout_ms=plazo_ms, request_timeout_ms=plazo_ms,
                                 reconnect_backoff_max_ms=1000)
        try:
            self._crear_topicos(admin)
            identidades = self._describir(admin)
        except BaseException:
            admin.close()
            raise
        productor = KafkaProducer(
            **self._conexion.para_kafka_python(),
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
            allow_auto_create_topics=False,
        )
        try:
            # Sin los metadatos de gpr.eventos.v1 no se puede repartir en particiones.
            productor.partitions_for(EVENTOS)
        except BaseException:
            productor.close(timeout=0)
            admin.close()
            raise
        if self._cerrado:
            # La ingesta se detuvo mientras este hilo conectaba: nadie cerraría este productor.
            productor.close(timeout=0)
            admin.close()
            raise KafkaNoDisponible("la ingesta se está deteniendo")
        self._admin, self._identidades = admin, identidades
        self.generacion += 1
        self._productor = productor

    def _crear_topicos(self, admin: KafkaAdminClient) -> None:
        """Crea los tópicos de la ingesta que falten, como `topicos.crear_topicos` (mismas
        particiones y configuración), con el cliente de plazos acotados de `conectar`."""
        faltan = [t for t in TOPICOS if t not in set(admin.list_topics())]
        if not faltan:
            return
        try:
            admin.create_topics([NewTopic(t, self._particiones_al_crear, 1, topic_configs=configuracion_topico(t))
                                 for t in faltan])
        except TopicAlreadyExistsError:
            pass

    def _describir(self, admin: KafkaAdminClient) -> dict[str, str | None]:
        """topic_id de cada tópico de la ingesta; lanza si falta uno o una partición sin líder."""
        identidades = {}
        for topico in admin.describe_topics(list(TOPICOS)):
            nombre = topico.get("name")
            if topico.get("error_code", 0) != 0:
                raise KafkaNoDisponible(f"el tópico {nombre} no está disponible (error {topico['error_code']})")
            particiones = topico.get("partitions") or []
            if not particiones or any(p.get("leader_id", -1) < 0 for p in particiones):
                raise KafkaNoDisponible(f"el tópico {nombre} tiene particiones sin líder")
            identidades[nombre] = topico.get("topic_id")
        faltan = set(TOPICOS) - set(identidades)
        if faltan:
            raise KafkaNoDisponible(f"el broker no informó los tópicos {sorted(faltan)}")
        return identidades

    def sondear(self) -> None:
        """Bloqueante (hasta el plazo de Kafka): lanza `KafkaNoDisponible` si el productor ya no
        puede escribir; ver el docstring del módulo."""
        productor, admin = self._productor, self._admin
        if productor is None or admin is None:
            raise KafkaNoDisponible("el productor de Kafka no está conectado")
        gestor = getattr(productor, "_transaction_manager", None)
        if gestor is not None and gestor.has_fatal_error():
            raise KafkaNoDisponible("el productor de Kafka quedó en error fatal", productor_roto=True)
        try:
            identidades = self._describir(admin)
        except KafkaNoDisponible:
            raise
        except Exception as error:
            raise KafkaNoDisponible(f"Kafka no responde: {describir_error(error)}") from None
        for topico, identidad in identidades.items():
            anterior = self._identidades.get(topico)
            if anterior is not None and identidad != anterior:
                raise KafkaNoDisponible(f"el tópico {topico} fue creado de nuevo (el broker perdió sus datos o "
                                        "alguien lo recreó)", productor_roto=True)

    def descartar(self) -> None:
        """Deja el productor y el cliente de administración para crear otros.

        El productor se cierra en un hilo aparte dentro de su plazo de entrega: lo pendiente
        falla o se confirma en ese plazo (sus peticiones responden UNAVAILABLE), o se falla a
        la fuerza si el productor estaba trabado; quien sana no espera por él.
        """
        productor, self._productor = self._productor, None
        admin, self._admin = self._admin, None
        for cliente in (productor, admin):
            if cliente is not None:
                threading.Thread(target=self._cerrar_cliente, args=(cliente,), name="gpr-ingesta-descarte",
                                 daemon=True).start()

    def _cerrar_cliente(self, cliente) -> None:
        try:
            if isinstance(cliente, KafkaProducer):
                if not cerrar_productor(cliente, self.plazo_s + 1, self.plazo_s + 1):
                    log.info("el productor de Kafka descartado tenía envíos sin acuse: se cerró a la fuerza")
            else:
                cliente.close()
        except Exception as error:  # noqa: BLE001 (es un cliente que ya no se usa)
            log.info("el cliente de Kafka descartado no cerró limpio: %s", error)

    def particiones(self, topico: str = EVENTOS) -> int:
        """Particiones del tópico según los metadatos del productor (bloqueante si no los tiene)."""
        productor = self._productor
        if productor is None:
            raise KafkaNoDisponible("el productor de Kafka no está conectado")
        try:
            return len(productor.partitions_for(topico))
        except KafkaError as error:
            raise KafkaNoDisponible(f"sin metadatos de {topico}: {error}") from None

    def enviar(self, registros: Sequence[Registro]) -> list:
        """Bloqueante: entrega los registros al productor; devuelve sus futuros (sin esperarlos)."""
        productor = self._productor
        if productor is None:
            raise KafkaNoDisponible("el productor de Kafka no está conectado")
        futuros = []
        try:
            for r in registros:
                futuros.append(productor.send(r.topico, r.valor, key=r.clave, headers=r.cabeceras,
                                              partition=r.particion))
        except KafkaError as error:
            raise KafkaNoDisponible(f"Kafka no aceptó el envío: {error}",
                                    productor_roto=isinstance(error, _ERRORES_DEL_PRODUCTOR)) from None
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
            # Sin acuse ni error dentro del plazo de la ingesta: se trata como un productor
            # trabado (ver el docstring). Si solo estaba lento, reemplazarlo cuesta un
            # InitProducerId, y lo que tenga pendiente se confirma o falla al cerrarlo.
            raise KafkaNoDisponible(f"Kafka no confirmó los registros en {self.plazo_s:g} s", productor_roto=True)
        errores = [e.exception() for e in hechos if e.exception() is not None]
        if errores:
            # Un lote vencido (KafkaTimeoutError en su futuro) también deja trabado al productor.
            raise KafkaNoDisponible(f"Kafka no confirmó {len(errores)} de {len(futuros)} registro(s): {errores[0]}",
                                    productor_roto=any(isinstance(e, (*_ERRORES_DEL_PRODUCTOR, KafkaTimeoutError))
                                                       for e in errores))

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

        El límite es el plazo de entrega más un margen: para entonces todo registro pendiente
        de un productor sano está confirmado o vencido (`delivery_timeout_ms`); uno trabado se
        cierra a la fuerza (`cerrar_productor`).
        """
        self._cerrado = True
        productor, self._productor = self._productor, None
        admin, self._admin = self._admin, None
        if admin is not None:
            admin.close()
        if productor is None:
            return
        if not cerrar_productor(productor, self.plazo_s + 1, self.plazo_s + 1):
            log.warning("el productor de Kafka tenía envíos sin acuse al cerrar: se cerró a la fuerza")
