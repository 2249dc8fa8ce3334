"""Importes exactos: de `Costo` (unidades + nanos) a un entero de diezmilésimas de la moneda.

Las sumas de dinero no pasan por la coma flotante: cada costo se cuenta en diezmilésimas
(ISO 4217 no usa más de 4 decimales) y los cubos suman esos enteros. Un `double` representa
exactamente todo entero hasta 2**53, así que una suma de hasta ~900 000 millones de unidades
de la moneda es exacta aunque viaje en los campos `double` de los aportes.
"""

from __future__ import annotations

from decimal import Decimal

# Diezmilésimas por unidad de la moneda.
ESCALA = 10_000
_NANOS_POR_DIEZMILESIMA = 1_000_000_000 // ESCALA
# Tope de un importe por evento: mil millones de unidades (un solo trámite no cuesta más; un
# valor mayor casi siempre es un error de unidades, p. ej. céntimos enviados como unidades).
UNIDADES_MAXIMAS = 1_000_000_000


def motivo_importe_invalido(unidades: int, nanos: int) -> str | None:
    """Por qué un importe no es aceptable (para el detalle del rechazo), o None."""
    if unidades < 0 or nanos < 0:
        return "el importe es negativo"
    if nanos >= 1_000_000_000:
        return "nanos debe estar entre 0 y 999999999"
    if nanos % _NANOS_POR_DIEZMILESIMA:
        return "más de 4 decimales"
    if unidades > UNIDADES_MAXIMAS or (unidades == UNIDADES_MAXIMAS and nanos):
        return f"más de {UNIDADES_MAXIMAS} unidades"
    return None


def a_diezmilesimas(unidades: int, nanos: int) -> int:
    """El importe (ya validado) en diezmilésimas."""
    return unidades * ESCALA + nanos // _NANOS_POR_DIEZMILESIMA


def desde_decimal(importe: str | Decimal) -> tuple[int, int]:
    """(unidades, nanos) de un importe decimal no negativo, p. ej. "12.50" → (12, 500000000).
    Para quien arma eventos a partir de texto (simulador, pruebas, CLI)."""
    valor = Decimal(importe)
    if valor < 0:
        raise ValueError(f"importe negativo: {importe}")
    unidades = int(valor)
    nanos = (valor - unidades) * 1_000_000_000
    if nanos != int(nanos):
        raise ValueError(f"más de 9 decimales: {importe}")
    return unidades, int(nanos)
