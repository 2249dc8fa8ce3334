"""Exportador Prometheus de la consulta: se lee la vista (y los contadores de Kafka) en cada raspado.

Un colector propio y no Gauges con etiquetas: así una serie borrada con una lápida deja de
exportarse sin tener que recordar qué etiquetas se publicaron antes. Un indicador sin datos
(denominador vacío) no se exporta en `gpr_indicador_valor` —no tener valor no es valer 0—,
pero sí su `gpr_indicador_muestras` en 0. Igual con las metas: una serie en `sin_datos` no
tiene `gpr_meta_cumplimiento` (ni 1 ni 0: la meta no se juzga).

Los contadores `gpr_indicador_buenos_total` y `gpr_indicador_casos_total` (numerador y
denominador acumulados de la ventana `total` de los indicadores de proporción) son los que
usan las reglas de tasa de quema con `rate()`/`increase()`. Prometheus toma cualquier bajada
de un contador por un reinicio y suma el valor entero como aumento, lo que dispararía una
alerta de quema falsa. Un acumulado puede bajar de verdad (un evento tardío corrige la
primera entrega de un caso) y, a medio cargar la vista, mostraría un valor viejo; por eso se
exporta el máximo visto de cada serie en todo el tópico (también en la relectura del
arranque, que recorre lo que la compactación aún no borró) y solo cuando la vista está al día.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gpr.v1 import indicadores_pb2 as ipb
from servicios.comun.indicadores import INDICADORES, VENTANA_TOTAL, Forma
from servicios.consulta.rechazados import ContadorRechazados
from servicios.consulta.retraso import RetrasoProcesador
from servicios.consulta.vista import Vista

ETIQUETAS = ["agencia", "servicio", "indicador", "ventana", "etapa"]
_PROPORCIONES = {nombre for nombre, d in INDICADORES.items() if d.forma is Forma.PROPORCION}
_JUZGADAS = {ipb.CUMPLE: 1, ipb.INCUMPLE: 0}


def _segundos(ts) -> float:
    return ts.seconds + ts.nanos / 1e9


class MaximosAcumulados:
    """Máximo de numerador y muestras de cada serie `total` de proporción visto en el tópico.

    Se suscribe a la vista al crearse: hay que crearlo antes de `vista.iniciar()` para que vea
    también la relectura del arranque.
    """

    def __init__(self, vista: Vista):
        self._maximos: dict[str, tuple[str, str, str, float, int]] = {}
        vista.suscribir(self._actualizar)

    def _actualizar(self, clave: str, indicador: ipb.Indicador | None) -> None:
        if indicador is None:
            self._maximos.pop(clave, None)
            return
        if indicador.ventana != VENTANA_TOTAL or indicador.indicador not in _PROPORCIONES:
            return
        previo = self._maximos.get(clave)
        buenos, casos = indicador.numerador, indicador.muestras
        if previo is not None:
            buenos, casos = max(buenos, previo[3]), max(casos, previo[4])
        self._maximos[clave] = (indicador.agencia_id, indicador.servicio_id, indicador.indicador, buenos, casos)

    def valores(self) -> list[tuple[str, str, str, float, int]]:
        # Lo llama el hilo de /metrics mientras el bucle asyncio escribe: se itera una copia.
        return list(self._maximos.copy().values())


class ColectorIndicadores(Collector):
    """Traduce la vista materializada (y los conteos de Kafka) a familias de métricas en cada raspado."""

    def __init__(self, vista: Vista, rechazados: ContadorRechazados | None = None,
                 retraso: RetrasoProcesador | None = None):
        self._vista = vista
        self._acumulados = MaximosAcumulados(vista)
        self._rechazados = rechazados
        self._retraso = retraso

    def collect(self) -> Iterator[Metric]:
        # La vista la modifica el hilo del bucle asyncio: se itera sobre una copia.
        series = list(self._vista.instantanea().values())
        yield from self._indicadores(series)
        yield from self._metas(series)
        yield self._cuellos_de_botella(series)
        yield self._ultimos_eventos(series)
        yield from self._acumulados_de_proporciones()
        yield from self._plataforma()

    @staticmethod
    def _indicadores(series: list[ipb.Indicador]) -> Iterator[Metric]:
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
        for indicador in series:
            etiquetas = [indicador.agencia_id, indicador.servicio_id, indicador.indicador,
                         indicador.ventana, indicador.etapa_id]
            muestras.add_metric(etiquetas, indicador.muestras)
            if not indicador.sin_datos:
                valor.add_metric(etiquetas, indicador.valor)
        yield valor
        yield muestras

    @staticmethod
    def _metas(series: list[ipb.Indicador]) -> Iterator[Metric]:
        meta_valor = GaugeMetricFamily(
            "gpr_meta_valor",
            "Valor que la meta exige a la serie (el operador está en la regla de alerta y en la API).",
            labels=ETIQUETAS,
        )
        cumplimiento = GaugeMetricFamily(
            "gpr_meta_cumplimiento",
            "1 si la serie cumple su meta, 0 si la incumple; sin serie cuando la meta no se juzga "
            "(sin datos o menos muestras que la muestra mínima).",
            labels=ETIQUETAS + ["severidad", "equipo"],
        )
        for indicador in series:
            if not indicador.HasField("meta"):
                continue
            etiquetas = [indicador.agencia_id, indicador.servicio_id, indicador.indicador,
                         indicador.ventana, indicador.etapa_id]
            meta = indicador.meta
            meta_valor.add_metric(etiquetas, meta.valor)
            if meta.estado in _JUZGADAS:
                cumplimiento.add_metric(etiquetas + [meta.severidad, meta.equipo], _JUZGADAS[meta.estado])
        yield meta_valor
        yield cumplimiento

    @staticmethod
    def _cuellos_de_botella(series: list[ipb.Indicador]) -> Metric:
        # Todas las instantáneas de un servicio y ventana llevan la misma etapa; si difieren
        # (una publicación a medias) vale la de la instantánea más reciente.
        recientes: dict[tuple[str, str, str], tuple[float, str]] = {}
        for indicador in series:
            if not indicador.etapa_cuello_botella:
                continue
            clave = (indicador.agencia_id, indicador.servicio_id, indicador.ventana)
            candidato = (_segundos(indicador.actualizado_en), indicador.etapa_cuello_botella)
            if clave not in recientes or candidato > recientes[clave]:
                recientes[clave] = candidato
        info = GaugeMetricFamily(
            "gpr_servicio_cuello_botella_info",
            "Etapa cuello de botella del servicio en la ventana (mayor mediana de permanencia); "
            "siempre 1, para unirla a las alertas con group_left.",
            labels=["agencia", "servicio", "ventana", "etapa"],
        )
        for (agencia, servicio, ventana), (_, etapa) in sorted(recientes.items()):
            info.add_metric([agencia, servicio, ventana, etapa], 1)
        return info

    @staticmethod
    def _ultimos_eventos(series: list[ipb.Indicador]) -> Metric:
        ultimos: dict[str, float] = {}
        for indicador in series:
            hasta = _segundos(indicador.hasta)
            if hasta > ultimos.get(indicador.agencia_id, 0.0):
                ultimos[indicador.agencia_id] = hasta
        familia = GaugeMetricFamily(
            "gpr_eventos_ultimo_timestamp_seconds",
            "Momento (tiempo de evento, segundos Unix) del último evento aceptado de la agencia: "
            "el mayor 'hasta' de sus instantáneas, es decir su marca de agua.",
            labels=["agencia"],
        )
        for agencia, hasta in sorted(ultimos.items()):
            familia.add_metric([agencia], hasta)
        return familia

    def _acumulados_de_proporciones(self) -> Iterator[Metric]:
        buenos = CounterMetricFamily(
            "gpr_indicador_buenos",
            "Numerador acumulado (ventana total) de los indicadores de proporción: los casos que "
            "suman al valor (en plazo, concluidos...; en tasa_reproceso y tasa_error, los "
            "reprocesados o con error). Para tasas de quema con rate().",
            labels=["agencia", "servicio", "indicador"],
        )
        casos = CounterMetricFamily(
            "gpr_indicador_casos",
            "Denominador acumulado (ventana total) de los indicadores de proporción. Para tasas de "
            "quema con rate().",
            labels=["agencia", "servicio", "indicador"],
        )
        if self._vista.al_dia.is_set():
            for agencia, servicio, indicador, n_buenos, n_casos in sorted(self._acumulados.valores()):
                buenos.add_metric([agencia, servicio, indicador], n_buenos)
                casos.add_metric([agencia, servicio, indicador], n_casos)
        yield buenos
        yield casos

    def _plataforma(self) -> Iterator[Metric]:
        if self._rechazados is not None:
            rechazados = CounterMetricFamily(
                "gpr_eventos_rechazados",
                "Eventos en gpr.eventos.rechazados.v1 desde el principio del tópico, por motivo "
                "(cabecera gpr-motivo hasta ':').",
                labels=["motivo"],
            )
            for motivo, n in sorted((self._rechazados.conteos() or {}).items()):
                rechazados.add_metric([motivo], n)
            yield rechazados
        if self._retraso is not None:
            retraso = GaugeMetricFamily(
                "gpr_procesador_retraso_registros",
                "Registros que el grupo del procesador aún no confirmó (fin del log menos offset "
                "confirmado), por tópico de entrada y partición.",
                labels=["topico", "particion"],
            )
            for (topico, particion), n in sorted(self._retraso.valores().items()):
                retraso.add_metric([topico, str(particion)], n)
            yield retraso
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


def crear_registro(vista: Vista, rechazados: ContadorRechazados | None = None,
                   retraso: RetrasoProcesador | None = None) -> CollectorRegistry:
    """Registro dedicado (no el global de prometheus_client) con los indicadores y el proceso.

    Llamar antes de `vista.iniciar()`: el colector se suscribe a la vista para los acumulados.
    """
    registro = CollectorRegistry()
    registro.register(ColectorIndicadores(vista, rechazados, retraso))
    ProcessCollector(registry=registro)
    PlatformCollector(registry=registro)
    return registro
