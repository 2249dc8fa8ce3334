"""Datos abiertos del portal: filas de los valores actuales y de las series mensuales, en CSV
y JSON, descritas por un Frictionless Data Package (`datapackage.json` con Table Schema).

Puro: recibe las series ya leídas de la API. Las mismas filas dan el CSV y el JSON, y la
misma regla de divulgación que las páginas: un valor de menos casos que el mínimo sale vacío,
con `suprimido = true`, y sin su número de casos (un conteo pequeño también es un valor).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from datetime import datetime, timezone

from gpr.v1 import indicadores_pb2 as ipb
from servicios.comun.catalogo import Catalogo
from servicios.comun.indicadores import INDICADORES, UNIDADES
from servicios.portal import dominio as d

ACTUALES, MENSUALES, FICHAS = "valores-actuales", "series-mensuales", "indicadores"
RECURSOS = (ACTUALES, MENSUALES, FICHAS)
FORMATOS = ("csv", "json")

LICENCIAS = {
    "CC-BY-4.0": ("Creative Commons Attribution 4.0", "https://creativecommons.org/licenses/by/4.0/"),
    "CC0-1.0": ("Creative Commons Zero v1.0 Universal", "https://creativecommons.org/publicdomain/zero/1.0/"),
    "ODC-BY-1.0": ("Open Data Commons Attribution License 1.0", "https://opendatacommons.org/licenses/by/1-0/"),
    "CC-BY-SA-4.0": ("Creative Commons Attribution Share-Alike 4.0", "https://creativecommons.org/licenses/by-sa/4.0/"),
}


def _campo(nombre: str, tipo: str, descripcion: str, **extra) -> dict:
    return {"name": nombre, "type": tipo, "description": descripcion, **extra}


def _comunes(minimo: int) -> list[dict]:
    return [
        _campo("agencia_id", "string", "Identificador de la entidad", constraints={"required": True}),
        _campo("agencia", "string", "Nombre de la entidad"),
        _campo("servicio_id", "string", "Identificador del servicio, único dentro de la entidad",
               constraints={"required": True}),
        _campo("servicio", "string", "Nombre del servicio"),
        _campo("indicador", "string", "Nombre del indicador (ver el recurso «indicadores»)",
               constraints={"required": True, "enum": list(INDICADORES)}),
        _campo("titulo", "string", "Título del indicador en lenguaje llano"),
        _campo("etapa_id", "string", "Etapa del proceso medida (solo en tiempo_etapa_*; vacío en los demás)"),
        _campo("desde", "datetime", "Inicio del periodo medido (UTC, ISO 8601)"),
        _campo("hasta", "datetime", "Fin del periodo medido (UTC, ISO 8601)"),
        _campo("valor", "number",
               f"Valor del indicador en su unidad; vacío si no hay datos o si viene de menos de {minimo} casos"),
        _campo("unidad", "string", "Unidad del valor, la que informa la API: segundos, proporcion (0 a 1), "
               "indice (0 a 1), conteo, por_mil, o el código ISO 4217 de la moneda de la entidad"),
        _campo("casos", "integer", f"Casos (u observaciones) detrás del valor; vacío si son menos de {minimo}",
               constraints={"minimum": minimo}),
        _campo("suprimido", "boolean",
               f"Verdadero si el valor se omite por venir de menos de {minimo} casos (control de divulgación)",
               constraints={"required": True}),
        _campo("sin_datos", "boolean", "Verdadero si el periodo no tiene casos para calcular el indicador",
               constraints={"required": True}),
    ]


def esquema_actuales(minimo: int) -> dict:
    campos = _comunes(minimo)
    campos.insert(7, _campo("ventana", "string", "Ventana móvil que termina en «hasta»: 24h, 7d o 30d",
                            constraints={"required": True, "enum": list(d.VENTANAS_ACTUALES)}))
    campos += [
        _campo("meta_operador", "string", "Operador de la meta del indicador («>=» o «<=»); vacío sin meta",
               constraints={"enum": [">=", "<="]}),
        _campo("meta_valor", "number", "Valor de la meta, en la unidad del indicador; vacío sin meta"),
        _campo("estado_meta", "string",
               f"cumple, incumple o no_juzgado (menos de {minimo} casos o menos que la muestra mínima de la "
               "meta); vacío sin meta", constraints={"enum": [d.CUMPLE, d.INCUMPLE, d.NO_JUZGADO]}),
        _campo("actualizado_en", "datetime", "Cuándo se calculó el valor (UTC, ISO 8601)"),
    ]
    return {"fields": campos, "missingValues": [""]}


def esquema_mensuales(minimo: int) -> dict:
    campos = _comunes(minimo)
    campos.insert(7, _campo("mes", "yearmonth", "Mes calendario en la zona horaria de la entidad (AAAA-MM)",
                            constraints={"required": True}))
    campos.append(_campo("actualizado_en", "datetime", "Cuándo se calculó el valor (UTC, ISO 8601)"))
    return {"fields": campos, "missingValues": [""]}


def esquema_fichas() -> dict:
    return {"fields": [
        _campo("indicador", "string", "Nombre del indicador", constraints={"required": True, "unique": True}),
        _campo("titulo", "string", "Título en lenguaje llano"),
        _campo("descripcion", "string", "Definición en lenguaje llano"),
        _campo("numerador", "string", "Numerador de la fórmula (o lo que se mide)"),
        _campo("denominador", "string", "Denominador de la fórmula; vacío si no es un cociente"),
        _campo("unidad", "string", "Unidad (moneda: el código ISO 4217 de cada entidad)",
               constraints={"enum": list(UNIDADES)}),
        _campo("sentido", "string", "Hacia dónde es mejor: mayor, menor o vacío (describe volumen)",
               constraints={"enum": ["mayor", "menor"]}),
        _campo("dimension", "string", "Dimensión del desempeño: eficacia, eficiencia, calidad o economía"),
        _campo("casos", "string", "Qué cuenta la columna «casos» en este indicador"),
    ], "missingValues": [""]}


def esquemas(minimo: int) -> dict[str, dict]:
    return {ACTUALES: esquema_actuales(minimo), MENSUALES: esquema_mensuales(minimo), FICHAS: esquema_fichas()}


def paquete(minimo: int, licencia: str, creado: datetime, url_licencia: str = "") -> dict:
    """El descriptor `datapackage.json` (rutas relativas a /datos/)."""
    titulo, ruta = LICENCIAS.get(licencia, (licencia, url_licencia))
    licencia_desc = {"name": licencia, "title": titulo}
    if url_licencia or ruta:
        licencia_desc["path"] = url_licencia or ruta
    descripciones = {
        ACTUALES: "Valor actual de cada indicador de cada servicio en las ventanas móviles de 24 horas, "
                  "7 días y 30 días, con su meta y si la cumple.",
        MENSUALES: "Valor de cada indicador de cada servicio en cada uno de los últimos 13 meses calendario.",
        FICHAS: "Ficha técnica de cada indicador: definición, fórmula, unidad y sentido.",
    }
    recursos = []
    for nombre in RECURSOS:
        for formato in FORMATOS:
            recursos.append({
                "name": nombre if formato == "csv" else f"{nombre}-json",
                "title": nombre.replace("-", " ").capitalize() + f" ({formato.upper()})",
                "description": descripciones[nombre],
                "path": f"{nombre}.{formato}",
                "format": formato,
                "mediatype": "text/csv" if formato == "csv" else "application/json",
                "encoding": "utf-8",
                "schema": esquemas(minimo)[nombre],
            })
    return {
        "name": "gpr-monitor-resultados",
        "title": "Resultados de los servicios públicos",
        "description": ("Indicadores de resultados de cada entidad y servicio (Gestión para Resultados), "
                        f"calculados de los eventos de atención. Ningún valor viene de menos de {minimo} casos: "
                        "los que no llegan se publican vacíos con suprimido = true."),
        "licenses": [licencia_desc],
        "created": _iso(creado),
        "keywords": ["gestión para resultados", "servicios públicos", "transparencia", "indicadores"],
        "resources": recursos,
    }


def _iso(instante: datetime | None) -> str:
    return instante.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if instante else ""


def _ts(ts) -> str:
    return _iso(datetime.fromtimestamp(ts.seconds, timezone.utc)) if ts.seconds else ""


def _fila(catalogo: Catalogo, i: ipb.Indicador, regla: d.Regla) -> dict:
    agencia = catalogo.agencias[i.agencia_id]
    servicio = catalogo.servicio(i.agencia_id, i.servicio_id)
    definicion = INDICADORES[i.indicador]
    estado = regla.estado(i)
    publicado = estado == d.PUBLICADO
    return {
        "agencia_id": i.agencia_id, "agencia": agencia.nombre, "servicio_id": i.servicio_id,
        "servicio": servicio.nombre, "indicador": i.indicador, "titulo": definicion.titulo,
        "etapa_id": i.etapa_id, "desde": _ts(i.desde), "hasta": _ts(i.hasta),
        "valor": i.valor if publicado else None, "unidad": i.unidad,
        "casos": int(i.muestras) if publicado else None,
        "suprimido": estado == d.SUPRIMIDO, "sin_datos": estado == d.SIN_DATOS,
    }


def _publicables(catalogo: Catalogo, datos: d.DatosAgencia) -> Iterable[ipb.Indicador]:
    """Las series de servicios del catálogo y de indicadores conocidos, en orden estable."""
    for clave in sorted(datos.series):
        i = datos.series[clave]
        if catalogo.servicio(i.agencia_id, i.servicio_id) is not None and i.indicador in INDICADORES:
            yield i


def filas_actuales(catalogo: Catalogo, datos: Iterable[d.DatosAgencia], regla: d.Regla) -> list[dict]:
    filas = []
    for datos_agencia in datos:
        for i in _publicables(catalogo, datos_agencia):
            if i.ventana not in d.VENTANAS_ACTUALES:
                continue
            fila = _fila(catalogo, i, regla)
            meta = datos_agencia.meta(i.servicio_id, i.indicador, i.etapa_id)
            fila["ventana"] = i.ventana
            fila["meta_operador"] = meta.operador if meta else ""
            fila["meta_valor"] = meta.valor if meta else None
            fila["estado_meta"] = d.juzgar(meta, i, regla) if meta else ""
            fila["actualizado_en"] = _ts(i.actualizado_en)
            filas.append(fila)
    return filas


def filas_mensuales(catalogo: Catalogo, datos: Iterable[d.DatosAgencia], regla: d.Regla,
                    meses_por_agencia: dict[str, list[str]]) -> list[dict]:
    """Solo los meses de la tendencia de cada agencia (los 13 que terminan en su mes actual)."""
    filas = []
    for datos_agencia in datos:
        meses = set(meses_por_agencia.get(datos_agencia.agencia_id, ()))
        for i in _publicables(catalogo, datos_agencia):
            if not i.ventana.startswith("mes:") or i.ventana[4:] not in meses:
                continue
            fila = _fila(catalogo, i, regla)
            fila["mes"] = i.ventana[4:]
            fila["actualizado_en"] = _ts(i.actualizado_en)
            filas.append(fila)
    return filas


def filas_fichas() -> list[dict]:
    return [{
        "indicador": n, "titulo": f.titulo, "descripcion": f.descripcion, "numerador": f.numerador,
        "denominador": f.denominador, "unidad": f.unidad,
        "sentido": {">=": "mayor", "<=": "menor"}.get(f.sentido.value, "") if f.sentido else "",
        "dimension": f.dimension, "casos": f.casos,
    } for n, f in INDICADORES.items()]


def _texto_csv(valor) -> str:
    if valor is None:
        return ""
    if isinstance(valor, bool):
        return "true" if valor else "false"
    if isinstance(valor, float):
        return repr(valor)  # el decimal más corto que vuelve al mismo número
    return str(valor)


def a_csv(esquema: dict, filas: list[dict]) -> bytes:
    campos = [c["name"] for c in esquema["fields"]]
    salida = io.StringIO()
    escritor = csv.writer(salida, lineterminator="\r\n")
    escritor.writerow(campos)
    for fila in filas:
        escritor.writerow([_texto_csv(fila.get(c)) for c in campos])
    return salida.getvalue().encode("utf-8")


def a_json(esquema: dict, filas: list[dict]) -> bytes:
    campos = [c["name"] for c in esquema["fields"]]
    objetos = [{c: (None if fila.get(c) == "" else fila.get(c)) for c in campos} for fila in filas]
    return json.dumps(objetos, ensure_ascii=False, indent=1).encode("utf-8")
