"""Apoyo de las pruebas del portal: series `Indicador` a mano, una fuente en memoria (el
puerto `Fuente` del portal, para probar plantillas y divulgación sin la pila) y el navegador
real (Chromium de Debian por Playwright, nunca uno descargado)."""

from __future__ import annotations

import calendar
import shutil
from collections.abc import Iterable
from datetime import datetime, timezone

import pytest

from gpr.v1 import indicadores_pb2 as ipb
from servicios.portal.dominio import DatosAgencia

CHROMIUM = "/usr/bin/chromium"
ARGUMENTOS_CHROMIUM = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                       "--disable-component-update", "--disable-sync"]


# La unidad que la API pone en cada indicador para una agencia que cobra en soles (escrita a
# mano desde la ficha técnica, no leída del código).
UNIDAD_API = {
    "solicitudes": "conteo", "entregas": "conteo", "casos_vencidos": "conteo",
    "tasa_conclusion": "proporcion", "cumplimiento_plazo": "proporcion", "tasa_reproceso": "proporcion",
    "satisfaccion_top2": "proporcion", "adopcion_digital": "proporcion", "tasa_error": "proporcion",
    "satisfaccion_indice": "indice", "reclamos_por_mil": "por_mil", "costo_por_tramite": "PEN",
    "tiempo_atencion_p50": "segundos", "tiempo_atencion_p90": "segundos",
    "tiempo_etapa_p50": "segundos", "tiempo_etapa_p90": "segundos",
}


def ind(agencia: str, servicio: str, indicador: str, ventana: str, valor: float | None, muestras: int,
        *, numerador: float = 0.0, etapa: str = "", cuello: str = "", meta: tuple | None = None,
        hasta: int = 0, unidad: str | None = None) -> ipb.Indicador:
    """Una serie. `meta` = (operador, valor, muestra_minima[, descripcion]); `unidad`, la de
    `UNIDAD_API` salvo que se pida otra."""
    i = ipb.Indicador(agencia_id=agencia, servicio_id=servicio, indicador=indicador, ventana=ventana,
                      valor=valor or 0.0, muestras=muestras, sin_datos=valor is None, numerador=numerador,
                      etapa_id=etapa, etapa_cuello_botella=cuello,
                      unidad=UNIDAD_API[indicador] if unidad is None else unidad)
    i.hasta.seconds = hasta
    i.actualizado_en.seconds = hasta
    if meta is not None:
        operador, objetivo, minima, *descripcion = meta
        i.meta.CopyFrom(ipb.EvaluacionMeta(operador=operador, valor=objetivo, muestra_minima=minima,
                                           descripcion=descripcion[0] if descripcion else "meta",
                                           severidad="critica", equipo="e"))
    return i


class FuenteFija:
    """Las series de cada agencia, fijas, con el mismo contrato que ClienteIndicadores.datos."""

    def __init__(self, series: Iterable[ipb.Indicador]):
        self.series = list(series)
        self.lecturas = 0

    async def datos(self, agencia_id: str) -> DatosAgencia:
        self.lecturas += 1
        return DatosAgencia(agencia_id, self.series)


def instante(texto: str) -> datetime:
    return datetime.fromisoformat(texto.replace("Z", "+00:00")).astimezone(timezone.utc)


def segundos(texto: str) -> int:
    return calendar.timegm(instante(texto).utctimetuple())


@pytest.fixture(scope="module")
def navegador():
    """Chromium de Debian en modo sin cabeza, por Playwright (ver docs/portal.md).

    De módulo y no de sesión: mientras la API síncrona de Playwright está abierta, su bucle
    asyncio corre en el hilo principal, y cualquier `asyncio.run` de otra prueba fallaría."""
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"falta {CHROMIUM}: instálelo con `sudo bash despliegue/instalar-herramientas.sh` (paquete chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        navegador = p.chromium.launch(executable_path=CHROMIUM, args=ARGUMENTOS_CHROMIUM)
        try:
            yield navegador
        finally:
            navegador.close()
