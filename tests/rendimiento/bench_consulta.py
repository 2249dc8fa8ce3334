"""Banco 3 — el servicio de consulta frente a un servidor gRPC desnudo, con el mismo cliente.

La consulta real (`python -m servicios.consulta`) carga de gpr.indicadores.v1 una vista de
series sintéticas (1 000 pares × indicadores × 4 ventanas) y responde `ObtenerIndicador`
sobre claves al azar; la línea base (`servidor_desnudo.py`) responde un `Indicador`
constante del mismo tamaño. El cliente es el mismo para los dos: grpc.aio en este proceso,
un canal, y dos modos:

* lazo cerrado (grpc.aio): N llamadas concurrentes sin pausa → peticiones/s y latencias;
* tasa fija (1 000/s por defecto, cliente síncrono en 2 hilos): una llamada cada 1/tasa s →
  p50/p99 de la llamada, y el retraso del propio cliente respecto del instante programado
  (si el cliente no da abasto se ve ahí y no se confunde con el servidor).

El cliente es Python, como el servidor, y comparte con él los 2 núcleos: las cifras absolutas
incluyen su coste; la razón frente al servidor desnudo, no.
"""

from __future__ import annotations

import asyncio
import base64
import random
import threading
import time
from pathlib import Path

import grpc
import pytest

from gpr.v1 import indicadores_pb2 as ipb
from gpr.v1 import indicadores_pb2_grpc as ipb_grpc
from apoyo.consulta import esperar_serving
from rendimiento import instrumentos as ins
from servicios.comun.broker import esperar_puerto, puerto_libre
from servicios.comun.indicadores import INDICADORES, clave_serie, unidad_de
from servicios.comun.topicos import INDICADORES as TOPICO_INDICADORES

PARES = 1_000
VENTANAS = ["1h", "24h", "7d", "30d"]


def series_sinteticas(pares: int) -> dict[str, ipb.Indicador]:
    azar = random.Random(3)
    ahora = int(time.time())
    series = {}
    for par in range(pares):
        agencia, servicio = f"agencia-{par // 10:04d}", f"servicio-{par % 10:02d}"
        for nombre, definicion in INDICADORES.items():
            if definicion.por_etapa:
                continue
            for ventana in VENTANAS:
                i = ipb.Indicador(agencia_id=agencia, servicio_id=servicio, indicador=nombre, ventana=ventana,
                                  valor=azar.random(), muestras=azar.randint(1, 5000), numerador=azar.randint(0, 5000),
                                  unidad=unidad_de(definicion, "PEN"))
                i.desde.seconds, i.hasta.seconds, i.actualizado_en.seconds = ahora - 86400, ahora, ahora
                series[clave_serie(agencia, servicio, nombre, ventana)] = i
    return series


def solicitud(indicador: ipb.Indicador) -> ipb.SolicitudIndicador:
    return ipb.SolicitudIndicador(agencia_id=indicador.agencia_id, servicio_id=indicador.servicio_id,
                                  indicador=indicador.indicador, ventana=indicador.ventana)


def esperar_serving_en(destino: str, limite_s: float = 60) -> None:
    with grpc.insecure_channel(destino) as canal:
        esperar_serving(canal, limite_s, f"la consulta en {destino}")


def _resumen(latencias: list[float], segundos: float, errores: int) -> dict:
    return {"llamadas": len(latencias), "rps": round(len(latencias) / segundos, 1), "errores": errores,
            "p50_ms": round(1000 * ins.percentil(latencias, 0.5), 3),
            "p99_ms": round(1000 * ins.percentil(latencias, 0.99), 3),
            "max_ms": round(1000 * max(latencias), 3)}


async def lazo_cerrado(destino: str, solicitudes: list, concurrencia: int, segundos: float) -> dict:
    async with grpc.aio.insecure_channel(destino) as canal:
        stub = ipb_grpc.IndicadoresStub(canal)
        for s in solicitudes[:300]:
            await stub.ObtenerIndicador(s, timeout=5)
        latencias: list[float] = []
        errores = 0
        fin = time.perf_counter() + segundos

        async def trabajador(j: int) -> None:
            nonlocal errores
            while time.perf_counter() < fin:
                t = time.perf_counter()
                try:
                    await stub.ObtenerIndicador(solicitudes[j % len(solicitudes)], timeout=5)
                except grpc.RpcError:
                    errores += 1
                latencias.append(time.perf_counter() - t)
                j += concurrencia

        inicio = time.perf_counter()
        await asyncio.gather(*(trabajador(i) for i in range(concurrencia)))
        return _resumen(latencias, time.perf_counter() - inicio, errores)


