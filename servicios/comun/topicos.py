"""Nombres de los tópicos del contrato y su creación idempotente con kafka-python."""

from __future__ import annotations

import time

EVENTOS = "gpr.eventos.v1"
RECHAZADOS = "gpr.eventos.rechazados.v1"
INDICADORES = "gpr.indicadores.v1"
CUMPLIMIENTO = "gpr.cumplimiento.v1"
METAS = "gpr.metas.v1"
# Interno del procesador: aportes de la etapa por caso a la etapa por (agencia, servicio).
APORTES = "gpr.aportes.v1"

# Cabecera que marca un registro cuyo valor es un LoteEventos y no un Evento.
CABECERA_LOTE = "gpr-lote"
# Cabecera con el motivo de rechazo en gpr.eventos.rechazados.v1.
CABECERA_MOTIVO = "gpr-motivo"

_COMPACTADOS = {INDICADORES, METAS}

# Registro máximo de los tópicos internos del procesador (aportes y changelogs de sus tablas),
# y de lo que su productor envía. El agregado de un par se parte por debajo de ~0,5 MiB, pero
# un registro de miles de eventos repetidos reenvía en el suyo el aporte de cada uno: con el
# 1 MiB por omisión de Kafka, ese registro no se podría escribir nunca y el procesador caería
# una y otra vez en el mismo lote.
BYTES_MAXIMOS_REGISTRO_INTERNO = 16 * 1024 * 1024


def configuracion_interna() -> dict[str, str]:
    """Configuración de un tópico interno del procesador (aportes, changelogs)."""
    return {"max.message.bytes": str(BYTES_MAXIMOS_REGISTRO_INTERNO)}


def configuracion_topico(nombre: str) -> dict[str, str]:
    if nombre in _COMPACTADOS:
        return {"cleanup.policy": "compact"}
    if nombre == APORTES:
        return configuracion_interna()
    return {}


def crear_topicos(bootstrap: str, particiones: int, nombres: list[str] | None = None,
                  limite_s: float = 30.0, replicacion: int = 1) -> None:
    """Crea los tópicos que falten; los existentes se dejan como están.

    `replicacion`: réplicas de cada partición (1 en el broker embebido; 3 en producción).
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    nombres = nombres or [EVENTOS, RECHAZADOS, INDICADORES, CUMPLIMIENTO, APORTES]
    fin = time.monotonic() + limite_s
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="gpr-admin")
            break
        except KafkaError:
            if time.monotonic() > fin:
                raise
            time.sleep(0.5)
    try:
        existentes = set(admin.list_topics())
        nuevos = [
            NewTopic(n, particiones, replicacion, topic_configs=configuracion_topico(n))
            for n in nombres
            if n not in existentes
        ]
        if nuevos:
            try:
                admin.create_topics(nuevos)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()
