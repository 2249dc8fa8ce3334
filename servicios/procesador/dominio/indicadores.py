"""Indicadores de una ventana a partir de la suma de sus cubos.

Un indicador cuyo denominador está vacío no tiene valor (`valor is None`), nunca 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ValorIndicador:
    indicador: str
    valor: float | None
    muestras: int
    numerador: float = 0.0
    etapa_id: str = ""


def _proporcion(indicador: str, buenos: float, casos: float) -> ValorIndicador:
    casos_enteros = round(casos)
    if casos_enteros <= 0:
        return ValorIndicador(indicador, None, 0)
    return ValorIndicador(indicador, buenos / casos, casos_enteros, buenos)


def calcular(sumas: Mapping[str, float]) -> list[ValorIndicador]:
    solicitudes = round(sumas.get("solicitudes", 0.0))
    return [
        ValorIndicador("solicitudes", float(solicitudes), solicitudes, float(solicitudes)),
        _proporcion("cumplimiento_plazo", sumas.get("plazo_buenos", 0.0), sumas.get("plazo_casos", 0.0)),
    ]
