"""Comparación de instantáneas del motor con la implementación de referencia."""

from __future__ import annotations

from apoyo import referencia  # noqa: F401  (documenta de dónde sale `esperado`)

# Importes: sumas exactas y una sola división, así que el valor es el float más cercano al exacto.
EXACTOS = {"costo_por_tramite"}
PERCENTILES = {"tiempo_atencion_p50", "tiempo_atencion_p90", "tiempo_etapa_p50", "tiempo_etapa_p90"}


def diferencias(observado, esperado, por_servicio_cuello, eventos, catalogo, agencia):
    """Lista de discrepancias. `observado`: {(servicio, indicador, ventana, etapa): (valor|None, muestras)}."""
    errores = []
    for clave, (valor_ref, muestras_ref) in esperado.items():
        servicio, indicador, ventana, etapa = clave
        if indicador.startswith("_"):
            continue
        if indicador == "etapa_cuello_botella":
            cuello = por_servicio_cuello.get((servicio, ventana))
            if cuello != valor_ref and not _empate_tolerable(esperado, servicio, ventana, cuello, valor_ref):
                errores.append((clave, valor_ref, cuello))
            continue
        if clave not in observado:
            errores.append((clave, (valor_ref, muestras_ref), "ausente"))
            continue
        valor, muestras = observado[clave]
        if muestras_ref is not None and muestras != muestras_ref:
            errores.append((clave, (valor_ref, muestras_ref), (valor, muestras)))
        elif valor_ref is None or valor is None:
            if valor_ref is not valor and not (valor_ref is None and valor is None):
                errores.append((clave, valor_ref, valor))
        elif indicador in EXACTOS:
            if valor != valor_ref:
                errores.append((clave, valor_ref, valor))
        elif indicador in PERCENTILES:
            if abs(valor - valor_ref) > 0.01 * abs(valor_ref) + 1e-9:
                errores.append((clave, valor_ref, valor))
        elif abs(valor - valor_ref) > 1e-6 * max(1.0, abs(valor_ref)):
            errores.append((clave, valor_ref, valor))
    return errores


def _empate_tolerable(esperado, servicio, ventana, cuello, cuello_ref):
    """Dos etapas con medianas a menos del error del histograma pueden intercambiarse."""
    mediana = lambda etapa: esperado.get((servicio, "tiempo_etapa_p50", ventana, etapa), (None, 0))[0]
    a, b = mediana(cuello), mediana(cuello_ref)
    return a is not None and b is not None and abs(a - b) <= 0.02 * max(a, b)
