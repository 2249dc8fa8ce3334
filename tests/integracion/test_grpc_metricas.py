"""Interceptor de métricas gRPC (servicios/comun/grpc_metricas.py) con un servidor grpc.aio real.

Un servicio de prueba genérico cubre los cuatro tipos de RPC y las formas de terminar:
respuesta, `context.abort`, `set_code` (con y sin excepción después), excepción sin código,
plazo vencido y cancelación del cliente. Lo contado se lee del /metrics HTTP real y se
compara con el código que recibió el cliente en cada llamada.
"""

from __future__ import annotations

import asyncio
import urllib.request

import grpc
import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from servicios.comun.grpc_metricas import InterceptorMetricasGrpc

pytestmark = [pytest.mark.integracion, pytest.mark.timeout(60)]

SERVICIO = "prueba.v1.Eco"


def _igual(x: bytes) -> bytes:
    return x


async def responder(peticion, contexto):
    return b"ok"


async def abortar(peticion, contexto):
    await contexto.abort(grpc.StatusCode.NOT_FOUND, "no existe")


async def fijar_codigo(peticion, contexto):
    contexto.set_code(grpc.StatusCode.INVALID_ARGUMENT)
    contexto.set_details("campo: inválido")
    return b""


async def fijar_y_fallar(peticion, contexto):
    contexto.set_code(grpc.StatusCode.FAILED_PRECONDITION)
    raise RuntimeError("falla después de fijar el código")


async def fallar(peticion, contexto):
    raise RuntimeError("falla sin código")


async def demorar(peticion, contexto):
    await asyncio.sleep(5)
    return b"tarde"


def sincrono(peticion, contexto):
    return b"sincrono"


async def ceder_y_abortar(peticion, contexto):
    yield b"1"
    yield b"2"
    await contexto.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "búfer lleno")


async def escribir(peticion, contexto):
    # Forma de corrutina que escribe con context.write() en vez de ceder respuestas.
    await contexto.write(b"a")
    await contexto.write(b"b")


async def ceder_para_siempre(peticion, contexto):
    while True:
        yield b"x"
        await asyncio.sleep(0.01)


async def sumar(peticiones, contexto):
    total = 0
    async for peticion in peticiones:
        total += len(peticion)
    return str(total).encode()


async def eco(peticiones, contexto):
    async for peticion in peticiones:
        yield peticion


def _manejadores():
    unarias = {"Responder": responder, "Abortar": abortar, "FijarCodigo": fijar_codigo,
               "FijarYFallar": fijar_y_fallar, "Fallar": fallar, "Demorar": demorar, "Sincrono": sincrono}
    manejadores = {n: grpc.unary_unary_rpc_method_handler(f, _igual, _igual) for n, f in unarias.items()}
    for nombre, funcion in {"CederYAbortar": ceder_y_abortar, "Escribir": escribir,
                            "CederParaSiempre": ceder_para_siempre}.items():
        manejadores[nombre] = grpc.unary_stream_rpc_method_handler(funcion, _igual, _igual)
    manejadores["Sumar"] = grpc.stream_unary_rpc_method_handler(sumar, _igual, _igual)
    manejadores["Eco"] = grpc.stream_stream_rpc_method_handler(eco, _igual, _igual)
    return grpc.method_handlers_generic_handler(SERVICIO, manejadores)


def _leer_metricas(puerto: int):
    texto = urllib.request.urlopen(f"http://127.0.0.1:{puerto}/metrics", timeout=5).read().decode()
    familias = {f.name: f for f in text_string_to_metric_families(texto)}
    terminadas = {(m.labels["grpc_method"], m.labels["grpc_type"], m.labels["grpc_code"]): m.value
                  for m in familias["grpc_server_handled"].samples if m.name == "grpc_server_handled_total"}
    empezadas = {m.labels["grpc_method"]: m.value for m in familias["grpc_server_started"].samples
                 if m.name == "grpc_server_started_total"}
    duraciones = {m.labels["grpc_method"]: m.value for m in familias["grpc_server_handling_seconds"].samples
                  if m.name == "grpc_server_handling_seconds_count"}
    servicios = {m.labels["grpc_service"] for m in familias["grpc_server_started"].samples}
    return texto, terminadas, empezadas, duraciones, servicios


async def _codigo(llamada) -> grpc.StatusCode:
    try:
        await llamada
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def _codigo_flujo(llamada) -> tuple[list[bytes], grpc.StatusCode]:
    recibidos = []
    try:
        async for respuesta in llamada:
            recibidos.append(respuesta)
    except grpc.aio.AioRpcError as error:
        return recibidos, error.code()
    return recibidos, grpc.StatusCode.OK


