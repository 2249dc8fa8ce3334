"""Trazas de punta a punta (docs/trazas.md): la Ingesta real publica en el broker embebido, sus
registros (con sus cabeceras) pasan por la ruta real del procesador y la publicación sobre el
puerto en memoria, y el exportador en memoria de OpenTelemetry recibe los tramos.

Lo esperado se arma a mano: el `traceparent` de cada registro se lee partiendo el texto W3C
(`00-<traza>-<tramo>-<banderas>`), y se compara con los identificadores de los tramos
exportados, sin usar el propagador del proyecto."""

from __future__ import annotations

import asyncio
import time

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from apoyo.ingesta import (
    CATALOGO,
    AHORA,
    B,
    E,
    H,
    PARTICIONES,
    R,
    TOKEN_RENIEC,
    TOKEN_SUNARP,
    autorizacion,
    evento,
    ingesta_en_proceso,
)
from apoyo.kafka import leer_todo
from apoyo.puerto_memoria import TP, Evento, Kafka, PuertoMemoria, TablaMemoria
from gpr.v1 import indicadores_pb2 as ipb
from gpr.v1 import ingesta_pb2
from servicios.comun import topicos
from servicios.comun.eventos import decodificar
from servicios.comun.metas import IndiceMetas
from servicios.comun.trazas import APAGADAS, Trazas
from servicios.procesador import config as config_procesador
from servicios.procesador.dominio.agregacion import Agregacion
from servicios.procesador.dominio.etapa_casos import EtapaCasos
from servicios.procesador.metricas import MetricasProcesador
from servicios.procesador.publicacion import Publicacion
from servicios.procesador.ruta import Ruta

pytestmark = [pytest.mark.integracion, pytest.mark.timeout(120)]

D = 86400
CFG = config_procesador.leer({"GPR_KAFKA_BOOTSTRAP": "k:9092"})


def _trazas_en_memoria() -> tuple[Trazas, InMemorySpanExporter]:
    exportador = InMemorySpanExporter()
    proveedor = TracerProvider()
    proveedor.add_span_processor(SimpleSpanProcessor(exportador))
    return Trazas(proveedor), exportador


def _traceparent(cabeceras) -> tuple[int, int] | None:
    """(traza, tramo) del `traceparent` de un registro, leído a mano; None si no lo trae."""
    valores = [v for k, v in cabeceras or () if k == "traceparent"]
    if not valores:
        return None
    assert len(valores) == 1, cabeceras
    version, traza, tramo, banderas = valores[0].decode().split("-")
    # Banderas: 01 muestreada; el SDK marca además 02 (identificador aleatorio, W3C nivel 2).
    assert (version, len(traza), len(tramo), int(banderas, 16) & 1) == ("00", 32, 16, 1)
    return int(traza, 16), int(tramo, 16)


def _ids(contexto) -> tuple[int, int]:
    return contexto.trace_id, contexto.span_id


def _leer_eventos_publicados(bootstrap, evento_ids: set[str]):
    """Los registros de gpr.eventos.v1 que escribió la ingesta, con sus cabeceras."""
    registros = leer_todo(bootstrap, topicos.EVENTOS, lambda rs: {
        e.evento_id for r in rs for e in decodificar(r.value, r.headers)} >= evento_ids, limite_s=30)
    assert {e.evento_id for r in registros for e in decodificar(r.value, r.headers)} == evento_ids
    return registros


