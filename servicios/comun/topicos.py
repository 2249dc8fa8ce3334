"""Nombres de los tópicos del contrato, su creación idempotente con kafka-python y el ajuste
del registro máximo de los tópicos internos que ya existían."""

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


class TopicoInadecuado(RuntimeError):
    """Un tópico interno que ya existía admite registros más chicos que los del procesador y
    el broker no deja leerlo o cambiarlo."""


def _admin(bootstrap: str, limite_s: float):
    """Un cliente de administración; reintenta mientras el broker arranca."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    fin = time.monotonic() + limite_s
    while True:
        try:
            return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="gpr-admin")
        except KafkaError:
            if time.monotonic() > fin:
                raise
            time.sleep(0.5)


def crear_topicos(bootstrap: str, particiones: int, nombres: list[str] | None = None,
                  limite_s: float = 30.0, replicacion: int = 1) -> None:
    """Crea los tópicos que falten; los existentes se dejan como están.

    `replicacion`: réplicas de cada partición (1 en el broker embebido; 3 en producción).
    """
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    nombres = nombres or [EVENTOS, RECHAZADOS, INDICADORES, CUMPLIMIENTO, APORTES]
    admin = _admin(bootstrap, limite_s)
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


def ajustar_registro_maximo(admin, nombres: list[str]) -> dict[str, int | None]:
    """Sube `max.message.bytes` a `BYTES_MAXIMOS_REGISTRO_INTERNO` en los tópicos de `nombres`
    que ya existen y admiten menos; devuelve los cambiados con el valor que tenían (None si el
    broker no lo informaba).

    Un tópico creado por una versión anterior (o a mano) con el 1 MiB por omisión no falla al
    arrancar, sino el día que un lote arma un agregado más grande: el procesador caería en ese
    lote una y otra vez. Por eso se comprueba al arrancar y, si el broker no deja cambiarlo
    (permisos), `TopicoInadecuado` dice qué tópico y cómo hacerlo a mano.

    El cambio es incremental (IncrementalAlterConfigs): el resto de la configuración del
    tópico, como la compactación de un changelog, queda igual. `admin`: un KafkaAdminClient.
    """
    from kafka.admin import ConfigResource, ConfigResourceType
    from kafka.errors import KafkaError

    requerido = BYTES_MAXIMOS_REGISTRO_INTERNO
    existentes = set(admin.list_topics())
    cambiados: dict[str, int | None] = {}
    for nombre in nombres:
        if nombre not in existentes:
            continue
        try:
            # «all» y no «modified»: Apache Kafka solo informa como modificado lo fijado en el
            # tópico, y el valor que rige puede venir del broker.
            descripcion = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, nombre)],
                                                 config_filter="all")
        except KafkaError as error:
            raise TopicoInadecuado(_no_se_pudo(nombre, None, f"no se pudo leer su configuración: {error}")) from error
        entrada = descripcion.get("topic", {}).get(nombre, {}).get("max.message.bytes")
        actual = int(entrada["value"]) if entrada and entrada.get("value") else None
        if actual is not None and actual >= requerido:
            continue
        try:
            respuesta = admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, nombre, configs={"max.message.bytes": str(requerido)})],
                raise_on_unknown=False, incremental=True)
            resultado = respuesta.get("topic", {}).get(nombre, "sin respuesta del broker")
        except KafkaError as error:
            resultado = str(error)
        if resultado != "OK":
            raise TopicoInadecuado(_no_se_pudo(nombre, actual, f"el broker no dejó cambiarlo: {resultado}"))
        cambiados[nombre] = actual
    return cambiados


def _no_se_pudo(nombre: str, actual: int | None, causa: str) -> str:
    admite = f"admite registros de hasta {actual} bytes" if actual is not None else "no informa su registro máximo"
    return (f"el tópico {nombre} {admite} y el procesador necesita {BYTES_MAXIMOS_REGISTRO_INTERNO} "
            f"(max.message.bytes); {causa}. Cámbielo con: kafka-configs.sh --bootstrap-server <broker> "
            f"--alter --entity-type topics --entity-name {nombre} "
            f"--add-config max.message.bytes={BYTES_MAXIMOS_REGISTRO_INTERNO}")


def asegurar_registro_maximo(bootstrap: str, nombres: list[str], limite_s: float = 30.0) -> dict[str, int | None]:
    """`ajustar_registro_maximo` con un cliente propio."""
    admin = _admin(bootstrap, limite_s)
    try:
        return ajustar_registro_maximo(admin, nombres)
    finally:
        admin.close()
