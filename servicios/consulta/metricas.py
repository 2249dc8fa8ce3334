"""Exportador Prometheus de la consulta: se lee la vista (y los contadores de Kafka) en cada raspado.

Un colector propio y no Gauges con etiquetas: así una serie borrada con una lápida deja de
exportarse sin tener que recordar qué etiquetas se publicaron antes. Un indicador sin datos
(denominador vacío) no se exporta en `gpr_indicador_valor` —no tener valor no es valer 0—,
pero sí su `gpr_indicador_muestras` en 0. Igual con las metas: una serie en `sin_datos` no
tiene `gpr_meta_cumplimiento` (ni 1 ni 0: la meta no se juzga).

`gpr_indicador_valor` y `gpr_meta_valor` llevan además la etiqueta `unidad` de la instantánea
(`Indicador.unidad`: `segundos`, `proporcion`, `indice`, `conteo`, `por_mil` o un código ISO
4217; la vista no acepta otras), para que tableros y reglas elijan por unidad y no por listas
de nombres. Es función de la serie: no multiplica las series. Las demás familias no la
llevan; una operación entre ellas se une `on (agencia, servicio, indicador, ventana, etapa)`.

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

import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from gpr.v1 import indicadores_pb2 as ipb
from servicios.comun.indicadores import INDICADORES, VENTANA_TOTAL, Forma
from servicios.consulta.rechazados import ContadorRechazados
from servicios.consulta.retraso import RetrasoProcesador
from servicios.consulta.vista import Vista

ETIQUETAS = ["agencia", "servicio", "indicador", "ventana", "etapa"]
ETIQUETAS_CON_UNIDAD = ETIQUETAS + ["unidad"]
_PROPORCIONES = {nombre for nombre, d in INDICADORES.items() if d.forma is Forma.PROPORCION}
_JUZGADAS = {ipb.ESTADO_CUMPLIMIENTO_CUMPLE: 1, ipb.ESTADO_CUMPLIMIENTO_INCUMPLE: 0}


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
        # Internadas: la misma agencia y servicio se repiten en muchas tuplas.
        self._maximos[clave] = (sys.intern(indicador.agencia_id), sys.intern(indicador.servicio_id),
                                sys.intern(indicador.indicador), buenos, casos)

    def valores(self) -> list[tuple[str, str, str, float, int]]:
        # Lo llama el hilo de /metrics mientras el bucle asyncio escribe: se itera una copia.
        return list(self._maximos.copy().values())


class FamiliaRapida(Metric):
    """Familia de métricas cuyas muestras se generan al leerlas, sin guardarlas.

    Con 1,2 millones de series, las familias de `prometheus_client` (una `Sample` con su dict
    de etiquetas por muestra, que se crea y se guarda por cada una) y `generate_latest` (todo
    el texto en memoria, varias veces) costarían varios GB y más de un minuto por raspado.
    Aquí `filas` da (valores de etiquetas, valor) al vuelo y `lineas()` escribe el texto de
    exposición directamente, en trozos, con el mismo formato byte a byte que
    `prometheus_client` (etiquetas ordenadas por nombre, mismos escapes, `floatToGoString`);
    `samples` sigue existiendo para quien use la API de `prometheus_client` (más lento, pero igual).
    """

    def __init__(self, nombre: str, documentacion: str, tipo: str, etiquetas: list[str],
                 filas: Callable[[], Iterable[tuple[Sequence[str], float]]]):
        super().__init__(nombre, documentacion, tipo)
        self._etiquetas = list(etiquetas)
        self._filas = filas
        self._nombre_muestra = nombre + "_total" if tipo == "counter" else nombre

    @property
    def samples(self) -> Iterator[Sample]:
        for valores, valor in self._filas():
            yield Sample(self._nombre_muestra, dict(zip(self._etiquetas, valores)), valor)

    @samples.setter
    def samples(self, _valor) -> None:
        # Metric.__init__ asigna una lista vacía: las muestras de esta familia no se guardan.
        pass

    def vacia(self) -> Metric:
        """La misma familia sin muestras: para que `prometheus_client` escriba la cabecera."""
        return Metric(self.name, self.documentation, self.type)

    def lineas(self, por_trozo: int = 4096) -> Iterator[str]:
        """Las líneas de las muestras en formato de texto (igual en 0.0.4 y OpenMetrics)."""
        orden = sorted(range(len(self._etiquetas)), key=lambda i: self._etiquetas[i])
        # Una plantilla por familia: nombre{a="%s",b="%s"} %s, con las etiquetas por nombre.
        bloque = ",".join(f'{self._etiquetas[i]}="%s"' for i in orden)
        plantilla = f"{self._nombre_muestra}{{{bloque}}} %s\n" if orden else f"{self._nombre_muestra} %s\n"
        # Los valores de etiqueta y los números se repiten mucho (agencias, ventanas,
        # muestras pequeñas): se escapan y se formatean una vez por raspado.
        escapar = _Memo(lambda v: v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"'))
        formatear = _Memo(floatToGoString)
        trozo: list[str] = []
        for valores, valor in self._filas():
            trozo.append(plantilla % (*[escapar[valores[i]] for i in orden], formatear[valor]))
            if len(trozo) >= por_trozo:
                yield "".join(trozo)
                trozo = []
        if trozo:
            yield "".join(trozo)


class _Memo(dict):
    """Resultado de `funcion` por argumento, con tope de entradas (memoria acotada)."""

    def __init__(self, funcion: Callable, tope: int = 100_000):
        super().__init__()
        self._funcion = funcion
        self._tope = tope

    def __missing__(self, clave):
        resultado = self._funcion(clave)
        if len(self) < self._tope:
            self[clave] = resultado
        return resultado


class _Recorrido:
    """Una pasada por la vista que decodifica cada serie una sola vez por raspado.

    Guarda solo lo que hace falta, en arreglos compactos (18 B por serie, y lo de las metas
    solo para las series con meta); las etiquetas se sacan de la clave al escribir, y la unidad
    es un índice en la lista de las pocas unidades distintas.
    """

    def __init__(self, vista: Vista):
        self.vista = vista
        self.claves: list[str] = []
        self.valores = array("d")
        self.muestras = array("d")
        self.sin_datos = bytearray()
        self.unidades = array("H")
        self.nombres_unidad: list[str] = []
        codigos: dict[str, int] = {}
        # (índice, valor de la meta, 1/0/None, severidad, equipo)
        self.metas: list[tuple[int, float, int | None, str, str]] = []
        # Por (agencia, servicio, ventana): la etapa cuello de botella.
        recientes: dict[tuple[str, str, str], str] = {}
        en_conflicto: set[tuple[str, str, str]] = set()
        ultimos: dict[str, float] = {}
        leer, etiquetas = ipb.Indicador.FromString, vista.etiquetas
        instantanea = vista.instantanea()
        for n, (clave, crudo) in enumerate(instantanea):
            indicador = leer(crudo)
            self.claves.append(clave)
            self.valores.append(indicador.valor)
            self.muestras.append(indicador.muestras)
            self.sin_datos.append(indicador.sin_datos)
            unidad = indicador.unidad
            codigo = codigos.get(unidad)
            if codigo is None:
                codigo = codigos[unidad] = len(self.nombres_unidad)
                self.nombres_unidad.append(unidad)
            self.unidades.append(codigo)
            if indicador.HasField("meta"):
                meta = indicador.meta
                self.metas.append((n, meta.valor, _JUZGADAS.get(meta.estado), meta.severidad, meta.equipo))
            agencia, servicio, _, ventana, _ = etiquetas(clave)
            hasta = indicador.hasta
            hasta = hasta.seconds + hasta.nanos / 1e9
            if hasta > ultimos.get(agencia, 0.0):
                ultimos[agencia] = hasta
            # Todas las instantáneas de un servicio y ventana llevan la misma etapa; si
            # difieren (una publicación a medias) vale la de la instantánea más reciente. Leer
            # actualizado_en cuesta: solo se mira en los grupos donde dos etapas compiten.
            etapa = indicador.etapa_cuello_botella
            if etapa:
                grupo = (agencia, servicio, ventana)
                elegida = recientes.setdefault(grupo, etapa)
                if elegida != etapa:
                    en_conflicto.add(grupo)
        if en_conflicto:
            mejores: dict[tuple[str, str, str], tuple[float, str]] = {}
            for clave, crudo in instantanea:
                agencia, servicio, _, ventana, _ = etiquetas(clave)
                grupo = (agencia, servicio, ventana)
                if grupo not in en_conflicto:
                    continue
                indicador = leer(crudo)
                if indicador.etapa_cuello_botella:
                    candidato = (_segundos(indicador.actualizado_en), indicador.etapa_cuello_botella)
                    if grupo not in mejores or candidato > mejores[grupo]:
                        mejores[grupo] = candidato
            for grupo, (_, etapa) in mejores.items():
                recientes[grupo] = etapa
        self.cuellos = sorted((grupo + (etapa,)) for grupo, etapa in recientes.items())
        self.ultimos = sorted(ultimos.items())

    def filas_valor(self) -> Iterator[tuple[Sequence[str], float]]:
        etiquetas, valores, sin_datos = self.vista.etiquetas, self.valores, self.sin_datos
        unidades, nombres = self.unidades, self.nombres_unidad
        for n, clave in enumerate(self.claves):
            if not sin_datos[n]:
                yield (*etiquetas(clave), nombres[unidades[n]]), valores[n]

    def filas_muestras(self) -> Iterator[tuple[Sequence[str], float]]:
        etiquetas, muestras = self.vista.etiquetas, self.muestras
        for n, clave in enumerate(self.claves):
            yield etiquetas(clave), muestras[n]

    def filas_meta_valor(self) -> Iterator[tuple[Sequence[str], float]]:
        unidades, nombres = self.unidades, self.nombres_unidad
        for n, valor, _, _, _ in self.metas:
            yield (*self.vista.etiquetas(self.claves[n]), nombres[unidades[n]]), valor

    def filas_cumplimiento(self) -> Iterator[tuple[Sequence[str], float]]:
        for n, _, juzgada, severidad, equipo in self.metas:
            if juzgada is not None:
                yield (*self.vista.etiquetas(self.claves[n]), severidad, equipo), juzgada


class ColectorIndicadores(Collector):
    """Traduce la vista materializada (y los conteos de Kafka) a familias de métricas en cada raspado."""

    def __init__(self, vista: Vista, rechazados: ContadorRechazados | None = None,
                 retraso: RetrasoProcesador | None = None):
        self._vista = vista
        self._acumulados = MaximosAcumulados(vista)
        self._rechazados = rechazados
        self._retraso = retraso

    def collect(self) -> Iterator[Metric]:
        # Lo llama el hilo de /metrics; la vista entrega una copia de sus series.
        recorrido = _Recorrido(self._vista)
        yield from self._indicadores(recorrido)
        yield from self._metas(recorrido)
        yield self._cuellos_de_botella(recorrido)
        yield self._ultimos_eventos(recorrido)
        yield from self._acumulados_de_proporciones()
        yield from self._plataforma()

    @staticmethod
    def _indicadores(recorrido: _Recorrido) -> Iterator[Metric]:
        yield FamiliaRapida(
            "gpr_indicador_valor",
            "Valor actual del indicador de resultados en su ventana, en la unidad de la etiqueta unidad "
            "(segundos; proporcion e indice de 0 a 1; conteo; por_mil; o un código ISO 4217). "
            "Sin serie cuando no hay datos.",
            "gauge", ETIQUETAS_CON_UNIDAD, recorrido.filas_valor,
        )
        yield FamiliaRapida(
            "gpr_indicador_muestras",
            "Denominador del indicador (casos u observaciones) en su ventana; 0 cuando no hay datos.",
            "gauge", ETIQUETAS, recorrido.filas_muestras,
        )

    @staticmethod
    def _metas(recorrido: _Recorrido) -> Iterator[Metric]:
        yield FamiliaRapida(
            "gpr_meta_valor",
            "Valor que la meta exige a la serie, en la unidad de la etiqueta unidad (el operador está "
            "en la regla de alerta y en la API).",
            "gauge", ETIQUETAS_CON_UNIDAD, recorrido.filas_meta_valor,
        )
        yield FamiliaRapida(
            "gpr_meta_cumplimiento",
            "1 si la serie cumple su meta, 0 si la incumple; sin serie cuando la meta no se juzga "
            "(sin datos o menos muestras que la muestra mínima).",
            "gauge", ETIQUETAS + ["severidad", "equipo"], recorrido.filas_cumplimiento,
        )

    @staticmethod
    def _cuellos_de_botella(recorrido: _Recorrido) -> Metric:
        return FamiliaRapida(
            "gpr_servicio_cuello_botella_info",
            "Etapa cuello de botella del servicio en la ventana (mayor mediana de permanencia); "
            "siempre 1, para unirla a las alertas con group_left.",
            "gauge", ["agencia", "servicio", "ventana", "etapa"],
            lambda: ((fila, 1) for fila in recorrido.cuellos),
        )

    @staticmethod
    def _ultimos_eventos(recorrido: _Recorrido) -> Metric:
        return FamiliaRapida(
            "gpr_eventos_ultimo_timestamp_seconds",
            "Momento (tiempo de evento, segundos Unix) del último evento aceptado de la agencia: "
            "el mayor 'hasta' de sus instantáneas, es decir su marca de agua.",
            "gauge", ["agencia"],
            lambda: (((agencia,), hasta) for agencia, hasta in recorrido.ultimos),
        )

    def _acumulados_de_proporciones(self) -> Iterator[Metric]:
        valores = sorted(self._acumulados.valores()) if self._vista.cargada.is_set() else []
        yield FamiliaRapida(
            "gpr_indicador_buenos",
            "Numerador acumulado (ventana total) de los indicadores de proporción: los casos que "
            "suman al valor (en plazo, concluidos...; en tasa_reproceso y tasa_error, los "
            "reprocesados o con error). Para tasas de quema con rate().",
            "counter", ["agencia", "servicio", "indicador"],
            lambda: ((fila[:3], fila[3]) for fila in valores),
        )
        yield FamiliaRapida(
            "gpr_indicador_casos",
            "Denominador acumulado (ventana total) de los indicadores de proporción. Para tasas de "
            "quema con rate().",
            "counter", ["agencia", "servicio", "indicador"],
            lambda: ((fila[:3], fila[4]) for fila in valores),
        )

    def _plataforma(self) -> Iterator[Metric]:
        if self._rechazados is not None:
            rechazados = CounterMetricFamily(
                "gpr_eventos_rechazados",
                "Eventos en gpr.eventos.rechazados.v1 desde el principio del tópico, por agencia y fuente "
                "(del evento original; 'desconocida' si no está en el catálogo o no se pudo leer, 'otra' "
                "pasadas 10 fuentes por agencia) y motivo (cabecera gpr-motivo hasta ':').",
                labels=["agencia", "fuente", "motivo"],
            )
            for etiquetas, n in sorted((self._rechazados.conteos() or {}).items()):
                rechazados.add_metric(list(etiquetas), n)
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
            "1 si la vista de gpr.indicadores.v1 está al día: leyó hasta el final del tópico y Kafka "
            "le responde (lo mismo que dice la salud gRPC); 0 al arrancar y durante un corte de Kafka.",
            value=1 if self._vista.al_dia else 0,
        )
        yield GaugeMetricFamily(
            "gpr_consulta_series", "Series de indicadores en la vista materializada.", value=len(self._vista),
        )
        descartados = CounterMetricFamily(
            "gpr_consulta_registros_descartados",
            "Registros de gpr.indicadores.v1 que la vista no aceptó, por motivo: sin_clave, protobuf_invalido, "
            "clave_no_coincide (la clave de una serie con el contenido de otra), campo_invalido, valor_no_finito.",
            labels=["motivo"],
        )
        for motivo, n in sorted(self._vista.descartados.items()):
            descartados.add_metric([motivo], n)
        yield descartados


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
