"""Aritmética de ventanas sobre cubos horarios (UTC) en tiempo de evento.

Una ventana móvil de duración D que termina en la marca de agua W de la agencia abarca los
D/1h cubos horarios que terminan con el de W: [hora(W) − D + 1h, W]. Es decir, su borde
izquierdo está alineado a la hora; `desde` y `hasta` de cada instantánea lo dicen.

Un mes calendario `mes:AAAA-MM` va desde el inicio del mes en la zona horaria de la agencia
hasta su último segundo (o hasta W si el mes está en curso). Como las zonas admitidas tienen
desfases de horas enteras, un mes es una unión exacta de cubos horarios UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

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


def mes_de(instante_s: int, zona: str) -> str:
    """"AAAA-MM" del instante en la zona horaria dada."""
    return datetime.fromtimestamp(instante_s, ZoneInfo(zona)).strftime("%Y-%m")


def limites_mes(mes: str, zona: str) -> tuple[int, int]:
    """(inicio, fin) del mes en segundos: fin es el inicio del mes siguiente (excluido)."""
    anio, numero = int(mes[:4]), int(mes[5:7])
    siguiente = (anio + 1, 1) if numero == 12 else (anio, numero + 1)
    tz = ZoneInfo(zona)
    inicio = datetime(anio, numero, 1, tzinfo=tz).astimezone(timezone.utc)
    fin = datetime(*siguiente, 1, tzinfo=tz).astimezone(timezone.utc)
    return int(inicio.timestamp()), int(fin.timestamp())


def rango_mes(mes: str, zona: str, marca_agua_s: int) -> Rango:
    inicio, fin = limites_mes(mes, zona)
    hasta = min(fin - 1, marca_agua_s)
    return Rango(hora(inicio), hora(hasta), inicio, hasta)


def meses_hasta(mes_final: str, cuantos: int) -> list[str]:
    """Los `cuantos` meses que terminan en `mes_final`, del más antiguo al más reciente."""
    anio, numero = int(mes_final[:4]), int(mes_final[5:7])
    indice = anio * 12 + numero - 1
    return [f"{i // 12:04d}-{i % 12 + 1:02d}" for i in range(indice - cuantos + 1, indice + 1)]


def meses_entre(desde_s: int, hasta_s: int, zona: str) -> Iterator[str]:
    """Meses (en la zona) que tocan el intervalo [desde_s, hasta_s]."""
    primero, ultimo = mes_de(desde_s, zona), mes_de(hasta_s, zona)
    a, b = int(primero[:4]) * 12 + int(primero[5:7]) - 1, int(ultimo[:4]) * 12 + int(ultimo[5:7]) - 1
    for i in range(a, b + 1):
        yield f"{i // 12:04d}-{i % 12 + 1:02d}"


def sumar(cubos: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Suma de medidas de varios cubos (la fusión es asociativa y conmutativa)."""
    total: dict[str, float] = {}
    for cubo in cubos:
        for medida, valor in cubo.items():
            total[medida] = total.get(medida, 0.0) + valor
    return total
