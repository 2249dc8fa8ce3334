"""Casos vencidos como suma acumulada de cambios: vencidos(T) = Σ deltas con instante ≤ T.

Cada caso aporta +1 en el segundo en que su edad supera el plazo y −1 cuando concluye (si
concluye después). Para que la línea no crezca sin límite, los deltas anteriores a un punto
de plegado se suman en `base`, guardando antes el valor al cierre de cada mes que el plegado
deja atrás (las ventanas mensuales lo necesitan). Un delta tardío anterior al plegado se
suma a `base` y a los cierres de mes posteriores a su instante: el resultado es exacto.
"""

from __future__ import annotations

from gpr.v1 import interno_pb2 as interno
from servicios.procesador.dominio.ventanas import limites_mes, meses_entre


def aplicar(linea: interno.LineaVencimientos, instante: int, delta: float, zona: str) -> None:
    if linea.plegado_hasta and instante < linea.plegado_hasta:
        linea.base += delta
        for mes in meses_entre(instante, linea.plegado_hasta - 1, zona):
            # Solo los meses ya cerrados por el plegado guardan su valor aparte.
            if limites_mes(mes, zona)[1] - 1 < linea.plegado_hasta:
                linea.cierres_mes[mes] = linea.cierres_mes.get(mes, 0.0) + delta
        return
    nuevo = linea.deltas.get(instante, 0.0) + delta
    if nuevo:
        linea.deltas[instante] = nuevo
    else:
        linea.deltas.pop(instante, None)


def valor_en(linea: interno.LineaVencimientos, instante: int) -> float:
    """Vencidos en un instante no anterior al plegado."""
    return linea.base + sum(d for t, d in linea.deltas.items() if t <= instante)


def valor_al_cierre(linea: interno.LineaVencimientos, mes: str, zona: str, marca_agua: int) -> float:
    """Vencidos al final del mes (o en la marca de agua si el mes sigue en curso)."""
    instante = min(limites_mes(mes, zona)[1] - 1, marca_agua)
    if linea.plegado_hasta and instante < linea.plegado_hasta:
        return linea.cierres_mes.get(mes, 0.0)
    return valor_en(linea, instante)


def plegar(linea: interno.LineaVencimientos, hasta: int, zona: str, meses_retenidos: int) -> None:
    """Suma en `base` los deltas anteriores a `hasta`, guardando los cierres de mes."""
    if hasta <= linea.plegado_hasta:
        return
    viejos = sorted((t, d) for t, d in linea.deltas.items() if t < hasta)
    desde = linea.plegado_hasta or (viejos[0][0] if viejos else hasta)
    if desde < hasta:
        for mes in meses_entre(desde, hasta - 1, zona):
            fin = limites_mes(mes, zona)[1] - 1
            if fin < hasta and mes not in linea.cierres_mes:
                linea.cierres_mes[mes] = linea.base + sum(d for t, d in viejos if t <= fin)
    for t, d in viejos:
        linea.base += d
        del linea.deltas[t]
    linea.plegado_hasta = hasta
    for mes in sorted(linea.cierres_mes)[:-meses_retenidos or None]:
        del linea.cierres_mes[mes]
