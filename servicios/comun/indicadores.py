"""Catálogo de indicadores de resultados: nombre, dimensión, sentido de mejora y forma.

Es la única lista de indicadores del sistema: el procesador los calcula, la consulta valida
los nombres pedidos y las metas comprueban que su operador coincide con el sentido de mejora.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class Sentido(Enum):
    """Hacia dónde es mejor el indicador; None para los que solo describen volumen."""

    MAYOR = ">="
    MENOR = "<="


class Forma(Enum):
    PROPORCION = "proporcion"  # entre 0 y 1, con numerador y denominador
    CONTEO = "conteo"
    SEGUNDOS = "segundos"
    PROMEDIO = "promedio"
    ETAPA = "etapa"  # valor textual: la etapa que causa la demora


@dataclass(frozen=True)
class DefinicionIndicador:
    nombre: str
    dimension: str  # eficacia, eficiencia, calidad, economía
    sentido: Sentido | None
    forma: Forma
    por_etapa: bool = False


_DEFINICIONES = [
    DefinicionIndicador("solicitudes", "eficacia", None, Forma.CONTEO),
    DefinicionIndicador("entregas", "eficacia", None, Forma.CONTEO),
    DefinicionIndicador("tasa_conclusion", "eficacia", Sentido.MAYOR, Forma.PROPORCION),
    DefinicionIndicador("cumplimiento_plazo", "eficacia", Sentido.MAYOR, Forma.PROPORCION),
    DefinicionIndicador("tiempo_atencion_p50", "eficiencia", Sentido.MENOR, Forma.SEGUNDOS),
    DefinicionIndicador("tiempo_atencion_p90", "eficiencia", Sentido.MENOR, Forma.SEGUNDOS),
    DefinicionIndicador("casos_vencidos", "eficacia", Sentido.MENOR, Forma.CONTEO),
    DefinicionIndicador("tiempo_etapa_p50", "eficiencia", Sentido.MENOR, Forma.SEGUNDOS, por_etapa=True),
    DefinicionIndicador("tiempo_etapa_p90", "eficiencia", Sentido.MENOR, Forma.SEGUNDOS, por_etapa=True),
    DefinicionIndicador("tasa_reproceso", "calidad", Sentido.MENOR, Forma.PROPORCION),
    DefinicionIndicador("satisfaccion_top2", "calidad", Sentido.MAYOR, Forma.PROPORCION),
    DefinicionIndicador("satisfaccion_indice", "calidad", Sentido.MAYOR, Forma.PROMEDIO),
    DefinicionIndicador("reclamos_por_mil", "calidad", Sentido.MENOR, Forma.PROMEDIO),
    DefinicionIndicador("adopcion_digital", "eficiencia", Sentido.MAYOR, Forma.PROPORCION),
    DefinicionIndicador("costo_por_tramite", "economía", Sentido.MENOR, Forma.PROMEDIO),
    DefinicionIndicador("tasa_error", "calidad", Sentido.MENOR, Forma.PROPORCION),
]

INDICADORES: dict[str, DefinicionIndicador] = {d.nombre: d for d in _DEFINICIONES}

VENTANAS_MOVILES = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
# Desde el primer evento: de ella salen los contadores acumulados para las tasas de quema.
VENTANA_TOTAL = "total"
_VENTANA_MES = re.compile(r"^mes:(\d{4})-(0[1-9]|1[0-2])$")


def ventana_valida(ventana: str) -> bool:
    return ventana in VENTANAS_MOVILES or ventana == VENTANA_TOTAL or bool(_VENTANA_MES.match(ventana))


def clave_serie(agencia_id: str, servicio_id: str, indicador: str, ventana: str, etapa_id: str = "") -> str:
    """Clave del registro en gpr.indicadores.v1 (compactado): una serie, su último valor."""
    clave = f"{agencia_id}/{servicio_id}/{indicador}/{ventana}"
    return f"{clave}/{etapa_id}" if etapa_id else clave
