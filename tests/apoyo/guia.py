"""Los archivos de ejemplo de la guía del integrador (docs/ejemplos/) y los indicadores que deben
dar, calculados a mano (la tabla de «Los ejemplos» en docs/contrato.md). Los usan la prueba sin
Kafka (tests/unitarios/test_guia_contrato.py) y la de punta a punta
(tests/integracion/test_guia_ejemplos.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import json_format

from gpr.v1 import eventos_pb2 as pb
from gpr.v1 import indicadores_pb2 as ipb

EJEMPLOS = Path(__file__).resolve().parents[2] / "docs" / "ejemplos"
VALIDOS = ["ciclo-caso.jsonl", "encuestas.jsonl", "reclamo.jsonl", "costos.jsonl"]
INVALIDOS = "invalidos.jsonl"
# Los motivos que decide el procesador con el estado (la marca de agua, el caso, las identidades
# de la agencia): el validador (y por eso `gpr publicar`) los deja pasar. La línea de
# `identidad_repetida` copia un evento de ciclo-caso.jsonl a un caso cuya clave cae en la misma
# partición de gpr.eventos.v1 (con 4) que la del original: así llega después de él, y no depende
# del orden en que el reparto lea dos particiones.
SOLO_PROCESADOR = {"tardio", "caso_de_otro_servicio", "caso_saturado", "identidad_repetida"}
# Una línea que `gpr publicar` no puede leer como evento: nunca llega a Kafka.
ILEGIBLE = "json_invalido"


def lineas(nombre: str) -> list[str]:
    return [linea for linea in (EJEMPLOS / nombre).read_text(encoding="utf-8").splitlines() if linea.strip()]


def evento_de(linea: str | dict) -> pb.Evento:
    return json_format.Parse(linea if isinstance(linea, str) else json.dumps(linea), pb.Evento())


def eventos_validos() -> list[pb.Evento]:
    return [evento_de(linea) for nombre in VALIDOS for linea in lineas(nombre)]


def esperados() -> list[dict]:
    filas = (EJEMPLOS / "invalidos.esperado.tsv").read_text(encoding="utf-8").splitlines()
    cabecera = filas[0].split("\t")
    return [dict(zip(cabecera, fila.split("\t"))) for fila in filas[1:]]


# Calculado a mano desde los archivos de ejemplo (la tabla de «Los ejemplos» en la guía):
# (indicador, ventana, etapa) → (numerador, muestras) de las proporciones, o el valor.
SERIE = "sunarp/certificado-literal/{}/{}"
PROPORCIONES = {
    ("cumplimiento_plazo", "mes:2026-04"): (1, 1), ("cumplimiento_plazo", "mes:2026-05"): (0, 1),
    ("cumplimiento_plazo", "total"): (1, 2),
    ("tasa_reproceso", "mes:2026-04"): (0, 1), ("tasa_reproceso", "mes:2026-05"): (1, 1),
    ("tasa_reproceso", "total"): (1, 2),
    ("adopcion_digital", "mes:2026-04"): (1, 1), ("adopcion_digital", "mes:2026-05"): (0, 1),
    ("adopcion_digital", "total"): (1, 2),
    ("satisfaccion_top2", "mes:2026-05"): (2, 3), ("satisfaccion_top2", "total"): (2, 3),
}
VALORES = {
    ("solicitudes", "mes:2026-04"): 2, ("solicitudes", "mes:2026-05"): 0, ("solicitudes", "total"): 2,
    ("entregas", "mes:2026-04"): 1, ("entregas", "mes:2026-05"): 1, ("entregas", "total"): 2,
    ("reclamos_por_mil", "mes:2026-04"): 0.0, ("reclamos_por_mil", "mes:2026-05"): 1000.0,
    ("reclamos_por_mil", "total"): 500.0,
    # (1 + 0,25 + 0,75) / 3 en las dos ventanas con encuestas.
    ("satisfaccion_indice", "mes:2026-05"): 2 / 3, ("satisfaccion_indice", "total"): 2 / 3,
    # Importes exactos: 10,10 / 1; (20,20 + 30,30) / 1; 60,60 / 2 (en coma flotante,
    # (10.1 + 20.2 + 30.3) / 2 daría 30.299999999999997).
    ("costo_por_tramite", "mes:2026-04"): 10.1, ("costo_por_tramite", "mes:2026-05"): 50.5,
    ("costo_por_tramite", "total"): 30.3,
}
SIN_DATOS = [("satisfaccion_top2", "mes:2026-04"), ("satisfaccion_indice", "mes:2026-04")]
# Percentiles: DDSketch con error relativo de a lo más 1 % (docs/indicadores.md).
APROXIMADOS = {("tiempo_etapa_p50", "total", "mesa-de-partes"): 1800.0,
               ("tiempo_etapa_p50", "mes:2026-04", "mesa-de-partes"): 1800.0}


def comprobar_indicadores(publicado: dict[str, ipb.Indicador]) -> list[str]:
    """Las diferencias entre lo publicado (clave de serie → Indicador) y lo calculado a mano."""
    errores = []

    def serie(indicador, ventana, etapa=""):
        clave = SERIE.format(indicador, ventana) + (f"/{etapa}" if etapa else "")
        if clave not in publicado:
            errores.append(f"{clave}: no publicado")
        return publicado.get(clave)

    for (indicador, ventana), (numerador, muestras) in PROPORCIONES.items():
        i = serie(indicador, ventana)
        if i is not None and (i.sin_datos or (i.numerador, i.muestras) != (numerador, muestras)
                              or i.valor != numerador / muestras):
            errores.append(f"{indicador} {ventana}: {i.numerador}/{i.muestras} = {i.valor}, "
                           f"esperado {numerador}/{muestras}")
    for (indicador, ventana), valor in VALORES.items():
        i = serie(indicador, ventana)
        if i is not None and (i.sin_datos or i.valor != pytest.approx(valor, rel=1e-12)):
            errores.append(f"{indicador} {ventana}: {i.valor} (sin_datos={i.sin_datos}), esperado {valor}")
    for indicador, ventana in SIN_DATOS:
        i = serie(indicador, ventana)
        if i is not None and not i.sin_datos:
            errores.append(f"{indicador} {ventana}: {i.valor}, esperado sin datos")
    for (indicador, ventana, etapa), valor in APROXIMADOS.items():
        i = serie(indicador, ventana, etapa)
        if i is not None and (i.sin_datos or i.valor != pytest.approx(valor, rel=0.01)):
            errores.append(f"{indicador} {ventana} {etapa}: {i.valor}, esperado {valor} ± 1 %")
    # El costo exacto, no solo cercano: el double más próximo a 60,60 / 2.
    total = publicado.get(SERIE.format("costo_por_tramite", "total"))
    if total is not None and total.valor != 30.3:
        errores.append(f"costo_por_tramite total: {total.valor!r}, no exactamente 30.3")
    return errores
