"""Catálogo de metas (`despliegue/metas/*.yaml`): carga, validación y evaluación.

Una meta dice, para un indicador de un servicio (o de todos los de la agencia, `servicio: "*"`)
en una ventana, hacia dónde es mejor (`operador`), el valor a alcanzar, la muestra mínima por
debajo de la cual no se juzga, la severidad y el equipo que la atiende. Un archivo inválido
se rechaza con `archivo:línea: campo '...': motivo`. La evaluación es pura.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from servicios.comun.catalogo import Catalogo
from servicios.comun.indicadores import INDICADORES, INDICE, PROPORCION, VENTANAS_MOVILES
from servicios.comun.yaml_lineas import ArchivoInvalido, ErrorArchivo, cargar, linea_de, traducir

TODOS = "*"
CUMPLE, INCUMPLE, SIN_DATOS = "cumple", "incumple", "sin_datos"


class _MetaYaml(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    agencia: str = Field(min_length=1)
    servicio: str = Field(min_length=1)
    indicador: str = Field(min_length=1)
    etapa: str = ""
    ventana: str = Field(min_length=1)
    operador: Literal[">=", "<="]
    valor: float
    muestra_minima: int = Field(default=1, ge=0)
    severidad: Literal["critica", "advertencia"]
    equipo: str = Field(min_length=1)
    descripcion: str = Field(min_length=1)


class _ArchivoMetas(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metas: list[_MetaYaml]


@dataclass(frozen=True)
class Meta:
    agencia: str
    servicio: str
    indicador: str
    etapa: str
    ventana: str
    operador: str
    valor: float
    muestra_minima: int
    severidad: str
    equipo: str
    descripcion: str
    archivo: str
    linea: int

    @property
    def clave(self) -> tuple[str, str, str, str, str]:
        return (self.agencia, self.servicio, self.indicador, self.etapa, self.ventana)


def _errores_semanticos(m: _MetaYaml, i: int, archivo: str, lineas: dict, catalogo: Catalogo) -> list[ErrorArchivo]:
    errores = []

    def error(campo: str, mensaje: str) -> None:
        ruta = ("metas", i, campo)
        errores.append(ErrorArchivo(archivo, linea_de(lineas, ruta), f"metas[{i}].{campo}", mensaje))

    definicion = INDICADORES.get(m.indicador)
    if definicion is None:
        error("indicador", f"{m.indicador!r} no es un indicador conocido")
    elif definicion.sentido is None:
        error("indicador", f"{m.indicador!r} describe volumen y no tiene sentido de mejora: no admite metas")
    else:
        if m.operador != definicion.sentido.value:
            error("operador", f"{m.indicador!r} mejora con {definicion.sentido.value!r}: la meta debe usar ese operador")
        # La meta va en la unidad del indicador: una proporción o un índice van de 0 a 1.
        if definicion.unidad in (PROPORCION, INDICE) and not 0.0 <= m.valor <= 1.0:
            que = "una proporción" if definicion.unidad == PROPORCION else "un índice"
            error("valor", f"{m.indicador!r} es {que}: el valor debe estar entre 0 y 1")
        elif m.valor < 0:
            error("valor", "no puede ser negativo")
        if m.etapa and not definicion.por_etapa:
            error("etapa", f"{m.indicador!r} no es un indicador por etapa")
    if m.ventana not in VENTANAS_MOVILES:
        error("ventana", f"{m.ventana!r} no es una ventana de meta ({', '.join(VENTANAS_MOVILES)})")
    if m.agencia not in catalogo.agencias:
        error("agencia", f"agencia desconocida {m.agencia!r}")
    elif m.servicio != TODOS:
        servicio = catalogo.servicio(m.agencia, m.servicio)
        if servicio is None:
            error("servicio", f"servicio desconocido {m.servicio!r} en la agencia {m.agencia!r}")
        elif m.etapa and m.etapa not in servicio.etapas:
            error("etapa", f"etapa desconocida {m.etapa!r} del servicio {m.servicio!r}")
    return errores


def cargar_metas(rutas: list[str | Path], catalogo: Catalogo) -> list[Meta]:
    """Carga y valida todos los archivos; junta todos los errores antes de rechazar."""
    metas: list[Meta] = []
    errores: list[ErrorArchivo] = []
    vistas: dict[tuple, Meta] = {}
    for ruta in rutas:
        archivo = str(ruta)
        try:
            datos, lineas = cargar(ruta)
        except ArchivoInvalido as error:
            errores.extend(error.errores)
            continue
        try:
            modelo = _ArchivoMetas.model_validate(datos if datos is not None else {})
        except ValidationError as error:
            errores.extend(traducir(error, archivo, lineas))
            continue
        for i, m in enumerate(modelo.metas):
            propios = _errores_semanticos(m, i, archivo, lineas, catalogo)
            errores.extend(propios)
            if propios:
                continue
            meta = Meta(m.agencia, m.servicio, m.indicador, m.etapa, m.ventana, m.operador, m.valor,
                        m.muestra_minima, m.severidad, m.equipo, m.descripcion, archivo,
                        linea_de(lineas, ("metas", i)))
            if meta.clave in vistas:
                otra = vistas[meta.clave]
                errores.append(ErrorArchivo(archivo, meta.linea, f"metas[{i}]",
                                            f"meta repetida: ya definida en {otra.archivo}:{otra.linea}"))
                continue
            vistas[meta.clave] = meta
            metas.append(meta)
    if errores:
        raise ArchivoInvalido(errores)
    return metas


def archivos_de(directorio: str | Path) -> list[Path]:
    return sorted(Path(directorio).glob("*.yaml"))


class IndiceMetas:
    """Búsqueda de la meta de una serie: la del servicio concreto gana a la de `*`; la de una
    etapa concreta gana a la del indicador por etapa sin etapa."""

    def __init__(self, metas: list[Meta]):
        self._metas = {m.clave: m for m in metas}

    def __len__(self) -> int:
        return len(self._metas)

    def buscar(self, agencia: str, servicio: str, indicador: str, etapa: str, ventana: str) -> Meta | None:
        for s in (servicio, TODOS):
            for e in ((etapa, "") if etapa else ("",)):
                meta = self._metas.get((agencia, s, indicador, e, ventana))
                if meta is not None:
                    return meta
        return None


def evaluar(meta: Meta, valor: float | None, muestras: int) -> str:
    if valor is None or muestras < meta.muestra_minima:
        return SIN_DATOS
    cumple = valor >= meta.valor if meta.operador == ">=" else valor <= meta.valor
    return CUMPLE if cumple else INCUMPLE
