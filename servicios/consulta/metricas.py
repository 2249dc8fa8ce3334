"""Exportador Prometheus de los indicadores: se lee la vista en cada raspado (scrape).

Un colector propio y no Gauges con etiquetas: así una serie borrada con una lápida deja de
exportarse sin tener que recordar qué etiquetas se publicaron antes. Un indicador sin datos
(denominador vacío) no se exporta en `gpr_indicador_valor` —no tener valor no es valer 0—,
pero sí su `gpr_indicador_muestras` en 0, que es lo que permite alertar por falta de datos.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from servicios.consulta.vista import Vista

ETIQUETAS = ["agencia", "servicio", "indicador", "ventana", "etapa"]


class ColectorIndicadores(Collector):
    """Traduce la vista materializada a familias de métricas en cada raspado."""

    def __init__(self, vista: Vista):
        self._vista = vista

    def collect(self) -> Iterator[Metric]:
        valor = GaugeMetricFamily(
            "gpr_indicador_valor",
            "Valor actual del indicador de resultados en su ventana, en unidades base "
            "(proporciones de 0 a 1, tiempos en segundos). Sin serie cuando no hay datos.",
            labels=ETIQUETAS,
        )
        muestras = GaugeMetricFamily(
            "gpr_indicador_muestras",
            "Denominador del indicador (casos u observaciones) en su ventana; 0 cuando no hay datos.",
            labels=ETIQUETAS,
        )
        # La vista la modifica el hilo del bucle asyncio: se itera sobre una copia.
        for indicador in self._vista.instantanea().values():
            etiquetas = [indicador.agencia_id, indicador.servicio_id, indicador.indicador,
                         indicador.ventana, indicador.etapa_id]
            muestras.add_metric(etiquetas, indicador.muestras)
            if not indicador.sin_datos:
                valor.add_metric(etiquetas, indicador.valor)
        yield valor
        yield muestras
        yield GaugeMetricFamily(
            "gpr_consulta_vista_al_dia",
            "1 si la vista de gpr.indicadores.v1 alcanzó el final del tópico desde el arranque.",
            value=1 if self._vista.al_dia.is_set() else 0,
        )
        yield GaugeMetricFamily(
            "gpr_consulta_series", "Series de indicadores en la vista materializada.", value=len(self._vista),
        )
        yield CounterMetricFamily(
            "gpr_consulta_registros_descartados",
            "Registros de gpr.indicadores.v1 ignorados por no tener clave o no ser un gpr.v1.Indicador.",
            value=self._vista.descartados,
        )


def crear_registro(vista: Vista) -> CollectorRegistry:
    """Registro dedicado (no el global de prometheus_client) con los indicadores y el proceso."""
    registro = CollectorRegistry()
    registro.register(ColectorIndicadores(vista))
    ProcessCollector(registry=registro)
    PlatformCollector(registry=registro)
    return registro
