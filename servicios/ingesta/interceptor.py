"""Interceptor de servidor grpc.aio con las métricas de cada petición.

- `gpr_grpc_peticiones_total{metodo,codigo}`: peticiones terminadas, por código gRPC.
- `gpr_grpc_latencia_segundos{metodo}`: histograma de la duración de cada petición.

`metodo` es el nombre completo sin la barra inicial (`gpr.v1.Ingesta/Publicar`); `codigo`
el nombre del `grpc.StatusCode` (`OK`, `UNAUTHENTICATED`…). Solo se cuentan los métodos que
el servidor implementa: un método desconocido (UNIMPLEMENTED) no crea series, así un cliente
no puede inflar la cardinalidad inventando nombres.

Autocontenido (solo grpc y prometheus_client) para que cualquier servidor gRPC del proyecto
pueda usarlo pasándole su registro.
"""

from __future__ import annotations

import asyncio
import inspect
import time

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

# De 1 ms a 30 s: una petición de ingesta espera el acuse de Kafka (decenas de ms) y, si el
# broker no responde, hasta el plazo de Kafka (segundos).
CUBOS_LATENCIA = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


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


class InterceptorMetricas(grpc.aio.ServerInterceptor):
    """Cuenta y mide cada petición de los métodos implementados."""

    def __init__(self, registro: CollectorRegistry):
        self.peticiones = Counter(
            "gpr_grpc_peticiones", "Peticiones gRPC terminadas, por método y código de estado.",
            ["metodo", "codigo"], registry=registro,
        )
        self.latencia = Histogram(
            "gpr_grpc_latencia_segundos", "Duración de las peticiones gRPC, por método.",
            ["metodo"], buckets=CUBOS_LATENCIA, registry=registro,
        )

    async def intercept_service(self, continuation, handler_call_details):
        manejador = await continuation(handler_call_details)
        if manejador is None:
            return None
        metodo = handler_call_details.method.lstrip("/")
        opciones = {"request_deserializer": manejador.request_deserializer,
                    "response_serializer": manejador.response_serializer}
        if manejador.unary_unary:
            return grpc.unary_unary_rpc_method_handler(self._respuesta_unica(manejador.unary_unary, metodo), **opciones)
        if manejador.stream_unary:
            return grpc.stream_unary_rpc_method_handler(self._respuesta_unica(manejador.stream_unary, metodo), **opciones)
        if manejador.unary_stream:
            return grpc.unary_stream_rpc_method_handler(self._respuesta_flujo(manejador.unary_stream, metodo), **opciones)
        if manejador.stream_stream:
            return grpc.stream_stream_rpc_method_handler(self._respuesta_flujo(manejador.stream_stream, metodo), **opciones)
        return manejador

    def _respuesta_unica(self, comportamiento, metodo: str):
        async def envuelto(peticion, contexto):
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
                self._registrar(metodo, codigo, inicio)

        return envuelto

    def _respuesta_flujo(self, comportamiento, metodo: str):
        async def envuelto(peticion, contexto):
            inicio = time.perf_counter()
            codigo = grpc.StatusCode.UNKNOWN.name
            try:
                resultado = comportamiento(peticion, contexto)
                if inspect.isasyncgen(resultado):
                    async for respuesta in resultado:
                        yield respuesta
                elif inspect.isawaitable(resultado):
                    # Manejador que escribe con contexto.write() en vez de ceder respuestas.
                    await resultado
                else:
                    for respuesta in resultado:
                        yield respuesta
                codigo = _nombre_codigo(contexto.code()) or grpc.StatusCode.OK.name
            except BaseException as error:
                codigo = self._codigo_de_error(error, contexto)
                raise
            finally:
                self._registrar(metodo, codigo, inicio)

        return envuelto

    @staticmethod
    def _codigo_de_error(error: BaseException, contexto) -> str:
        if isinstance(error, (asyncio.CancelledError, GeneratorExit)):
            # gRPC cancela el manejador cuando el cliente cancela o vence su plazo.
            restante = contexto.time_remaining()
            if restante is not None and restante <= 0:
                return grpc.StatusCode.DEADLINE_EXCEEDED.name
            return grpc.StatusCode.CANCELLED.name
        # context.abort() fija el código antes de lanzar AbortError; cualquier otra
        # excepción sin código la convierte gRPC en UNKNOWN.
        return _nombre_codigo(contexto.code()) or grpc.StatusCode.UNKNOWN.name

    def _registrar(self, metodo: str, codigo: str, inicio: float) -> None:
        self.peticiones.labels(metodo=metodo, codigo=codigo).inc()
        self.latencia.labels(metodo=metodo).observe(time.perf_counter() - inicio)
