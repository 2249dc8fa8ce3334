"""Métricas de las peticiones de cualquier servidor grpc.aio del proyecto, con un interceptor.

Mismos nombres y etiquetas que go-grpc-prometheus (y que los tableros y reglas que ya hay
para él), así una consulta de Prometheus sirve igual para la ingesta, la consulta o un
servicio escrito en Go:

- `grpc_server_started_total{grpc_type,grpc_service,grpc_method}`: peticiones empezadas.
- `grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}`: terminadas,
  por código de estado (el que recibe el cliente).
- `grpc_server_handling_seconds{grpc_type,grpc_service,grpc_method}`: histograma de la
  duración, de la llegada al estado final (en un flujo, toda la vida del flujo).

`grpc_service` es el servicio completo (`gpr.v1.Ingesta`), `grpc_method` el método
(`Publicar`), `grpc_type` `unary`, `client_stream`, `server_stream` o `bidi_stream`, y
`grpc_code` el nombre del `grpc.StatusCode` (`OK`, `NOT_FOUND`…). Empezadas menos terminadas
son las peticiones en curso (p. ej. suscripciones abiertas).

Solo se cuentan los métodos que el servidor implementa: un método desconocido
(UNIMPLEMENTED) no crea series, así un cliente no puede inflar la cardinalidad inventando
nombres.

Las métricas se crean sin registro y se registran con `registrar_en`, porque hay servicios
que arman su registro de /metrics después de crear el servidor gRPC.
"""

from __future__ import annotations

import asyncio
import inspect
import time

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

# De 1 ms a 30 s: una petición de ingesta espera el acuse de Kafka (decenas de ms) y, si el
# broker no responde, hasta el plazo de Kafka (segundos); una consulta responde en
# microsegundos desde memoria. Los flujos largos caen en +Inf, como en go-grpc-prometheus.
CUBOS_LATENCIA = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

UNARIA, FLUJO_CLIENTE, FLUJO_SERVIDOR, FLUJO_DOBLE = "unary", "client_stream", "server_stream", "bidi_stream"
_ETIQUETAS = ["grpc_type", "grpc_service", "grpc_method"]


def _nombre_codigo(codigo) -> str | None:
    if codigo is None:
        return None
    if isinstance(codigo, grpc.StatusCode):
        return codigo.name
    # Algunas versiones devuelven el entero de la cabecera grpc-status.
    for estado in grpc.StatusCode:
        if estado.value[0] == codigo:
            return estado.name
    return grpc.StatusCode.UNKNOWN.name


def _partir(metodo_completo: str) -> tuple[str, str]:
    servicio, _, metodo = metodo_completo.lstrip("/").rpartition("/")
    return servicio, metodo


