"""Histogramas mergeables para percentiles, con las claves logarítmicas de DDSketch.

Cada observación suma 1 en la clave de su cubo logarítmico (error relativo ≤ 1 %). A
diferencia de un DDSketch completo, el histograma es un simple mapa clave → conteo que se
guarda como medidas de los cubos horarios: se suma entre cubos y admite conteos negativos,
que es lo que permite retirar una observación cuando un evento tardío la corrige.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import accumulate

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
    return percentiles(histograma, (q,))[0]


def percentiles(histograma: Mapping[str, float], cuantiles: Sequence[float]) -> list[float | None]:
    """Varios percentiles (como `percentil`) ordenando el histograma una sola vez.

    Cada uno es el primer cubo, en orden, cuyo conteo acumulado alcanza su rango; con conteos
    negativos (observaciones retiradas) el acumulado puede no crecer, así que cada rango se
    busca desde el principio."""
    n = total(histograma)
    if n <= 0:
        return [None] * len(cuantiles)
    claves = sorted(histograma, key=_orden)
    acumulados = list(accumulate(histograma[c] for c in claves))
    resultado = []
    for q in cuantiles:
        umbral = max(1, math.ceil(q * n - 1e-9)) - 1e-9
        elegida = next((c for c, a in zip(claves, acumulados) if a >= umbral), claves[-1])
        resultado.append(_valor(elegida))
    return resultado
