"""Nombres de los tópicos del contrato, su creación idempotente con kafka-python y el ajuste
del registro máximo de los tópicos internos que ya existían."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from gpr_cliente.contrato import CABECERA_LOTE, TOPICO_EVENTOS
from servicios.comun.kafka_conexion import ConexionKafka, KafkaInalcanzable, comprobar_saludo_tls, explicar

# El tópico de entrada y la cabecera de lote son del contrato con las agencias: los define la
# biblioteca cliente (gpr_cliente.contrato).
EVENTOS = TOPICO_EVENTOS
RECHAZADOS = "gpr.eventos.rechazados.v1"
INDICADORES = "gpr.indicadores.v1"
CUMPLIMIENTO = "gpr.cumplimiento.v1"
METAS = "gpr.metas.v1"
# Internos del procesador: los eventos de cada agencia juntos en una partición (del reparto a
# la etapa por caso) y los aportes de la etapa por caso a la etapa por (agencia, servicio).
EVENTOS_POR_AGENCIA = "gpr.eventos.agencias.v1"
APORTES = "gpr.aportes.v1"
INTERNOS = (EVENTOS_POR_AGENCIA, APORTES)

# Cabeceras de un rechazo en gpr.eventos.rechazados.v1: el motivo (p. ej. «tardio»,
# «campo_requerido:caso_id», «error_interno:KeyError»), un detalle para personas y, si es una
# del catálogo, la agencia del evento.
CABECERA_MOTIVO = "gpr-motivo"
CABECERA_DETALLE = "gpr-detalle"
CABECERA_AGENCIA = "gpr-agencia"
# En gpr.eventos.agencias.v1, la partición de gpr.eventos.v1 de la que vino el registro (la
# última cabecera con ese nombre: la que pone el reparto).
CABECERA_ORIGEN = "gpr-origen"

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
    if nombre in INTERNOS:
        return configuracion_interna()
    return {}


class TopicoInadecuado(RuntimeError):
    """Un tópico interno que ya existía admite registros más chicos que los del procesador (su
    valor se leyó) y el broker no deja cambiarlo."""


def _admin(conexion: "str | ConexionKafka", limite_s: float):
    """Un cliente de administración; reintenta mientras el broker arranca y, pasado
    `limite_s`, lanza `KafkaInalcanzable` con la conexión y el último error."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    conexion = ConexionKafka.de(conexion)
    fin = time.monotonic() + limite_s
    while True:
        restante = max(1.0, fin - time.monotonic())
        try:
            comprobar_saludo_tls(conexion, min(restante, 10.0))
            return KafkaAdminClient(**conexion.para_kafka_python(), client_id="gpr-admin",
                                    bootstrap_timeout_ms=int(restante * 1000))
        except (KafkaError, KafkaInalcanzable) as error:
            if time.monotonic() > fin:
                raise KafkaInalcanzable(f"no se pudo conectar con Kafka en {limite_s:g} s: "
                                        f"{explicar(conexion, error)}") from None
            time.sleep(0.5)


def identificador_de_cluster(bootstrap: "str | ConexionKafka", limite_s: float = 30.0) -> str | None:
    """El identificador del clúster de Kafka (None si el broker no lo da)."""
    admin = _admin(bootstrap, limite_s)
    try:
        return admin.describe_cluster().get("cluster_id")
    finally:
        admin.close()


def crear_topicos(bootstrap: "str | ConexionKafka", particiones: int, nombres: list[str] | None = None,
                  limite_s: float = 30.0, replicacion: int = 1) -> None:
    """Crea los tópicos que falten; los existentes se dejan como están.

    `replicacion`: réplicas de cada partición (1 en el broker embebido; 3 en producción).
    `bootstrap`: la dirección, o una `ConexionKafka` con TLS y SASL.
    """
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    nombres = nombres or [EVENTOS, RECHAZADOS, INDICADORES, CUMPLIMIENTO, *INTERNOS]
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


@dataclass
class AjusteRegistroMaximo:
    """Lo que hizo `ajustar_registro_maximo`."""

    # Tópico → el valor que tenía (None: el broker no lo informaba).
    cambiados: dict[str, int | None] = field(default_factory=dict)
    # Tópico → por qué no se pudo ni leer su valor ni cambiarlo (se arranca igual, con aviso).
    sin_verificar: dict[str, str] = field(default_factory=dict)


