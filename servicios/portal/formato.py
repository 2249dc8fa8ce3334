"""Textos en español de los valores: números, porcentajes, duraciones, montos y meses.

Puro (sin E/S). Los formatos numéricos y de fecha son los de Babel (locale `es`), así el
portal escribe «75 %», «1.234» o «12,50 PEN» como manda la norma del idioma y no como
improvisaría un `f"{x:.1f}"`.
"""

from __future__ import annotations

from datetime import date, datetime

from babel.dates import format_date
from babel.numbers import format_currency, format_decimal, format_percent

from servicios.comun.indicadores import (CONTEO, INDICE, MONEDA, POR_MIL, PROPORCION, SEGUNDOS, DefinicionIndicador,
                                         es_moneda)

LOCALE = "es"
DIA, HORA, MINUTO = 86400, 3600, 60


def porcentaje(valor: float) -> str:
    return format_percent(valor, "#,##0.#\u00a0%", locale=LOCALE)


def numero(valor: float, decimales: int = 0) -> str:
    patron = "#,##0" + ("." + "0" * decimales if decimales else "")
    return format_decimal(valor, patron, locale=LOCALE)


def entero(valor: int) -> str:
    return numero(valor)


def duracion(segundos: float) -> str:
    """La unidad más grande que deja el número por encima de 1: «2,1 días», «5,5 horas»."""
    if segundos >= DIA:
        cantidad, singular, plural = segundos / DIA, "día", "días"
    elif segundos >= HORA:
        cantidad, singular, plural = segundos / HORA, "hora", "horas"
    elif segundos >= MINUTO:
        cantidad, singular, plural = segundos / MINUTO, "minuto", "minutos"
    else:
        return f"{numero(segundos)}\u00a0{'segundo' if round(segundos) == 1 else 'segundos'}"
    texto = numero(cantidad, 1)
    return f"{texto}\u00a0{singular if texto == '1,0' else plural}"


def monto(valor: float, moneda: str) -> str:
    return format_currency(valor, moneda, locale=LOCALE)


def valor(unidad: str, valor_: float) -> str:
    """El valor de un indicador escrito en `unidad`, la que trae la serie de la API
    (`Indicador.unidad`); sin unidad conocida, el número tal cual."""
    if unidad == PROPORCION:
        return porcentaje(valor_)
    if unidad == INDICE:
        return numero(valor_, 2)
    if unidad == SEGUNDOS:
        return duracion(valor_)
    if unidad == CONTEO:
        return numero(valor_)
    if unidad == POR_MIL:
        return f"{numero(valor_, 1)} por mil"
    if es_moneda(unidad):
        return monto(valor_, unidad)
    return format_decimal(valor_, "#,##0.##", locale=LOCALE)


def meta(operador: str, objetivo: float, unidad: str) -> str:
    signo = {">=": "≥", "<=": "≤"}.get(operador, operador)
    return f"{signo}\u00a0{valor(unidad, objetivo)}"


def unidad_en_palabras(definicion: DefinicionIndicador, moneda: str) -> str:
    """La unidad del catálogo para la ficha técnica (`moneda`: las monedas de las entidades)."""
    return {
        PROPORCION: "proporción entre 0 y 1 (se muestra en %)",
        INDICE: "índice entre 0 y 1",
        SEGUNDOS: "segundos (se muestran en minutos, horas o días)",
        CONTEO: "número de casos",
        POR_MIL: "por cada mil entregas",
        MONEDA: f"moneda de la entidad (ISO 4217{', ' + moneda if moneda else ''})",
    }.get(definicion.unidad, definicion.unidad)


def mes_largo(mes: str) -> str:
    """`2026-06` → «junio de 2026»."""
    anio, numero_mes = int(mes[:4]), int(mes[5:7])
    return format_date(date(anio, numero_mes, 1), "MMMM 'de' y", locale=LOCALE)


def mes_corto(mes: str) -> str:
    """`2026-06` → «jun 2026»."""
    anio, numero_mes = int(mes[:4]), int(mes[5:7])
    return format_date(date(anio, numero_mes, 1), "MMM y", locale=LOCALE).replace(".", "")


def fecha_hora(instante: datetime) -> str:
    """ISO 8601 en UTC, al segundo."""
    return instante.strftime("%Y-%m-%dT%H:%M:%SZ")


def casos(n: int) -> str:
    return f"{entero(n)} {'caso' if n == 1 else 'casos'}"


def fecha_local(instante: datetime | None, zona: str = "UTC") -> str:
    """«17 de junio de 2026, 10:00 (America/Lima)»: el instante en la zona de la agencia."""
    if instante is None:
        return ""
    from babel.dates import format_datetime
    from zoneinfo import ZoneInfo

    texto = format_datetime(instante, "d 'de' MMMM 'de' y, HH:mm", tzinfo=ZoneInfo(zona), locale=LOCALE)
    return f"{texto} ({zona})"
