"""Métricas Prometheus propias de la ingesta (registro dedicado, sin estado global)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, PlatformCollector, ProcessCollector

ACEPTADO, RECHAZADO = "aceptado", "rechazado"


@dataclass
class MetricasIngesta:
    registro: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        # `agencia` es la del token y no el agencia_id del evento: lo escribe el cliente y
        # cualquier texto crearía una serie nueva. `motivo` es la parte antes de ':' del
        # motivo de rechazo (como en el procesador); vacío en los aceptados.
        self.eventos = Counter(
            "gpr_ingesta_eventos",
            "Eventos respondidos por la ingesta: aceptados (confirmados por Kafka) o rechazados, por motivo.",
            ["agencia", "resultado", "motivo"], registry=self.registro,
        )
        self.kafka_listo = Gauge(
            "gpr_ingesta_kafka_listo",
            "1 si el productor de Kafka de la ingesta está conectado y el último sondeo lo vio escribir.",
            registry=self.registro,
        )
        # Lo que se rechaza entero, sin llegar a ser eventos (el cliente recibe el código gRPC;
        # no va al tópico de rechazados). `agencia` vacía si no se autenticó. `motivo` es un
        # vocabulario cerrado (ver docs/ingesta.md), nunca texto del cliente.
        self.solicitudes_rechazadas = Counter(
            "gpr_ingesta_solicitudes_rechazadas",
            "Peticiones de la ingesta rechazadas enteras, por motivo.",
            ["agencia", "motivo"], registry=self.registro,
        )
        self.productores = Counter(
            "gpr_ingesta_productores_creados",
            "Productores de Kafka que la ingesta creó: el primero y uno más cada vez que sanó tras un fallo.",
            registry=self.registro,
        )
        self.conexiones_fallidas = Counter(
            "gpr_ingesta_conexiones_fallidas",
            "Intentos fallidos de conectar un productor de Kafka (crecen mientras Kafka no está).",
            registry=self.registro,
        )
        ProcessCollector(registry=self.registro)
        PlatformCollector(registry=self.registro)

    def contar(self, agencia: str, motivos: list[str | None]) -> None:
        aceptados = sum(1 for m in motivos if m is None)
        if aceptados:
            self.eventos.labels(agencia=agencia, resultado=ACEPTADO, motivo="").inc(aceptados)
        por_motivo: dict[str, int] = {}
        for motivo in motivos:
            if motivo is not None:
                clase = motivo.split(":")[0]
                por_motivo[clase] = por_motivo.get(clase, 0) + 1
        for clase, cuantos in por_motivo.items():
            self.eventos.labels(agencia=agencia, resultado=RECHAZADO, motivo=clase).inc(cuantos)
