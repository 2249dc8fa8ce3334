"""Aritmética de ventanas sobre cubos horarios (UTC) en tiempo de evento.

Una ventana móvil de duración D que termina en la marca de agua W de la agencia abarca los
D/1h cubos horarios que terminan con el de W: [hora(W) − D + 1h, W]. Es decir, su borde
izquierdo está alineado a la hora; `desde` y `hasta` de cada instantánea lo dicen.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

SEGUNDOS_HORA = 3600


def hora(instante_s: int) -> int:
    """Índice del cubo horario (horas desde la época) que contiene el instante."""
    return instante_s // SEGUNDOS_HORA


@dataclass(frozen=True)
class Rango:
    primera_hora: int
    ultima_hora: int
    desde_s: int
    hasta_s: int

    def horas(self) -> range:
        return range(self.primera_hora, self.ultima_hora + 1)


def rango_movil(marca_agua_s: int, duracion_s: int) -> Rango:
    ultima = hora(marca_agua_s)
    primera = ultima - duracion_s // SEGUNDOS_HORA + 1
    return Rango(primera, ultima, primera * SEGUNDOS_HORA, marca_agua_s)


def sumar(cubos: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Suma de medidas de varios cubos (la fusión es asociativa y conmutativa)."""
    total: dict[str, float] = {}
    for cubo in cubos:
        for medida, valor in cubo.items():
            total[medida] = total.get(medida, 0.0) + valor
    return total