def ajustar_registro_maximo(admin, nombres: list[str]) -> AjusteRegistroMaximo:
    """Sube `max.message.bytes` a `BYTES_MAXIMOS_REGISTRO_INTERNO` en los tópicos de `nombres`
    que ya existen y admiten menos.

    Un tópico creado por una versión anterior (o a mano) con el 1 MiB por omisión no falla al
    arrancar, sino el día que un lote arma un agregado más grande: el procesador caería en ese
    lote una y otra vez. Por eso se comprueba al arrancar. El cambio es incremental
    (IncrementalAlterConfigs): el resto de la configuración del tópico, como la compactación
    de un changelog, queda igual. `admin`: un KafkaAdminClient.

    - Valor leído y suficiente: nada.
    - Valor leído e insuficiente, o no informado: se cambia. Si el broker no lo deja y el valor
      leído era insuficiente, `TopicoInadecuado` (el procesador no arranca: caería más
      adelante) con el tópico, el valor y la orden para hacerlo a mano.
    - Ni leído ni cambiable (una ACL mínima sin DescribeConfigs ni AlterConfigs; kafka-python
      devuelve la descripción vacía sin error): queda en `sin_verificar` y se arranca con un
      aviso, porque el tópico bien puede estar ya bien configurado.
    """
    from kafka.admin import ConfigResource, ConfigResourceType
    from kafka.errors import KafkaError

    requerido = BYTES_MAXIMOS_REGISTRO_INTERNO
    existentes = set(admin.list_topics())
    ajuste = AjusteRegistroMaximo()
    for nombre in nombres:
        if nombre not in existentes:
            continue
        actual = _registro_maximo(admin, nombre)
        if actual is not None and actual >= requerido:
            continue
        try:
            respuesta = admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, nombre, configs={"max.message.bytes": str(requerido)})],
                raise_on_unknown=False, incremental=True)
            resultado = respuesta.get("topic", {}).get(nombre, "sin respuesta del broker")
        except KafkaError as error:
            resultado = str(error)
        if resultado == "OK":
            ajuste.cambiados[nombre] = actual
        elif actual is None:
            ajuste.sin_verificar[nombre] = _no_se_pudo(nombre, None, f"no dejó cambiarlo: {resultado}")
        else:
            raise TopicoInadecuado(_no_se_pudo(nombre, actual, f"el broker no dejó cambiarlo: {resultado}"))
    return ajuste


def _registro_maximo(admin, nombre: str) -> int | None:
    """El `max.message.bytes` que rige en el tópico, o None si el broker no lo informa."""
    from kafka.admin import ConfigResource, ConfigResourceType
    from kafka.errors import KafkaError

    try:
        # «all» y no «modified»: Apache Kafka solo informa como modificado lo fijado en el
        # tópico, y el valor que rige puede venir del broker. Una lectura denegada no lanza:
        # kafka-python devuelve la descripción vacía.
        descripcion = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, nombre)],
                                             config_filter="all")
    except KafkaError:
        return None
    entrada = descripcion.get("topic", {}).get(nombre, {}).get("max.message.bytes") or {}
    try:
        return int(entrada.get("value"))
    except (TypeError, ValueError):
        return None


def _no_se_pudo(nombre: str, actual: int | None, causa: str) -> str:
    if actual is None:
        return (f"no se pudo comprobar el registro máximo del tópico {nombre} (el procesador necesita "
                f"{BYTES_MAXIMOS_REGISTRO_INTERNO} bytes, max.message.bytes; el broker no dejó leerlo y {causa}); "
                f"si admite menos, cámbielo con: {_orden_para_cambiarlo(nombre)}")
    return (f"el tópico {nombre} admite registros de hasta {actual} bytes y el procesador necesita "
            f"{BYTES_MAXIMOS_REGISTRO_INTERNO} (max.message.bytes); {causa}. Cámbielo con: "
            f"{_orden_para_cambiarlo(nombre)}")


def _orden_para_cambiarlo(nombre: str) -> str:
    return (f"kafka-configs.sh --bootstrap-server <broker> --alter --entity-type topics --entity-name {nombre} "
            f"--add-config max.message.bytes={BYTES_MAXIMOS_REGISTRO_INTERNO}")


def asegurar_registro_maximo(bootstrap: "str | ConexionKafka", nombres: list[str], limite_s: float = 30.0) -> AjusteRegistroMaximo:
    """`ajustar_registro_maximo` con un cliente propio."""
    admin = _admin(bootstrap, limite_s)
    try:
        return ajustar_registro_maximo(admin, nombres)
    finally:
        admin.close()
