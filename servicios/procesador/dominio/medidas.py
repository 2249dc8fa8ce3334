"""Nombres de las medidas que se suman en los cubos (el vocabulario entre casos e indicadores).

Las medidas de histograma se nombran `<histograma>#<clave logarítmica>`; la de vencidos no
se suma en cubos sino en la línea de vencimientos (ver `vencimientos.py`).
"""

from __future__ import annotations

SOLICITUDES = "solicitudes"
ENTREGAS = "entregas"
ENTREGAS_DIGITALES = "entregas_digitales"
CONCLUSION_CASOS = "conclusion_casos"
CONCLUSION_BUENOS = "conclusion_buenos"
PLAZO_CASOS = "plazo_casos"
PLAZO_BUENOS = "plazo_buenos"
CONCLUIDOS = "concluidos"
REPROCESO = "reproceso"
ERRORES = "errores"
ENCUESTAS = "encuestas"
ENCUESTAS_TOP2 = "encuestas_top2"
SATISFACCION_SUMA = "satisfaccion_suma"
RECLAMOS = "reclamos"
# En diezmilésimas de la moneda (enteros: ver `servicios/comun/dinero.py`).
COSTO_TOTAL = "costo_total"
VENCIDOS = "vencidos"

ATENCION = "atencion"
_PREFIJO_ETAPA = "etapa:"


def etapa(etapa_id: str) -> str:
    return f"{_PREFIJO_ETAPA}{etapa_id}"


def histograma(nombre: str, clave: str) -> str:
    return f"{nombre}#{clave}"


def separar_histogramas(sumas: dict[str, float]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Divide medidas simples y histogramas (`nombre#clave`) de una suma de cubos."""
    simples: dict[str, float] = {}
    histogramas: dict[str, dict[str, float]] = {}
    for medida, valor in sumas.items():
        # Por el último `#`: la clave logarítmica nunca lo lleva y el nombre (una etapa) no
        # debe poder partirse aunque lo llevara.
        nombre, separador, clave = medida.rpartition("#")
        if separador:
            histogramas.setdefault(nombre, {})[clave] = valor
        else:
            simples[medida] = valor
    return simples, histogramas


def etapa_de(nombre_histograma: str) -> str | None:
    return nombre_histograma[len(_PREFIJO_ETAPA):] if nombre_histograma.startswith(_PREFIJO_ETAPA) else None