class Trabajador:
    """La ruta y la publicación reales sobre el puerto en memoria, con `trazas`."""

    def __init__(self, trazas: Trazas):
        self.kafka = Kafka()
        self.puerto = PuertoMemoria(self.kafka, azar=None)
        casos = TablaMemoria("casos", self.puerto)
        tablas = [TablaMemoria(n, self.puerto) for n in ("cubos", "vencimientos", "agencias")]
        agregacion = Agregacion(*tablas, catalogo=CATALOGO, tardanza_maxima_s=7 * D)
        metricas = MetricasProcesador()
        self.publicacion = Publicacion(CFG, IndiceMetas([]), metricas, agregacion, lambda: float(AHORA), trazas)
        etapa = EtapaCasos(CATALOGO, 1000 * D, lambda: AHORA)
        self.ruta = Ruta(self.puerto, etapa, casos, agregacion, tablas, self.publicacion, metricas, PARTICIONES,
                         trazas=trazas)

    def _todo(self, topico: str) -> list[Evento]:
        """Un solo lote con todo lo que hay en `topico`, por partición y en orden."""
        eventos = []
        for tp in sorted((tp for tp in self.kafka.logs if tp.topic == topico), key=lambda tp: tp.partition):
            log = self.kafka.log(tp)
            eventos += [Evento(m, self.puerto) for m in log[self.puerto.posicion.get(tp, 0):]]
            self.puerto.posicion[tp] = len(log)
        return eventos

    async def _una_vez(self, topico: str):
        yield self._todo(topico)

    def correr(self, registros) -> list:
        """Los registros de Kafka, por el reparto, las dos etapas y una pasada de publicación;
        devuelve el primer registro del lote de la etapa por caso (el que da el padre de su
        tramo)."""
        for r in registros:
            self.kafka.escribir(TP(topicos.EVENTOS, r.partition), r.key, r.value, r.headers)
        primero = []

        async def correr():
            ruta = self.ruta
            await ruta.procesar_en_orden(self._una_vez(topicos.EVENTOS), topicos.EVENTOS,
                                         ruta.repartir_lote_de_eventos)
            await self.puerto.vaciar()
            primero.append(self.registros(topicos.EVENTOS_POR_AGENCIA)[0])
            await ruta.procesar_en_orden(self._una_vez(topicos.EVENTOS_POR_AGENCIA), topicos.EVENTOS_POR_AGENCIA,
                                         ruta.procesar_lote_de_eventos)
            await ruta.procesar_en_orden(self._una_vez(topicos.APORTES), topicos.APORTES,
                                         ruta.agregar_lote_de_aportes)
            await self.publicacion.publicar(lambda: False, self.puerto.enviar)
            await self.puerto.vaciar()

        asyncio.run(correr())
        return primero[0]

    def registros(self, topico: str):
        return [m for tp, log in self.kafka.logs.items() if tp.topic == topico for m in log]


def _tramos(exportador) -> dict[str, list]:
    por_nombre: dict[str, list] = {}
    for tramo in exportador.get_finished_spans():
        por_nombre.setdefault(tramo.name, []).append(tramo)
    return por_nombre


def _atributos_kafka(tramo, topico: str, operacion: str) -> None:
    a = tramo.attributes
    assert (a["messaging.system"], a["messaging.destination.name"], a["messaging.operation.type"]) == \
        ("kafka", topico, operacion), dict(a)


