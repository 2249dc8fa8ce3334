"""Servidor gRPC de ingesta: `gpr.v1.Ingesta`, salud estándar, reflexión y /metrics.

Una petición pasa por: autenticación (token de la agencia en `authorization: Bearer …`),
lectura del mensaje (bytes que no son el mensaje → INVALID_ARGUMENT), límite de eventos,
autorización (todos los eventos de la agencia del token; si no, PERMISSION_DENIED), validación
de cada evento (`recepcion.motivo_de`), envío a Kafka (aceptados a gpr.eventos.v1, rechazados
al tópico de rechazados con su motivo) y espera del acuse. `Publicar` responde OK solo cuando
Kafka confirmó todos los registros de la petición; si no, UNAVAILABLE y el cliente reintenta
el lote entero (los repetidos no cuentan dos veces: el procesador deduplica por
(fuente, evento_id)).

`PublicarFlujo` no junta el flujo entero: lo valida y publica por trozos de a lo más
`GPR_INGESTA_TROZO_EVENTOS` eventos o `GPR_INGESTA_TROZO_BYTES` bytes, esperando el acuse de
cada trozo antes de leer el siguiente (el control de flujo de HTTP/2 frena al cliente
mientras tanto), así la memoria no depende del largo del flujo. Si el flujo falla a la mitad,
el metadato final `gpr-procesados` dice cuántos eventos, desde el principio, quedaron
resueltos (trozos confirmados); ninguno posterior se publicó, salvo quizá parte del trozo en
curso si el fallo es UNAVAILABLE (ver docs/ingesta.md).

Los mensajes llegan como bytes (manejadores sin deserializador) y se leen aquí: un error de
lectura en el deserializador de gRPC respondía UNKNOWN. Cualquier otra excepción inesperada
responde INTERNAL con su clase, nunca con datos del cliente.

La salud sigue a Kafka todo el tiempo, no solo al arrancar (`_vigilar`): SERVING cuando hay un
productor que el último sondeo vio capaz de escribir, NOT_SERVING mientras se crea otro.

`ServidorIngesta` arma todo dentro de un bucle asyncio; `servir` lo corre hasta
SIGTERM/SIGINT y recarga las credenciales con SIGHUP (lo usa `__main__`); `IngestaEnHilo`
lo corre en un hilo con su propio bucle, para las pruebas en proceso.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from gpr.v1 import eventos_pb2 as pb
from gpr.v1 import ingesta_pb2
from servicios.comun.catalogo import Catalogo
from servicios.comun.grpc_metricas import InterceptorMetricasGrpc
from servicios.comun.topicos import EVENTOS, RECHAZADOS
from servicios.comun.yaml_lineas import ArchivoInvalido
from servicios.comun.en_hilo import ServicioEnHilo
from servicios.comun.lotes import registros_aceptados
from servicios.comun.trazas import APAGADAS, TRAMO_APAGADO, Tramo, Trazas, contexto_de_metadatos
from servicios.ingesta.config import ConfigIngesta
from servicios.ingesta.credenciales import Credenciales, cargar_credenciales
from servicios.ingesta.metricas import MetricasIngesta
from gpr_cliente.kafka import describir_error
from servicios.ingesta.publicador import KafkaNoDisponible, Publicador
from servicios.ingesta.recepcion import (
    Clasificacion,
    EventoAjeno,
    MensajeInvalido,
    clasificar,
    comprobar_agencia,
    es_ajeno,
    recortar,
    registros_rechazados,
    resultado,
)

log = logging.getLogger(__name__)

SERVICIO = ingesta_pb2.DESCRIPTOR.services_by_name["Ingesta"].full_name
SALUD = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
# Nombre de salud para la sonda de vida: SERVING mientras el proceso atiende, con o sin Kafka.
VIDA = "vida"
# Metadato final de un PublicarFlujo fallido: eventos resueltos desde el principio del flujo.
METADATO_PROCESADOS = "gpr-procesados"
_SIN_KAFKA = "la ingesta no puede escribir en Kafka ahora; reintente en unos segundos"
_ESPERA_INICIAL_S = 0.5
_ERROR_DE_KAFKA_MAXIMO = 300


class ServicioIngesta:
    """Traduce peticiones a registros de Kafka y errores a códigos gRPC."""

    def __init__(self, cfg: ConfigIngesta, catalogo: Catalogo, credenciales: Credenciales,
                 publicador: Publicador, metricas: MetricasIngesta, ejecutor: ThreadPoolExecutor,
                 fallo_de_kafka: Callable[[KafkaNoDisponible, int], None] = lambda _error, _generacion: None,
                 trazas: Trazas = APAGADAS):
        self._cfg = cfg
        self._trazas = trazas
        self._catalogo = catalogo
        # Se reemplaza entero al recargar (SIGHUP): una petición ve el conjunto viejo o el nuevo.
        self.credenciales = credenciales
        self._publicador = publicador
        self._metricas = metricas
        self._ejecutor = ejecutor
        self._fallo_de_kafka = fallo_de_kafka
        self._en_curso = 0

    def manejadores(self) -> grpc.GenericRpcHandler:
        """Los métodos de `gpr.v1.Ingesta` sin deserializador: reciben los bytes del mensaje."""
        serializar = ingesta_pb2.RespuestaPublicar.SerializeToString
        return grpc.method_handlers_generic_handler(SERVICIO, {
            "Publicar": grpc.unary_unary_rpc_method_handler(
                self.Publicar, request_deserializer=None, response_serializer=serializar),
            "PublicarFlujo": grpc.stream_unary_rpc_method_handler(
                self.PublicarFlujo, request_deserializer=None, response_serializer=serializar),
        })

    async def Publicar(self, crudo: bytes, context) -> ingesta_pb2.RespuestaPublicar:  # noqa: N802
        agencia = await self._autenticar(context)
        async with self._turno(context, agencia), self._sin_excepciones(context, agencia):
            try:
                solicitud = ingesta_pb2.SolicitudPublicar.FromString(crudo)
            except DecodeError as error:
                await self._rechazar(context, agencia, "protobuf_invalido", grpc.StatusCode.INVALID_ARGUMENT,
                                     f"la solicitud ({len(crudo)} bytes) no es un gpr.v1.SolicitudPublicar "
                                     f"válido: {recortar(str(error))}")
            del crudo
            if len(solicitud.eventos) > self._cfg.lote_maximo:
                await self._rechazar(context, agencia, "demasiados_eventos", grpc.StatusCode.INVALID_ARGUMENT,
                                     f"eventos: la solicitud trae {len(solicitud.eventos)} eventos y el máximo "
                                     f"por llamada es {self._cfg.lote_maximo} (GPR_INGESTA_LOTE_MAXIMO); divídala "
                                     "en varias llamadas o use PublicarFlujo")
            eventos = list(solicitud.eventos)
            try:
                comprobar_agencia(eventos, agencia)
            except EventoAjeno as error:
                await self._denegar(context, agencia, error, "no se publicó ningún evento de esta petición")
            clasificacion = await self._publicar(eventos, agencia, context, desde=None)
            return self._respuesta(eventos, clasificacion.motivos)

    async def PublicarFlujo(self, request_iterator, context) -> ingesta_pb2.RespuestaPublicar:  # noqa: N802
        # Se autentica antes de leer el flujo: un cliente sin token no llega a enviar datos.
        agencia = await self._autenticar(context)
        async with self._turno(context, agencia), self._sin_excepciones(context, agencia):
            cfg = self._cfg
            respuesta = ingesta_pb2.RespuestaPublicar()
            trozo: list[pb.Evento | MensajeInvalido] = []
            bytes_trozo = 0
            # Eventos resueltos (sus trozos confirmados por Kafka) desde el principio del flujo.
            procesados = 0
            async for crudo in request_iterator:
                posicion = procesados + len(trozo)
                if posicion >= cfg.flujo_maximo:
                    await self._rechazar(
                        context, agencia, "demasiados_eventos", grpc.StatusCode.INVALID_ARGUMENT,
                        f"eventos: el flujo superó el máximo de {cfg.flujo_maximo} eventos por llamada "
                        f"(GPR_INGESTA_FLUJO_MAXIMO); {self._resueltos(procesados)}; envíe el resto en otra "
                        "llamada", procesados)
                try:
                    evento = pb.Evento.FromString(crudo)
                except DecodeError as error:
                    # Un mensaje ilegible es un evento rechazado, no el fin del flujo: los
                    # límites de los mensajes los marca gRPC, así que el siguiente se lee bien.
                    evento = MensajeInvalido(crudo, str(error))
                if es_ajeno(evento, agencia):
                    await self._denegar(context, agencia, EventoAjeno(posicion, evento, agencia, 0),
                                        f"{self._resueltos(procesados)}; este trozo no se publicó", procesados)
                trozo.append(evento)
                bytes_trozo += len(crudo)
                del crudo, evento
                if len(trozo) >= cfg.trozo_eventos or bytes_trozo >= cfg.trozo_bytes:
                    await self._publicar_trozo(trozo, agencia, context, procesados, respuesta)
                    procesados += len(trozo)
                    trozo, bytes_trozo = [], 0
            # Si gRPC cortó el flujo (un mensaje mayor que GPR_INGESTA_MENSAJE_MAXIMO, la red),
            # el iterador termina igual que cuando el cliente lo cierra y la cancelación llega
            # después: este último trozo puede publicarse aunque el cliente reciba un error. Por
            # eso un error sin gpr-procesados significa «cualquier prefijo pudo publicarse».
            if trozo:
                await self._publicar_trozo(trozo, agencia, context, procesados, respuesta)
            return respuesta

    async def _publicar_trozo(self, trozo: list, agencia: str, context, desde: int,
                              respuesta: ingesta_pb2.RespuestaPublicar) -> None:
        """Publica un trozo del flujo y suma sus resultados a la respuesta."""
        clasificacion = await self._publicar(trozo, agencia, context, desde=desde)
        parcial = self._respuesta(trozo, clasificacion.motivos)
        respuesta.resultados.extend(parcial.resultados)
        respuesta.aceptados += parcial.aceptados
        respuesta.rechazados += parcial.rechazados

    @staticmethod
    def _resueltos(procesados: int) -> str:
        if not procesados:
            return "no se publicó ningún evento del flujo"
        return (f"los primeros {procesados} eventos del flujo ya quedaron resueltos (metadato "
                f"{METADATO_PROCESADOS}) y ninguno posterior se publicó")

    def _respuesta(self, eventos, motivos) -> ingesta_pb2.RespuestaPublicar:
        return ingesta_pb2.RespuestaPublicar(
            resultados=[resultado(e, m, self._cfg.id_maximo) for e, m in zip(eventos, motivos)],
            aceptados=sum(1 for m in motivos if m is None),
            rechazados=sum(1 for m in motivos if m is not None),
        )

    @contextlib.asynccontextmanager
    async def _turno(self, context, agencia: str):
        """Cuenta la petición entre las que se atienden a la vez; sobre el máximo, RESOURCE_EXHAUSTED
        (la salud y la reflexión no cuentan: siguen respondiendo)."""
        if self._en_curso >= self._cfg.peticiones_maximas:
            await self._rechazar(context, agencia, "demasiadas_peticiones", grpc.StatusCode.RESOURCE_EXHAUSTED,
                                 f"la ingesta ya atiende {self._en_curso} peticiones (GPR_INGESTA_PETICIONES_MAXIMAS"
                                 f"={self._cfg.peticiones_maximas}); reintente en unos segundos")
        self._en_curso += 1
        try:
            yield
        finally:
            self._en_curso -= 1

    @contextlib.asynccontextmanager
    async def _sin_excepciones(self, context, agencia: str):
        """Una excepción inesperada es la falla de esta petición: INTERNAL con la clase del error
        (y la traza en el registro), nunca UNKNOWN con datos del cliente."""
        try:
            yield
        except grpc.aio.AbortError:
            raise
        except asyncio.CancelledError:
            # El cliente canceló o venció su plazo, o gRPC cortó el flujo (p. ej. un mensaje
            # mayor que GPR_INGESTA_MENSAJE_MAXIMO): lo ya confirmado queda publicado.
            self._metricas.solicitudes_rechazadas.labels(agencia=agencia, motivo="cancelada").inc()
            raise
        except Exception as error:  # noqa: BLE001
            log.exception("error interno atendiendo a %s", agencia)
            self._metricas.solicitudes_rechazadas.labels(agencia=agencia, motivo="error_interno").inc()
            await context.abort(grpc.StatusCode.INTERNAL,
                                f"error interno de la ingesta ({type(error).__name__}); reintente más tarde")

    async def _rechazar(self, context, agencia: str, motivo: str, codigo: grpc.StatusCode, detalle: str,
                        procesados: int | None = None) -> None:
        self._metricas.solicitudes_rechazadas.labels(agencia=agencia, motivo=motivo).inc()
        final = ((METADATO_PROCESADOS, str(procesados)),) if procesados is not None else ()
        await context.abort(codigo, detalle, final)

    async def _denegar(self, context, agencia: str, error: EventoAjeno, consecuencia: str,
                       procesados: int | None = None) -> None:
        log.warning("token de %s intentó publicar eventos de otra agencia desde %s", agencia, context.peer())
        await self._rechazar(context, agencia, "agencia_ajena", grpc.StatusCode.PERMISSION_DENIED,
                             f"{error}; {consecuencia}", procesados)

    async def _autenticar(self, context) -> str:
        valor = ""
        for clave, dato in context.invocation_metadata() or ():
            if clave == "authorization":
                valor = dato if isinstance(dato, str) else dato.decode("utf-8", "replace")
        if not valor.strip():
            await self._rechazar(context, "", "sin_token", grpc.StatusCode.UNAUTHENTICATED,
                                 "authorization: falta el metadato; envíe 'authorization: Bearer <token de la agencia>'")
        esquema, _, token = valor.strip().partition(" ")
        token = token.strip()
        if esquema.lower() != "bearer" or not token:
            await self._rechazar(context, "", "sin_token", grpc.StatusCode.UNAUTHENTICATED,
                                 "authorization: se espera el formato 'Bearer <token de la agencia>'")
        agencia = self.credenciales.agencia_de(token)
        if agencia is None:
            # El token no se registra: un token válido mal pegado es igual de secreto.
            log.warning("token desconocido desde %s", context.peer())
            await self._rechazar(context, "", "token_desconocido", grpc.StatusCode.UNAUTHENTICATED,
                                 "authorization: token desconocido o revocado")
        return agencia

    async def _publicar(self, eventos: list, agencia: str, context, desde: int | None) -> Clasificacion:
        """Valida y publica `eventos` y espera el acuse de Kafka; si no llega, UNAVAILABLE.
        `desde`: None en Publicar; en un flujo, la posición del primer evento del trozo (los
        anteriores están resueltos: va en el metadato final si esto falla)."""
        procesados = desde
        if not self._publicador.listo:
            await self._rechazar(context, agencia, "kafka_no_disponible", grpc.StatusCode.UNAVAILABLE,
                                 _SIN_KAFKA + self._tras(desde), procesados)
        fin = time.monotonic() + self._publicador.plazo_s
        generacion = self._publicador.generacion
        bucle = asyncio.get_running_loop()
        # Con trazas, el tramo del envío (hijo del `traceparent` del cliente, si lo manda): su
        # contexto va en las cabeceras de cada registro aceptado (docs/trazas.md).
        padre = contexto_de_metadatos(context.invocation_metadata()) if self._trazas.activas else None
        with self._trazas.envio(EVENTOS, padre=padre) as tramo:
            try:
                clasificacion, futuros = await bucle.run_in_executor(self._ejecutor, self._preparar_y_enviar, eventos,
                                                                     desde or 0, tramo)
                await self._publicador.confirmar(futuros, fin - time.monotonic())
            except KafkaNoDisponible as error:
                self._fallo_de_kafka(error, generacion)
                texto = recortar(str(error), _ERROR_DE_KAFKA_MAXIMO)
                log.warning("petición de %s con %d eventos sin confirmar: %s", agencia, len(eventos), texto)
                await self._rechazar(context, agencia, "kafka_no_disponible", grpc.StatusCode.UNAVAILABLE,
                                     f"{texto}; no se confirmó la petición: reintente el lote completo (los eventos "
                                     f"repetidos no se cuentan dos veces){self._tras(desde)}", procesados)
            tramo.anotar(agencia_id=agencia, eventos_aceptados=len(clasificacion.aceptados),
                         eventos_rechazados=len(clasificacion.rechazados))
        self._metricas.contar(agencia, clasificacion.motivos)
        return clasificacion

    @staticmethod
    def _tras(desde: int | None) -> str:
        if not desde:
            return ""
        return (f"; los primeros {desde} eventos del flujo ya quedaron resueltos (metadato {METADATO_PROCESADOS}): "
                "reenvíe desde el evento siguiente")

    def _preparar_y_enviar(self, eventos: list, desde: int,
                           tramo: Tramo = TRAMO_APAGADO) -> tuple[Clasificacion, list]:
        """En un hilo del ejecutor: validar, armar los registros y entregarlos al productor
        (validar y serializar miles de eventos no debe frenar el bucle de gRPC)."""
        cfg = self._cfg
        clasificacion = clasificar(eventos, self._catalogo, time.time(), cfg.evento_maximo, cfg.id_maximo)
        particiones = None
        if cfg.lotes and len(clasificacion.aceptados) > 1:
            particiones = self._publicador.particiones(EVENTOS)
        posiciones = [desde + i for i, m in enumerate(clasificacion.motivos) if m is not None]
        aceptados = registros_aceptados(clasificacion.aceptados, EVENTOS, particiones)
        if tramo.cabeceras:
            for registro in aceptados:
                registro.cabeceras.extend(tramo.cabeceras)
            tramo.registros = len(aceptados)
        registros = aceptados + registros_rechazados(clasificacion.rechazados, RECHAZADOS, cfg.evento_maximo,
                                                     cfg.id_maximo, posiciones)
        return clasificacion, self._publicador.enviar(registros)


class ServidorIngesta:
    """Productor + servidor gRPC + /metrics, con arranque y parada ordenados."""

    def __init__(self, cfg: ConfigIngesta, catalogo: Catalogo, credenciales: Credenciales,
                 trazas: Trazas | None = None):
        self._cfg = cfg
        self._catalogo = catalogo
        self._credenciales = credenciales
        # Sin `trazas` (así desde `servir`), las de la configuración (OTEL_*), que se cierran
        # al detenerse; las pruebas pasan las suyas.
        self._trazas_propias = trazas is None
        self.trazas = Trazas.iniciar(cfg.trazas) if trazas is None else trazas
        self.metricas = MetricasIngesta()
        self.publicador = Publicador(cfg.kafka, cfg.plazo_kafka_s, cfg.particiones)
        self.puerto_grpc: int | None = None
        self.puerto_metricas: int | None = None
        self._servicio: ServicioIngesta | None = None
        self._salud: health.aio.HealthServicer | None = None
        self._servidor: grpc.aio.Server | None = None
        self._metricas_http = None
        self._vigia: asyncio.Task | None = None
        # Lo avisa una petición que vio fallar a Kafka: sondear ya, sin esperar al intervalo.
        self._sospecha: asyncio.Event | None = None
        # Un error que dice que el productor no volverá a escribir: crear otro sin sondear.
        self._roto: str | None = None
        self._ejecutor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="gpr-ingesta-kafka")
        # Conectar y sondear pueden quedar bloqueados hasta el plazo de Kafka: su propio hilo,
        # para no quitarle uno a los envíos.
        self._ejecutor_conexion = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpr-ingesta-conexion")
        self._deteniendo = False

    async def iniciar(self) -> None:
        cfg = self._cfg
        self._sospecha = asyncio.Event()
        self._salud = health.aio.HealthServicer()
        # HealthServicer nace con "" en SERVING: hay que bajarlo antes de aceptar conexiones.
        await self._marcar(False)
        # La sonda de vida no sigue a Kafka: reiniciar el pod no arregla un corte de Kafka.
        await self._salud.set(VIDA, health_pb2.HealthCheckResponse.SERVING)

        self._servidor = grpc.aio.server(
            interceptors=[InterceptorMetricasGrpc(self.metricas.registro)],
            options=[("grpc.max_receive_message_length", cfg.mensaje_maximo)],
        )
        self._servicio = ServicioIngesta(cfg, self._catalogo, self._credenciales, self.publicador,
                                         self.metricas, self._ejecutor, self._fallo_de_kafka, self.trazas)
        self._servidor.add_generic_rpc_handlers((self._servicio.manejadores(),))
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

        self._vigia = asyncio.create_task(self._vigilar(), name="vigía de kafka de la ingesta")
        log.info("ingesta escuchando gRPC%s en %s:%d%s", " con TLS" if cfg.tls_certificado else "",
                 cfg.grpc_host, self.puerto_grpc,
                 f", /metrics en {cfg.metricas_host}:{self.puerto_metricas}" if self._metricas_http else "")

    async def _marcar(self, sirve: bool) -> None:
        estado = health_pb2.HealthCheckResponse.SERVING if sirve else health_pb2.HealthCheckResponse.NOT_SERVING
        self.metricas.kafka_listo.set(1 if sirve else 0)
        for nombre in ("", SERVICIO):
            await self._salud.set(nombre, estado)

    def _fallo_de_kafka(self, error: KafkaNoDisponible, generacion: int) -> None:
        """Una petición vio fallar a Kafka (en el bucle asyncio) con el productor `generacion`."""
        if generacion != self.publicador.generacion:
            # Un envío del productor ya descartado: lo que dice no vale para el actual.
            return
        if error.productor_roto and self._roto is None:
            self._roto = str(error)
        if self._sospecha is not None:
            self._sospecha.set()

    async def _vigilar(self) -> None:
        """Conecta el productor (con espera creciente entre intentos), lo sondea cada
        `GPR_INGESTA_SONDEO` o en cuanto una petición ve fallar a Kafka, y si ya no sirve lo
        descarta y vuelve a conectar. La salud dice SERVING solo entre una conexión y el primer
        sondeo fallido.

        Registro: una línea al perder Kafka y otra al recuperarlo; los reintentos repiten una
        misma plantilla, que el filtro de repetidos (`servicios/comun/registro.py`) deja pasar
        una vez por intervalo.
        """
        bucle = asyncio.get_running_loop()
        cfg = self._cfg
        espera = _ESPERA_INICIAL_S
        caida: float | None = None
        while not self._deteniendo:
            try:
                await bucle.run_in_executor(self._ejecutor_conexion, self.publicador.conectar)
            except Exception as error:  # noqa: BLE001 (todo fallo de conexión se reintenta)
                if self._deteniendo:
                    return
                self.metricas.conexiones_fallidas.inc()
                log.warning("Kafka no disponible en %s: %s; se reintenta en %.1f s", cfg.kafka.describir(),
                            recortar(describir_error(error), _ERROR_DE_KAFKA_MAXIMO), espera)
                await asyncio.sleep(espera)
                espera = min(espera * 2, cfg.reintento_maximo_s)
                continue
            if self._deteniendo:
                return
            espera = _ESPERA_INICIAL_S
            self._roto = None
            self._sospecha.clear()
            self.metricas.productores.inc()
            await self._marcar(True)
            if caida is None:
                log.info("productor de Kafka conectado a %s; salud: SERVING", cfg.bootstrap)
            else:
                log.warning("productor de Kafka nuevo conectado a %s tras %.1f s sin poder escribir; salud: SERVING",
                            cfg.bootstrap, time.monotonic() - caida)

            motivo = await self._hasta_que_falle()
            if self._deteniendo:
                return
            caida = time.monotonic()
            await self._marcar(False)
            log.error("la ingesta no puede escribir en Kafka (%s); salud: NOT_SERVING; se crea un productor nuevo",
                      recortar(motivo, _ERROR_DE_KAFKA_MAXIMO))
            await bucle.run_in_executor(self._ejecutor_conexion, self.publicador.descartar)

    async def _hasta_que_falle(self) -> str:
        """Sondea hasta que el productor deje de servir; devuelve por qué."""
        bucle = asyncio.get_running_loop()
        while not self._deteniendo:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._sospecha.wait(), timeout=self._cfg.sondeo_s)
            self._sospecha.clear()
            if self._roto is not None:
                return self._roto
            try:
                await bucle.run_in_executor(self._ejecutor_conexion, self.publicador.sondear)
            except Exception as error:  # noqa: BLE001
                return str(error) if isinstance(error, KafkaNoDisponible) else describir_error(error)
        return "la ingesta se detiene"

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
        if self._vigia is not None:
            self._vigia.cancel()
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
        if self._trazas_propias:
            # Exporta los tramos pendientes (acotado por el plazo del exportador OTLP).
            await asyncio.to_thread(self.trazas.cerrar)
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

    def __init__(self, cfg: ConfigIngesta, catalogo: Catalogo, credenciales: Credenciales,
                 trazas: Trazas | None = None):
        super().__init__(ServidorIngesta(cfg, catalogo, credenciales, trazas), "gpr-ingesta")
        self.servidor = self.servicio
