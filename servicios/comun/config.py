"""Lectura de variables de entorno `GPR_*` con errores que nombran la variable.

Cada servicio tiene su propio `config.py` que llama a estas funciones una sola vez al
arrancar; ningún otro módulo lee el entorno.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from servicios.comun.tiempo import DuracionInvalida, parsear_duracion


class ConfiguracionInvalida(ValueError):
    """Una variable de entorno falta o no tiene el formato esperado."""


def texto(env: Mapping[str, str], nombre: str, defecto: str | None = None) -> str:
    valor = env.get(nombre, "").strip()
    if valor:
        return valor
    if defecto is None:
        raise ConfiguracionInvalida(f"falta la variable de entorno {nombre}")
    return defecto


def texto_opcional(env: Mapping[str, str], nombre: str) -> str | None:
    valor = env.get(nombre, "").strip()
    return valor or None


def entero(env: Mapping[str, str], nombre: str, defecto: int, minimo: int = 0) -> int:
    crudo = env.get(nombre, "").strip()
    if not crudo:
        return defecto
    try:
        valor = int(crudo)
    except ValueError:
        raise ConfiguracionInvalida(f"{nombre}={crudo!r} no es un número entero") from None
    if valor < minimo:
        raise ConfiguracionInvalida(f"{nombre}={valor} debe ser al menos {minimo}")
    return valor


def puerto(env: Mapping[str, str], nombre: str, defecto: int) -> int:
    """Puerto TCP; 0 deja que el sistema elija uno libre (el servicio informa cuál)."""
    valor = entero(env, nombre, defecto, minimo=0)
    if valor > 65535:
        raise ConfiguracionInvalida(f"{nombre}={valor} no es un puerto TCP (0–65535)")
    return valor


def decimal(env: Mapping[str, str], nombre: str, defecto: float, minimo: float = 0.0) -> float:
    crudo = env.get(nombre, "").strip()
    if not crudo:
        return defecto
    try:
        valor = float(crudo)
    except ValueError:
        raise ConfiguracionInvalida(f"{nombre}={crudo!r} no es un número") from None
    if valor < minimo:
        raise ConfiguracionInvalida(f"{nombre}={valor} debe ser al menos {minimo}")
    return valor


def duracion(env: Mapping[str, str], nombre: str, defecto: str) -> int:
    """Duración en segundos escrita como `30s`, `5m`, `2h` o `7d`."""
    crudo = env.get(nombre, "").strip() or defecto
    try:
        return parsear_duracion(crudo)
    except DuracionInvalida as error:
        raise ConfiguracionInvalida(f"{nombre}: {error}") from None


def entorno() -> Mapping[str, str]:
    """El entorno del proceso; los `config.py` lo reciben para poder probarse con un dict."""
    return os.environ


def broker_embebido(env: Mapping[str, str]) -> str:
    """GPR_KAFKA_EMBEBIDO: "auto" (por omisión: se pregunta al broker si es Tansu), "si" o "no"."""
    valor = texto(env, "GPR_KAFKA_EMBEBIDO", "auto")
    if valor not in ("auto", "si", "no"):
        raise ConfiguracionInvalida(f"GPR_KAFKA_EMBEBIDO={valor!r} debe ser 'auto', 'si' o 'no'")
    return valor
