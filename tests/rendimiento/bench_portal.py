"""Banco del portal: latencia de las páginas a 200 peticiones/s, peticiones/s frente al mismo
framework sirviendo una página constante, y llamadas gRPC por cada 1 000 vistas.

Pila: broker embebido con series sintéticas de las agencias del catálogo versionado en
gpr.indicadores.v1 (todas las ventanas que usa el portal, 13 meses, etapas, una meta),
`python -m servicios.consulta`, `python -m servicios.portal` (caché de 5 s) y la línea base
`portal_constante.py` (Starlette + uvicorn, página constante del tamaño de una del portal).
La carga sale de otro proceso (`carga_http.py`), con conexiones persistentes.

Metas del issue #18: p99 de las páginas a 200 peticiones/s; peticiones/s ≥ 50 % de la página
constante; a lo más una llamada por serie y periodo de caché (aquí, una «serie» es una lectura
de la caché: el listado de una agencia, que puede ocupar varias páginas de la API).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


from apoyo.portal import segundos
from rendimiento import instrumentos as ins
from servicios.comun.broker import esperar_puerto, puerto_libre
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.indicadores import INDICADORES, clave_serie, unidad_de
from servicios.comun.topicos import INDICADORES as TOPICO_INDICADORES
from servicios.portal import dominio as d

from gpr.v1 import indicadores_pb2 as ipb

RAIZ = Path(__file__).resolve().parents[2]
CATALOGO = RAIZ / "despliegue" / "catalogo.yaml"
AQUI = Path(__file__).resolve().parent
AHORA = "2026-06-17T15:00:00Z"
CACHE_S = 5.0
SEGUNDOS = float(os.environ.get("GPR_BENCH_PORTAL_SEGUNDOS", "8"))
TASA = float(os.environ.get("GPR_BENCH_PORTAL_TASA", "200"))
CONCURRENCIA = int(os.environ.get("GPR_BENCH_PORTAL_CONCURRENCIA", "8"))


def series(catalogo) -> dict[str, ipb.Indicador]:
    azar = random.Random(18)
    hasta = segundos(AHORA) - 3600
    ventanas = ["24h", "7d", "30d"] + [d.ventana_mes(m) for m in d.meses_hasta("2026-06")]
    resultado = {}
    for (agencia, servicio_id), servicio in sorted(catalogo.servicios.items()):
        for nombre, definicion in INDICADORES.items():
            for etapa in (servicio.etapas if definicion.por_etapa else ("",)):
                for ventana in ventanas:
                    muestras = azar.choice([3, 8, 40, 120, 900])
                    valor = azar.random() * (5 * 86400 if definicion.unidad == "segundos" else 1.0)
                    i = ipb.Indicador(agencia_id=agencia, servicio_id=servicio_id, indicador=nombre, ventana=ventana,
                                      valor=valor, muestras=muestras, numerador=valor * muestras, etapa_id=etapa,
                                      unidad=unidad_de(definicion, catalogo.agencias[agencia].moneda),
                                      etapa_cuello_botella=servicio.etapas[0] if servicio.etapas else "")
                    i.hasta.seconds = i.actualizado_en.seconds = hasta
                    if nombre == "cumplimiento_plazo" and ventana == "7d":
                        i.meta.CopyFrom(ipb.EvaluacionMeta(operador=">=", valor=0.9, muestra_minima=5,
                                                           estado=ipb.ESTADO_CUMPLIMIENTO_CUMPLE, descripcion="meta de prueba"))
                    resultado[clave_serie(agencia, servicio_id, nombre, ventana, etapa)] = i
    return resultado


def rutas(catalogo) -> list[str]:
    lista = ["/"]
    for agencia in catalogo.agencias:
        lista += [f"/agencias/{agencia}", f"/agencias/{agencia}/informe/2026-06"]
        lista += [f"/agencias/{agencia}/servicios/{s.id}" for s in catalogo.servicios_de(agencia)]
    return lista


def _carga(*argumentos) -> dict:
    salida = subprocess.run([sys.executable, str(AQUI / "carga_http.py"), *map(str, argumentos)],
                            capture_output=True, text=True, timeout=SEGUNDOS * 4 + 120, check=True)
    return json.loads(salida.stdout)


def _llamadas(url: str) -> float:
    texto = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    return sum(float(m.group(1)) for m in re.finditer(r'^gpr_portal_rpc_total\{[^}]*\} ([0-9.e+]+)$', texto, re.M))


def _esperar(url: str, limite_s: float = 60) -> None:
    fin = time.monotonic() + limite_s
    while True:
        try:
            if urllib.request.urlopen(url + "/", timeout=5).status == 200:
                return
        except OSError:
            pass
        assert time.monotonic() < fin, f"{url} no respondió 200"
        time.sleep(0.5)


def test_portal(resultados, tmp_path):
    catalogo = cargar_catalogo(CATALOGO)
    todas = series(catalogo)
    lista = rutas(catalogo)
    medida: dict = {"series": len(todas), "rutas": len(lista), "segundos_por_modo": SEGUNDOS, "tasa_objetivo": TASA,
                    "concurrencia": CONCURRENCIA, "cache_s": CACHE_S}
    procesos = ins.Procesos(tmp_path / "registros")
    try:
        with ins.broker_limpio(tmp_path / "broker") as bootstrap:
            ins.crear_topicos_bench(bootstrap)
            ins.producir(bootstrap, [ins.Registro(k.encode(), v.SerializeToString(), ins.particion_murmur2(k.encode()))
                                     for k, v in todas.items()], topico=TOPICO_INDICADORES)
            puertos = {n: puerto_libre() for n in ("consulta", "portal", "constante")}
            procesos.lanzar(["-m", "servicios.consulta"], {
                "GPR_KAFKA_BOOTSTRAP": bootstrap, "GPR_GRPC_HOST": "127.0.0.1",
                "GPR_GRPC_PUERTO": str(puertos["consulta"]), "GPR_METRICAS_PUERTO": "0"}, "consulta")
            procesos.lanzar(["-m", "servicios.portal"], {
                "GPR_CATALOGO": str(CATALOGO), "GPR_PORTAL_CONSULTA": f"127.0.0.1:{puertos['consulta']}",
                "GPR_PORTAL_HOST": "127.0.0.1", "GPR_PORTAL_PUERTO": str(puertos["portal"]),
                "GPR_PORTAL_CACHE": str(CACHE_S), "GPR_PORTAL_AHORA": AHORA}, "portal")
            portal = f"http://127.0.0.1:{puertos['portal']}"
            _esperar(portal)
            # La página constante mide lo que la página media del portal.
            tamanos = [len(urllib.request.urlopen(portal + r, timeout=10).read()) for r in lista]
            medida["bytes_pagina_media"] = sum(tamanos) // len(tamanos)
            procesos.lanzar([str(AQUI / "portal_constante.py"), str(puertos["constante"]),
                             str(medida["bytes_pagina_media"])], {}, "constante")
            esperar_puerto("127.0.0.1", puertos["constante"], 30)
            constante = f"http://127.0.0.1:{puertos['constante']}"

            for nombre, url in (("portal", portal), ("constante", constante)):
                _carga("cerrado", url, 1, 2, *lista)  # calentar
            llamadas_antes, inicio = _llamadas(portal), time.monotonic()
            vistas = 0
            # Lazo cerrado alternado (portal, constante, ×3) y la mediana de cada uno: la máquina
            # es compartida y una sola pasada de cada uno confunde la carga ajena con la propia.
            cerrados: dict[str, list[dict]] = {"portal": [], "constante": []}
            for _ in range(3):
                for nombre, url in (("portal", portal), ("constante", constante)):
                    r = _carga("cerrado", url, SEGUNDOS / 2, CONCURRENCIA, *lista)
                    cerrados[nombre].append(r)
                    vistas += r["peticiones"] if nombre == "portal" else 0
            for nombre, pasadas in cerrados.items():
                mediana = sorted(pasadas, key=lambda r: r["rps"])[1]
                medida.setdefault(nombre, {})["cerrado"] = {**mediana, "rps_pasadas": [r["rps"] for r in pasadas]}
                print(f"\n[portal] {nombre}, lazo cerrado (mediana de 3): {medida[nombre]['cerrado']}")
            for nombre, url in (("portal", portal), ("constante", constante)):
                medida[nombre]["abierto"] = r = _carga("abierto", url, SEGUNDOS, TASA, *lista)
                vistas += r["peticiones"] if nombre == "portal" else 0
                print(f"[portal] {nombre}, tasa fija: {r}")
            # Lo que dura la carga sobre el portal se acota por arriba con todo el intervalo.
            transcurrido = time.monotonic() - inicio
            llamadas = _llamadas(portal) - llamadas_antes
            lecturas = len(catalogo.agencias)  # claves de la caché: el listado de cada agencia
            paginas = max(1, max(math.ceil(sum(1 for i in todas.values() if i.agencia_id == a) / 1000)
                                 for a in catalogo.agencias))
            tope = lecturas * paginas * (math.ceil(transcurrido / CACHE_S) + 1)
            medida["rpc"] = {"vistas": vistas, "llamadas": int(llamadas), "segundos": round(transcurrido, 1),
                             "llamadas_por_1000_vistas": round(1000 * llamadas / vistas, 2),
                             "tope_una_por_serie_y_periodo": tope,
                             "tope_por_1000_vistas": round(1000 * tope / vistas, 2)}
            medida["razon_rps"] = round(medida["portal"]["cerrado"]["rps"] / medida["constante"]["cerrado"]["rps"], 3)
            print(f"[portal] llamadas gRPC: {medida['rpc']}; razón de peticiones/s: {medida['razon_rps']}")
            for nombre in ("portal", "constante"):
                assert all(r["errores"] == 0 for r in cerrados[nombre]) and medida[nombre]["abierto"]["errores"] == 0, medida
            assert llamadas <= tope, medida["rpc"]
    finally:
        procesos.detener_todos()
        resultados.fijar("portal", medida)
