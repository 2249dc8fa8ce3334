"""Prometheus y Alertmanager reales para las pruebas de punta a punta.

Arma las configuraciones de prueba a partir de las versionadas (las mismas reglas y rutas,
con esperas e intervalos cortos), arranca los binarios de Debian en puertos libres del
loopback y consulta sus API HTTP (Prometheus /api/v1, Alertmanager /api/v2) como lo haría
cualquier cliente.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from servicios.comun.broker import morir_con_el_padre
from servicios.comun.reglas import RUNBOOKS_URL

RAIZ = Path(__file__).resolve().parents[2]
REGLAS = RAIZ / "despliegue" / "prometheus" / "reglas" / "metas.yml"
ALERTMANAGER = RAIZ / "despliegue" / "alertmanager" / "alertmanager.yml"
INSTALAR = "sudo bash despliegue/instalar-herramientas.sh"

T = TypeVar("T")


def binario(*nombres: str) -> str:
    """Ruta del primer binario que exista; sin él la prueba falla diciendo cómo instalarlo
    (nunca se salta en silencio: una prueba de alertas que no corre no prueba nada)."""
    for nombre in nombres:
        ruta = shutil.which(nombre)
        if ruta:
            return ruta
    pytest.fail(f"falta {' o '.join(nombres)} en el PATH; instálelo con: {INSTALAR}")


# --- Configuraciones de prueba ------------------------------------------------------------------

def reglas_de_prueba(espera: str, sin_eventos_s: int, origen: Path = REGLAS, runbooks: str | None = None) -> str:
    """Las reglas versionadas (las que carga Prometheus en producción) con todas las esperas
    (`for:`) en `espera`, el umbral de `AgenciaSinEventos` en `sin_eventos_s` segundos y, con
    `runbooks`, los enlaces a runbooks con esa base en vez de la de omisión (lo que haría
    GPR_RUNBOOKS_URL al generarlas).

    Se parte del archivo versionado y no del generador: así la prueba ejercita lo que se
    despliega (otra prueba ya comprueba que el archivo es lo que genera el catálogo). Solo se
    tocan los plazos, pensados para horas de producción y no para una prueba de minutos.
    """
    datos = yaml.safe_load(origen.read_text(encoding="utf-8"))
    sin_eventos = 0
    for grupo in datos["groups"]:
        for regla in grupo["rules"]:
            if "for" in regla:
                regla["for"] = espera
            enlace = regla.get("annotations", {}).get("runbook_url")
            if runbooks and enlace:
                assert enlace.startswith(RUNBOOKS_URL), enlace
                regla["annotations"]["runbook_url"] = runbooks + enlace.removeprefix(RUNBOOKS_URL)
            if regla.get("alert") == "AgenciaSinEventos":
                expresion, cambios = re.subn(r">\s*\d+\s*$", f"> {sin_eventos_s}", regla["expr"].rstrip())
                assert cambios == 1, f"AgenciaSinEventos cambió de forma; revise esta prueba:\n{regla['expr']}"
                regla["expr"] = expresion + "\n"
                sin_eventos += 1
    assert sin_eventos, "las reglas versionadas no tienen ninguna AgenciaSinEventos"
    return yaml.safe_dump(datos, allow_unicode=True, sort_keys=False, width=1000)


def alertmanager_de_prueba(espera: str = "1s", origen: Path = ALERTMANAGER, canales: dict[str, str] | None = None) -> str:
    """La configuración versionada de Alertmanager (rutas, receptores e inhibiciones) con
    `group_wait` y `group_interval` cortos en todas las rutas y los canales de notificación que
    dicen las variables `canales` (GPR_ALERTAS_*, GPR_SMTP_*), puestos por el mismo generador que
    corre al arrancar en docker-compose.yml (`gpr alertmanager configurar`)."""
    from servicios.comun.canales import configurar

    datos = yaml.safe_load(origen.read_text(encoding="utf-8"))

    def acortar(ruta: dict, raiz: bool) -> None:
        for clave in ("group_wait", "group_interval"):
            if raiz or clave in ruta:
                ruta[clave] = espera
        for hija in ruta.get("routes", []):
            acortar(hija, False)

    acortar(datos["route"], True)
    datos, _ = configurar(datos, canales or {}, plantillas=str(origen.parent / "plantillas"))
    return yaml.safe_dump(datos, allow_unicode=True, sort_keys=False)


def configuracion_prometheus(objetivos: dict[str, str], alertmanager: str, reglas: Path,
                             intervalo: str = "1s") -> str:
    """Prometheus que raspa `objetivos` (trabajo → host:puerto) y evalúa `reglas` cada `intervalo`."""
    datos = {
        "global": {"scrape_interval": intervalo, "scrape_timeout": intervalo, "evaluation_interval": intervalo},
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "rule_files": [str(reglas)],
        "scrape_configs": [{"job_name": trabajo, "static_configs": [{"targets": [direccion]}]}
                           for trabajo, direccion in objetivos.items()],
    }
    return yaml.safe_dump(datos, sort_keys=False)


# --- Procesos -------------------------------------------------------------------------------------

class Binarios:
    """Lanza binarios externos (Prometheus, Alertmanager) con su registro y los detiene al final."""

    def __init__(self, directorio: Path):
        self.directorio = directorio
        self._procesos: list[tuple[str, subprocess.Popen]] = []

    def lanzar(self, nombre: str, orden: list[str]) -> subprocess.Popen:
        registro = open(self.directorio / f"{nombre}.log", "ab")
        proceso = subprocess.Popen(orden, stdout=registro, stderr=subprocess.STDOUT, cwd=self.directorio,
                                   preexec_fn=morir_con_el_padre())
        registro.close()
        self._procesos.append((nombre, proceso))
        return proceso

    def caidos(self) -> list[str]:
        return [n for n, p in self._procesos if p.poll() is not None]

    def detener_todos(self) -> None:
        for _, proceso in reversed(self._procesos):
            if proceso.poll() is None:
                proceso.terminate()
        for _, proceso in self._procesos:
            try:
                proceso.wait(10)
            except subprocess.TimeoutExpired:
                proceso.kill()
                proceso.wait()


# --- HTTP -----------------------------------------------------------------------------------------

def obtener_json(url: str, limite_s: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=limite_s) as respuesta:
        return json.load(respuesta)


class ErrorPromQL(AssertionError):
    """Prometheus rechazó una consulta (error de sintaxis, de tipos, etc.)."""


def consultar(prometheus: str, promql: str) -> list[dict]:
    """Resultado de una consulta instantánea (`data.result`); ErrorPromQL si Prometheus la rechaza."""
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        cuerpo = obtener_json(url)
    except urllib.error.HTTPError as error:
        # Prometheus responde 400/422 con un JSON que explica el error.
        try:
            cuerpo = json.load(error)
        except ValueError:
            raise ErrorPromQL(f"{promql!r}: HTTP {error.code}") from None
    if cuerpo.get("status") != "success":
        raise ErrorPromQL(f"{promql!r}: {cuerpo.get('errorType')}: {cuerpo.get('error')}")
    return cuerpo["data"]["result"]


def escalar(prometheus: str, promql: str) -> float | None:
    """Valor de una consulta que da una sola serie (None si no da ninguna)."""
    resultado = consultar(prometheus, promql)
    assert len(resultado) <= 1, f"{promql!r} dio {len(resultado)} series"
    return float(resultado[0]["value"][1]) if resultado else None


def alertas_alertmanager(alertmanager: str) -> list[dict]:
    """Las alertas que Alertmanager conoce y no se resolvieron (API v2)."""
    return obtener_json(f"{alertmanager}/api/v2/alerts")


def alertas_prometheus(prometheus: str) -> list[dict]:
    """Las alertas pendientes o disparadas según la evaluación de reglas de Prometheus."""
    return obtener_json(f"{prometheus}/api/v1/alerts")["data"]["alerts"]


def coinciden(etiquetas: dict[str, str], **esperadas: str) -> bool:
    return all(etiquetas.get(k) == v for k, v in esperadas.items())


def esperar(condicion: Callable[[], T | None], limite_s: float, que: str,
            diagnostico: Callable[[], str] = lambda: "", intervalo_s: float = 0.5) -> T:
    """Repite `condicion` hasta que devuelva algo verdadero (y lo devuelve) o venza el plazo.

    Con plazos amplios y sondeo, nunca esperas fijas: en una máquina cargada cada paso tarda
    lo que tarde, y en una libre la prueba no espera de más. Los errores de conexión cuentan
    como «todavía no» (un servicio que arranca no responde aún).
    """
    fin = time.monotonic() + limite_s
    ultimo_error = None
    while True:
        try:
            resultado = condicion()
            if resultado:
                return resultado
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            ultimo_error = error
        if time.monotonic() > fin:
            detalle = diagnostico()
            if ultimo_error is not None:
                detalle += f"\núltimo error de conexión: {ultimo_error}"
            raise AssertionError(f"no ocurrió en {limite_s:.0f} s: {que}\n{detalle}")
        time.sleep(intervalo_s)


def listo(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as respuesta:
            return respuesta.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False
