"""Valores de indicadores escritos para la terminal según su unidad (`Indicador.unidad` de la
API), nunca según el nombre del indicador: un indicador nuevo se muestra bien sin tocar la CLI.

Puro (sin E/S). Formato compacto y estable, con punto decimal (como el resto de la CLI, cuya
salida también leen otros programas); el portal tiene el suyo, con las normas del español.
"""

from __future__ import annotations

from servicios.comun.indicadores import CONTEO, INDICE, POR_MIL, PROPORCION, SEGUNDOS, es_moneda

DIA, HORA, MINUTO = 86400, 3600, 60


def duracion(segundos: float) -> str:
    """La unidad más grande que deja el número en 1 o más: «2.5 d», «3.0 h», «45 min», «30 s»."""
    if segundos >= DIA:
        return f"{segundos / DIA:.1f} d"
    if segundos >= HORA:
        return f"{segundos / HORA:.1f} h"
    if segundos >= MINUTO:
        return f"{segundos / MINUTO:.0f} min"
    return f"{segundos:.0f} s"


def en_unidad(valor: float, unidad: str) -> str:
    """`valor` escrito en `unidad`; sin unidad conocida, el número tal cual (no se adivina)."""
    if unidad == SEGUNDOS:
        return duracion(valor)
    if unidad == PROPORCION:
        return f"{valor:.1%}"
    if unidad == INDICE:
        return f"{valor:.2f}"
    if unidad == CONTEO:
        return f"{valor:,.0f}"
    if unidad == POR_MIL:
        return f"{valor:,.2f} ‰"
    if es_moneda(unidad):
        return f"{valor:,.2f} {unidad}"
    return f"{valor:g}"
