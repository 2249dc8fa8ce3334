"""El JSON Schema de gpr.v1.Evento (docs/esquemas/evento.schema.json): el versionado es el que
genera el proto de hoy, es un esquema 2020-12 válido, acepta cada ejemplo válido de la guía y
de docs/ejemplos/ y rechaza justo las líneas inválidas que `invalidos.esperado.tsv` marca como
estructurales (las demás las juzga la plataforma: catálogo, reloj, estado del caso)."""

from __future__ import annotations

import importlib.util
import json

import pytest
from google.protobuf import json_format
from jsonschema import Draft202012Validator

from conftest import RAIZ
from gpr.v1 import eventos_pb2 as pb

ESQUEMAS = RAIZ / "docs" / "esquemas"
EJEMPLOS = RAIZ / "docs" / "ejemplos"
VALIDOS = ["ciclo-caso.jsonl", "encuestas.jsonl", "reclamo.jsonl", "costos.jsonl"]


def _generador():
    spec = importlib.util.spec_from_file_location("generar_esquema", ESQUEMAS / "generar.py")
    modulo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(modulo)
    return modulo


@pytest.fixture(scope="module")
def validador() -> Draft202012Validator:
    esquema = json.loads((ESQUEMAS / "evento.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(esquema)
    return Draft202012Validator(esquema)


def _lineas(nombre: str) -> list[str]:
    return [l for l in (EJEMPLOS / nombre).read_text(encoding="utf-8").splitlines() if l.strip()]


def test_el_esquema_versionado_es_el_que_genera_el_proto():
    assert (ESQUEMAS / "evento.schema.json").read_text(encoding="utf-8") == _generador().texto(), (
        "docs/esquemas/evento.schema.json no es el que genera el proto de hoy: ejecute `make esquema`")


def test_el_esquema_conoce_cada_campo_del_proto_con_sus_dos_nombres(validador):
    propiedades = validador.schema["$defs"]["gpr.v1.Evento"]["properties"]
    for campo in pb.Evento.DESCRIPTOR.fields:
        assert campo.json_name in propiedades and campo.name in propiedades, campo.name


@pytest.mark.parametrize("nombre", VALIDOS)
def test_cada_ejemplo_valido_pasa_el_esquema(validador, nombre):
    for n, linea in enumerate(_lineas(nombre), start=1):
        errores = [e.message for e in validador.iter_errors(json.loads(linea))]
        assert not errores, f"{nombre}:{n}: {errores}"


def test_el_esquema_rechaza_justo_las_lineas_invalidas_estructurales(validador):
    filas = (EJEMPLOS / "invalidos.esperado.tsv").read_text(encoding="utf-8").splitlines()
    cabecera = filas[0].split("\t")
    esperados = [dict(zip(cabecera, f.split("\t"))) for f in filas[1:]]
    lineas = _lineas("invalidos.jsonl")
    assert len(esperados) == len(lineas)
    for esperado, linea in zip(esperados, lineas):
        veredicto = "pasa" if validador.is_valid(json.loads(linea)) else "falla"
        assert veredicto == esperado["esquema"], esperado


def test_los_nombres_del_proto_y_los_numeros_de_enum_tambien_pasan(validador):
    """Lo que el lector de protobuf acepta en otra forma (nombres con guion bajo, enum por número,
    int64 como número) también pasa el esquema; y lo que el lector rechaza, no."""
    evento = json.loads(_lineas("costos.jsonl")[0])
    mensaje = json_format.Parse(json.dumps(evento), pb.Evento())
    otra_forma = json_format.MessageToDict(mensaje, preserving_proto_field_name=True, use_integers_for_enums=True)
    otra_forma["costo"]["unidades"] = int(otra_forma["costo"]["unidades"])
    assert validador.is_valid(otra_forma)
    assert json_format.Parse(json.dumps(otra_forma), pb.Evento()) == mensaje
    for roto in ({**evento, "ocurridoEn": "2026-04-30T20:05:00"}, {**evento, "tipo": "COSTO_REGISTRADO"},
                 {**evento, "campoNuevo": 1}):
        with pytest.raises(json_format.ParseError):
            json_format.Parse(json.dumps(roto), pb.Evento())
        assert not validador.is_valid(roto), roto
