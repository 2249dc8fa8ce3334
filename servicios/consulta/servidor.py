"""Servidor gRPC de consulta: `gpr.v1.Indicadores`, salud estándar, reflexión y /metrics.

`ServicioConsulta` arma la vista, el servidor y el exportador dentro de un bucle asyncio;
`servir` lo corre hasta SIGTERM/SIGINT (lo usa `__main__`; SIGHUP recarga los tokens) y
`ConsultaEnHilo` lo corre en un hilo con su propio bucle, para las pruebas que quieren todo
en el mismo proceso.

Con TLS (`GPR_CONSULTA_TLS_CERT`/`_KEY`) el puerto gRPC solo habla TLS; la salud se puede
publicar además en claro en `GPR_CONSULTA_SALUD_PUERTO` (un segundo servidor solo con
`grpc.health.v1`), porque las sondas gRPC de Kubernetes no hablan TLS. La salud sigue a la
vista (`Vista.revisar`): SERVING mientras esté al día, NOT_SERVING durante un corte de Kafka
o una reconstrucción, y NOT_SERVING para siempre al empezar la parada.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gpr.v1 import indicadores_pb2 as ipb
from gpr.v1 import indicadores_pb2_grpc as ipb_grpc
from servicios.comun.catalogo import Catalogo, cargar_catalogo
from servicios.comun.grpc_decodificacion import InterceptorPeticionesMalformadas
from servicios.comun.grpc_metricas import InterceptorMetricasGrpc
from servicios.comun.topicos import EVENTOS, INTERNOS
from servicios.comun.en_hilo import ServicioEnHilo
from servicios.comun.yaml_lineas import ArchivoInvalido
from servicios.consulta.acceso import Tokens, cargar_tokens
from servicios.consulta.api import ApiExtendida
from servicios.consulta.config import ConfigConsulta
from servicios.consulta.exportador import servir_metricas
from servicios.consulta.metricas import crear_registro
from servicios.consulta.peticiones import PeticionInvalida, clave_de_solicitud, eco, paginar
from servicios.consulta.rechazados import ContadorRechazados
from servicios.consulta.retraso import RetrasoProcesador
from servicios.consulta.vista import Vista

log = logging.getLogger(__name__)

SERVICIO = ipb.DESCRIPTOR.services_by_name["Indicadores"].full_name
# Nombre de salud para la sonda de vida: SERVING mientras el proceso atiende, aunque Kafka no
# responda (reiniciar el pod no arregla un corte de Kafka).
VIDA = "vida"
SALUD = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
# Cada cuánto la salud mira si la vista sigue al día.
_REVISION_SALUD_S = 0.2


class ServicioIndicadores(ApiExtendida, ipb_grpc.IndicadoresServicer):
    """Responde desde la vista materializada; solo traduce errores a códigos gRPC."""

    def __init__(self, vista: Vista, historial_maximo: int = 100, suscripcion_bufer: int = 1000,
                 historial_total: int = 200_000, tokens: Tokens | None = None):
        self._iniciar_api(vista, historial_maximo, suscripcion_bufer, historial_total, tokens)

    async def ObtenerIndicador(self, request: ipb.SolicitudIndicador, context) -> ipb.Indicador:
        alcance = await self._autorizar(context)
        try:
            clave = clave_de_solicitud(request)
        except PeticionInvalida as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        await self._exigir_agencia(alcance, request.agencia_id, context)
        await self._exigir_cargada(context)
        indicador = self._vista.obtener(clave)
        if indicador is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no hay datos de la serie {eco(clave)}")
        return indicador

    async def ListarIndicadores(self, request: ipb.FiltroIndicadores, context) -> ipb.ListaIndicadores:
        alcance = await self._autorizar(context)
        # Se valida antes de mirar la vista, para que un error del cliente no espere a la carga.
        try:
            paginar([], request)
        except PeticionInvalida as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        await self._exigir_agencia(alcance, request.agencia_id, context)
        await self._exigir_cargada(context)
        try:
            pagina = paginar(self._vista.ordenadas(), request, alcance.agencias)
        except PeticionInvalida as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        return ipb.ListaIndicadores(indicadores=pagina.indicadores, siguiente_pagina=pagina.siguiente)


class ServicioConsulta:
    """Vista + servidor gRPC + /metrics, con arranque y parada ordenados.

    `catalogo` y `tokens`: si no se dan, se cargan de `cfg.catalogo` y `cfg.tokens`.
    """

    def __init__(self, cfg: ConfigConsulta, catalogo: Catalogo | None = None, tokens: Tokens | None = None):
        self._cfg = cfg
        self._catalogo = catalogo if catalogo is not None else cargar_catalogo(cfg.catalogo)
        if tokens is None and cfg.tokens:
            tokens = cargar_tokens(cfg.tokens, self._catalogo)
        self._tokens = tokens
        self.vista: Vista | None = None
        self.puerto_grpc: int | None = None
        self.puerto_salud: int | None = None
        self.puerto_metricas: int | None = None
        self._salud: health.aio.HealthServicer | None = None
        self._servidor: grpc.aio.Server | None = None
        self._servidor_salud: grpc.aio.Server | None = None
        self._indicadores: ServicioIndicadores | None = None
        self._metricas = None
        # Lectores de Kafka que solo alimentan /metrics: sin endpoint no se arrancan.
        self._rechazados: ContadorRechazados | None = None
        self._retraso: RetrasoProcesador | None = None
        self._vigia: asyncio.Task | None = None
        # Sus métricas se registran en /metrics cuando se crea el registro, después del servidor.
        self._metricas_grpc = InterceptorMetricasGrpc()

    async def iniciar(self) -> None:
        cfg = self._cfg
        self.vista = Vista(cfg.kafka, plazo_kafka_s=cfg.plazo_kafka_s)
        self._salud = health.aio.HealthServicer()
        # HealthServicer nace con "" en SERVING: hay que bajarlo antes de aceptar conexiones.
        for nombre in ("", SERVICIO):
            await self._salud.set(nombre, health_pb2.HealthCheckResponse.NOT_SERVING)

        # Métricas por fuera: cuentan también lo que el segundo responde (INVALID_ARGUMENT).
        self._servidor = grpc.aio.server(interceptors=[self._metricas_grpc, InterceptorPeticionesMalformadas()])
        self._indicadores = ServicioIndicadores(self.vista, cfg.historial_maximo, cfg.suscripcion_bufer,
                                                cfg.historial_total, self._tokens)
        ipb_grpc.add_IndicadoresServicer_to_server(self._indicadores, self._servidor)
        health_pb2_grpc.add_HealthServicer_to_server(self._salud, self._servidor)
        reflection.enable_server_reflection([SERVICIO, SALUD, reflection.SERVICE_NAME], self._servidor)
        direccion = f"{cfg.grpc_host}:{cfg.grpc_puerto}"
        try:
            if cfg.tls_certificado is not None:
                credenciales = grpc.ssl_server_credentials([(cfg.tls_clave, cfg.tls_certificado)])
                self.puerto_grpc = self._servidor.add_secure_port(direccion, credenciales)
            else:
                self.puerto_grpc = self._servidor.add_insecure_port(direccion)
        except RuntimeError as error:
            raise OSError(f"no se puede escuchar gRPC en {direccion}: {error}") from None
        await self._servidor.start()
        if cfg.salud_puerto:
            self._servidor_salud = grpc.aio.server()
            health_pb2_grpc.add_HealthServicer_to_server(self._salud, self._servidor_salud)
            direccion_salud = f"{cfg.grpc_host}:{cfg.salud_puerto}"
            try:
                self.puerto_salud = self._servidor_salud.add_insecure_port(direccion_salud)
            except RuntimeError as error:
                raise OSError(f"no se puede escuchar la salud gRPC en {direccion_salud}: {error}") from None
            await self._servidor_salud.start()

        await self._salud.set(VIDA, health_pb2.HealthCheckResponse.SERVING)

        if cfg.metricas_puerto:
            self._rechazados = ContadorRechazados(cfg.kafka, self._catalogo, plazo_kafka_s=cfg.plazo_kafka_s)
            # Los tópicos que consume el procesador con su grupo: la entrada y sus internos (los
            # eventos por agencia, los aportes).
            self._retraso = RetrasoProcesador(cfg.kafka, cfg.grupo_procesador, [EVENTOS, *INTERNOS],
                                              cfg.intervalo_retraso_s)
            registro = crear_registro(self.vista, self._rechazados, self._retraso)
            self._metricas_grpc.registrar_en(registro)
            servidor_http, hilo = servir_metricas(cfg.metricas_puerto, cfg.metricas_host, registro)
            self._metricas = (servidor_http, hilo)
            self.puerto_metricas = servidor_http.server_port
            self._rechazados.iniciar()
            self._retraso.iniciar()

        self.vista.iniciar()
        self._vigia = asyncio.create_task(self._vigilar_salud(), name="salud consulta")
        log.info("consulta escuchando gRPC en %s:%d (%s; %s)%s%s", cfg.grpc_host, self.puerto_grpc,
                 "con TLS" if cfg.tls_certificado is not None else "EN CLARO, sin TLS",
                 f"tokens de lectura: {len(self._tokens)}" if self._tokens is not None
                 else "SIN control de acceso: cualquiera lee todo",
                 f", salud en claro en {cfg.grpc_host}:{self.puerto_salud}" if self._servidor_salud else "",
                 f", /metrics en {cfg.metricas_host}:{self.puerto_metricas}" if self._metricas else "")

    async def _vigilar_salud(self) -> None:
        """SERVING mientras la vista esté al día; NOT_SERVING si no (ver `Vista.revisar`)."""
        estado = None
        cambios = 0
        while True:
            al_dia = self.vista.revisar()
            if al_dia != estado:
                estado = al_dia
                cambios += 1
                valor = health_pb2.HealthCheckResponse.SERVING if al_dia else health_pb2.HealthCheckResponse.NOT_SERVING
                for nombre in ("", SERVICIO):
                    await self._salud.set(nombre, valor)
                # El número de cambio va en el texto y no como argumento: el filtro de
                # repetidos compara el texto sin argumentos, y cada cambio de estado debe
                # quedar en el registro (si no, tras un corte corto la última línea diría
                # NOT_SERVING con el servicio ya de vuelta). Un cambio exige un corte de al
                # menos GPR_CONSULTA_PLAZO_KAFKA: no hay ráfagas.
                if al_dia:
                    log.info(f"salud: SERVING (cambio {cambios}); vista de %d series al día", len(self.vista))
                elif self.vista.cargada.is_set():
                    log.warning(f"salud: NOT_SERVING (cambio {cambios}): Kafka no responde desde hace más de %.0f s "
                                "o la vista se está poniendo al día; se sigue respondiendo con lo último leído",
                                self._cfg.plazo_kafka_s)
            await asyncio.sleep(_REVISION_SALUD_S)

    def recargar_tokens(self, tokens: Tokens) -> None:
        self._tokens = tokens
        if self._indicadores is not None:
            self._indicadores.tokens = tokens
        log.info("tokens de lectura recargados: %d", len(tokens))

    async def detener(self) -> None:
        """NOT_SERVING, parada del servidor con gracia, y cierre de la vista y de /metrics."""
        if self._vigia is not None:
            self._vigia.cancel()
        if self._salud is not None:
            await self._salud.enter_graceful_shutdown()
        if self._servidor_salud is not None:
            await self._servidor_salud.stop(self._cfg.gracia_s)
        if self._servidor is not None:
            await self._servidor.stop(self._cfg.gracia_s)
        if self.vista is not None:
            await self.vista.detener()
        for lector in (self._rechazados, self._retraso):
            if lector is not None:
                await lector.detener()
        if self._metricas is not None:
            servidor_http, hilo = self._metricas
            self._metricas = None
            # shutdown() espera al bucle del hilo: fuera del bucle asyncio para no bloquearlo.
            await asyncio.to_thread(servidor_http.shutdown)
            servidor_http.server_close()
            hilo.join(timeout=5)
        log.info("consulta detenida")


async def servir(cfg: ConfigConsulta, catalogo: Catalogo | None = None, tokens: Tokens | None = None) -> None:
    """Corre la consulta hasta recibir SIGTERM o SIGINT; entonces se detiene con gracia.
    SIGHUP vuelve a leer el archivo de tokens (si tiene un error, siguen los anteriores)."""
    parar = asyncio.Event()
    bucle = asyncio.get_running_loop()
    for senal in (signal.SIGTERM, signal.SIGINT):
        bucle.add_signal_handler(senal, parar.set)
    servicio = ServicioConsulta(cfg, catalogo, tokens)

    def recargar() -> None:
        if not cfg.tokens:
            log.warning("SIGHUP sin GPR_CONSULTA_TOKENS: no hay tokens que recargar")
            return
        try:
            servicio.recargar_tokens(cargar_tokens(cfg.tokens, servicio._catalogo))
        except ArchivoInvalido as error:
            log.error("no se recargaron los tokens (siguen los anteriores):\n%s", error)

    bucle.add_signal_handler(signal.SIGHUP, recargar)
    try:
        await servicio.iniciar()
        await parar.wait()
        log.info("señal de parada recibida; gracia de %d s", cfg.gracia_s)
    finally:
        await servicio.detener()


class ConsultaEnHilo(ServicioEnHilo):
    """La consulta completa en un hilo (no espera a que la vista esté al día)."""

    def __init__(self, cfg: ConfigConsulta, catalogo: Catalogo | None = None, tokens: Tokens | None = None):
        super().__init__(ServicioConsulta(cfg, catalogo, tokens), "gpr-consulta")