def test_una_traza_de_la_ingesta_a_la_instantanea_publicada(bootstrap):
    trazas, exportador = _trazas_en_memoria()
    # c1 con dos eventos (un LoteEventos) y c2 con uno (un Evento suelto, en otra partición o
    # en el mismo lote): todos los registros de la petición llevan el contexto.
    eventos = [evento("tr-1", R, caso="c1", t=B + H), evento("tr-2", E, caso="c1", t=B + 2 * H),
               evento("tr-3", R, caso="c2", t=B + 3 * H)]
    with ingesta_en_proceso(bootstrap, trazas=trazas) as (_, _, stub):
        respuesta = stub.Publicar(ingesta_pb2.SolicitudPublicar(eventos=eventos),
                                  metadata=autorizacion(TOKEN_RENIEC), timeout=10)
        assert respuesta.aceptados == 3
        registros = _leer_eventos_publicados(bootstrap, {"tr-1", "tr-2", "tr-3"})

    tramos = _tramos(exportador)
    assert sorted(tramos) == ["send gpr.eventos.v1"]
    (ingesta,) = tramos["send gpr.eventos.v1"]
    assert ingesta.kind is SpanKind.PRODUCER and ingesta.parent is None
    _atributos_kafka(ingesta, topicos.EVENTOS, "send")
    assert (ingesta.attributes["gpr.agencia_id"], ingesta.attributes["gpr.eventos_aceptados"],
            ingesta.attributes["gpr.eventos_rechazados"]) == ("reniec", 3, 0)
    assert ingesta.attributes["messaging.batch.message_count"] == len(registros)
    traza = ingesta.context.trace_id
    # Cada registro escrito en Kafka lleva el contexto del tramo de la ingesta.
    assert [_traceparent(r.headers) for r in registros] == [_ids(ingesta.context)] * len(registros)

    trabajador = Trabajador(trazas)
    trabajador.correr(registros)
    tramos = _tramos(exportador)
    # El reparto abre su tramo y cada paquete que escribe lleva su contexto.
    assert sorted(tramos) == ["process gpr.aportes.v1", "process gpr.eventos.agencias.v1", "process gpr.eventos.v1",
                              "send gpr.eventos.v1", "send gpr.indicadores.v1"]
    (reparto,), (casos,), (agregacion,), (publicacion,) = (tramos[n] for n in (
        "process gpr.eventos.v1", "process gpr.eventos.agencias.v1", "process gpr.aportes.v1",
        "send gpr.indicadores.v1"))
    repartidos = trabajador.registros(topicos.EVENTOS_POR_AGENCIA)
    assert repartidos and [_traceparent(m.headers) for m in repartidos] == [_ids(reparto.context)] * len(repartidos)
    # Una sola traza: cada tramo es hijo del anterior y lo enlaza.
    for anterior, tramo in ((ingesta, reparto), (reparto, casos), (casos, agregacion), (agregacion, publicacion)):
        assert tramo.context.trace_id == traza
        assert _ids(tramo.parent) == _ids(anterior.context)
        assert [_ids(v.context) for v in tramo.links] == [_ids(anterior.context)]
    assert reparto.kind is SpanKind.CONSUMER and casos.kind is SpanKind.CONSUMER
    assert agregacion.kind is SpanKind.CONSUMER and publicacion.kind is SpanKind.PRODUCER
    _atributos_kafka(reparto, topicos.EVENTOS, "process")
    _atributos_kafka(casos, topicos.EVENTOS_POR_AGENCIA, "process")
    _atributos_kafka(agregacion, topicos.APORTES, "process")
    _atributos_kafka(publicacion, topicos.INDICADORES, "send")
    assert reparto.attributes["messaging.batch.message_count"] == len(registros)
    assert casos.attributes["messaging.batch.message_count"] == len(repartidos)
    assert (casos.attributes["gpr.eventos_aceptados"], casos.attributes["gpr.eventos_duplicados"],
            casos.attributes["gpr.eventos_rechazados"]) == (3, 0, 0)

    # Los agregados llevan el contexto del tramo de la etapa por caso…
    aportes = trabajador.registros(topicos.APORTES)
    assert aportes and {_traceparent(m.headers) for m in aportes} == {_ids(casos.context)}
    assert agregacion.attributes["messaging.batch.message_count"] == len(aportes)
    # …y cada instantánea publicada (las de la serie de estos eventos entre ellas), el del tramo
    # de la publicación.
    instantaneas = trabajador.registros(topicos.INDICADORES)
    series = {(i.agencia_id, i.servicio_id) for i in map(ipb.Indicador.FromString, (m.value for m in instantaneas))}
    # (Al arrancar se publica cada serie de la agencia, también la de su otro servicio.)
    assert ("reniec", "dni-duplicado") in series and {a for a, _ in series} == {"reniec"}
    assert {_traceparent(m.headers) for m in instantaneas} == {_ids(publicacion.context)}
    publicados = len(instantaneas) + len(trabajador.registros(topicos.CUMPLIMIENTO))
    assert publicacion.attributes["messaging.batch.message_count"] == publicados


