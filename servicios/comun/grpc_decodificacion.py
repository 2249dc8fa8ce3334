"""Peticiones gRPC cuyos bytes no son el mensaje protobuf del método: INVALID_ARGUMENT.

grpcio decodifica la petición antes de llamar al método; si el decodificador lanza (bytes
que no son protobuf, una cadena que no es UTF-8…), el cliente recibe UNKNOWN con el texto de
la excepción de Python, como si el servidor hubiera fallado. Es un error del cliente: este
interceptor cambia el decodificador de cada método por uno que no lanza y hace que el método
responda INVALID_ARGUMENT sin llegar a ejecutarse. Sirve para los métodos de petición única
(unarios y de flujo del servidor); los de flujo del cliente se dejan como están.

Va después del interceptor de métricas en la lista del servidor, para que esas peticiones
cuenten con su código (INVALID_ARGUMENT).
"""

from __future__ import annotations

import inspect

import grpc


class _Malformada:
    """Lo que recibe el método en lugar de la petición cuando sus bytes no se pudieron leer."""

    __slots__ = ("tipo",)

    def __init__(self, tipo: str):
        self.tipo = tipo


def _tipo(decodificador) -> str:
    # Los generados son `Mensaje.FromString`: el nombre del mensaje está en el método ligado.
    mensaje = getattr(decodificador, "__self__", None)
    descriptor = getattr(mensaje, "DESCRIPTOR", None)
    return descriptor.full_name if descriptor is not None else "mensaje de la petición"


def _tolerante(decodificador):
    tipo = _tipo(decodificador)

    def decodificar(datos: bytes):
        try:
            return decodificador(datos)
        except Exception:
            return _Malformada(tipo)

    return decodificar


def _detalle(peticion: _Malformada) -> str:
    return f"la petición no es un {peticion.tipo} válido (bytes de protobuf mal formados)"


def _unaria(comportamiento):
    async def envuelto(peticion, contexto):
        if isinstance(peticion, _Malformada):
            await contexto.abort(grpc.StatusCode.INVALID_ARGUMENT, _detalle(peticion))
        resultado = comportamiento(peticion, contexto)
        return await resultado if inspect.isawaitable(resultado) else resultado

    return envuelto


def _flujo_servidor(comportamiento):
    async def envuelto(peticion, contexto):
        if isinstance(peticion, _Malformada):
            await contexto.abort(grpc.StatusCode.INVALID_ARGUMENT, _detalle(peticion))
        respuestas = comportamiento(peticion, contexto)
        if inspect.isasyncgen(respuestas):
            async for respuesta in respuestas:
                yield respuesta
        else:
            for respuesta in respuestas:
                yield respuesta

    return envuelto


class InterceptorPeticionesMalformadas(grpc.aio.ServerInterceptor):
    def __init__(self):
        self._envueltos: dict[str, tuple] = {}

    async def intercept_service(self, continuation, handler_call_details):
        manejador = await continuation(handler_call_details)
        if manejador is None or manejador.request_deserializer is None:
            return manejador
        guardado = self._envueltos.get(handler_call_details.method)
        if guardado is not None and guardado[0] is manejador:
            return guardado[1]
        opciones = {"request_deserializer": _tolerante(manejador.request_deserializer),
                    "response_serializer": manejador.response_serializer}
        if manejador.unary_unary:
            envuelto = grpc.unary_unary_rpc_method_handler(_unaria(manejador.unary_unary), **opciones)
        elif manejador.unary_stream:
            comportamiento = manejador.unary_stream
            # Un flujo del servidor es un generador o una corrutina que escribe con
            # `context.write` (así lo hace la salud, `Watch`): el envoltorio debe ser igual.
            if inspect.isasyncgenfunction(comportamiento) or inspect.isgeneratorfunction(comportamiento):
                envuelto = grpc.unary_stream_rpc_method_handler(_flujo_servidor(comportamiento), **opciones)
            else:
                envuelto = grpc.unary_stream_rpc_method_handler(_unaria(comportamiento), **opciones)
        else:
            envuelto = manejador
        self._envueltos[handler_call_details.method] = (manejador, envuelto)
        return envuelto
