"""Duraciones legibles (`7d`, `24h`) y conversión entre Timestamp y segundos."""

from __future__ import annotations

import re

_UNIDADES = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PATRON = re.compile(r"^(\d+)([smhd])$")


class DuracionInvalida(ValueError):
    """Texto que no es una duración `<entero><s|m|h|d>`."""


def parsear_duracion(texto: str) -> int:
    coincidencia = _PATRON.match(texto.strip())
    if not coincidencia:
        raise DuracionInvalida(
            f"{texto!r} no es una duración válida (ejemplos: 30s, 5m, 24h, 7d)"
        )
    return int(coincidencia.group(1)) * _UNIDADES[coincidencia.group(2)]
