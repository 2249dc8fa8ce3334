"""Servidor gRPC de ingesta: `gpr.v1.Ingesta`, salud estándar, reflexión y /metrics.

Una petición pasa por: autenticación (token de la agencia en `authorization: Bearer …`),
límite de eventos, autorización (todos los eventos de la agencia del token; si no, la
petición entera recibe PERMISSION_DENIED y no se publica nada), validación de cada evento
con el validador del procesador, envío a Kafka (aceptados a gpr.eventos.v1, rechazados al
tópico de rechazados con su motivo) y espera del acuse. Se responde OK solo cuando Kafka
confirmó todos los registros de la petición; si no, UNAVAILABLE y el cliente reintenta el
lote entero (los repetidos no cuentan dos veces: el procesador deduplica por evento_id).

`ServidorIngesta` arma todo dentro de un bucle asyncio; `servir` lo corre hasta
SIGTERM/SIGINT y recarga las credenciales con SIGHUP (lo usa `__main__`); `IngestaEnHilo`
lo corre en un hilo con su propio bucle, para las pruebas en proceso.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from gpr.v1 import eventos_pb2 as pb
from gpr.v1 import ingesta_pb2, ingesta_pb2_grpc
from servicios.comun.catalogo import Catalogo
from servicios.comun.grpc_metricas import InterceptorMetricasGrpc
from servicios.comun.topicos import EVENTOS, RECHAZADOS
from servicios.comun.yaml_lineas import ArchivoInvalido
from servicios.comun.en_hilo import ServicioEnHilo
from servicios.comun.lotes import registros_aceptados
from servicios.ingesta.config import ConfigIngesta
from servicios.ingesta.credenciales import Credenciales, cargar_credenciales
from servicios.ingesta.metricas import MetricasIngesta
from servicios.ingesta.publicador import KafkaNoDisponible, Publicador
from servicios.ingesta.recepcion import (
    Clasificacion,
    EventoAjeno,
    clasificar,
    comprobar_agencia,
    registros_rechazados,
)

log = logging.getLogger(__name__)

SERVICIO = ingesta_pb2.DESCRIPTOR.services_by_name["Ingesta"].full_name
SALUD = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
_SIN_KAFKA = "la ingesta aún no está conectada a Kafka; reintente en unos segundos"
_REINTENTO_CONEXION_S = 1.0


class ServicioIngesta(ingesta_pb2_grpc.IngestaServicer):
    """Traduce peticiones a registros de Kafka y errores a códigos gRPC."""

    def __init__(self, cfg: ConfigIngesta, catalogo: Catalogo, credenciales: Credenciales,
                 publicador: Publicador, metricas: MetricasIngesta, ejecutor: ThreadPoolExecutor):
        self._cfg = cfg
        self._catalogo = catalogo
        # Se reemplaza entero al recargar (SIGHUP): una petición ve el conjunto viejo o el nuevo.
        self.credenciales = credenciales
        self._publicador = publicador
        self._metricas = metricas
        self._ejecutor = ejecutor

    async def Publicar(self, request: ingesta_pb2.SolicitudPublicar, context) -> ingesta_pb2.RespuestaPublicar:
        agencia = await self._autenticar(context)
        if len(request.eventos) > self._cfg.lote_maximo:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"eventos: la solicitud trae {len(request.eventos)} eventos y el máximo por "
                                f"llamada es {self._cfg.lote_maximo} (GPR_INGESTA_LOTE_MAXIMO); divídala en "
                                "varias llamadas o use PublicarFlujo")
        return await self._publicar(list(request.eventos), agencia, context)

    async def PublicarFlujo(self, request_iterator, context) -> ingesta_pb2.RespuestaPublicar:
        # Se autentica antes de leer el flujo: un cliente sin token no llega a enviar datos.
        agencia = await self._autenticar(context)
        eventos: list[pb.Evento] = []
        async for evento in request_iterator:
            eventos.append(evento)
            if len(eventos) > self._cfg.flujo_maximo:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"eventos: el flujo superó el máximo de {self._cfg.flujo_maximo} eventos por "
                                    "llamada (GPR_INGESTA_FLUJO_MAXIMO); no se publicó ninguno: divida el envío "
                                    "en varias llamadas")
        return await self._publicar(eventos, agencia, context)

    async def _autenticar(self, context) -> str:
        valor = ""
        for clave, dato in context.invocation_metadata() or ():
            if clave == "authorization":
                valor = dato if isinstance(dato, str) else dato.decode("utf-8", "replace")
        if not valor.strip():
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "authorization: falta el metadato; envíe 'authorization: Bearer <token de la agencia>'")
        esquema, _, token = valor.strip().partition(" ")
        token = token.strip()
        if esquema.lower() != "bearer" or not token:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "authorization: se espera el formato 'Bearer <token de la agencia>'")
        agencia = self.credenciales.agencia_de(token)
        if agencia is None:
            # El token no se registra: un token válido mal pegado es igual de secreto.
            log.warning("token desconocido desde %s", context.peer())
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "authorization: token desconocido o revocado")
        return agencia

    async def _publicar(self, eventos: list[pb.Evento], agencia: str, context) -> ingesta_pb2.RespuestaPublicar:
        try:
            comprobar_agencia(eventos, agencia)
        except EventoAjeno as error:
            log.warning("token de %s intentó publicar eventos de otra agencia desde %s", agencia, context.peer())
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(error))
        if not self._publicador.listo:
            await context.abort(grpc.StatusCode.UNAVAILABLE, _SIN_KAFKA)
        fin = time.monotonic() + self._publicador.plazo_s
        bucle = asyncio.get_running_loop()
        try:
            clasificacion, futuros = await bucle.run_in_executor(self._ejecutor, self._preparar_y_enviar, eventos)
            await self._publicador.confirmar(futuros, fin - time.monotonic())
        except KafkaNoDisponible as error:
            log.warning("petición de %s con %d eventos sin confirmar: %s", agencia, len(eventos), error)
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                f"{error}; no se confirmó la petición: reintente el lote completo (los eventos "
                                "repetidos no se cuentan dos veces)")
        self._metricas.contar(agencia, clasificacion.motivos)
        return ingesta_pb2.RespuestaPublicar(
            resultados=[ingesta_pb2.ResultadoEvento(evento_id=e.evento_id, aceptado=m is None, motivo=m or "")
                        for e, m in zip(eventos, clasificacion.motivos)],
            aceptados=len(clasificacion.aceptados),
            rechazados=len(clasificacion.rechazados),
        )

    def _preparar_y_enviar(self, eventos: list[pb.Evento]) -> tuple[Clasificacion, list]:
        """En un hilo del ejecutor: validar, armar los registros y entregarlos al productor
        (validar y serializar miles de eventos no debe frenar el bucle de gRPC)."""
        clasificacion = clasificar(eventos, self._catalogo, time.time())
        particiones = None
        if self._cfg.lotes and len(clasificacion.aceptados) > 1:
            try:
                particiones = self._publicador.particiones(EVENTOS)
            except Exception as error:
                raise KafkaNoDisponible(f"sin metadatos de {EVENTOS}: {error}") from None
        registros = (registros_aceptados(clasificacion.aceptados, EVENTOS, particiones)
                     + registros_rechazados(clasificacion.rechazados, RECHAZADOS))
        return clasificacion, self._publicador.enviar(registros)


class ServidorIngesta:
    """Productor + servidor gRPC + /metrics, con arranque y parada ordenados."""

    def __init__(self, cfg: ConfigIngesta, catalogo: Catalogo, credenciales: Credenciales):
        self._cfg = cfg
        self._catalogo = catalogo
        self._credenciales = credenciales
        self.metricas = MetricasIngesta()
        self.publicador = Publicador(cfg.bootstrap, cfg.plazo_kafka_s, cfg.particiones)
        self.puerto_grpc: int | None = None
        self.puerto_metricas: int | None = None
        self._servicio: ServicioIngesta | None = None
        self._salud: health.aio.HealthServicer | None = None
        self._servidor: grpc.aio.Server | None = None
        self._metricas_http = None
        self._conexion: asyncio.Task | None = None
        self._ejecutor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="gpr-ingesta-kafka")
        # La conexión puede quedar bloqueada hasta el plazo de Kafka: su propio hilo, para no
        # quitarle uno a los envíos.
        self._ejecutor_conexion = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpr-ingesta-conexion")
        self._deteniendo = False

    async def iniciar(self) -> None:
        cfg = self._cfg
        self._salud = health.aio.HealthServicer()
        # HealthServicer nace con "" en SERVING: hay que bajarlo antes de aceptar conexiones.
        for nombre in ("", SERVICIO):
            await self._salud.set(nombre, health_pb2.HealthCheckResponse.NOT_SERVING)

        self._servidor = grpc.aio.server(interceptors=[InterceptorMetricasGrpc(self.metricas.registro)])
        self._servicio = ServicioIngesta(cfg, self._catalogo, self._credenciales, self.publicador,
                                         self.metricas, self._ejecutor)
        ingesta_pb2_grpc.add_IngestaServicer_to_server(self._servicio, self._servidor)
        health_pb2_grpc.add_HealthServicer_to_server(self._salud, self._servidor)
        reflection.enable_server_reflection([SERVICIO, SALUD, reflection.SERVICE_NAME], self._servidor)
        direccion = f"{cfg.grpc_host}:{cfg.grpc_puerto}"
        try:
            if cfg.tls_certificado is not None:
                credenciales_tls = grpc.ssl_server_credentials([(cfg.tls_clave, cfg.tls_certificado)])
                self.puerto_grpc = self._servidor.add_secure_port(direccion, credenciales_tls)
            else:
                self.puerto_grpc = self._servidor.add_insecure_port(direccion)
        except RuntimeError as error:
            raise OSError(f"no se puede escuchar gRPC en {direccion}: {error}") from None
        await self._servidor.start()

        if cfg.metricas_puerto:
            servidor_http, hilo = start_http_server(cfg.metricas_puerto, cfg.metricas_host,
                                                    registry=self.metricas.registro)
            self._metricas_http = (servidor_http, hilo)
            self.puerto_metricas = servidor_http.server_port

        self._conexion = asyncio.create_task(self._conectar(), name="conexión kafka ingesta")
        log.info("ingesta escuchando gRPC%s en %s:%d%s", " con TLS" if cfg.tls_certificado else "",
                 cfg.grpc_host, self.puerto_grpc,
                 f", /metrics en {cfg.metricas_host}:{self.puerto_metricas}" if self._metricas_http else "")

    async def _conectar(self) -> None:
        """Reintenta hasta conectar el productor; entonces la salud pasa a SERVING."""
        bucle = asyncio.get_running_loop()
        intentos = 0
        while not self._deteniendo:
            intentos += 1
            try:
                await bucle.run_in_executor(self._ejecutor_conexion, self.publicador.conectar)
                break
            except Exception as error:
                # Un aviso al primer fallo y luego uno por minuto, no uno por segundo.
                if intentos == 1 or intentos % 60 == 0:
                    log.warning("Kafka no disponible en %s (intento %d): %s", self._cfg.bootstrap, intentos, error)
                await asyncio.sleep(_REINTENTO_CONEXION_S)
        if self._deteniendo:
            return
        self.metricas.kafka_listo.set(1)
        for nombre in ("", SERVICIO):
            await self._salud.set(nombre, health_pb2.HealthCheckResponse.SERVING)
        log.info("productor de Kafka conectado a %s; salud: SERVING", self._cfg.bootstrap)

    def recargar_credenciales(self, credenciales: Credenciales) -> None:
        self._credenciales = credenciales
        if self._servicio is not None:
            self._servicio.credenciales = credenciales
        log.info("credenciales recargadas: %d token(s)", len(credenciales))

    async def detener(self) -> None:
        """NOT_SERVING, parada del servidor con gracia, y cierre del productor y de /metrics."""
        self._deteniendo = True
        if self._salud is not None:
            await self._salud.enter_graceful_shutdown()
        if self._conexion is not None:
            self._conexion.cancel()
        if self._servidor is not None:
            # Las peticiones en curso terminan (esperando su acuse) dentro de la gracia.
            await self._servidor.stop(self._cfg.gracia_s)
        # Tras la gracia no quedan peticiones: lo pendiente en el productor se confirma o
        # vence dentro del plazo de Kafka.
        await asyncio.to_thread(self.publicador.cerrar)
        self.metricas.kafka_listo.set(0)
        if self._metricas_http is not None:
            servidor_http, hilo = self._metricas_http
            self._metricas_http = None
            # shutdown() espera al bucle del hilo: fuera del bucle asyncio para no bloquearlo.
            await asyncio.to_thread(servidor_http.shutdown)
            servidor_http.server_close()
            hilo.join(timeout=5)
        # Sin esperar: un intento de conexión en curso termina solo al vencer su plazo.
        self._ejecutor_conexion.shutdown(wait=False, cancel_futures=True)
        self._ejecutor.shutdown(wait=False, cancel_futures=True)
        log.info("ingesta detenida")


async def servir(cfg: ConfigIngesta, catalogo: Catalogo, credenciales: Credenciales) -> None:
    """Corre la ingesta hasta SIGTERM o SIGINT; SIGHUP recarga el archivo de credenciales."""
    parar = asyncio.Event()
    bucle = asyncio.get_running_loop()
    for senal in (signal.SIGTERM, signal.SIGINT):
        bucle.add_signal_handler(senal, parar.set)
    servidor = ServidorIngesta(cfg, catalogo, credenciales)

    def recargar() -> None:
        try:
            servidor.recargar_credenciales(cargar_credenciales(cfg.credenciales, catalogo))
        except ArchivoInvalido as error:
            # Un archivo roto no deja a todas las agencias sin servicio: siguen las de antes.
            log.error("no se recargaron las credenciales (siguen las anteriores):\n%s", error)

    bucle.add_signal_handler(signal.SIGHUP, recargar)
    try:
        await servidor.iniciar()
        await parar.wait()
        log.info("señal de parada recibida; gracia de %d s", cfg.gracia_s)
    finally:
        await servidor.detener()


class IngestaEnHilo(ServicioEnHilo):
    """La ingesta completa en un hilo (no espera a Kafka: la salud dice cuándo)."""

    def __init__(self, cfg: ConfigIngesta, catalogo: Catalogo, credenciales: Credenciales):
        super().__init__(ServidorIngesta(cfg, catalogo, credenciales), "gpr-ingesta")
        self.servidor = self.servicio