def test_lotes_de_varias_peticiones_se_enlazan_y_el_cliente_puede_abrir_la_traza(bootstrap):
    """Dos peticiones (dos trazas) en un lote: el tramo del lote es hijo del contexto de su
    primer registro y enlaza los dos; la traza que manda el cliente en `traceparent` sigue."""
    trazas, exportador = _trazas_en_memoria()
    traza_cliente, tramo_cliente = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331
    cliente = [("traceparent", f"00-{traza_cliente:032x}-{tramo_cliente:016x}-01")]
    with ingesta_en_proceso(bootstrap, trazas=trazas) as (_, _, stub):
        stub.Publicar(ingesta_pb2.SolicitudPublicar(eventos=[evento("l-1", caso="c1", t=B + H)]),
                      metadata=autorizacion(TOKEN_RENIEC), timeout=10)
        stub.Publicar(ingesta_pb2.SolicitudPublicar(eventos=[evento(
            "l-2", caso="c7", t=B + H, agencia="sunarp", servicio="certificado-literal")]),
            metadata=autorizacion(TOKEN_SUNARP) + cliente, timeout=10)
        registros = _leer_eventos_publicados(bootstrap, {"l-1", "l-2"})

    ingestas = {t.attributes["gpr.agencia_id"]: t for t in exportador.get_finished_spans()}
    assert ingestas["reniec"].parent is None
    # La petición de sunarp continúa la traza del cliente.
    assert ingestas["sunarp"].context.trace_id == traza_cliente
    assert _ids(ingestas["sunarp"].parent) == (traza_cliente, tramo_cliente) and ingestas["sunarp"].parent.is_remote
    assert ingestas["reniec"].context.trace_id != traza_cliente

    trabajador = Trabajador(trazas)
    primero = trabajador.correr(registros)
    tramos = _tramos(exportador)
    (reparto,), (casos,), (agregacion,), (publicacion,) = (tramos[n] for n in (
        "process gpr.eventos.v1", "process gpr.eventos.agencias.v1", "process gpr.aportes.v1",
        "send gpr.indicadores.v1"))
    # El del reparto: hijo del contexto del primer registro de su lote (el de una de las dos
    # peticiones); enlazado a las dos.
    assert _ids(reparto.parent) in {_traceparent(r.headers) for r in registros}
    assert reparto.context.trace_id == reparto.parent.trace_id
    assert {_ids(v.context) for v in reparto.links} == {_ids(t.context) for t in ingestas.values()}
    # El de la etapa por caso, hijo del reparto (el contexto de sus paquetes).
    assert _ids(casos.parent) == _traceparent(primero.headers) == _ids(reparto.context)
    assert [_ids(v.context) for v in casos.links] == [_ids(reparto.context)]
    assert [_ids(v.context) for v in agregacion.links] == [_ids(casos.context)]
    assert [_ids(v.context) for v in publicacion.links] == [_ids(agregacion.context)]
    # Las instantáneas de las dos agencias, con el contexto de la pasada.
    instantaneas = trabajador.registros(topicos.INDICADORES)
    assert {ipb.Indicador.FromString(m.value).agencia_id for m in instantaneas} == {"reniec", "sunarp"}
    assert {_traceparent(m.headers) for m in instantaneas} == {_ids(publicacion.context)}


def test_sin_endpoint_no_hay_trazas_ni_cabeceras(bootstrap):
    """Sin OTEL_EXPORTER_OTLP_ENDPOINT la ingesta arranca sin trazas (ni proveedor ni
    exportador) y ningún registro, de la ingesta al procesador, lleva contexto."""
    with ingesta_en_proceso(bootstrap) as (servicio, _, stub):
        assert servicio.servidor.trazas is APAGADAS
        stub.Publicar(ingesta_pb2.SolicitudPublicar(eventos=[evento("s-1", caso="c1", t=B + H),
                                                             evento("s-2", E, caso="c1", t=B + 2 * H)]),
                      metadata=autorizacion(TOKEN_RENIEC), timeout=10)
        registros = _leer_eventos_publicados(bootstrap, {"s-1", "s-2"})
    assert [_traceparent(r.headers) for r in registros] == [None] * len(registros)
    trabajador = Trabajador(APAGADAS)
    trabajador.correr(registros)
    # Los paquetes del reparto llevan la cabecera de lote y la de origen, sin contexto.
    repartidos = trabajador.registros(topicos.EVENTOS_POR_AGENCIA)
    assert repartidos and [_traceparent(m.headers) for m in repartidos] == [None] * len(repartidos)
    for topico in (topicos.APORTES, topicos.INDICADORES):
        salida = trabajador.registros(topico)
        assert salida and all(not m.headers for m in salida), topico


