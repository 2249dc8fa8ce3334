"""Banco 4 — memoria residente del procesador y de la consulta con 1 000 y 10 000 pares.

Para cada nivel (GPR_BENCH_PARES) se genera un catálogo de ese número de pares (agencia,
servicio) —agencias de 10 servicios con 3 etapas, más la agencia de control—, sin metas, y un
caso por par (su solicitud y su entrega, repartidas en 20 días), publicado en lotes. Con un
procesador y una consulta recién arrancados (broker nuevo) se mide el RSS en reposo (base),
se publica la carga y se espera a que la consulta sirva las solicitudes y entregas 30d de
todos los pares y a que su número de series deje de crecer; entonces se mide el RSS y el pico
(VmHWM). Si vence GPR_BENCH_TOPE_MEMORIA_SEGUNDOS se mide igual y se marca incompleto.

Linealidad: coste por par (RSS − base) del nivel mayor dividido por el del menor (1× =
lineal; por encima, crece más que los pares); si el mayor no terminó, el de la consulta por
serie. Para un nivel incompleto se estima además el RSS con todas sus series. Aparte, lo que
cuesta cada par del catálogo en reposo (pendiente del RSS base entre niveles).
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from gpr.v1 import eventos_pb2 as pb
from gpr.v1 import indicadores_pb2 as ipb
from gpr.v1 import indicadores_pb2_grpc as ipb_grpc
from rendimiento import instrumentos as ins
from rendimiento.bench_consulta import esperar_serving_en
from servicios.comun.broker import puerto_libre
from servicios.comun.catalogo import cargar_catalogo


def pico_bytes(pid: int) -> int:
    for linea in Path(f"/proc/{pid}/status").read_text().splitlines():
        if linea.startswith("VmHWM:"):
            return int(linea.split()[1]) * 1024
    return 0


def eventos_por_par(catalogo) -> list[pb.Evento]:
    """Un caso por par de datos: solicitud y, un día después, su entrega; en orden temporal."""
    fin = (int(time.time()) // 3600) * 3600 - ins.D
    eventos = []
    for i, (agencia, servicio) in enumerate(sorted(p for p in catalogo.servicios if p[0] != ins.AGENCIA_CONTROL)):
        caso = f"{agencia}-{servicio}-1"
        recibido = fin - 20 * ins.D + (i * 7919) % (19 * ins.D)
        for sufijo, tipo, t in (("r", pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, recibido), ("e", pb.TIPO_EVENTO_SERVICIO_ENTREGADO, recibido + ins.D)):
            e = pb.Evento(evento_id=f"{caso}-{sufijo}", fuente="bench", tipo=tipo, agencia_id=agencia,
                          servicio_id=servicio, caso_id=caso)
            e.ocurrido_en.seconds = t
            eventos.append(e)
    eventos.sort(key=lambda e: e.ocurrido_en.seconds)
    return eventos


def series_en_vista(puerto_metricas: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{puerto_metricas}/metrics", timeout=10) as respuesta:
        for linea in respuesta.read().decode().splitlines():
            if linea.startswith("gpr_consulta_series "):
                return int(float(linea.split()[1]))
    return 0


def totales_por_grpc(stub, indicador: str) -> tuple[int, float]:
    """(series, suma de valores) de un indicador en la ventana 30d, listando por páginas."""
    series, suma, token = 0, 0.0, ""
    while True:
        pagina = stub.ListarIndicadores(ipb.FiltroIndicadores(indicador=indicador, ventana="30d", tamano_pagina=1000,
                                                              token_pagina=token), timeout=30)
        for i in pagina.indicadores:
            if i.agencia_id != ins.AGENCIA_CONTROL:
                series += 1
                suma += i.valor
        token = pagina.siguiente_pagina
        if not token:
            return series, suma


def medir_nivel(pares: int, config: ins.ConfigBench, directorio: Path) -> dict:
    ruta_catalogo = ins.catalogo_de_pares(directorio, pares)
    metas = directorio / "metas-vacias"
    metas.mkdir(parents=True, exist_ok=True)
    eventos = eventos_por_par(cargar_catalogo(ruta_catalogo))
    procesos = ins.Procesos(directorio / "registros")
    medida: dict = {"pares": pares, "eventos": len(eventos)}
    try:
        with ins.broker_limpio(directorio / "broker") as bootstrap:
            ins.crear_topicos_bench(bootstrap)
            observador = ins.Observador(bootstrap)
            try:
                grupo = ins.lanzar_trabajadores(procesos, bootstrap, directorio, ruta_catalogo, observador, 1,
                                                metas=metas)
            finally:
                observador.cerrar()
            puerto, puerto_metricas = puerto_libre(), puerto_libre()
            consulta = procesos.lanzar(["-m", "servicios.consulta"], {
                "GPR_KAFKA_BOOTSTRAP": bootstrap, "GPR_GRPC_HOST": "127.0.0.1", "GPR_GRPC_PUERTO": str(puerto),
                "GPR_METRICAS_PUERTO": str(puerto_metricas), "GPR_METRICAS_HOST": "127.0.0.1"}, "consulta")
            destino = f"127.0.0.1:{puerto}"
            esperar_serving_en(destino)
            procesador = grupo.procesos[0]
            base = {"procesador": ins.rss_bytes(procesador.pid), "consulta": ins.rss_bytes(consulta.pid)}

            inicio = time.monotonic()
            ins.producir(bootstrap, ins.registros_en_lotes(eventos, 500))
            completo = False
            with grpc.insecure_channel(destino) as canal:
                stub = ipb_grpc.IndicadoresStub(canal)
                anterior, estable_desde = -1, time.monotonic()
                while time.monotonic() - inicio < config.tope_memoria_s:
                    assert grupo.vivos() and consulta.poll() is None, procesos.registro("procesador-0")
                    time.sleep(2)
                    series = series_en_vista(puerto_metricas)
                    if series != anterior:
                        anterior, estable_desde = series, time.monotonic()
                        continue
                    if time.monotonic() - estable_desde < 5:
                        continue
                    solicitudes, entregas = totales_por_grpc(stub, "solicitudes"), totales_por_grpc(stub, "entregas")
                    if solicitudes == (pares, pares) and entregas == (pares, pares):
                        completo = True
                        break
            medida["segundos"] = round(time.monotonic() - inicio, 1)
            medida["completo"] = completo
            medida["series"] = series_en_vista(puerto_metricas)
            for nombre, proceso in (("procesador", procesador), ("consulta", consulta)):
                rss = ins.rss_bytes(proceso.pid)
                medida[nombre] = {"rss_base_bytes": base[nombre], "rss_bytes": rss, "pico_bytes": pico_bytes(proceso.pid),
                                  "bytes_por_par": round((rss - base[nombre]) / pares)}
    finally:
        procesos.detener_todos()
    return medida


def estimar_incompletos(medida: dict, niveles: list[int]) -> None:
    """Para un nivel cortado por el tope, el RSS que tendría con todas sus series, a razón del
    coste por serie que ya lleva; las series esperadas, por las series por par del nivel
    completo más grande."""
    completos = [p for p in niveles if medida[str(p)]["completo"]]
    if not completos:
        return
    series_por_par = medida[str(max(completos))]["series"] / max(completos)
    for pares in niveles:
        nivel = medida[str(pares)]
        if nivel["completo"] or not nivel["series"]:
            continue
        nivel["series_esperadas"] = round(series_por_par * pares)
        fraccion = nivel["series"] / nivel["series_esperadas"]
        for proceso in ("procesador", "consulta"):
            p = nivel[proceso]
            p["rss_estimado_bytes"] = round(p["rss_base_bytes"] + (p["rss_bytes"] - p["rss_base_bytes"]) / fraccion)


def linealidad(medida: dict, menor: int, mayor: int) -> dict:
    """Coste del nivel mayor / coste del menor (1× = lineal).

    Por par (RSS − base) si los dos niveles terminaron. Si el mayor no terminó, solo la
    consulta se puede comparar, por serie (su memoria es la de las series de la vista); la
    del procesador a medio publicar no es comparable. Aparte, la pendiente del RSS en reposo
    entre niveles: lo que cuesta cada par del catálogo (y sus metas) ya al arrancar.
    """
    a, b = medida[str(menor)], medida[str(mayor)]
    completa = bool(a["completo"] and b["completo"])
    resultado: dict = {"completa": completa, "base": "par" if completa else "serie"}
    for proceso in ("procesador", "consulta"):
        if not completa and proceso == "procesador":
            resultado[proceso] = None
            continue
        coste = [(n[proceso]["rss_bytes"] - n[proceso]["rss_base_bytes"]) / (n["pares"] if completa else max(1, n["series"]))
                 for n in (a, b)]
        resultado[proceso] = round(coste[1] / coste[0], 2) if coste[0] > 0 else None
    for proceso in ("procesador", "consulta"):
        resultado[f"{proceso}_reposo_bytes_por_par"] = round(
            (b[proceso]["rss_base_bytes"] - a[proceso]["rss_base_bytes"]) / (b["pares"] - a["pares"]))
    return resultado


@pytest.mark.timeout(1800)
def test_memoria(config_bench, resultados, tmp_path):
    niveles = sorted(config_bench.pares)
    medida: dict = {}
    try:
        for pares in niveles:
            medida[str(pares)] = medir_nivel(pares, config_bench, tmp_path / f"pares-{pares}")
            print(f"\n[memoria] {pares} pares: {medida[str(pares)]}")
        estimar_incompletos(medida, niveles)
        if len(niveles) >= 2:
            medida["linealidad"] = linealidad(medida, niveles[0], niveles[-1])
            print(f"[memoria] linealidad: {medida['linealidad']}")
    finally:
        resultados.fijar("memoria", medida)
