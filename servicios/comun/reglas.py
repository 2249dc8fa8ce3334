"""Reglas de alerta de Prometheus generadas desde el catálogo de metas (puro: sin E/S).

`gpr metas reglas` escribe el resultado en `despliegue/prometheus/reglas/metas.yml`, y una
prueba falla si el archivo versionado difiere de lo que genera este módulo.

Por cada meta:

* **Umbral** (`MetaIncumplida`): el valor de la serie en la ventana de la meta está del lado
  malo del objetivo durante `for:` (más largo cuanto más larga la ventana), con al menos
  `muestra_minima` muestras. Se compara el valor con el objetivo en la propia regla —y no con
  `gpr_meta_cumplimiento`— para que la regla se baste a sí misma y se pueda probar con
  `promtool test rules`, muestra mínima incluida.
* **Tasa de quema** (solo indicadores de proporción): alertas de varias ventanas y varias
  tasas del libro de SRE de Google para un SLO de 30 días —página si se quema 14,4× el
  presupuesto en 1 h y en 5 min, o 6× en 6 h y 30 min; ticket si 3× en 1 d y 2 h, o 1× en 3 d y
  6 h— con las ventanas **escaladas** a la ventana de la meta: ventana × (ventana de la meta /
  30 d). Una tasa de quema es «cuántas veces más rápido de lo sostenible se gasta el margen
  de error»; escalar las ventanas conserva lo que significa cada condición (14,4× durante
  1/720 de la ventana gasta el 2 % del presupuesto de la ventana, sea esta de 30 d o de 24 h).
  Con 24 h: 1 h → 2 min, 6 h → 12 min, 1 d → 48 min, 3 d → 2 h 24 min (y sus ventanas cortas).
  Ninguna ventana baja de `VENTANA_MINIMA_S` (1 min: cuatro raspados de 15 s, lo mínimo para
  que `rate()` sea estable).

  La proporción mala sale de los contadores acumulados (`gpr_indicador_buenos_total`,
  `gpr_indicador_casos_total`): para los indicadores que mejoran al subir (`>=`), malos =
  casos − buenos y el presupuesto es 1 − valor; para los que mejoran al bajar (`<=`, p. ej.
  `tasa_error`), el numerador ya cuenta los casos malos (los que tienen error) y el
  presupuesto es el propio valor de la meta. Una condición que exigiría una proporción mala
  mayor que 1 (factor × presupuesto ≥ 1, p. ej. 14,4× con una meta de 90 %) nunca podría
  cumplirse y no se genera; una meta sin presupuesto (100 %, o 0 % en las que mejoran al bajar)
  no tiene tasa de quema y solo alerta por umbral.
* La **muestra mínima** vale también para la quema: no se alerta si la serie de la ventana de
  la meta tiene menos muestras (la meta está en `sin_datos`).
* Cada alerta se une (`group_left`) a la etapa cuello de botella del servicio en la ventana
  de la meta (`cuello_botella`; `sin_datos` si el servicio aún no tiene datos de etapas).

Además: `AgenciaSinEventos` por agencia y equipo (tiempo de evento del último evento aceptado
más viejo que `SIN_EVENTOS_S`), `EventosRechazados` por agencia y equipo (proporción de sus eventos
que van al tópico de rechazados), `ProcesadorRetrasado` (registros sin confirmar por el grupo del
procesador) y la vigilancia de la propia cadena de alertas (`reglas_vigilancia`).

Los enlaces `runbook_url` son la base configurable (GPR_RUNBOOKS_URL) más el archivo de
despliegue/runbooks/ y, si hace falta, la sección (ancla en minúsculas, como la arma GitHub).

Una meta de `servicio: "*"` cubre los servicios de la agencia que no tienen meta propia para
el mismo indicador y ventana (y una meta sin etapa, las etapas sin meta propia): la misma
precedencia que aplica el procesador (`IndiceMetas.buscar`). El orden de salida es
determinista (agencia, servicio, indicador, etapa, ventana), no el de los archivos.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import yaml

from servicios.comun.catalogo import Catalogo
from servicios.comun.indicadores import (INDICADORES, INDICE, POR_MIL, PROPORCION, SEGUNDOS, VENTANAS_MOVILES, Forma,
                                         es_moneda, unidad_de)
from servicios.comun.metas import TODOS, Meta

# Base de los enlaces `runbook_url` (GPR_RUNBOOKS_URL en `gpr metas reglas`): la dirección donde
# se publican los archivos de despliegue/runbooks/. Por omisión, la de `gpr runbooks`, que los
# sirve en la pila local (`make run`) y en docker-compose.yml.
RUNBOOKS_URL = "http://localhost:8099/runbooks/"
VENTANA_SRE_S = 30 * 86400
VENTANA_MINIMA_S = 60
# Espera (`for:`) de las alertas de umbral según la ventana de la meta: una ventana larga
# cambia despacio, así que un cruce breve del umbral en ella es más significativo.
ESPERA_UMBRAL = {"1h": "5m", "24h": "15m", "7d": "30m", "30d": "1h"}
# Una hora sin eventos nuevos (tiempo de evento). Una agencia que no atiende de noche debe
# silenciar la alerta fuera de su horario en Alertmanager, no alargar este plazo para todas.
SIN_EVENTOS_S = 3600
SIN_EVENTOS_ESPERA = "5m"
# Más del 5 % de los eventos de una agencia rechazados y al menos 10 en la ventana: con poco
# tráfico, un par de eventos malos no es un patrón; una integración rota rechaza mucho más.
RECHAZOS_VENTANA = "10m"
RECHAZOS_PROPORCION = 0.05
RECHAZOS_MINIMO = 10
# Etiqueta `agencia` de los rechazados cuya agencia no está en el catálogo (la consulta acota así
# los valores de la etiqueta).
AGENCIA_DESCONOCIDA = "desconocida"
# Retraso sostenido: un trabajador que se reinicia y se pone al día no llega a avisar.
RETRASO_MAXIMO = 10_000
RETRASO_ESPERA = "10m"
EQUIPO_PLATAFORMA = "plataforma"

PAGINA, TICKET = "pagina", "ticket"
CUELLO = "gpr:cuello_botella:info"
_POR_SERIE = "agencia, servicio, indicador"
_ETIQUETAS_SERIE = "agencia, servicio, indicador, ventana, etapa"


@dataclass(frozen=True)
class Condicion:
    """Quemar más de `factor` veces el presupuesto en la ventana larga y en la corta."""

    aviso: str
    factor: float
    larga_s: int
    corta_s: int


CONDICIONES_SRE = (
    Condicion(PAGINA, 14.4, 3600, 300),
    Condicion(PAGINA, 6.0, 6 * 3600, 1800),
    Condicion(TICKET, 3.0, 86400, 7200),
    Condicion(TICKET, 1.0, 3 * 86400, 6 * 3600),
)


def escalar(ventana_s: int) -> list[Condicion]:
    """Las condiciones del libro de SRE con sus ventanas escaladas a una meta de `ventana_s`."""
    escala = ventana_s / VENTANA_SRE_S

    def ventana(segundos: int) -> int:
        return max(VENTANA_MINIMA_S, round(segundos * escala))

    return [Condicion(c.aviso, c.factor, ventana(c.larga_s), ventana(c.corta_s)) for c in CONDICIONES_SRE]


def presupuesto(meta: Meta) -> float:
    """Proporción de casos malos que la meta tolera (el margen de error)."""
    return round(1.0 - meta.valor if meta.operador == ">=" else meta.valor, 12)


def condiciones(meta: Meta) -> list[Condicion]:
    """Condiciones de quema posibles de una meta de proporción (vacío si no tiene presupuesto)."""
    margen = presupuesto(meta)
    if INDICADORES[meta.indicador].forma is not Forma.PROPORCION or margen <= 0:
        return []
    posibles = [c for c in escalar(VENTANAS_MOVILES[meta.ventana]) if c.factor * margen < 1]
    # Con ventanas cortas (metas de 1h) dos condiciones pueden quedar con las mismas ventanas:
    # la de menor factor ya incluye a la otra.
    return [c for c in posibles
            if not any(o.aviso == c.aviso and (o.larga_s, o.corta_s) == (c.larga_s, c.corta_s) and o.factor < c.factor
                       for o in posibles)]


def duracion(segundos: int) -> str:
    """Duración de PromQL: 8640 → '2h24m'."""
    partes = []
    for unidad, tamano in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        cuantos, segundos = divmod(segundos, tamano)
        if cuantos:
            partes.append(f"{cuantos}{unidad}")
    return "".join(partes) or "0s"


def _numero(valor: float) -> str:
    return f"{valor:.12g}"


def _cadena(texto: str) -> str:
    return '"' + texto.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _alternativas(valores: Iterable[str]) -> str:
    return "|".join(re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", v) for v in sorted(valores))


@dataclass(frozen=True)
class Cobertura:
    """Las series que juzga una meta, como matchers de PromQL."""

    agencia: str
    indicador: str
    ventana: str
    servicio: str = ""
    etapa: str = ""
    sin_servicios: frozenset[str] = frozenset()
    sin_etapas: frozenset[str] = frozenset()
    # (servicio, etapa) con meta propia que no se pueden excluir con un matcher por etiqueta.
    sin_pares: frozenset[tuple[str, str]] = frozenset()

    def cubre(self, servicio: str, etapa: str) -> bool:
        return ((not self.servicio or servicio == self.servicio)
                and (not self.etapa or etapa == self.etapa)
                and servicio not in self.sin_servicios
                and etapa not in self.sin_etapas
                and (servicio, etapa) not in self.sin_pares)

    def selector(self, con_ventana: bool = True) -> str:
        partes = [f"agencia={_cadena(self.agencia)}"]
        if self.servicio:
            partes.append(f"servicio={_cadena(self.servicio)}")
        if self.sin_servicios:
            partes.append(f"servicio!~{_cadena(_alternativas(self.sin_servicios))}")
        partes.append(f"indicador={_cadena(self.indicador)}")
        if con_ventana:
            partes.append(f"ventana={_cadena(self.ventana)}")
            if self.etapa:
                partes.append(f"etapa={_cadena(self.etapa)}")
            if self.sin_etapas:
                partes.append(f"etapa!~{_cadena(_alternativas(self.sin_etapas))}")
        return "{" + ",".join(partes) + "}"

    def excluir_pares(self, metrica: str) -> str:
        """`unless` de las series (servicio, etapa) con meta propia; vacío si no hay."""
        return "".join(
            f"\n  unless on ({_ETIQUETAS_SERIE}) {metrica}"
            f"{{agencia={_cadena(self.agencia)},servicio={_cadena(s)},indicador={_cadena(self.indicador)},"
            f"ventana={_cadena(self.ventana)},etapa={_cadena(e)}}}"
            for s, e in sorted(self.sin_pares))


def cobertura(meta: Meta, metas: Iterable[Meta]) -> Cobertura:
    """Series de la meta según la precedencia de `IndiceMetas.buscar`: servicio concreto antes
    que `*`, y dentro de cada uno, etapa concreta antes que sin etapa."""
    sin_servicios, sin_etapas, sin_pares = set(), set(), set()
    for otra in metas:
        if otra is meta or (otra.agencia, otra.indicador, otra.ventana) != (meta.agencia, meta.indicador, meta.ventana):
            continue
        propia = otra.servicio != TODOS
        if meta.servicio == TODOS and not meta.etapa:
            if propia and not otra.etapa:
                sin_servicios.add(otra.servicio)
            elif not propia and otra.etapa:
                sin_etapas.add(otra.etapa)
            elif propia:
                sin_pares.add((otra.servicio, otra.etapa))
        elif meta.servicio == TODOS:
            if propia and otra.etapa in ("", meta.etapa):
                sin_servicios.add(otra.servicio)
        elif not meta.etapa and otra.servicio == meta.servicio and otra.etapa:
            sin_etapas.add(otra.etapa)
    sin_pares = {(s, e) for s, e in sin_pares if s not in sin_servicios and e not in sin_etapas}
    return Cobertura(meta.agencia, meta.indicador, meta.ventana,
                     "" if meta.servicio == TODOS else meta.servicio, meta.etapa,
                     frozenset(sin_servicios), frozenset(sin_etapas), frozenset(sin_pares))


# --- Textos ------------------------------------------------------------------------------------

def _duracion_humana(segundos: float) -> str:
    """Como `humanizeDuration` de Prometheus, para que objetivo y valor se lean igual."""
    if segundos < 60:
        return f"{segundos:.4g}s"
    total = int(round(segundos))
    dias, resto = divmod(total, 86400)
    horas, resto = divmod(resto, 3600)
    minutos, segs = divmod(resto, 60)
    if dias:
        return f"{dias}d {horas}h {minutos}m {segs}s"
    if horas:
        return f"{horas}h {minutos}m {segs}s"
    return f"{minutos}m {segs}s"


def _formato(meta: Meta, moneda: str = "") -> tuple[str, str]:
    """(plantilla del valor de la alerta, objetivo escrito igual) según la unidad del indicador
    en el catálogo, la misma que el procesador pone en `Indicador.unidad` (`moneda`: la de la
    agencia, para los importes)."""
    unidad = unidad_de(INDICADORES[meta.indicador], moneda)
    if unidad == PROPORCION:
        return "{{ $value | humanizePercentage }}", f"{meta.valor * 100:.4g}%"
    if unidad == SEGUNDOS:
        return "{{ $value | humanizeDuration }}", _duracion_humana(meta.valor)
    if unidad == INDICE:
        return '{{ $value | printf "%.2f" }}', f"{meta.valor:.2f}"
    if unidad == POR_MIL:
        return '{{ $value | printf "%.2f" }} por mil', f"{meta.valor:.2f} por mil"
    if es_moneda(unidad):
        return f'{{{{ $value | printf "%.2f" }}}} {unidad}', f"{meta.valor:.2f} {unidad}"
    return "{{ $value | humanize }}", _numero(meta.valor)


def _consulta(metrica: str, filtro: str, ventana: str = "") -> str:
    """Plantilla que consulta una serie de la alerta (muestras, valor) al expandir la anotación."""
    if ventana:
        selector = ("{agencia=%q,servicio=%q,indicador=%q,ventana=" + _cadena(ventana).replace("%", "%%") + "}")
        argumentos = "$labels.agencia $labels.servicio $labels.indicador"
    else:
        selector = "{agencia=%q,servicio=%q,indicador=%q,ventana=%q,etapa=%q}"
        argumentos = "$labels.agencia $labels.servicio $labels.indicador $labels.ventana $labels.etapa"
    consulta = f'max({metrica}{selector})'
    return (f'{{{{ with printf `{consulta}` {argumentos} | query }}}}{{{{ . | first | value | {filtro} }}}}'
            f'{{{{ else }}}}sin dato{{{{ end }}}}')


def _muestras(ventana: str = "") -> str:
    return _consulta("gpr_indicador_muestras", 'printf "%.0f"', ventana)


def nombre_meta(meta: Meta) -> str:
    """Identidad de la meta en las alertas (etiqueta `meta`): dos metas nunca dan la misma regla."""
    return "/".join([meta.agencia, meta.servicio, meta.indicador] + ([meta.etapa] if meta.etapa else [])
                    + [meta.ventana])


def _runbook(archivo: str, ancla: str = "") -> str:
    """Enlace relativo a la carpeta de runbooks; `generar` le antepone la base configurada."""
    return archivo + (f"#{ancla}" if ancla else "")


def base_runbooks(url: str) -> str:
    """La base de GPR_RUNBOOKS_URL validada y terminada en '/'."""
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url or ""):
        raise ValueError(f"GPR_RUNBOOKS_URL={url!r} debe ser una URL http:// o https:// (p. ej. {RUNBOOKS_URL})")
    return url if url.endswith("/") else url + "/"


# --- Reglas ------------------------------------------------------------------------------------

def _unir_cuello(expresion: str, ventana: str) -> str:
    return (f"(\n{_sangrar(expresion)}\n)\n* on (agencia, servicio) group_left (cuello_botella)\n"
            f"  {CUELLO}{{ventana={_cadena(ventana)}}}")


def _sangrar(texto: str, n: int = 2) -> str:
    return "\n".join(" " * n + linea if linea else linea for linea in texto.splitlines())


def _muestra_minima(meta: Meta, cob: Cobertura, por: str) -> str:
    if meta.muestra_minima <= 0:
        return ""
    return (f"\nand on ({por})\nmax by ({por}) (gpr_indicador_muestras{cob.selector()}) "
            f">= {meta.muestra_minima}")


def regla_umbral(meta: Meta, cob: Cobertura, moneda: str = "") -> dict:
    malo = "<" if meta.operador == ">=" else ">"
    valor, objetivo = _formato(meta, moneda)
    expresion = (f"max by ({_ETIQUETAS_SERIE}) (gpr_indicador_valor{cob.selector()}) {malo} {_numero(meta.valor)}"
                 + _muestra_minima(meta, cob, _ETIQUETAS_SERIE) + cob.excluir_pares("gpr_indicador_valor"))
    return {
        "alert": "MetaIncumplida",
        "expr": _unir_cuello(expresion, meta.ventana) + "\n",
        "for": ESPERA_UMBRAL[meta.ventana],
        "labels": {"severidad": meta.severidad, "equipo": meta.equipo, "meta": nombre_meta(meta)},
        "annotations": {
            "summary": f"{{{{ $labels.agencia }}}}/{{{{ $labels.servicio }}}}: {meta.indicador} "
                       f"({meta.ventana}) no cumple su meta",
            "description": (
                f"{{{{ $labels.agencia }}}}/{{{{ $labels.servicio }}}}: {meta.indicador}"
                f"{{{{ with $labels.etapa }}}} (etapa {{{{ . }}}}){{{{ end }}}} vale {valor} "
                f"en {meta.ventana} y la meta es {meta.operador} {objetivo}, con {_muestras()} muestras "
                f"(mínimo {meta.muestra_minima}). Etapa cuello de botella: {{{{ $labels.cuello_botella }}}}. "
                f"Meta: {meta.descripcion}"),
            # Por separado, para las plantillas de notificación y los sistemas de tickets.
            "valor": valor,
            "objetivo": f"{meta.operador} {objetivo}",
            "runbook_url": _runbook("meta-incumplida.md", meta.indicador),
        },
    }


def _malos(ventana_s: int) -> str:
    return f"gpr:indicador_malos:ratio_rate{duracion(ventana_s)}"


def regla_quema(meta: Meta, cob: Cobertura, aviso: str, lista: list[Condicion]) -> dict:
    margen = _numero(presupuesto(meta))
    selector = cob.selector(con_ventana=False)
    ramas = []
    for c in lista:
        larga = f"{_malos(c.larga_s)}{selector} / {margen} > {_numero(c.factor)}"
        if c.corta_s == c.larga_s:
            ramas.append(larga)
        else:
            ramas.append(f"{larga}\nand\n{_malos(c.corta_s)}{selector} / {margen} > {_numero(c.factor)}")
    # `and` se aplica antes que `or`: con varias ramas hacen falta los paréntesis.
    expresion = ramas[0] if len(ramas) == 1 else "\nor\n".join(f"(\n{_sangrar(r)}\n)" for r in ramas)
    if meta.muestra_minima > 0:
        if len(ramas) > 1:
            expresion = f"(\n{_sangrar(expresion)}\n)"
        expresion += _muestra_minima(meta, cob, _POR_SERIE)
    _, objetivo = _formato(meta)
    ventanas = "; o ".join(
        f"más de {_numero(c.factor)}× en {duracion(c.larga_s)}"
        + ("" if c.corta_s == c.larga_s else f" y en {duracion(c.corta_s)}") for c in lista)
    rapida = aviso == PAGINA
    return {
        "alert": "MetaQuemaRapida" if rapida else "MetaQuemaLenta",
        "expr": _unir_cuello(expresion, meta.ventana) + "\n",
        "labels": {"severidad": meta.severidad if rapida else "advertencia", "equipo": meta.equipo,
                   "meta": nombre_meta(meta), "ventana": meta.ventana},
        "annotations": {
            "summary": f"{{{{ $labels.agencia }}}}/{{{{ $labels.servicio }}}}: {meta.indicador} gasta su margen "
                       f"de error {{{{ $value | printf \"%.1f\" }}}} veces más rápido de lo sostenible",
            "description": (
                f"{{{{ $labels.agencia }}}}/{{{{ $labels.servicio }}}}: la meta {meta.indicador} {meta.operador} "
                f"{objetivo} ({meta.ventana}) tolera {float(margen) * 100:.4g}% de casos malos y se está "
                f"gastando ese margen {{{{ $value | printf \"%.1f\" }}}} veces más rápido de lo que lo agotaría "
                f"justo al final de la ventana (condición: {ventanas}). Valor en {meta.ventana}: "
                f"{_consulta('gpr_indicador_valor', 'humanizePercentage', meta.ventana)} con "
                f"{_muestras(meta.ventana)} muestras (mínimo {meta.muestra_minima}). Etapa cuello de botella: "
                f"{{{{ $labels.cuello_botella }}}}. Meta: {meta.descripcion}"),
            "valor": _consulta('gpr_indicador_valor', 'humanizePercentage', meta.ventana),
            "objetivo": f"{meta.operador} {objetivo}",
            "runbook_url": _runbook("meta-quema-rapida.md" if rapida else "meta-quema-lenta.md"),
        },
    }


PRESUPUESTO = "gpr:presupuesto_restante:ratio"


def regla_presupuesto(meta: Meta, cob: Cobertura) -> dict:
    """Presupuesto de error que le queda a una meta de proporción en su ventana (1: intacto; 0:
    gastado; negativo: la meta ya se incumple), de los mismos contadores que la tasa de quema:
    1 − (proporción de casos malos en la ventana de la meta) / margen. Para Grafana."""
    selector = cob.selector(con_ventana=False)
    ventana = duracion(VENTANAS_MOVILES[meta.ventana])
    razon = (f"sum by ({_POR_SERIE}) (increase(gpr_indicador_buenos_total{selector}[{ventana}]))\n"
             f"  /\n  sum by ({_POR_SERIE}) (increase(gpr_indicador_casos_total{selector}[{ventana}]))")
    malos = f"(1 - (\n  {razon}\n))" if meta.operador == ">=" else f"(\n  {razon}\n)"
    return {
        "record": PRESUPUESTO,
        "expr": f"1 - {malos} / {_numero(presupuesto(meta))}\n",
        "labels": {"meta": nombre_meta(meta), "ventana": meta.ventana},
    }


def regla_cuello() -> dict:
    return {
        "record": CUELLO,
        "expr": (
            "max by (agencia, servicio, ventana, cuello_botella) (\n"
            "  topk by (agencia, servicio, ventana) (1,\n"
            '    label_replace(gpr_servicio_cuello_botella_info, "cuello_botella", "$1", "etapa", "(.+)")\n'
            "  )\n"
            ")\n"
            "or on (agencia, servicio, ventana)\n"
            'label_replace(max by (agencia, servicio, ventana) (gpr_indicador_muestras) * 0 + 1, '
            '"cuello_botella", "sin_datos", "", "")\n'),
    }


def reglas_malos(ventanas: Iterable[int], mayores: set[str], menores: set[str]) -> list[dict]:
    """Proporción de casos malos por serie en cada ventana de quema (reglas de registro)."""

    def razon(numerador: str, indicadores: set[str], ventana: str) -> str:
        sel = f"{{indicador=~{_cadena(_alternativas(indicadores))}}}"
        return (f"sum by ({_POR_SERIE}) (rate({numerador}{sel}[{ventana}]))\n/\n"
                f"sum by ({_POR_SERIE}) (rate(gpr_indicador_casos_total{sel}[{ventana}]))")

    reglas = []
    for segundos in sorted(set(ventanas)):
        v = duracion(segundos)
        partes = []
        if mayores:
            partes.append(f"1 - (\n{_sangrar(razon('gpr_indicador_buenos_total', mayores, v))}\n)")
        if menores:
            partes.append(razon("gpr_indicador_buenos_total", menores, v))
        reglas.append({"record": _malos(segundos), "expr": "\nor\n".join(partes) + "\n"})
    return reglas


def _equipos_de_rechazos(metas: list[Meta], catalogo: Catalogo) -> list[tuple[str, str]]:
    """(agencia, equipo) de las alertas de rechazos: cada agencia avisa a los equipos de sus metas
    (o a plataforma si no tiene); lo de agencias que no están en el catálogo, a plataforma."""
    pares = [(agencia, equipo) for agencia in sorted(catalogo.agencias)
             for equipo in sorted({m.equipo for m in metas if m.agencia == agencia}) or [EQUIPO_PLATAFORMA]]
    return pares + [(AGENCIA_DESCONOCIDA, EQUIPO_PLATAFORMA)]


def regla_rechazos(agencia: str, equipo: str) -> dict:
    """Proporción de eventos de la agencia que van al tópico de rechazados.

    Rechazados: cada réplica de la consulta cuenta el tópico entero, así que se suma por réplica
    (sobre fuente y motivo) y se toma la mayor. Aceptados: cada trabajador del procesador cuenta
    su parte, así que se suman. Una agencia sin aceptados (p. ej. `desconocida`) tiene proporción 1.
    """
    selector = f"{{agencia={_cadena(agencia)}}}"
    rechazados = (f"max by (agencia) (sum without (fuente, motivo) "
                  f"(rate(gpr_eventos_rechazados_total{selector}[{RECHAZOS_VENTANA}])))")
    aceptados = (f"(sum by (agencia) (rate(gpr_procesador_eventos_aceptados_total{selector}[{RECHAZOS_VENTANA}]))"
                 f" or label_replace(vector(0), \"agencia\", {_cadena(agencia)}, \"\", \"\"))")
    motivos = ("{{ range $i, $m := printf `sort_desc(topk(3, max by (motivo) (sum without (fuente) "
               f"(increase(gpr_eventos_rechazados_total{{agencia=%q}}[{RECHAZOS_VENTANA}])))))` $labels.agencia "
               "| query }}{{ if $i }}, {{ end }}{{ $m.Labels.motivo }} ({{ $m.Value | printf \"%.0f\" }}){{ end }}")
    return {
        "alert": "EventosRechazados",
        "expr": (
            f"(\n  {rechazados}\n  /\n  (\n    {rechazados}\n    + {aceptados}\n  )\n)"
            f" > {_numero(RECHAZOS_PROPORCION)}\n"
            f"and\nmax by (agencia) (sum without (fuente, motivo) "
            f"(increase(gpr_eventos_rechazados_total{selector}[{RECHAZOS_VENTANA}]))) >= {RECHAZOS_MINIMO}\n"),
        "for": RECHAZOS_VENTANA,
        "labels": {"severidad": "advertencia", "equipo": equipo},
        "annotations": {
            "summary": "{{ $labels.agencia }}: se rechaza el {{ $value | humanizePercentage }} de sus eventos",
            "description": (
                f"En los últimos {RECHAZOS_VENTANA}, el {{{{ $value | humanizePercentage }}}} de los eventos de "
                "{{ $labels.agencia }} fue a gpr.eventos.rechazados.v1 (se avisa desde "
                f"{RECHAZOS_PROPORCION * 100:g}% y {RECHAZOS_MINIMO} eventos). Motivos principales: {motivos}. "
                "Esos eventos no cuentan en ningún indicador. Véalos con "
                "`gpr rechazados listar --agencia {{ $labels.agencia }}` y, corregida la causa, "
                "vuelva a publicarlos con `gpr rechazados reprocesar`."),
            "runbook_url": _runbook("eventos-rechazados.md"),
        },
    }


def reglas_plataforma(metas: list[Meta], catalogo: Catalogo, sin_eventos_s: int) -> list[dict]:
    reglas = []
    for agencia in sorted(catalogo.agencias):
        equipos = sorted({m.equipo for m in metas if m.agencia == agencia}) or [EQUIPO_PLATAFORMA]
        for equipo in equipos:
            reglas.append({
                "alert": "AgenciaSinEventos",
                "expr": (f"time() - max by (agencia) (gpr_eventos_ultimo_timestamp_seconds"
                         f"{{agencia={_cadena(agencia)}}}) > {sin_eventos_s}\n"),
                "for": SIN_EVENTOS_ESPERA,
                "labels": {"severidad": "advertencia", "equipo": equipo},
                "annotations": {
                    "summary": "{{ $labels.agencia }}: sin eventos nuevos desde hace {{ $value | humanizeDuration }}",
                    "description": (
                        "El último evento aceptado de {{ $labels.agencia }} ocurrió hace "
                        f"{{{{ $value | humanizeDuration }}}} (se avisa pasado {duracion(sin_eventos_s)}). Mientras "
                        "no lleguen eventos sus indicadores quedan congelados en ese momento y sus metas no "
                        "reflejan lo que pasa hoy. Revise el sistema de la agencia, su conexión con Kafka o "
                        "Ingesta, y los eventos rechazados."),
                    "runbook_url": _runbook("agencia-sin-eventos.md"),
                },
            })
    for agencia, equipo in _equipos_de_rechazos(metas, catalogo):
        reglas.append(regla_rechazos(agencia, equipo))
    reglas.append({
        "alert": "ProcesadorRetrasado",
        "expr": ("sum by (topico) (max by (topico, particion) (gpr_procesador_retraso_registros)) "
                 f"> {RETRASO_MAXIMO}\n"),
        "for": RETRASO_ESPERA,
        "labels": {"severidad": "critica", "equipo": EQUIPO_PLATAFORMA},
        "annotations": {
            "summary": "El procesador tiene {{ $value | humanize }} registros sin procesar en {{ $labels.topico }}",
            "description": (
                "El grupo del procesador lleva más de " + RETRASO_ESPERA + " con más de " + str(RETRASO_MAXIMO)
                + " registros de {{ $labels.topico }} sin confirmar (ahora {{ $value | humanize }}). Los "
                "indicadores, las metas y sus alertas van atrasados en esa medida; las alertas de agencias "
                "sin eventos pueden ser un efecto de este retraso."),
            "runbook_url": _runbook("procesador-retrasado.md"),
        },
    })
    return reglas


def generar(metas: list[Meta], catalogo: Catalogo, sin_eventos_s: int = SIN_EVENTOS_S,
            runbooks: str = RUNBOOKS_URL) -> dict:
    """Grupos de reglas de Prometheus (estructura lista para volcar a YAML)."""
    base = base_runbooks(runbooks)
    ordenadas = sorted(metas, key=lambda m: (m.agencia, m.servicio, m.indicador, m.etapa, m.ventana))
    umbrales, quemas, presupuestos, ventanas = [], [], [], set()
    mayores, menores = set(), set()
    for meta in ordenadas:
        cob = cobertura(meta, ordenadas)
        agencia = catalogo.agencias.get(meta.agencia)
        umbrales.append(regla_umbral(meta, cob, agencia.moneda if agencia else ""))
        lista = condiciones(meta)
        for aviso in (PAGINA, TICKET):
            propias = [c for c in lista if c.aviso == aviso]
            if propias:
                quemas.append(regla_quema(meta, cob, aviso, propias))
        if lista:
            ventanas.update(v for c in lista for v in (c.larga_s, c.corta_s))
            (mayores if meta.operador == ">=" else menores).add(meta.indicador)
            presupuestos.append(regla_presupuesto(meta, cob))
    # Un grupo: dentro de él las reglas se evalúan en orden, así las alertas ven las series
    # registradas en la misma evaluación.
    grupos = {"groups": [
        {"name": "gpr-metas",
         "rules": [regla_cuello(), *reglas_malos(ventanas, mayores, menores), *presupuestos, *umbrales, *quemas]},
        {"name": "gpr-plataforma", "rules": reglas_plataforma(ordenadas, catalogo, sin_eventos_s)},
        {"name": "gpr-vigilancia", "rules": reglas_vigilancia()},
    ]}
    for grupo in grupos["groups"]:
        for regla in grupo["rules"]:
            if "runbook_url" in regla.get("annotations", {}):
                regla["annotations"]["runbook_url"] = base + regla["annotations"]["runbook_url"]
    return grupos


# --- Vigilancia de la propia vigilancia ---------------------------------------------------------

# Trabajos de raspado de despliegue/prometheus/prometheus.yml (una prueba exige que sean los
# mismos) y la severidad cuando no responde ninguno de sus objetivos. Sin la consulta no se
# evalúa ninguna meta; sin Alertmanager no llega ninguna alerta; sin el procesador ni la
# ingesta los indicadores se congelan: todos son página.
TRABAJOS = ("alertmanager", "gpr-consulta", "gpr-ingesta", "gpr-portal", "gpr-procesador", "prometheus")
CAIDO_ESPERA = "2m"
VIGILANCIA_VENTANA = "5m"
RUNBOOK_VIGILANCIA = "vigilancia.md"


def _vigilancia(alerta: str, expr: str, severidad: str, resumen: str, descripcion: str,
                espera: str | None = None) -> dict:
    regla = {"alert": alerta, "expr": expr + "\n"}
    if espera:
        regla["for"] = espera
    regla["labels"] = {"severidad": severidad, "equipo": EQUIPO_PLATAFORMA}
    regla["annotations"] = {"summary": resumen, "description": descripcion,
                            "runbook_url": _runbook(RUNBOOK_VIGILANCIA, alerta.lower())}
    return regla


def reglas_vigilancia() -> list[dict]:
    """Watchdog, objetivos caídos o ausentes por trabajo, fallos de reglas y de notificaciones.

    Todas las demás alertas dependen de que Prometheus raspe, evalúe y entregue a Alertmanager,
    y de que este notifique: si algo de eso se rompe, las alertas callan sin decir nada. Estas
    lo dicen; y Watchdog, que siempre está activa, lo dice desde fuera cuando ni ellas pueden
    (un receptor externo de latidos avisa si deja de llegar).
    """
    reglas = [_vigilancia(
        "Watchdog", "vector(1)", "info",
        "Latido de la cadena de alertas: esta alerta está siempre activa",
        "Watchdog se dispara siempre para probar que Prometheus evalúa reglas, Alertmanager las recibe y "
        "las notificaciones salen. Alertmanager la envía al receptor `latido` (un servicio externo de "
        "latidos, dead man's switch), que debe avisar cuando DEJE de recibirla.")]
    # Una regla por alerta para todos los trabajos (los nombres de trabajo se enumeran: una
    # serie `up` de otro trabajo, p. ej. uno añadido a mano, no debe cambiar estas alertas).
    trabajos = f"{{job=~{_cadena(_alternativas(TRABAJOS))}}}"
    reglas.append(_vigilancia(
        "ServicioCaido", f"max by (job) (up{trabajos}) == 0", "critica",
        "{{ $labels.job }}: ningún objetivo responde al raspado",
        f"Prometheus no puede raspar ningún objetivo de {{{{ $labels.job }}}} desde hace más de {CAIDO_ESPERA}. "
        "Mientras tanto, las alertas que dependen de sus métricas no se evalúan: callan sin estar resueltas.",
        CAIDO_ESPERA))
    reglas.append(_vigilancia(
        "ObjetivoCaido", f"up{trabajos} == 0\nunless on (job)\n(max by (job) (up{trabajos}) == 0)", "advertencia",
        "{{ $labels.job }}: {{ $labels.instance }} no responde al raspado",
        f"Un objetivo de {{{{ $labels.job }}}} ({{{{ $labels.instance }}}}) no responde desde hace más de "
        f"{CAIDO_ESPERA}; otros del mismo trabajo siguen respondiendo.", CAIDO_ESPERA))
    reglas.append(_vigilancia(
        "TrabajoAusente", "\nor\n".join(f"absent(up{{job={_cadena(t)}}})" for t in TRABAJOS), "critica",
        "{{ $labels.job }}: Prometheus no tiene ningún objetivo que raspar",
        "No hay ninguna serie `up` del trabajo {{ $labels.job }}: no está configurado o su descubrimiento "
        "(DNS, Kubernetes) no encuentra objetivos. Sus métricas faltan y sus alertas no se evalúan.",
        CAIDO_ESPERA))
    reglas.append(_vigilancia(
        "ReglasFallan",
        f"sum by (rule_group) (increase(prometheus_rule_evaluation_failures_total[{VIGILANCIA_VENTANA}])) > 0",
        "critica", "Prometheus no puede evaluar reglas del grupo {{ $labels.rule_group }}",
        f"En los últimos {VIGILANCIA_VENTANA} fallaron {{{{ $value | printf \"%.0f\" }}}} evaluaciones de reglas "
        "de {{ $labels.rule_group }}: las alertas de ese grupo pueden no dispararse nunca."))
    reglas.append(_vigilancia(
        "NotificacionesFallan",
        f"sum by (integration) (increase(alertmanager_notifications_failed_total[{VIGILANCIA_VENTANA}])) > 0",
        "critica", "Alertmanager no puede entregar notificaciones por {{ $labels.integration }}",
        f"En los últimos {VIGILANCIA_VENTANA} fallaron {{{{ $value | printf \"%.0f\" }}}} notificaciones por "
        "{{ $labels.integration }} (webhook, email...): las alertas no llegan a las personas por ese canal.",
        VIGILANCIA_VENTANA))
    reglas.append(_vigilancia(
        "AlertasSinEnviar",
        f"sum by (job, instance) (increase(prometheus_notifications_errors_total[{VIGILANCIA_VENTANA}])) > 0\n"
        f"or\nsum by (job, instance) (increase(prometheus_notifications_dropped_total[{VIGILANCIA_VENTANA}])) > 0",
        "critica", "Prometheus no puede entregar alertas a Alertmanager",
        f"En los últimos {VIGILANCIA_VENTANA} Prometheus tuvo errores o descartó alertas al enviarlas a "
        "Alertmanager ({{ $value | printf \"%.0f\" }}): algunas alertas no llegaron."))
    reglas.append(_vigilancia(
        "ConfiguracionNoRecargada",
        "prometheus_config_last_reload_successful == 0\nor\nalertmanager_config_last_reload_successful == 0",
        "advertencia", "{{ $labels.job }}: la última recarga de la configuración falló",
        "{{ $labels.job }} ({{ $labels.instance }}) sigue con la configuración anterior: la nueva tiene un "
        "error. Lo que se cambió (reglas, receptores) no está en vigor.", VIGILANCIA_VENTANA))
    return reglas


class _Volcador(yaml.SafeDumper):
    pass


def _texto(volcador: yaml.SafeDumper, texto: str) -> yaml.ScalarNode:
    estilo = "|" if "\n" in texto else None
    return volcador.represent_scalar("tag:yaml.org,2002:str", texto, style=estilo)


_Volcador.add_representer(str, _texto)

ENCABEZADO = """\
# GENERADO por `gpr metas reglas` desde despliegue/metas/*.yaml y despliegue/catalogo.yaml.
# No lo edite a mano: cambie las metas y vuelva a generarlo (una prueba compara este archivo
# con lo que produce servicios/comun/reglas.py). Qué significa cada alerta: docs/operaciones.md.
"""


def a_yaml(reglas: dict) -> str:
    return ENCABEZADO + yaml.dump(reglas, Dumper=_Volcador, sort_keys=False, allow_unicode=True, width=1000,
                                  default_flow_style=False)


def generar_yaml(metas: list[Meta], catalogo: Catalogo, sin_eventos_s: int = SIN_EVENTOS_S,
                 runbooks: str = RUNBOOKS_URL) -> str:
    return a_yaml(generar(metas, catalogo, sin_eventos_s, runbooks))
