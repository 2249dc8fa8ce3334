"""Capturas del portal para docs/ y el README, con datos como los de `make run`.

    .venv/bin/python tests/e2e/capturas_portal.py [--segundos 60]

Arranca `gpr local` (broker embebido, procesador, consulta, simulador, portal…) en puertos
libres, deja que el simulador publique un rato, y fotografía con el Chromium de Debian la
portada y la página de una entidad a 360 y 1280 px de ancho (docs/portal-*.png). No es una
prueba: `make test` no lo corre.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

RAIZ = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(RAIZ / "tests"))

from apoyo.portal import ARGUMENTOS_CHROMIUM, CHROMIUM  # noqa: E402
from servicios.comun.broker import morir_con_el_padre, puerto_libre  # noqa: E402

PAGINAS = {"portada": "/", "entidad": "/agencias/reniec"}
ANCHOS = (360, 1280)


def main() -> int:
    argumentos = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    argumentos.add_argument("--segundos", type=int, default=60, help="cuánto publica el simulador antes de las capturas")
    argumentos.add_argument("--destino", type=Path, default=RAIZ / "docs")
    opciones = argumentos.parse_args()
    puertos = {n: puerto_libre() for n in ("grpc", "metricas", "procesador", "prometheus", "alertmanager",
                                           "ingesta", "ingesta_metricas", "portal")}
    directorio = Path(os.environ.get("TMPDIR", "/tmp")) / f"gpr-capturas-{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if k != "GPR_KAFKA_BOOTSTRAP"}
    salida = open(directorio.with_suffix(".out"), "wb")
    pila = subprocess.Popen(
        [sys.executable, "-m", "servicios.cli", "local", "--tasa", "300",
         "--grpc-puerto", str(puertos["grpc"]), "--metricas-puerto", str(puertos["metricas"]),
         "--procesador-metricas-puerto", str(puertos["procesador"]),
         "--prometheus-puerto", str(puertos["prometheus"]), "--alertmanager-puerto", str(puertos["alertmanager"]),
         "--ingesta-puerto", str(puertos["ingesta"]), "--ingesta-metricas-puerto", str(puertos["ingesta_metricas"]),
         "--portal-puerto", str(puertos["portal"]), "--directorio", str(directorio)],
        cwd=RAIZ, env=env, stdout=salida, stderr=subprocess.STDOUT, preexec_fn=morir_con_el_padre())
    url = f"http://127.0.0.1:{puertos['portal']}"
    try:
        fin = time.monotonic() + 120
        while True:
            try:
                if "Solicitudes recibidas" in urllib.request.urlopen(url + "/", timeout=5).read().decode():
                    break
            except OSError:
                pass
            if time.monotonic() > fin or pila.poll() is not None:
                print(f"el portal no mostró datos; vea {directorio}.out", file=sys.stderr)
                return 1
            time.sleep(1)
        print(f"portal en {url}; el simulador publica {opciones.segundos} s…")
        time.sleep(opciones.segundos)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            navegador = p.chromium.launch(executable_path=CHROMIUM, args=ARGUMENTOS_CHROMIUM)
            for ancho in ANCHOS:
                pagina = navegador.new_page(viewport={"width": ancho, "height": 1400 if ancho == 360 else 900},
                                            device_scale_factor=1)
                for nombre, ruta in PAGINAS.items():
                    pagina.goto(url + ruta)
                    pagina.wait_for_load_state("networkidle")
                    destino = opciones.destino / f"portal-{nombre}-{ancho}.png"
                    pagina.screenshot(path=str(destino))
                    print(destino.relative_to(RAIZ))
            navegador.close()
        return 0
    finally:
        pila.send_signal(signal.SIGINT)
        pila.wait(60)


if __name__ == "__main__":
    sys.exit(main())