def tasa_fija(destino: str, solicitudes: list, tasa: int, segundos: float, hilos: int = 2) -> dict:
    """Llamadas síncronas desde `hilos` hilos que se reparten el calendario (una cada 1/tasa s).

    Síncrono y no grpc.aio: a tasa fija, el bucle asyncio del cliente añadía 20–40 ms al p99
    (visto también contra el servidor desnudo); la llamada bloqueante suelta el GIL y mide
    mejor la latencia de la llamada en sí.
    """
    with grpc.insecure_channel(destino) as canal:
        stub = ipb_grpc.IndicadoresStub(canal)
        for s in solicitudes[:300]:
            stub.ObtenerIndicador(s, timeout=5)
        latencias: list[float] = []
        retrasos: list[float] = []
        errores = [0]
        total = int(tasa * segundos)
        inicio = time.perf_counter() + 0.05

        def hilo(primera: int) -> None:
            for i in range(primera, total, hilos):
                programada = inicio + i / tasa
                espera = programada - time.perf_counter()
                if espera > 0:
                    time.sleep(espera)
                t = time.perf_counter()
                retrasos.append(t - programada)
                try:
                    stub.ObtenerIndicador(solicitudes[i % len(solicitudes)], timeout=5)
                except grpc.RpcError:
                    errores[0] += 1
                latencias.append(time.perf_counter() - t)

        corredores = [threading.Thread(target=hilo, args=(k,)) for k in range(hilos)]
        for corredor in corredores:
            corredor.start()
        for corredor in corredores:
            corredor.join()
        medida = _resumen(latencias, time.perf_counter() - inicio, errores[0])
        medida["tasa"] = tasa
        medida["retraso_cliente_p99_ms"] = round(1000 * ins.percentil(retrasos, 0.99), 3)
        return medida


def comprobar_respuestas(destino: str, series: dict[str, ipb.Indicador]) -> None:
    """La consulta devuelve exactamente la serie publicada, y NOT_FOUND para una que no existe."""
    with grpc.insecure_channel(destino) as canal:
        stub = ipb_grpc.IndicadoresStub(canal)
        for clave in random.Random(9).sample(sorted(series), 50):
            assert stub.ObtenerIndicador(solicitud(series[clave]), timeout=5) == series[clave], clave
        with pytest.raises(grpc.RpcError) as error:
            stub.ObtenerIndicador(ipb.SolicitudIndicador(agencia_id="no-existe", servicio_id="x",
                                                         indicador="solicitudes", ventana="24h"), timeout=5)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.timeout(600)
def test_consulta(config_bench, resultados, tmp_path):
    series = series_sinteticas(PARES)
    solicitudes = [solicitud(i) for i in series.values()]
    random.Random(4).shuffle(solicitudes)
    constante = next(iter(series.values()))
    medida: dict = {"series": len(series), "concurrencia": config_bench.consulta_concurrencia,
                    "segundos_por_modo": config_bench.consulta_s}
    procesos = ins.Procesos(tmp_path / "registros")
    try:
        with ins.broker_limpio(tmp_path / "broker") as bootstrap:
            ins.crear_topicos_bench(bootstrap)
            ins.producir(bootstrap, [ins.Registro(k.encode(), v.SerializeToString(), ins.particion_murmur2(k.encode()))
                                     for k, v in series.items()], topico=TOPICO_INDICADORES)
            puerto_consulta, puerto_desnudo = puerto_libre(), puerto_libre()
            procesos.lanzar(["-m", "servicios.consulta"], {
                "GPR_KAFKA_BOOTSTRAP": bootstrap, "GPR_GRPC_HOST": "127.0.0.1",
                "GPR_GRPC_PUERTO": str(puerto_consulta), "GPR_METRICAS_PUERTO": "0"}, "consulta")
            procesos.lanzar([str(Path(__file__).with_name("servidor_desnudo.py")), str(puerto_desnudo),
                             base64.b64encode(constante.SerializeToString()).decode()], {}, "desnudo")
            destinos = {"proyecto": f"127.0.0.1:{puerto_consulta}", "desnudo": f"127.0.0.1:{puerto_desnudo}"}
            esperar_serving_en(destinos["proyecto"])
            esperar_puerto("127.0.0.1", puerto_desnudo, 30)
            comprobar_respuestas(destinos["proyecto"], series)

            for clave in destinos:
                medida.setdefault(clave, {})["cerrado"] = asyncio.run(lazo_cerrado(
                    destinos[clave], solicitudes, config_bench.consulta_concurrencia, config_bench.consulta_s))
                print(f"\n[consulta] {clave}, lazo cerrado: {medida[clave]['cerrado']}")
            for clave in destinos:
                medida[clave]["abierto"] = tasa_fija(destinos[clave], solicitudes, config_bench.consulta_tasa,
                                                     config_bench.consulta_s)
                print(f"[consulta] {clave}, tasa fija: {medida[clave]['abierto']}")
            for clave in destinos:
                assert medida[clave]["cerrado"]["errores"] == 0 and medida[clave]["abierto"]["errores"] == 0, medida
    finally:
        procesos.detener_todos()
        resultados.fijar("consulta", medida)
