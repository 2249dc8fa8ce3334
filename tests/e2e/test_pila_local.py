"""`gpr local` (lo que corre `make run`) de punta a punta, como lo usaría una persona: arranca
todo, los indicadores aparecen y cambian por gRPC, Prometheus raspa a los dos exportadores, y
Ctrl-C (SIGINT) lo detiene todo sin dejar procesos."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import grpc
import pytest

from conftest import RAIZ
from gpr.v1 import indicadores_pb2 as ipb
from gpr.v1 import indicadores_pb2_grpc as ipb_grpc
from servicios.comun.broker import morir_con_el_padre, puerto_libre


def _solicitudes(stub) -> float:
    total = 0.0
    for i in stub.ListarIndicadores(ipb.FiltroIndicadores(indicador="solicitudes", ventana="total"), timeout=2).indicadores:
        total += i.valor
    return total


@pytest.mark.integracion
def test_gpr_local_arranca_muestra_indicadores_y_se_detiene_con_ctrl_c(tmp_path):
    puertos = {n: puerto_libre() for n in ("grpc", "metricas", "procesador", "prometheus", "alertmanager",
                                           "ingesta", "ingesta_metricas", "portal", "runbooks", "buzon")}
    env = {k: v for k, v in os.environ.items()
           if k not in ("GPR_KAFKA_BOOTSTRAP", "GPR_RUNBOOKS_URL", "GPR_METAS") and not k.startswith(("GPR_ALERTAS_", "GPR_SMTP_"))}
    salida = open(tmp_path / "local.out", "wb")
    pila = subprocess.Popen(
        [sys.executable, "-m", "servicios.cli", "local", "--tasa", "500",
         "--grpc-puerto", str(puertos["grpc"]), "--metricas-puerto", str(puertos["metricas"]),
         "--procesador-metricas-puerto", str(puertos["procesador"]),
         "--prometheus-puerto", str(puertos["prometheus"]), "--alertmanager-puerto", str(puertos["alertmanager"]),
         "--ingesta-puerto", str(puertos["ingesta"]), "--ingesta-metricas-puerto", str(puertos["ingesta_metricas"]),
         "--portal-puerto", str(puertos["portal"]),
         "--runbooks-puerto", str(puertos["runbooks"]), "--buzon-puerto", str(puertos["buzon"]),
         "--directorio", str(tmp_path / "pila")],
        cwd=RAIZ, env=env, stdout=salida, stderr=subprocess.STDOUT, preexec_fn=morir_con_el_padre(),
    )
    try:
        stub = ipb_grpc.IndicadoresStub(grpc.insecure_channel(f"127.0.0.1:{puertos['grpc']}"))
        vistos = []
        fin = time.monotonic() + 90
        while time.monotonic() < fin and len(set(vistos)) < 3:
            try:
                valor = _solicitudes(stub)
                if valor > 0:
                    vistos.append(valor)
            except grpc.RpcError:
                pass
            time.sleep(1)
        assert len(set(vistos)) >= 3, f"los indicadores no cambiaron en vivo: {vistos}\n{(tmp_path / 'local.out').read_text()[-2000:]}"
        assert vistos == sorted(vistos), "las solicitudes acumuladas nunca bajan"

        objetivos = json.load(urllib.request.urlopen(
            f"http://127.0.0.1:{puertos['prometheus']}/api/v1/targets", timeout=5))["data"]["activeTargets"]
        fin = time.monotonic() + 30
        while time.monotonic() < fin and not all(o["health"] == "up" for o in objetivos):
            time.sleep(1)
            objetivos = json.load(urllib.request.urlopen(
                f"http://127.0.0.1:{puertos['prometheus']}/api/v1/targets", timeout=5))["data"]["activeTargets"]
        assert sorted((o["labels"]["job"], o["health"]) for o in objetivos) == [
            ("alertmanager", "up"), ("gpr-consulta", "up"), ("gpr-ingesta", "up"), ("gpr-portal", "up"),
            ("gpr-procesador", "up"), ("prometheus", "up")]
        # El portal imprime su URL y muestra las entidades del catálogo con datos del simulador.
        assert f"http://127.0.0.1:{puertos['portal']}/" in (tmp_path / "local.out").read_text()
        fin = time.monotonic() + 30
        while True:
            try:
                portada = urllib.request.urlopen(f"http://127.0.0.1:{puertos['portal']}/", timeout=5).read().decode()
                if "Registro Nacional de Identificación" in portada and "Solicitudes recibidas" in portada:
                    break
            except OSError:
                pass
            assert time.monotonic() < fin, "el portal de `gpr local` no mostró las entidades"
            time.sleep(1)
        urllib.request.urlopen(f"http://127.0.0.1:{puertos['alertmanager']}/api/v2/status", timeout=5)

        # El buzón local recibe lo que notifica Alertmanager: al menos el latido (Watchdog), y dice
        # dónde verlo. Los runbooks de las alertas abren.
        buzon = f"http://127.0.0.1:{puertos['buzon']}/"
        assert f"Notificaciones:    {buzon}" in (tmp_path / "local.out").read_text()
        fin = time.monotonic() + 60
        lista = ""
        while time.monotonic() < fin and "webhook /latido (latido, firing): Watchdog" not in lista:
            time.sleep(1)
            lista = urllib.request.urlopen(buzon, timeout=5).read().decode()
        assert "webhook /latido (latido, firing): Watchdog" in lista, lista
        assert list((tmp_path / "pila" / "buzon").glob("*-webhook-latido.json"))
        with urllib.request.urlopen(f"http://127.0.0.1:{puertos['runbooks']}/runbooks/vigilancia.md", timeout=5) as r:
            assert 'id="watchdog"' in r.read().decode()
    finally:
        pila.send_signal(signal.SIGINT)
        try:
            codigo = pila.wait(60)
        except subprocess.TimeoutExpired:
            pila.kill()
            pila.wait()
            registros = "".join(f"\n--- {r.name} ---\n{r.read_text(errors='replace')[-1500:]}"
                                for r in sorted((tmp_path / "pila").glob("*.log")))
            pytest.fail("gpr local no terminó 60 s después de Ctrl-C:\n"
                        + (tmp_path / "local.out").read_text(errors="replace")[-3000:] + registros)
    texto = (tmp_path / "local.out").read_text()
    assert "Pila local detenida." in texto and codigo == 0, texto[-2000:]
    assert "se mata" not in texto, "un servicio no se detuvo a tiempo con SIGTERM"
    for registro in (tmp_path / "pila").glob("*.log"):
        assert "Traceback" not in registro.read_text(errors="replace"), registro.name
