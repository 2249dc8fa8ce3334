"""Histogramas mergeables para percentiles, con las claves logarítmicas de DDSketch.

Cada observación suma 1 en la clave de su cubo logarítmico (error relativo ≤ 1 %). A
diferencia de un DDSketch completo, el histograma es un simple mapa clave → conteo que se
guarda como medidas de los cubos horarios: se suma entre cubos y admite conteos negativos,
que es lo que permite retirar una observación cuando un evento tardío la corrige.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ddsketch.mapping import LogarithmicMapping

PRECISION_RELATIVA = 0.01
_MAPEO = LogarithmicMapping(PRECISION_RELATIVA)
_CERO = "z"


def clave(valor_s: float) -> str:
    """Clave del cubo logarítmico de una duración en segundos (las ≤ 0 van al cubo cero)."""
    if valor_s <= 0:
        return _CERO
    return str(_MAPEO.key(valor_s))


def _valor(clave_cubo: str) -> float:
    return 0.0 if clave_cubo == _CERO else _MAPEO.value(int(clave_cubo))


def _orden(clave_cubo: str) -> float:
    return -math.inf if clave_cubo == _CERO else int(clave_cubo)


def total(histograma: Mapping[str, float]) -> int:
    return round(sum(histograma.values()))


def percentil(histograma: Mapping[str, float], q: float) -> float | None:
    """Percentil por rango más cercano (rango ⌈q·n⌉), con error relativo ≤ 1 %."""
    n = total(histograma)
    if n <= 0:
        return None
    rango = max(1, math.ceil(q * n - 1e-9))
    acumulado = 0.0
    for clave_cubo in sorted(histograma, key=_orden):
        acumulado += histograma[clave_cubo]
        if acumulado >= rango - 1e-9:
            return _valor(clave_cubo)
    return _valor(max(histograma, key=_orden))