class ReceptorOtlp:
    """Un colector OTLP/gRPC mínimo: guarda (servicio, tramo) de cada exportación recibida."""

    def __init__(self):
        import threading
        from concurrent.futures import ThreadPoolExecutor

        import grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

        self._cerrojo = threading.Lock()
        self._tramos: list = []
        receptor = self

        class Servicio(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, solicitud, _contexto):  # noqa: N802
                with receptor._cerrojo:
                    for rs in solicitud.resource_spans:
                        servicio = next(a.value.string_value for a in rs.resource.attributes
                                        if a.key == "service.name")
                        receptor._tramos += [(servicio, t) for ss in rs.scope_spans for t in ss.spans]
                return trace_service_pb2.ExportTraceServiceResponse()

        self._servidor = grpc.server(ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Servicio(), self._servidor)
        self.puerto = self._servidor.add_insecure_port("127.0.0.1:0")
        self._servidor.start()

    def tramos(self) -> list:
        with self._cerrojo:
            return list(self._tramos)

    def cerrar(self) -> None:
        self._servidor.stop(0)


def test_otlp_de_la_ingesta_y_el_procesador_reales(bootstrap, procesos, tmp_path):
    """Los servicios reales con OTEL_EXPORTER_OTLP_ENDPOINT: la ingesta en proceso y el
    procesador como subproceso (faust, sus cabeceras y su productor de verdad) exportan a un
    colector OTLP de la prueba una sola traza, de la petición a la instantánea en Kafka."""
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    from apoyo.procesador import lanzar_procesador

    receptor = ReceptorOtlp()
    endpoint = f"http://127.0.0.1:{receptor.puerto}"
    try:
        lanzar_procesador(procesos, bootstrap, tmp_path, almacen="memoria", OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
                          OTEL_BSP_SCHEDULE_DELAY="200")
        with ingesta_en_proceso(bootstrap, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint) as (_, _, stub):
            stub.Publicar(ingesta_pb2.SolicitudPublicar(eventos=[
                evento("o-1", R, caso="c1", t=B + H), evento("o-2", E, caso="c1", t=B + 2 * H)]),
                metadata=autorizacion(TOKEN_RENIEC), timeout=10)
        # Al detenerse, la ingesta exportó su tramo.
        (ingesta,) = [t for s, t in receptor.tramos() if s == "gpr-ingesta"]
        assert (ingesta.name, ingesta.kind, ingesta.parent_span_id) == ("send gpr.eventos.v1",
                                                                         Span.SPAN_KIND_PRODUCER, b"")

        def de_la_traza():
            return {t.name: t for s, t in receptor.tramos() if s == "gpr-procesador" and t.trace_id == ingesta.trace_id}

        fin = time.monotonic() + 120
        while time.monotonic() < fin and "send gpr.indicadores.v1" not in de_la_traza():
            time.sleep(0.5)
        tramos = de_la_traza()
        assert sorted(tramos) == ["process gpr.aportes.v1", "process gpr.eventos.agencias.v1",
                                  "process gpr.eventos.v1", "send gpr.indicadores.v1"], \
            procesos.registro("procesador")[-3000:]
        reparto, casos, agregacion, publicacion = (tramos[n] for n in (
            "process gpr.eventos.v1", "process gpr.eventos.agencias.v1", "process gpr.aportes.v1",
            "send gpr.indicadores.v1"))
        for anterior, tramo in ((ingesta, reparto), (reparto, casos), (casos, agregacion), (agregacion, publicacion)):
            assert tramo.parent_span_id == anterior.span_id
            assert [(v.trace_id, v.span_id) for v in tramo.links] == [(anterior.trace_id, anterior.span_id)]
        assert (casos.kind, agregacion.kind, publicacion.kind) == (
            Span.SPAN_KIND_CONSUMER, Span.SPAN_KIND_CONSUMER, Span.SPAN_KIND_PRODUCER)

        # La instantánea de la serie de estos eventos, en Kafka, con el contexto de la pasada.
        esperado = (int.from_bytes(publicacion.trace_id, "big"), int.from_bytes(publicacion.span_id, "big"))

        def de_la_pasada(registros):
            return [r for r in registros if _traceparent(r.headers) == esperado]

        instantaneas = de_la_pasada(leer_todo(bootstrap, topicos.INDICADORES, de_la_pasada, limite_s=30))
        series = {(i.agencia_id, i.servicio_id) for i in (ipb.Indicador.FromString(r.value) for r in instantaneas)}
        assert ("reniec", "dni-duplicado") in series
    finally:
        receptor.cerrar()
