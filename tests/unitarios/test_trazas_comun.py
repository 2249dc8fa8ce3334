"""`servicios/comun/trazas.py`: la configuración OTEL_* de cada servicio, apagadas sin
endpoint (sin recorrer los registros), cabeceras hostiles que no rompen nada, y el tope de
enlaces por tramo. La traza de punta a punta está en tests/integracion/test_trazas.py."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, StatusCode, TraceFlags

from conftest import CATALOGO
from servicios.comun import topicos
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.config import ConfiguracionInvalida
from servicios.comun.metas import IndiceMetas
from servicios.comun.trazas import (
    APAGADAS,
    TRAMO_APAGADO,
    VINCULOS_MAXIMOS,
    ConfigTrazas,
    Trazas,
    contextos_de_registros,
    leer,
)
from servicios.ingesta import config as config_ingesta
from servicios.procesador import config as config_procesador
from servicios.procesador.dominio.agregacion import Agregacion
from servicios.procesador.metricas import MetricasProcesador
from servicios.procesador.publicacion import Publicacion

TRAZA, TRAMO = 0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7
VALIDO = f"00-{TRAZA:032x}-{TRAMO:016x}-01".encode()


def _en_memoria():
    exportador = InMemorySpanExporter()
    proveedor = TracerProvider()
    proveedor.add_span_processor(SimpleSpanProcessor(exportador))
    return Trazas(proveedor), exportador


class _Mensaje:
    def __init__(self, headers):
        self.headers = headers


def test_sin_endpoint_apagadas_con_el_nombre_de_cada_servicio():
    assert leer({}, "gpr-x") == ConfigTrazas("gpr-x", None)
    assert Trazas.iniciar(leer({}, "gpr-x")) is APAGADAS
    assert config_procesador.leer({"GPR_KAFKA_BOOTSTRAP": "k:9092"}).trazas == ConfigTrazas("gpr-procesador")
    ingesta = config_ingesta.leer({"GPR_KAFKA_BOOTSTRAP": "k:9092", "GPR_INGESTA_CREDENCIALES": "c.yaml"})
    assert ingesta.trazas == ConfigTrazas("gpr-ingesta")


def test_variables_estandar():
    assert leer({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://colector:4317"}, "gpr-x") == \
        ConfigTrazas("gpr-x", "http://colector:4317")
    assert leer({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4317", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://b:4317",
                 "OTEL_SERVICE_NAME": "mi-ingesta"}, "gpr-x") == ConfigTrazas("mi-ingesta", "https://b:4317")
    assert leer({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4317", "OTEL_SDK_DISABLED": "true"}, "gpr-x").endpoint is None
    assert leer({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
                "gpr-x").endpoint == "http://a:4317"


@pytest.mark.parametrize("entorno, variable", [
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "colector:4317"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "ftp://c"}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
     "OTEL_EXPORTER_OTLP_PROTOCOL"),
])
def test_un_valor_invalido_nombra_la_variable(entorno, variable):
    with pytest.raises(ConfiguracionInvalida, match=variable):
        leer(entorno, "gpr-x")


def test_con_endpoint_un_proveedor_que_exporta_por_otlp():
    trazas = Trazas.iniciar(ConfigTrazas("gpr-prueba", "http://127.0.0.1:9"))
    try:
        assert trazas.activas
        assert trazas.proveedor.resource.attributes["service.name"] == "gpr-prueba"
    finally:
        # Nada que exportar: cierra sin esperar al colector (que no existe).
        trazas.cerrar()


def test_apagadas_no_recorren_los_registros():
    def registros():
        raise AssertionError("con las trazas apagadas no se recorre ningún registro")
        yield

    tramo = APAGADAS.consumo(topicos.EVENTOS, registros())
    assert tramo is TRAMO_APAGADO and tramo.cabeceras is None and tramo.contexto is None
    assert APAGADAS.envio(topicos.INDICADORES) is TRAMO_APAGADO


def test_cabeceras_hostiles_no_rompen_nada():
    otro = f"00-{TRAZA + 1:032x}-{TRAMO:016x}-01".encode()
    cabeceras = [
        None, (), [("gpr-lote", b"1")],
        [("traceparent", b"\xff\xfe basura")],
        [("traceparent", None)],
        [("traceparent", b"00-" + b"0" * 32 + b"-" + b"0" * 16 + b"-01")],  # identificadores nulos
        [("traceparent", b"no-es-w3c")],
        [("traceparent", VALIDO), ("tracestate", b"\xff")],
        {"traceparent": VALIDO},  # faust puede entregar un mapa
        [("gpr-lote", b"1"), ("traceparent", otro)],
        [("traceparent", VALIDO)],
    ]
    contextos, registros, omitidos = contextos_de_registros(cabeceras)
    assert (registros, omitidos) == (len(cabeceras), 0)
    assert [(c.trace_id, c.span_id) for c in contextos] == [(TRAZA, TRAMO), (TRAZA + 1, TRAMO)]


def test_un_lote_enlaza_hasta_el_maximo_y_cuenta_el_resto():
    trazas, exportador = _en_memoria()
    n = VINCULOS_MAXIMOS + 5
    mensajes = [_Mensaje([("traceparent", f"00-{TRAZA:032x}-{i + 1:016x}-01".encode())]) for i in range(n)]
    with trazas.consumo(topicos.APORTES, mensajes):
        pass
    (tramo,) = exportador.get_finished_spans()
    assert (tramo.parent.trace_id, tramo.parent.span_id) == (TRAZA, 1)
    assert [v.context.span_id for v in tramo.links] == list(range(1, VINCULOS_MAXIMOS + 1))
    assert tramo.attributes["gpr.vinculos_omitidos"] == 5
    assert tramo.attributes["messaging.batch.message_count"] == n


def test_un_lote_que_falla_queda_como_error_y_el_error_sigue():
    trazas, exportador = _en_memoria()
    with pytest.raises(KeyError):
        with trazas.consumo(topicos.EVENTOS, [_Mensaje([("traceparent", VALIDO)])]):
            raise KeyError("x")
    (tramo,) = exportador.get_finished_spans()
    assert tramo.status.status_code is StatusCode.ERROR and tramo.status.description == "KeyError"
    assert [e.name for e in tramo.events] == ["exception"]


def test_la_pasada_enlaza_cada_agregacion_una_vez_hasta_el_maximo():
    trazas, exportador = _en_memoria()
    cfg = config_procesador.leer({"GPR_KAFKA_BOOTSTRAP": "k:9092"})
    agregacion = Agregacion({}, {}, {}, cargar_catalogo(CATALOGO), 7 * 86400)
    publicacion = Publicacion(cfg, IndiceMetas([]), MetricasProcesador(), agregacion, lambda: 0.0, trazas)
    contextos = [SpanContext(TRAZA, i + 1, is_remote=False, trace_flags=TraceFlags(1))
                 for i in range(VINCULOS_MAXIMOS + 2)]
    publicacion.marcar(set(), contextos[0])  # sin agencias tocadas: no cuenta
    for contexto in contextos:
        # Una vez por partición del lote de agregación, con el mismo contexto.
        publicacion.marcar({"reniec"}, contexto)
        publicacion.marcar({"sunarp"}, contexto)

    async def enviar(*_args, **_kwargs):
        raise AssertionError("no hay series que publicar")

    asyncio.run(publicacion.publicar(lambda: False, enviar))
    (tramo,) = exportador.get_finished_spans()
    assert [v.context.span_id for v in tramo.links] == list(range(1, VINCULOS_MAXIMOS + 1))
    assert tramo.parent.span_id == 1
    assert tramo.attributes["gpr.vinculos_omitidos"] == 2
    # La pasada siguiente empieza sin enlaces.
    asyncio.run(publicacion.publicar(lambda: False, enviar))
    assert exportador.get_finished_spans()[-1].links == ()


def test_el_padre_es_el_primer_contexto_muestreado():
    """Con el muestreo por omisión (ParentBased) un tramo hereda la decisión de su padre: un
    primer registro de un cliente que no muestrea (banderas 00) no apaga el lote entero."""
    trazas, exportador = _en_memoria()
    sin_muestrear = f"00-{TRAZA + 7:032x}-{TRAMO:016x}-00".encode()
    with trazas.consumo(topicos.EVENTOS, [_Mensaje([("traceparent", sin_muestrear)]),
                                          _Mensaje([("traceparent", VALIDO)])]):
        pass
    (tramo,) = exportador.get_finished_spans()
    assert (tramo.parent.trace_id, tramo.parent.span_id) == (TRAZA, TRAMO)
    assert [(v.context.trace_id, v.context.trace_flags.sampled) for v in tramo.links] == \
        [(TRAZA + 7, False), (TRAZA, True)]
    # Si ninguno muestrea, el lote tampoco se registra.
    with trazas.consumo(topicos.EVENTOS, [_Mensaje([("traceparent", sin_muestrear)])]):
        pass
    assert len(exportador.get_finished_spans()) == 1