def test_cuenta_el_codigo_que_recibe_el_cliente():
    async def escenario():
        registro = CollectorRegistry()
        servidor = grpc.aio.server(interceptors=[InterceptorMetricasGrpc(registro)])
        servidor.add_generic_rpc_handlers([_manejadores()])
        puerto = servidor.add_insecure_port("127.0.0.1:0")
        await servidor.start()
        http, hilo = start_http_server(0, "127.0.0.1", registry=registro)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{puerto}") as canal:
                def unaria(nombre, **opciones):
                    return canal.unary_unary(f"/{SERVICIO}/{nombre}")(b"x", timeout=opciones.get("timeout", 5))

                vistos = {}
                for nombre, veces in [("Responder", 3), ("Abortar", 2), ("FijarCodigo", 1), ("FijarYFallar", 1),
                                      ("Fallar", 1), ("Sincrono", 1)]:
                    for _ in range(veces):
                        vistos.setdefault(nombre, []).append(await _codigo(unaria(nombre)))
                vistos["Demorar"] = [await _codigo(unaria("Demorar", timeout=0.2))]
                recibidos, codigo = await _codigo_flujo(canal.unary_stream(f"/{SERVICIO}/CederYAbortar")(b"x", timeout=5))
                assert recibidos == [b"1", b"2"]
                vistos["CederYAbortar"] = [codigo]
                recibidos, codigo = await _codigo_flujo(canal.unary_stream(f"/{SERVICIO}/Escribir")(b"x", timeout=5))
                assert recibidos == [b"a", b"b"]
                vistos["Escribir"] = [codigo]
                suma = await canal.stream_unary(f"/{SERVICIO}/Sumar")(iter([b"ab", b"cde"]), timeout=5)
                assert suma == b"5"
                recibidos, codigo = await _codigo_flujo(canal.stream_stream(f"/{SERVICIO}/Eco")(iter([b"p", b"q"]), timeout=5))
                assert recibidos == [b"p", b"q"] and codigo == grpc.StatusCode.OK

                # Cancelación del cliente a mitad de un flujo que no termina solo.
                infinito = canal.unary_stream(f"/{SERVICIO}/CederParaSiempre")(b"x", timeout=30)
                await infinito.read()
                _, _, empezadas, _, _ = await asyncio.to_thread(_leer_metricas, http.server_port)
                assert empezadas["CederParaSiempre"] == 1
                infinito.cancel()
                fin = asyncio.get_running_loop().time() + 10
                while ("CederParaSiempre", "server_stream", "CANCELLED") not in \
                        (await asyncio.to_thread(_leer_metricas, http.server_port))[1]:
                    assert asyncio.get_running_loop().time() < fin, "la cancelación no se contó"
                    await asyncio.sleep(0.05)
                # Sin servidor que lo implemente no hay series nuevas.
                assert await _codigo(canal.unary_unary(f"/{SERVICIO}/Inventado")(b"x", timeout=5)) == \
                    grpc.StatusCode.UNIMPLEMENTED
                # El plazo vencido lo ve el servidor un poco después que el cliente.
                while ("Demorar", "unary", "DEADLINE_EXCEEDED") not in \
                        (await asyncio.to_thread(_leer_metricas, http.server_port))[1]:
                    assert asyncio.get_running_loop().time() < fin + 10, "el plazo vencido no se contó"
                    await asyncio.sleep(0.05)
                return vistos, await asyncio.to_thread(_leer_metricas, http.server_port)
        finally:
            http.shutdown()
            http.server_close()
            hilo.join(5)
            await servidor.stop(0)

    vistos, (texto, terminadas, empezadas, duraciones, servicios) = asyncio.run(escenario())
    OK, C = grpc.StatusCode.OK, grpc.StatusCode
    assert vistos == {"Responder": [OK] * 3, "Abortar": [C.NOT_FOUND] * 2, "FijarCodigo": [C.INVALID_ARGUMENT],
                      "FijarYFallar": [C.FAILED_PRECONDITION], "Fallar": [C.UNKNOWN], "Sincrono": [OK],
                      "Demorar": [C.DEADLINE_EXCEEDED], "CederYAbortar": [C.RESOURCE_EXHAUSTED], "Escribir": [OK]}
    assert terminadas == {
        ("Responder", "unary", "OK"): 3,
        ("Abortar", "unary", "NOT_FOUND"): 2,
        ("FijarCodigo", "unary", "INVALID_ARGUMENT"): 1,
        ("FijarYFallar", "unary", "FAILED_PRECONDITION"): 1,
        ("Fallar", "unary", "UNKNOWN"): 1,
        ("Sincrono", "unary", "OK"): 1,
        ("Demorar", "unary", "DEADLINE_EXCEEDED"): 1,
        ("CederYAbortar", "server_stream", "RESOURCE_EXHAUSTED"): 1,
        ("Escribir", "server_stream", "OK"): 1,
        ("Sumar", "client_stream", "OK"): 1,
        ("Eco", "bidi_stream", "OK"): 1,
        ("CederParaSiempre", "server_stream", "CANCELLED"): 1,
    }
    # Cada terminada se empezó y dejó una observación en el histograma.
    por_metodo = {}
    for (metodo, _, _), n in terminadas.items():
        por_metodo[metodo] = por_metodo.get(metodo, 0) + n
    assert empezadas == por_metodo and duraciones == por_metodo
    assert servicios == {SERVICIO}
    assert "Inventado" not in texto
