"""Trazas distribuidas con OpenTelemetry: Ingesta → cabeceras de Kafka → procesador →
instantánea publicada (docs/trazas.md).

Apagadas salvo que `OTEL_EXPORTER_OTLP_ENDPOINT` (o `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) nombre
un colector OTLP: entonces cada servicio exporta sus tramos por OTLP/gRPC. Apagadas no hay
proveedor, exportador ni cabeceras, y quien llama no recorre sus registros: `Trazas.activas`
es falso y cada tramo es `TRAMO_APAGADO`, que no hace nada.

El contexto viaja entre servicios en las cabeceras de los registros de Kafka (`traceparent` y
`tracestate`, W3C Trace Context), escritas y leídas por el propagador de OpenTelemetry. Las
etapas trabajan por lotes (muchos eventos por registro, muchos registros por lote), así que
cada tramo enlaza (*links*) los contextos distintos de sus entradas y es hijo del primero
(muestreado): la traza del primer registro de cada lote sigue de punta a punta, y las demás
llegan por enlaces.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlparse

from opentelemetry import trace
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from servicios.comun import config as c

# Las cabeceras del contrato (W3C Trace Context).
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# Enlaces por tramo: los mismos que admite el SDK por omisión (OTEL_SPAN_LINK_COUNT_LIMIT);
# de un lote con más contextos distintos se enlazan los primeros y se cuenta el resto.
VINCULOS_MAXIMOS = 128

_PROPAGADOR = TraceContextTextMapPropagator()


@dataclass(frozen=True)
class ConfigTrazas:
    """`endpoint` None: trazas apagadas."""

    servicio: str
    endpoint: str | None = None


def leer(env: Mapping[str, str], servicio: str) -> ConfigTrazas:
    """Las variables estándar de OpenTelemetry que decide el servicio; el resto
    (`OTEL_EXPORTER_OTLP_HEADERS`, `_CERTIFICATE`, `_TIMEOUT`, `OTEL_TRACES_SAMPLER`,
    `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_BSP_*`…) las lee el propio SDK al encenderse."""
    servicio = c.texto(env, "OTEL_SERVICE_NAME", servicio)
    nombre = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    endpoint = c.texto_opcional(env, nombre)
    if endpoint is None:
        nombre = "OTEL_EXPORTER_OTLP_ENDPOINT"
        endpoint = c.texto_opcional(env, nombre)
    if endpoint is None or c.texto(env, "OTEL_SDK_DISABLED", "false").lower() == "true":
        return ConfigTrazas(servicio)
    url = urlparse(endpoint)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise c.ConfiguracionInvalida(f"{nombre}={endpoint!r} debe ser una URL http:// o https:// del colector "
                                      "OTLP/gRPC (p. ej. http://otel-collector:4317)")
    for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocolo = c.texto_opcional(env, variable)
        if protocolo is not None:
            if protocolo != "grpc":
                raise c.ConfiguracionInvalida(f"{variable}={protocolo!r}: los servicios exportan OTLP por gRPC; "
                                              "use 'grpc' (puerto 4317 del colector) o quite la variable")
            break
    return ConfigTrazas(servicio, endpoint)


def _contexto(portador: dict[str, str]) -> SpanContext | None:
    contexto = trace.get_current_span(_PROPAGADOR.extract(portador)).get_span_context()
    return contexto if contexto.is_valid else None


def contextos_de_registros(todas_las_cabeceras: Iterable) -> tuple[list[SpanContext], int, int]:
    """Los contextos distintos que traen los registros (cabeceras: pares o, de faust, un
    mapa), en orden de llegada y hasta `VINCULOS_MAXIMOS`; cuántos registros se leyeron, y
    cuántos contextos distintos más quedaron sin interpretar. Una cabecera ilegible es un
    registro sin contexto, nunca un error."""
    # Un lote trae pocos contextos distintos (uno por petición a la ingesta): se juntan los
    # valores crudos y solo esos se interpretan.
    vistos: dict[tuple, None] = {}
    registros = 0
    for cabeceras in todas_las_cabeceras:
        registros += 1
        if not cabeceras:
            continue
        padre = estado = None
        for clave, valor in (cabeceras if isinstance(cabeceras, (list, tuple)) else cabeceras.items()):
            if clave == TRACEPARENT:
                padre = valor
            elif clave == TRACESTATE:
                estado = valor
        if padre is not None:
            vistos[padre, estado] = None
    contextos, claves = [], set()
    omitidos = 0
    for padre, estado in vistos:
        if len(contextos) == VINCULOS_MAXIMOS:
            # Interpretar un contexto es lo caro de la traza en una etapa: así su costo por
            # lote queda acotado.
            omitidos += 1
            continue
        if not isinstance(padre, bytes):
            continue
        portador = {TRACEPARENT: padre.decode("ascii", "replace")}
        if isinstance(estado, bytes):
            portador[TRACESTATE] = estado.decode("ascii", "replace")
        contexto = _contexto(portador)
        if contexto is not None and (contexto.trace_id, contexto.span_id) not in claves:
            claves.add((contexto.trace_id, contexto.span_id))
            contextos.append(contexto)
    return contextos, registros, omitidos


def contexto_de_metadatos(metadatos) -> SpanContext | None:
    """El contexto W3C que manda un cliente gRPC en sus metadatos (`traceparent`), si lo manda."""
    portador = {}
    for clave, valor in metadatos or ():
        if clave in (TRACEPARENT, TRACESTATE):
            portador[clave] = valor if isinstance(valor, str) else valor.decode("ascii", "replace")
    return _contexto(portador) if TRACEPARENT in portador else None


class Tramo:
    """Un tramo en curso (con `with`), o el apagado (`span` None), que no hace nada.

    `cabeceras`: las que llevan los registros que el tramo escribe (None apagado);
    `contexto`: su SpanContext, para enlazarlo desde otro tramo del mismo proceso."""

    __slots__ = ("span", "cabeceras", "registros")

    def __init__(self, span=None):
        self.span = span
        self.cabeceras: list[tuple[str, bytes]] | None = None
        # Registros escritos con `envolver`.
        self.registros = 0
        if span is not None:
            portador: dict[str, str] = {}
            _PROPAGADOR.inject(portador, context=trace.set_span_in_context(span))
            self.cabeceras = [(clave, valor.encode()) for clave, valor in portador.items()]

    @property
    def activo(self) -> bool:
        return self.span is not None

    @property
    def contexto(self) -> SpanContext | None:
        return self.span.get_span_context() if self.span is not None else None

    def anotar(self, **atributos) -> None:
        if self.span is not None:
            self.span.set_attributes({f"gpr.{clave}": valor for clave, valor in atributos.items()})

    def envolver(self, enviar: Callable[..., Awaitable]) -> Callable[..., Awaitable]:
        """`enviar(topico, clave, valor)` que escribe las cabeceras del tramo y cuenta registros."""
        if self.span is None:
            return enviar
        cabeceras = self.cabeceras

        async def enviar_con_contexto(topico, clave, valor):
            self.registros += 1
            return await enviar(topico, clave, valor, cabeceras=cabeceras)

        return enviar_con_contexto

    def __enter__(self) -> Tramo:
        return self

    def __exit__(self, tipo, error, _traza) -> bool:
        span = self.span
        if span is not None:
            if self.registros:
                span.set_attribute("messaging.batch.message_count", self.registros)
            if error is not None:
                if isinstance(error, Exception):
                    span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            span.end()
        return False


TRAMO_APAGADO = Tramo()


class Trazas:
    """Los tramos de un servicio; sin proveedor (`APAGADAS`), ninguno.

    Nombres y atributos siguen las convenciones de mensajería de OpenTelemetry:
    `send <tópico>` (PRODUCER) para lo que se escribe, `process <tópico>` (CONSUMER) para un
    lote leído, con `messaging.system=kafka` y `messaging.destination.name`."""

    def __init__(self, proveedor=None):
        self.proveedor = proveedor
        self.activas = proveedor is not None
        self._trazador = proveedor.get_tracer("gpr-monitor") if proveedor is not None else None

    @classmethod
    def iniciar(cls, cfg: ConfigTrazas) -> Trazas:
        """Con un endpoint, un proveedor que exporta por OTLP/gRPC en segundo plano (lotes de
        tramos en un hilo del SDK: un colector caído no frena al servicio, pierde tramos);
        sin él, `APAGADAS` (ni siquiera se importa el SDK)."""
        if cfg.endpoint is None:
            return APAGADAS
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        proveedor = TracerProvider(resource=Resource.create({SERVICE_NAME: cfg.servicio}))
        proveedor.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=cfg.endpoint)))
        return cls(proveedor)

    def cerrar(self) -> None:
        """Exporta lo pendiente y cierra el exportador."""
        if self.proveedor is not None:
            self.proveedor.shutdown()

    def _tramo(self, operacion: str, tipo: SpanKind, topico: str, contextos: list[SpanContext],
               padre: SpanContext | None = None, mensajes: int | None = None, omitidos: int = 0) -> Tramo:
        atributos = {
            "messaging.system": "kafka",
            "messaging.operation.name": operacion,
            "messaging.operation.type": operacion,
            "messaging.destination.name": topico,
        }
        if mensajes is not None:
            atributos["messaging.batch.message_count"] = mensajes
        omitidos += max(len(contextos) - VINCULOS_MAXIMOS, 0)
        if omitidos:
            atributos["gpr.vinculos_omitidos"] = omitidos
        if contextos:
            # El primero muestreado: con el muestreo por omisión (ParentBased) el tramo hereda la
            # decisión de su padre, y un cliente que no muestrea no debe apagar el lote entero.
            padre = next((c for c in contextos if c.trace_flags.sampled), contextos[0])
        span = self._trazador.start_span(
            f"{operacion} {topico}", kind=tipo, attributes=atributos,
            context=trace.set_span_in_context(NonRecordingSpan(padre)) if padre is not None else None,
            links=[Link(contexto) for contexto in contextos[:VINCULOS_MAXIMOS]],
        )
        return Tramo(span)

    def consumo(self, topico: str, mensajes: Iterable) -> Tramo:
        """El tramo de procesar un lote de `mensajes` (con `.headers`) de `topico`: hijo del
        contexto del primero, enlazado a los de todos. Apagadas, `mensajes` no se recorre."""
        if not self.activas:
            return TRAMO_APAGADO
        contextos, registros, omitidos = contextos_de_registros(m.headers for m in mensajes)
        return self._tramo("process", SpanKind.CONSUMER, topico, contextos, mensajes=registros, omitidos=omitidos)

    def envio(self, topico: str, contextos: list[SpanContext] = (), padre: SpanContext | None = None) -> Tramo:
        """El tramo de escribir registros en `topico`: hijo de `padre` (o del primero de
        `contextos`), enlazado a `contextos`."""
        if not self.activas:
            return TRAMO_APAGADO
        return self._tramo("send", SpanKind.PRODUCER, topico, list(contextos), padre)


APAGADAS = Trazas()
