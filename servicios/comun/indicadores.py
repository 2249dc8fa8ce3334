"""Catálogo de indicadores de resultados: nombre, dimensión, sentido de mejora, forma y su
ficha técnica (título, definición en lenguaje llano, fórmula y unidad).

Es la única lista de indicadores del sistema: el procesador los calcula, la consulta valida
los nombres pedidos, las metas comprueban que su operador coincide con el sentido de mejora,
y el portal público arma con ella su página de metodología y el esquema de los datos
abiertos. Los textos están aquí para que la API, la CLI, los tableros y el portal digan lo
mismo.

Unidades (`unidad`): `segundos`, `proporcion` (parte de los casos, entre 0 y 1: se muestra
en %), `indice` (un puntaje entre 0 y 1 que no es una parte de nada: se muestra como número),
`conteo`, `por_mil`, y `MONEDA` para los montos, que se resuelve con la moneda ISO 4217 de la
agencia en el catálogo (`despliegue/catalogo.yaml`, campo `moneda`; ver `unidad_de`). La
unidad resuelta viaja en la API (`Indicador.unidad`) y en /metrics (etiqueta `unidad`): los
clientes formatean por ella, nunca por el nombre del indicador.
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


# Unidades de la ficha técnica. MONEDA es un marcador: la unidad real es la moneda de la agencia.
SEGUNDOS, PROPORCION, INDICE, CONTEO, POR_MIL, MONEDA = (
    "segundos", "proporcion", "indice", "conteo", "por_mil", "moneda")
UNIDADES = (SEGUNDOS, PROPORCION, INDICE, CONTEO, POR_MIL, MONEDA)
# Un código de moneda ISO 4217: tres letras mayúsculas (el catálogo las exige igual).
_CODIGO_MONEDA = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True)
class DefinicionIndicador:
    nombre: str
    dimension: str  # eficacia, eficiencia, calidad, economía
    sentido: Sentido | None
    forma: Forma
    por_etapa: bool = False
    # Ficha técnica (lenguaje llano, para la ciudadanía).
    titulo: str = ""
    descripcion: str = ""
    numerador: str = ""
    # Vacío cuando el indicador no es un cociente (conteos y percentiles).
    denominador: str = ""
    unidad: str = ""
    # Qué cuenta `muestras` en este indicador: los casos (u observaciones) detrás del valor,
    # que decide el control de divulgación del portal.
    casos: str = ""

    @property
    def sentido_en_palabras(self) -> str:
        if self.sentido is Sentido.MAYOR:
            return "más alto es mejor"
        if self.sentido is Sentido.MENOR:
            return "más bajo es mejor"
        return "describe volumen: ni más alto ni más bajo es mejor"


_RECEPCION = "Casos con solicitud recibida en la ventana"
_CONCLUIDOS = "Casos concluidos (entregados o cerrados) en la ventana"
_ENTREGAS = "Casos con su primera entrega en la ventana"
_ENCUESTAS = "Encuestas respondidas en la ventana"

_DEFINICIONES = [
    DefinicionIndicador(
        "solicitudes", "eficacia", None, Forma.CONTEO,
        titulo="Solicitudes recibidas",
        descripcion="Cuántas solicitudes del servicio recibió la entidad en el periodo.",
        numerador="Solicitudes recibidas en la ventana", unidad=CONTEO,
        casos="las solicitudes contadas"),
    DefinicionIndicador(
        "entregas", "eficacia", None, Forma.CONTEO,
        titulo="Servicios entregados",
        descripcion="Cuántos casos recibieron el servicio por primera vez en el periodo.",
        numerador=_ENTREGAS, unidad=CONTEO,
        casos="las entregas contadas"),
    DefinicionIndicador(
        "tasa_conclusion", "eficacia", Sentido.MAYOR, Forma.PROPORCION,
        titulo="Solicitudes concluidas",
        descripcion="De las solicitudes recibidas en el periodo, qué parte ya se entregó o cerró.",
        numerador="De ellos, los entregados o cerrados", denominador=_RECEPCION, unidad=PROPORCION,
        casos="los casos recibidos (denominador)"),
    DefinicionIndicador(
        "cumplimiento_plazo", "eficacia", Sentido.MAYOR, Forma.PROPORCION,
        titulo="Entregas dentro del plazo",
        descripcion="De los servicios entregados en el periodo, qué parte se entregó dentro del plazo legal.",
        numerador="De ellos, los entregados dentro de su plazo",
        denominador=_ENTREGAS + " y fecha de recepción conocida", unidad=PROPORCION,
        casos="los casos entregados (denominador)"),
    DefinicionIndicador(
        "tiempo_atencion_p50", "eficiencia", Sentido.MENOR, Forma.SEGUNDOS,
        titulo="Tiempo de atención (mediana)",
        descripcion="La mitad de los casos entregados en el periodo se atendió en este tiempo o menos, "
                    "desde la solicitud hasta la entrega.",
        numerador="Mediana de (entrega − recepción) de los casos entregados en la ventana", unidad=SEGUNDOS,
        casos="los casos entregados medidos"),
    DefinicionIndicador(
        "tiempo_atencion_p90", "eficiencia", Sentido.MENOR, Forma.SEGUNDOS,
        titulo="Tiempo de atención (9 de cada 10)",
        descripcion="Nueve de cada diez casos entregados en el periodo se atendieron en este tiempo o menos.",
        numerador="Percentil 90 de (entrega − recepción) de los casos entregados en la ventana", unidad=SEGUNDOS,
        casos="los casos entregados medidos"),
    DefinicionIndicador(
        "casos_vencidos", "eficacia", Sentido.MENOR, Forma.CONTEO,
        titulo="Casos vencidos",
        descripcion="Casos sin entregar ni cerrar que al final del periodo ya superaron su plazo.",
        numerador="Casos abiertos al final de la ventana con edad mayor que su plazo", unidad=CONTEO,
        casos="los casos vencidos contados"),
    DefinicionIndicador(
        "tiempo_etapa_p50", "eficiencia", Sentido.MENOR, Forma.SEGUNDOS, por_etapa=True,
        titulo="Tiempo en la etapa (mediana)",
        descripcion="La mitad de las veces que se completó la etapa en el periodo, el caso pasó en ella "
                    "este tiempo o menos.",
        numerador="Mediana de (fin − inicio de la etapa) de las etapas completadas en la ventana", unidad=SEGUNDOS,
        casos="las veces que se completó la etapa (un caso que repite la etapa cuenta una vez por intento)"),
    DefinicionIndicador(
        "tiempo_etapa_p90", "eficiencia", Sentido.MENOR, Forma.SEGUNDOS, por_etapa=True,
        titulo="Tiempo en la etapa (9 de cada 10)",
        descripcion="Nueve de cada diez veces que se completó la etapa en el periodo, el caso pasó en ella "
                    "este tiempo o menos.",
        numerador="Percentil 90 de (fin − inicio de la etapa) de las etapas completadas en la ventana",
        unidad=SEGUNDOS,
        casos="las veces que se completó la etapa (un caso que repite la etapa cuenta una vez por intento)"),
    DefinicionIndicador(
        "tasa_reproceso", "calidad", Sentido.MENOR, Forma.PROPORCION,
        titulo="Casos con reproceso",
        descripcion="De los casos concluidos en el periodo, qué parte fue devuelta o repitió alguna etapa.",
        numerador="De ellos, los devueltos o con alguna etapa repetida", denominador=_CONCLUIDOS,
        unidad=PROPORCION, casos="los casos concluidos (denominador)"),
    DefinicionIndicador(
        "satisfaccion_top2", "calidad", Sentido.MAYOR, Forma.PROPORCION,
        titulo="Personas satisfechas",
        descripcion="De quienes respondieron la encuesta en el periodo, qué parte dio una de las dos "
                    "mejores calificaciones.",
        numerador="De ellas, las de puntaje igual o mayor que el máximo de la escala menos uno",
        denominador=_ENCUESTAS, unidad=PROPORCION, casos="las encuestas respondidas (denominador)"),
    DefinicionIndicador(
        "satisfaccion_indice", "calidad", Sentido.MAYOR, Forma.PROMEDIO,
        titulo="Índice de satisfacción",
        descripcion="Promedio de las calificaciones de la encuesta llevadas a una escala de 0 (peor) a 1 (mejor).",
        numerador="Suma de (puntaje − 1) / (máximo de la escala − 1)", denominador=_ENCUESTAS,
        unidad=INDICE, casos="las encuestas respondidas (denominador)"),
    DefinicionIndicador(
        "reclamos_por_mil", "calidad", Sentido.MENOR, Forma.PROMEDIO,
        titulo="Reclamos por cada mil entregas",
        descripcion="Cuántos reclamos se registraron en el periodo por cada mil servicios entregados.",
        numerador="Reclamos registrados en la ventana × 1000", denominador=_ENTREGAS, unidad=POR_MIL,
        casos="los casos entregados (denominador)"),
    DefinicionIndicador(
        "adopcion_digital", "eficiencia", Sentido.MAYOR, Forma.PROPORCION,
        titulo="Entregas por canal digital",
        descripcion="De los servicios entregados en el periodo, qué parte se entregó por web, aplicación "
                    "o atención digital asistida.",
        numerador="De ellos, los entregados por WEB, APP o DIGITAL_ASISTIDO", denominador=_ENTREGAS,
        unidad=PROPORCION, casos="los casos entregados (denominador)"),
    DefinicionIndicador(
        "costo_por_tramite", "economía", Sentido.MENOR, Forma.PROMEDIO,
        titulo="Costo por trámite",
        descripcion="Cuánto le costó a la entidad, en promedio, cada servicio entregado en el periodo.",
        numerador="Suma de los costos registrados en la ventana", denominador=_ENTREGAS, unidad=MONEDA,
        casos="los casos entregados (denominador)"),
    DefinicionIndicador(
        "tasa_error", "calidad", Sentido.MENOR, Forma.PROPORCION,
        titulo="Casos con error o desistidos",
        descripcion="De los casos concluidos en el periodo, qué parte terminó con error o con el desistimiento "
                    "de la persona.",
        numerador="De ellos, los de resultado ERROR o DESISTIDO", denominador=_CONCLUIDOS,
        unidad=PROPORCION, casos="los casos concluidos (denominador)"),
]

INDICADORES: dict[str, DefinicionIndicador] = {d.nombre: d for d in _DEFINICIONES}

VENTANAS_MOVILES = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
# Desde el primer evento: de ella salen los contadores acumulados para las tasas de quema.
VENTANA_TOTAL = "total"
_VENTANA_MES = re.compile(r"^mes:(\d{4})-(0[1-9]|1[0-2])$")


def unidad_de(definicion: DefinicionIndicador, moneda: str) -> str:
    """La unidad del indicador, con el marcador de moneda resuelto a la de la agencia."""
    return moneda if definicion.unidad == MONEDA else definicion.unidad


def es_moneda(unidad: str) -> bool:
    """¿Es `unidad` (ya resuelta, como viaja en la API) un código de moneda ISO 4217?"""
    return bool(_CODIGO_MONEDA.fullmatch(unidad))


def unidad_admisible(definicion: DefinicionIndicador, unidad: str) -> bool:
    """¿Puede una instantánea del indicador llevar `unidad`? La del catálogo o, en los importes,
    un código ISO 4217; vacía en las instantáneas escritas antes de que existiera el campo."""
    if not unidad:
        return True
    return es_moneda(unidad) if definicion.unidad == MONEDA else unidad == definicion.unidad


def ventana_valida(ventana: str) -> bool:
    return ventana in VENTANAS_MOVILES or ventana == VENTANA_TOTAL or bool(_VENTANA_MES.match(ventana))


def clave_serie(agencia_id: str, servicio_id: str, indicador: str, ventana: str, etapa_id: str = "") -> str:
    """Clave del registro en gpr.indicadores.v1 (compactado): una serie, su último valor."""
    clave = f"{agencia_id}/{servicio_id}/{indicador}/{ventana}"
    return f"{clave}/{etapa_id}" if etapa_id else clave
