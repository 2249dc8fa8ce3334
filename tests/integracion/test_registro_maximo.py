"""Los tópicos internos que ya existían con el registro máximo por omisión (1 MiB) se ajustan
al arrancar el procesador, sin tocar el resto de su configuración."""

from __future__ import annotations

import time

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

from servicios.comun.topicos import APORTES, asegurar_registro_maximo

pytestmark = pytest.mark.integracion

DIECISEIS_MIB = 16 * 1024 * 1024


def configuracion(bootstrap: str, topico: str) -> dict[str, str]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        descripcion = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topico)], config_filter="all")
    finally:
        admin.close()
    return {clave: datos["value"] for clave, datos in descripcion["topic"][topico].items()}


def crear(bootstrap: str, topicos: dict[str, dict[str, str]], particiones: int = 4) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(n, particiones, 1, topic_configs=c) for n, c in topicos.items()])
    finally:
        admin.close()


def test_sube_el_registro_maximo_de_los_que_existen_y_deja_lo_demas(bootstrap):
    changelog = "viejo-casos-changelog"
    crear(bootstrap, {APORTES: {}, changelog: {"cleanup.policy": "compact"},
                      "ya-holgado": {"max.message.bytes": str(2 * DIECISEIS_MIB)},
                      "chico": {"max.message.bytes": "1048588"}})

    ajuste = asegurar_registro_maximo(bootstrap, [APORTES, changelog, "ya-holgado", "chico", "no-existe"])

    assert ajuste.cambiados == {APORTES: None, changelog: None, "chico": 1048588} and ajuste.sin_verificar == {}
    # Comparación exacta de toda la configuración: Tansu informa solo lo fijado en el tópico
    # (Apache Kafka, con «all», daría también los valores por omisión).
    assert configuracion(bootstrap, APORTES) == {"max.message.bytes": str(DIECISEIS_MIB)}
    assert configuracion(bootstrap, changelog) == {"cleanup.policy": "compact", "max.message.bytes": str(DIECISEIS_MIB)}
    assert configuracion(bootstrap, "chico") == {"max.message.bytes": str(DIECISEIS_MIB)}
    assert configuracion(bootstrap, "ya-holgado") == {"max.message.bytes": str(2 * DIECISEIS_MIB)}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        assert "no-existe" not in admin.list_topics()
    finally:
        admin.close()
    assert asegurar_registro_maximo(bootstrap, [APORTES, changelog, "chico"]).cambiados == {}


def test_el_procesador_ajusta_al_arrancar_los_creados_por_una_version_anterior(bootstrap, procesos, tmp_path):
    changelog = "gpr-procesador-casos-changelog"
    crear(bootstrap, {APORTES: {}, changelog: {"cleanup.policy": "compact"}})
    procesador = procesos.lanzar("servicios.procesador", {
        "GPR_KAFKA_BOOTSTRAP": bootstrap, "GPR_PARTICIONES": "4", "GPR_ALMACEN": "memoria",
        "GPR_DIRECTORIO_DATOS": str(tmp_path / "procesador"), "GPR_METRICAS_PUERTO": "0",
    }, nombre="procesador")
    fin = time.monotonic() + 60
    while configuracion(bootstrap, changelog).get("max.message.bytes") != str(DIECISEIS_MIB):
        assert procesador.poll() is None, procesos.registro("procesador")[-3000:]
        assert time.monotonic() < fin, procesos.registro("procesador")[-3000:]
        time.sleep(0.2)
    assert configuracion(bootstrap, changelog)["cleanup.policy"] == "compact"
    assert configuracion(bootstrap, APORTES)["max.message.bytes"] == str(DIECISEIS_MIB)
    while f"max.message.bytes de {changelog}" not in procesos.registro("procesador"):
        assert time.monotonic() < fin, procesos.registro("procesador")[-3000:]
        time.sleep(0.2)
    registro = procesos.registro("procesador")
    assert f"max.message.bytes de {APORTES}: sin valor informado → {DIECISEIS_MIB} bytes" in registro
    time.sleep(2)
    assert procesador.poll() is None, registro[-3000:]