class InterceptorMetricasGrpc(grpc.aio.ServerInterceptor):
    """Cuenta y mide cada petición de los métodos implementados (unarias y de flujo)."""

    def __init__(self, registro: CollectorRegistry | None = None):
        self.empezadas = Counter(
            "grpc_server_started", "Peticiones gRPC empezadas en el servidor.",
            _ETIQUETAS, registry=None,
        )
        self.terminadas = Counter(
            "grpc_server_handled", "Peticiones gRPC terminadas en el servidor, por código de estado.",
            [*_ETIQUETAS, "grpc_code"], registry=None,
        )
        self.duracion = Histogram(
            "grpc_server_handling_seconds",
            "Duración de las peticiones gRPC en el servidor, hasta su estado final.",
            _ETIQUETAS, buckets=CUBOS_LATENCIA, registry=None,
        )
        # Método → (manejador original, manejador envuelto). grpc.aio pide el manejador a los
        # interceptores en cada llamada: envolverlo cada vez (y resolver las etiquetas de las
        # métricas) era una parte medible de cada petición de la consulta.
        self._envueltos: dict[str, tuple] = {}
        if registro is not None:
            self.registrar_en(registro)

    def registrar_en(self, registro: CollectorRegistry) -> None:
        for metrica in (self.empezadas, self.terminadas, self.duracion):
            registro.register(metrica)

    async def intercept_service(self, continuation, handler_call_details):
        manejador = await continuation(handler_call_details)
        if manejador is None:
            return None
        guardado = self._envueltos.get(handler_call_details.method)
        if guardado is not None and guardado[0] is manejador:
            return guardado[1]
        envuelto = self._envolver_manejador(manejador, handler_call_details.method)
        self._envueltos[handler_call_details.method] = (manejador, envuelto)
        return envuelto

    def _envolver_manejador(self, manejador, metodo_completo: str):
        servicio, metodo = _partir(metodo_completo)
        opciones = {"request_deserializer": manejador.request_deserializer,
                    "response_serializer": manejador.response_serializer}
        if manejador.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._envolver(manejador.unary_unary, (UNARIA, servicio, metodo)), **opciones)
        if manejador.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._envolver(manejador.stream_unary, (FLUJO_CLIENTE, servicio, metodo)), **opciones)
        if manejador.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._envolver(manejador.unary_stream, (FLUJO_SERVIDOR, servicio, metodo)), **opciones)
        if manejador.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                self._envolver(manejador.stream_stream, (FLUJO_DOBLE, servicio, metodo)), **opciones)
        return manejador

    def _envolver(self, comportamiento, etiquetas: tuple[str, str, str]):
        # Se conserva la forma del manejador original: grpc.aio trata distinto un generador
        # asíncrono (cada `yield` es una respuesta) que una corrutina (que responde con su
        # valor o escribe con context.write()); cambiarla rompería los que escriben.
        metricas = _MetricasMetodo(self, etiquetas)
        if inspect.isasyncgenfunction(comportamiento) or inspect.isgeneratorfunction(comportamiento):
            return self._envolver_generador(comportamiento, metricas)
        return self._envolver_corrutina(comportamiento, metricas)

    def _envolver_corrutina(self, comportamiento, metricas: _MetricasMetodo):
        async def envuelto(peticion, contexto):
            metricas.empezadas.inc()
            inicio = time.perf_counter()
            codigo = grpc.StatusCode.UNKNOWN.name
            try:
                resultado = comportamiento(peticion, contexto)
                if inspect.isawaitable(resultado):
                    resultado = await resultado
                codigo = _nombre_codigo(contexto.code()) or grpc.StatusCode.OK.name
                return resultado
            except BaseException as error:
                codigo = self._codigo_de_error(error, contexto)
                raise
            finally:
                metricas.terminar(codigo, inicio)

        return envuelto

    def _envolver_generador(self, comportamiento, metricas: _MetricasMetodo):
        async def envuelto(peticion, contexto):
            metricas.empezadas.inc()
            inicio = time.perf_counter()
            codigo = grpc.StatusCode.UNKNOWN.name
            try:
                respuestas = comportamiento(peticion, contexto)
                if inspect.isasyncgen(respuestas):
                    async for respuesta in respuestas:
                        yield respuesta
                else:
                    for respuesta in respuestas:
                        yield respuesta
                codigo = _nombre_codigo(contexto.code()) or grpc.StatusCode.OK.name
            except BaseException as error:
                codigo = self._codigo_de_error(error, contexto)
                raise
            finally:
                metricas.terminar(codigo, inicio)

        return envuelto

    @staticmethod
    def _codigo_de_error(error: BaseException, contexto) -> str:
        if isinstance(error, (asyncio.CancelledError, GeneratorExit)):
            # gRPC cancela el manejador cuando el cliente cancela o vence su plazo.
            restante = contexto.time_remaining()
            if restante is not None and restante <= 0:
                return grpc.StatusCode.DEADLINE_EXCEEDED.name
            return grpc.StatusCode.CANCELLED.name
        # context.abort() fija el código antes de lanzar AbortError. Con otra excepción el
        # cliente recibe el código fijado antes con set_code() (grpc.aio lo conserva) o, si
        # no hubo, UNKNOWN.
        return _nombre_codigo(contexto.code()) or grpc.StatusCode.UNKNOWN.name


class _MetricasMetodo:
    """Las series de un método, resueltas una vez (`labels()` busca bajo un candado)."""

    def __init__(self, interceptor: InterceptorMetricasGrpc, etiquetas: tuple[str, str, str]):
        self.empezadas = interceptor.empezadas.labels(*etiquetas)
        self.duracion = interceptor.duracion.labels(*etiquetas)
        self._terminadas = interceptor.terminadas
        self._etiquetas = etiquetas
        self._por_codigo: dict[str, object] = {}

    def terminar(self, codigo: str, inicio: float) -> None:
        serie = self._por_codigo.get(codigo)
        if serie is None:
            serie = self._por_codigo[codigo] = self._terminadas.labels(*self._etiquetas, codigo)
        serie.inc()
        self.duracion.observe(time.perf_counter() - inicio)
