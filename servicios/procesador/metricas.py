"""Métricas Prometheus propias del procesador (registro dedicado, sin estado global)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, PlatformCollector, ProcessCollector

# Valor de la etiqueta `agencia` de lo que no nombra una agencia del catálogo (así la etiqueta
# tiene tantos valores como agencias, diga lo que diga el emisor).
AGENCIA_DESCONOCIDA = "desconocida"


@dataclass
class MetricasProcesador:
    registro: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        # Memoria y CPU del proceso (process_*), como en la consulta y la ingesta: el tablero
        # de salud de la plataforma los muestra por servicio.
        ProcessCollector(registry=self.registro)
        PlatformCollector(registry=self.registro)
        self.lote_segundos = Histogram(
            "gpr_procesador_lote_segundos",
            "Duración del proceso de un lote de registros, por etapa (reparto: hasta que lo "
            "repartido está escrito; casos: incluye esperar la confirmación del changelog antes "
            "de enviar los agregados; agregacion).",
            ["etapa"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registro,
        )
        self.publicacion_segundos = Histogram(
            "gpr_procesador_publicacion_segundos",
            "Duración de una pasada de publicación de instantáneas (empieza al haber cambios, con al "
            "menos GPR_INTERVALO_PUBLICACION y 4 veces la pasada anterior entre dos): lo que dura "
            "una pasada se suma a la frescura de lo publicado.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registro,
        )
        self.aceptados = Counter(
            "gpr_procesador_eventos_aceptados", "Eventos aceptados y aplicados a su caso, por agencia.",
            ["agencia"], registry=self.registro,
        )
        self.duplicados = Counter(
            "gpr_procesador_eventos_duplicados", "Eventos repetidos (misma fuente y evento_id) que no cambiaron nada.",
            registry=self.registro,
        )
        self.rechazados = Counter(
            "gpr_procesador_eventos_rechazados",
            "Eventos que este trabajador envió al tópico de rechazados, por motivo (el total de la "
            "plataforma, que sobrevive reinicios, lo da gpr_eventos_rechazados_total de la consulta); "
            "agencia «desconocida» si el evento no nombra una del catálogo.",
            ["motivo", "agencia"], registry=self.registro,
        )
        self.relecturas = Counter(
            "gpr_procesador_relecturas",
            "Veces que faltaba un offset antes del registro recibido y se volvió a leer la "
            "partición desde él (faust descarta registros al reanudar tras una recuperación).",
            ["topico"], registry=self.registro,
        )
        self.instantaneas = Counter(
            "gpr_procesador_instantaneas_publicadas", "Instantáneas de indicadores publicadas en gpr.indicadores.v1.",
            registry=self.registro,
        )
