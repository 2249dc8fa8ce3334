"""Lo que el portal publica, calculado a partir de los `Indicador` de la API: control de
divulgación, metas juzgadas en cualquier ventana, resúmenes por agencia, tendencias de 13
meses e informe mensual. Puro: ni gRPC, ni HTTP, ni reloj (el «ahora» llega como argumento).

Control de divulgación: un valor se publica solo si viene de al menos `minimo` casos
(`Indicador.muestras`, que según el indicador cuenta casos del denominador, casos contados,
encuestas u observaciones de etapa; ver `DefinicionIndicador.casos` y docs/portal.md). Lo
que no llega al mínimo se reemplaza por «menos de N casos» y nunca se usa para nada que se
publique: ni un agregado de la agencia, ni un juicio contra la meta, ni una comparación con
el mes anterior, ni la etapa que más demora.

Unidades: cada valor (y cada meta) se escribe en la unidad que trae su serie de la API
(`Indicador.unidad`), no en la que el portal deduciría del catálogo; del catálogo salen los
títulos, las fórmulas y la ficha técnica.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from gpr.v1 import indicadores_pb2 as ipb
from servicios.comun.catalogo import Agencia, Catalogo, Servicio
from servicios.comun.indicadores import INDICADORES, POR_MIL, DefinicionIndicador, Forma, Sentido
from servicios.portal import formato

PUBLICADO, SUPRIMIDO, SIN_DATOS = "publicado", "suprimido", "sin_datos"
CUMPLE, INCUMPLE, NO_JUZGADO = "cumple", "incumple", "no_juzgado"
MESES_TENDENCIA = 13
VENTANA_RECIENTE = "30d"
# Ventanas móviles publicadas como «valores actuales», de la más larga a la más corta.
VENTANAS_ACTUALES = ("30d", "7d", "24h")
VENTANAS_EN_PALABRAS = {"1h": "última hora", "24h": "últimas 24 horas", "7d": "últimos 7 días",
                        "30d": "últimos 30 días"}
# Preferencia al elegir la meta de un indicador que tiene metas en varias ventanas: la más
# larga se parece más a un mes y a 30 días, que es donde el portal las juzga.
_ORDEN_VENTANAS_META = {"30d": 0, "7d": 1, "24h": 2, "1h": 3}
# Indicadores que resumen a la agencia en la portada, en este orden.
KPI_CIUDADANOS = ("solicitudes", "entregas", "cumplimiento_plazo", "satisfaccion_top2", "adopcion_digital",
                  "costo_por_tramite")
# Indicador de la tendencia de cada servicio en la página de la agencia.
INDICADOR_TITULAR = "cumplimiento_plazo"
INDICADORES_SERVICIO = tuple(n for n, d in INDICADORES.items() if not d.por_etapa)


# --- divulgación ---------------------------------------------------------------------


@dataclass(frozen=True)
class Regla:
    """La regla de divulgación: el mínimo de casos para publicar un valor."""

    minimo: int

    def estado(self, indicador: ipb.Indicador | None) -> str:
        if indicador is None or indicador.sin_datos:
            return SIN_DATOS
        return PUBLICADO if indicador.muestras >= self.minimo else SUPRIMIDO

    def publicable(self, indicador: ipb.Indicador | None) -> bool:
        return self.estado(indicador) == PUBLICADO

    @property
    def texto_suprimido(self) -> str:
        return f"menos de {self.minimo} casos"


@dataclass(frozen=True)
class Celda:
    """Un valor tal como se publica: con número solo si pasó la regla."""

    estado: str
    texto: str
    valor: float | None = None
    casos: int | None = None

    @property
    def publicado(self) -> bool:
        return self.estado == PUBLICADO


def celda(indicador: ipb.Indicador | None, regla: Regla) -> Celda:
    estado = regla.estado(indicador)
    if estado == PUBLICADO:
        return Celda(PUBLICADO, formato.valor(indicador.unidad, indicador.valor), indicador.valor,
                     int(indicador.muestras))
    if estado == SUPRIMIDO:
        return Celda(SUPRIMIDO, regla.texto_suprimido)
    return Celda(SIN_DATOS, "sin datos")


# --- metas ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MetaPublica:
    """La meta de un indicador de un servicio, tal como la informa la API en `Indicador.meta`."""

    operador: str
    valor: float
    muestra_minima: int
    descripcion: str
    ventana: str
    # La unidad de la serie que trae la meta (la meta está en la unidad del indicador).
    unidad: str = ""

    def cumple(self, valor: float) -> bool:
        return valor >= self.valor if self.operador == ">=" else valor <= self.valor


def juzgar(meta: MetaPublica, indicador: ipb.Indicador | None, regla: Regla) -> str:
    """Cumple o incumple solo con tantos casos como pidan la meta y la regla de divulgación:
    decir «cumple» con menos casos también revelaría de qué lado de la meta está el valor."""
    if not regla.publicable(indicador) or indicador.muestras < meta.muestra_minima:
        return NO_JUZGADO
    return CUMPLE if meta.cumple(indicador.valor) else INCUMPLE


ESTADOS_EN_PALABRAS = {CUMPLE: "Cumple", INCUMPLE: "No cumple", NO_JUZGADO: "Sin casos suficientes"}


# --- datos de una agencia ------------------------------------------------------------

ClaveSerie = tuple[str, str, str, str]  # (servicio, indicador, ventana, etapa)


class DatosAgencia:
    """Las series de una agencia indexadas por (servicio, indicador, ventana, etapa).

    `version` distingue cada lectura: las páginas armadas con una lectura se pueden guardar
    mientras la caché siga dando esa misma lectura.
    """

    _versiones = itertools.count(1)

    def __init__(self, agencia_id: str, indicadores: Iterable[ipb.Indicador]):
        self.agencia_id = agencia_id
        self.version = next(DatosAgencia._versiones)
        self.series: dict[ClaveSerie, ipb.Indicador] = {}
        ultima = 0
        for i in indicadores:
            if i.agencia_id != agencia_id:
                continue
            self.series[(i.servicio_id, i.indicador, i.ventana, i.etapa_id)] = i
            ultima = max(ultima, i.actualizado_en.seconds)
        self.actualizado_en = datetime.fromtimestamp(ultima, timezone.utc) if ultima else None
        self.metas = _metas(self.series.values())
        # Cada instantánea de un servicio lleva la etapa cuello de botella de su ventana.
        self._cuellos: dict[tuple[str, str], str] = {}
        for (servicio, _, ventana, _), i in self.series.items():
            if i.etapa_cuello_botella:
                self._cuellos.setdefault((servicio, ventana), i.etapa_cuello_botella)

    def get(self, servicio: str, indicador: str, ventana: str, etapa: str = "") -> ipb.Indicador | None:
        return self.series.get((servicio, indicador, ventana, etapa))

    def meta(self, servicio: str, indicador: str, etapa: str = "") -> MetaPublica | None:
        return self.metas.get((servicio, indicador, etapa))

    def etapas(self, servicio: Servicio, ventana: str) -> list[str]:
        """Las etapas del catálogo, en su orden, y después las que solo aparecen en los datos."""
        vistas = sorted({e for (s, n, v, e) in self.series if s == servicio.id and v == ventana and e})
        return list(servicio.etapas) + [e for e in vistas if e not in servicio.etapas]

    def cuello(self, servicio: str, ventana: str) -> str:
        return self._cuellos.get((servicio, ventana), "")


def _metas(series: Iterable[ipb.Indicador]) -> dict[tuple[str, str, str], MetaPublica]:
    elegidas: dict[tuple[str, str, str], MetaPublica] = {}
    for i in series:
        if not i.HasField("meta") or i.ventana not in _ORDEN_VENTANAS_META:
            continue
        clave = (i.servicio_id, i.indicador, i.etapa_id)
        actual = elegidas.get(clave)
        if actual is None or _ORDEN_VENTANAS_META[i.ventana] < _ORDEN_VENTANAS_META[actual.ventana]:
            elegidas[clave] = MetaPublica(i.meta.operador, i.meta.valor, int(i.meta.muestra_minima),
                                          i.meta.descripcion, i.ventana, i.unidad)
    return elegidas


# --- meses ---------------------------------------------------------------------------


def mes_de(ahora: datetime, zona: str) -> str:
    """El mes (AAAA-MM) que corre en `ahora` en la zona horaria de la agencia."""
    return ahora.astimezone(ZoneInfo(zona)).strftime("%Y-%m")


def mes_anterior(mes: str, n: int = 1) -> str:
    anio, numero = int(mes[:4]), int(mes[5:7])
    total = anio * 12 + numero - 1 - n
    return f"{total // 12:04d}-{total % 12 + 1:02d}"


def meses_hasta(mes: str, cuantos: int = MESES_TENDENCIA) -> list[str]:
    """Los `cuantos` meses que terminan en `mes`, del más antiguo al más reciente."""
    return [mes_anterior(mes, n) for n in range(cuantos - 1, -1, -1)]


def ventana_mes(mes: str) -> str:
    return f"mes:{mes}"


# --- estado de un servicio frente a sus metas ----------------------------------------


@dataclass(frozen=True)
class EstadoMetas:
    cumplidas: int = 0
    incumplidas: int = 0
    sin_juzgar: int = 0

    @property
    def total(self) -> int:
        return self.cumplidas + self.incumplidas + self.sin_juzgar

    @property
    def resultado(self) -> str:
        """CUMPLE si cumplió cada meta que se pudo juzgar (al menos una), INCUMPLE si falló
        alguna, NO_JUZGADO si ninguna se pudo juzgar o no tiene metas."""
        if self.incumplidas:
            return INCUMPLE
        return CUMPLE if self.cumplidas else NO_JUZGADO

    @property
    def en_palabras(self) -> str:
        if not self.total:
            return "Sin metas definidas"
        if self.incumplidas:
            return f"No cumple {self.incumplidas} de {self.total} {'meta' if self.total == 1 else 'metas'}"
        if self.cumplidas:
            return ("Cumple su meta" if self.total == 1 else
                    f"Cumple {self.cumplidas} de {self.total} metas" if self.sin_juzgar else "Cumple sus metas")
        return "Sin casos suficientes para juzgar"


def estado_metas(datos: DatosAgencia, servicio: str, ventana: str, regla: Regla) -> EstadoMetas:
    conteo = {CUMPLE: 0, INCUMPLE: 0, NO_JUZGADO: 0}
    for (s, indicador, etapa), meta in sorted(datos.metas.items()):
        if s == servicio:
            conteo[juzgar(meta, datos.get(servicio, indicador, ventana, etapa), regla)] += 1
    return EstadoMetas(conteo[CUMPLE], conteo[INCUMPLE], conteo[NO_JUZGADO])


@dataclass(frozen=True)
class ConteoServicios:
    """Cuántos servicios de una agencia cumplen sus metas en una ventana."""

    cumplen: int
    incumplen: int
    sin_juzgar: int

    @property
    def juzgados(self) -> int:
        return self.cumplen + self.incumplen

    @property
    def en_palabras(self) -> str:
        if not self.juzgados:
            return "Ningún servicio tiene casos suficientes para juzgar sus metas"
        texto = f"{self.cumplen} de {self.juzgados} {'servicio cumple' if self.juzgados == 1 else 'servicios cumplen'} sus metas"
        if self.sin_juzgar:
            texto += f" ({self.sin_juzgar} sin casos suficientes o sin metas)"
        return texto


def contar_servicios(datos: DatosAgencia, servicios: Iterable[Servicio], ventana: str, regla: Regla) -> ConteoServicios:
    resultados = [estado_metas(datos, s.id, ventana, regla).resultado for s in servicios]
    return ConteoServicios(resultados.count(CUMPLE), resultados.count(INCUMPLE), resultados.count(NO_JUZGADO))


# --- agregados de la agencia ---------------------------------------------------------


@dataclass(frozen=True)
class Agregado:
    definicion: DefinicionIndicador
    celda: Celda
    # Servicios con valor que quedó fuera por tener menos casos que el mínimo.
    excluidos: int


def agregado(datos: DatosAgencia, servicios: Iterable[Servicio], nombre: str, ventana: str, regla: Regla) -> Agregado:
    """El indicador de toda la agencia sobre los servicios cuyo valor se publica.

    Los conteos se suman; los cocientes son Σ numerador / Σ denominador (`numerador` y
    `muestras` de cada serie), que es el mismo cociente sobre todos esos casos (× 1000 en los
    `por_mil`). Un servicio con menos casos que el mínimo queda fuera: si entrara, restar los
    servicios publicados del total de la agencia revelaría su valor (divulgación por
    diferencia). Series de unidades distintas (p. ej. importes en dos monedas) no se suman.
    """
    definicion = INDICADORES[nombre]
    if definicion.forma is Forma.SEGUNDOS:
        raise ValueError(f"{nombre}: un percentil no se agrega sumando series")
    numerador = denominador = 0.0
    casos = excluidos = 0
    unidades = set()
    for servicio in servicios:
        i = datos.get(servicio.id, nombre, ventana)
        estado = regla.estado(i)
        if estado == SUPRIMIDO:
            excluidos += 1
        if estado != PUBLICADO:
            continue
        unidades.add(i.unidad)
        casos += int(i.muestras)
        if definicion.denominador:
            numerador += i.numerador
            denominador += i.muestras
        else:
            numerador += i.valor
    if len(unidades) > 1:
        return Agregado(definicion, Celda(SIN_DATOS, "no se suman unidades distintas"), excluidos)
    if not casos:
        estado = SUPRIMIDO if excluidos else SIN_DATOS
        return Agregado(definicion, Celda(estado, regla.texto_suprimido if excluidos else "sin datos"), excluidos)
    (unidad,) = unidades
    valor = numerador / denominador if definicion.denominador else numerador
    if unidad == POR_MIL:
        valor *= 1000.0
    return Agregado(definicion, Celda(PUBLICADO, formato.valor(unidad, valor), valor, casos), excluidos)


# --- vistas de las páginas -----------------------------------------------------------


@dataclass(frozen=True)
class Punto:
    mes: str
    celda: Celda
    hasta: datetime | None = None
    # Juicio del mes contra la meta (CUMPLE, INCUMPLE, NO_JUZGADO), o "" sin meta.
    juicio: str = ""


@dataclass(frozen=True)
class Tendencia:
    definicion: DefinicionIndicador
    puntos: list[Punto]
    meta: MetaPublica | None
    texto_meta: str
    # La unidad de las series del gráfico (de la API): da la escala del eje.
    unidad: str
    etapa: str = ""

    @property
    def publicados(self) -> list[Punto]:
        return [p for p in self.puntos if p.celda.publicado]

    @property
    def suprimidos(self) -> int:
        return sum(1 for p in self.puntos if p.celda.estado == SUPRIMIDO)

    def texto_alternativo(self, regla: Regla) -> str:
        """Descripción del gráfico solo con valores publicados."""
        primero, ultimo = formato.mes_corto(self.puntos[0].mes), formato.mes_corto(self.puntos[-1].mes)
        partes = [f"{self.definicion.titulo} por mes, de {primero} a {ultimo}."]
        publicados = self.publicados
        if publicados:
            bajo = min(publicados, key=lambda p: p.celda.valor)
            alto = max(publicados, key=lambda p: p.celda.valor)
            final = publicados[-1]
            partes.append(f"Último valor publicado: {final.celda.texto} ({formato.mes_corto(final.mes)}).")
            if len(publicados) > 1:
                partes.append(f"Mínimo {bajo.celda.texto} ({formato.mes_corto(bajo.mes)}), "
                              f"máximo {alto.celda.texto} ({formato.mes_corto(alto.mes)}).")
        else:
            partes.append("Ningún mes tiene un valor publicado.")
        if self.meta is not None:
            partes.append(f"Meta: {self.texto_meta}.")
        if self.suprimidos:
            partes.append(f"{self.suprimidos} {'mes tiene' if self.suprimidos == 1 else 'meses tienen'} "
                          f"{regla.texto_suprimido} y no se {'muestra' if self.suprimidos == 1 else 'muestran'}.")
        return " ".join(partes)


def tendencia(datos: DatosAgencia, servicio: str, nombre: str, meses: list[str], regla: Regla,
              etapa: str = "") -> Tendencia:
    definicion = INDICADORES[nombre]
    meta = datos.meta(servicio, nombre, etapa)
    puntos, unidades = [], []
    for mes in meses:
        i = datos.get(servicio, nombre, ventana_mes(mes), etapa)
        hasta = datetime.fromtimestamp(i.hasta.seconds, timezone.utc) if i is not None and i.hasta.seconds else None
        puntos.append(Punto(mes, celda(i, regla), hasta, juzgar(meta, i, regla) if meta else ""))
        if i is not None and i.unidad:
            unidades.append(i.unidad)
    # La del mes más reciente que la informa; sin meses, la de la serie de la meta.
    unidad = unidades[-1] if unidades else (meta.unidad if meta else "")
    texto_meta = formato.meta(meta.operador, meta.valor, meta.unidad) if meta else ""
    return Tendencia(definicion, puntos, meta, texto_meta, unidad, etapa)


@dataclass(frozen=True)
class FilaIndicador:
    """Un indicador de un servicio en una ventana, con su meta y el juicio."""

    definicion: DefinicionIndicador
    celda: Celda
    meta: MetaPublica | None
    texto_meta: str
    estado: str  # CUMPLE, INCUMPLE, NO_JUZGADO, o "" sin meta
    ventana: str
    etapa: str = ""

    @property
    def estado_en_palabras(self) -> str:
        return ESTADOS_EN_PALABRAS.get(self.estado, "Sin meta")


def fila(datos: DatosAgencia, servicio: str, nombre: str, ventana: str, regla: Regla,
         etapa: str = "", meta: MetaPublica | None = None) -> FilaIndicador:
    definicion = INDICADORES[nombre]
    i = datos.get(servicio, nombre, ventana, etapa)
    meta = meta if meta is not None else datos.meta(servicio, nombre, etapa)
    texto_meta = formato.meta(meta.operador, meta.valor, meta.unidad) if meta else ""
    estado = juzgar(meta, i, regla) if meta else ""
    return FilaIndicador(definicion, celda(i, regla), meta, texto_meta, estado, ventana, etapa)


def filas_metas(datos: DatosAgencia, servicio: str, regla: Regla) -> list[FilaIndicador]:
    """Cada meta del servicio contra el valor actual de su propia ventana."""
    return [fila(datos, servicio, indicador, meta.ventana, regla, etapa, meta)
            for (s, indicador, etapa), meta in sorted(datos.metas.items()) if s == servicio]


@dataclass(frozen=True)
class FilaEtapa:
    etapa: str
    nombre: str
    mediana: Celda
    p90: Celda


def nombre_etapa(etapa: str) -> str:
    return etapa.replace("-", " ").replace("_", " ")


def filas_etapas(datos: DatosAgencia, servicio: Servicio, ventana: str, regla: Regla) -> list[FilaEtapa]:
    return [FilaEtapa(e, nombre_etapa(e),
                      celda(datos.get(servicio.id, "tiempo_etapa_p50", ventana, e), regla),
                      celda(datos.get(servicio.id, "tiempo_etapa_p90", ventana, e), regla))
            for e in datos.etapas(servicio, ventana)]


def cuello_en_palabras(datos: DatosAgencia, servicio: str, ventana: str, regla: Regla) -> str:
    """«La etapa que más demora es emisión: mediana 2,1 días», solo si la mediana de esa etapa
    se publica (la etapa la elige la API entre todas, también las de pocos casos)."""
    etapa = datos.cuello(servicio, ventana)
    if not etapa:
        return "No hay datos de etapas para señalar la que más demora."
    mediana = datos.get(servicio, "tiempo_etapa_p50", ventana, etapa)
    if not regla.publicable(mediana):
        return (f"No se señala la etapa que más demora: la medición de esa etapa tiene "
                f"{regla.texto_suprimido}.")
    return f"La etapa que más demora es {nombre_etapa(etapa)}: mediana {formato.valor(mediana.unidad, mediana.valor)}."


# --- informe mensual -----------------------------------------------------------------

MEJORO, EMPEORO, IGUAL, SUBIO, BAJO, NO_COMPARABLE = "mejoro", "empeoro", "igual", "subio", "bajo", "no_comparable"
CAMBIOS_EN_PALABRAS = {MEJORO: "Mejoró", EMPEORO: "Empeoró", IGUAL: "Sin cambio", SUBIO: "Aumentó",
                       BAJO: "Disminuyó", NO_COMPARABLE: "No comparable"}


def cambio(definicion: DefinicionIndicador, actual: Celda, anterior: Celda) -> str:
    """Cómo cambió el indicador respecto del mes anterior; solo entre valores publicados."""
    if not (actual.publicado and anterior.publicado):
        return NO_COMPARABLE
    if actual.valor == anterior.valor:
        return IGUAL
    subio = actual.valor > anterior.valor
    if definicion.sentido is None:
        return SUBIO if subio else BAJO
    return MEJORO if subio == (definicion.sentido is Sentido.MAYOR) else EMPEORO


@dataclass(frozen=True)
class FilaInforme:
    actual: FilaIndicador
    anterior: Celda
    cambio: str

    @property
    def cambio_en_palabras(self) -> str:
        return CAMBIOS_EN_PALABRAS[self.cambio]


@dataclass
class ServicioInforme:
    servicio: Servicio
    filas: list[FilaInforme]
    estado: EstadoMetas
    cuello: str
    mejoras: list[str] = field(default_factory=list)
    empeoramientos: list[str] = field(default_factory=list)


def informe_servicio(datos: DatosAgencia, servicio: Servicio, mes: str, regla: Regla) -> ServicioInforme:
    ventana, previa = ventana_mes(mes), ventana_mes(mes_anterior(mes))
    filas = []
    for nombre in INDICADORES_SERVICIO:
        actual = fila(datos, servicio.id, nombre, ventana, regla)
        anterior = celda(datos.get(servicio.id, nombre, previa), regla)
        filas.append(FilaInforme(actual, anterior, cambio(actual.definicion, actual.celda, anterior)))
    informe = ServicioInforme(servicio, filas, estado_metas(datos, servicio.id, ventana, regla),
                              cuello_en_palabras(datos, servicio.id, ventana, regla))
    informe.mejoras = [f.actual.definicion.titulo for f in filas if f.cambio == MEJORO]
    informe.empeoramientos = [f.actual.definicion.titulo for f in filas if f.cambio == EMPEORO]
    return informe


def agencia_y_servicio(catalogo: Catalogo, agencia_id: str, servicio_id: str | None = None
                       ) -> tuple[Agencia | None, Servicio | None]:
    agencia = catalogo.agencias.get(agencia_id)
    if agencia is None or servicio_id is None:
        return agencia, None
    return agencia, catalogo.servicio(agencia_id, servicio_id)
