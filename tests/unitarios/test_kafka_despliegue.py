"""La seguridad de Kafka del despliegue concuerda consigo misma y con el código.

Sin Docker ni clúster aquí: se comprueba que cada cliente Kafka de compose y de Kubernetes
recibe las mismas GPR_KAFKA_* (salvo su usuario), que cada uno tiene su propio usuario y su
propia contraseña montada, que las ACL de compose (despliegue/kafka/acl.txt), las de los
KafkaUser de Strimzi y la tabla de docs/seguridad-kafka.md son las mismas, y que los
certificados que genera compose sirven de verdad (TLS mutuo con OpenSSL).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from apoyo.kafka_seguro import Certificados, FrenteTLS
from servicios.comun.broker import puerto_libre
from servicios.comun.kafka_conexion import ConexionKafka, KafkaInalcanzable, comprobar_saludo_tls

from conftest import RAIZ

COMPOSE = yaml.safe_load((RAIZ / "docker-compose.yml").read_text(encoding="utf-8"))
K8S = RAIZ / "despliegue" / "kubernetes"
ACL = RAIZ / "despliegue" / "kafka" / "acl.txt"
DOC = RAIZ / "docs" / "seguridad-kafka.md"
# Servicio → el principal con el que entra a Kafka.
USUARIOS = {"procesador": "gpr-procesador", "consulta": "gpr-consulta", "ingesta": "gpr-ingesta",
            "simulador": "gpr-simulador"}
COMUNES = {"GPR_KAFKA_BOOTSTRAP", "GPR_KAFKA_PROTOCOLO", "GPR_KAFKA_SASL_MECANISMO", "GPR_KAFKA_TLS_CA",
           "GPR_KAFKA_SASL_CLAVE_ARCHIVO"}


def _acl_txt() -> set[tuple[str, str, str, str, frozenset]]:
    filas = set()
    for linea in ACL.read_text(encoding="utf-8").splitlines():
        if linea.strip() and not linea.lstrip().startswith("#"):
            principal, recurso, nombre, patron, operaciones = linea.split()
            filas.add((principal, recurso, nombre, patron, frozenset(operaciones.split(","))))
    return filas


def _kafka(env: dict) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("GPR_KAFKA_")}


# ------------------------------------------------------------------------------ compose

def test_compose_da_a_cada_cliente_kafka_la_misma_seguridad_y_su_propio_usuario():
    servicios = COMPOSE["services"]
    comunes = None
    for servicio, usuario in USUARIOS.items():
        env = _kafka(servicios[servicio]["environment"])
        assert env.pop("GPR_KAFKA_SASL_USUARIO") == usuario, servicio
        assert set(env) == COMUNES, servicio
        comunes = comunes or env
        assert env == comunes, f"{servicio} conecta distinto que los demás"
        # Su contraseña, y solo la suya, en la ruta de GPR_KAFKA_SASL_CLAVE_ARCHIVO; la CA en la suya.
        volumenes = servicios[servicio]["volumes"]
        assert f"kafka-clave-{usuario}:/etc/gpr/kafka-clave:ro" in volumenes, servicio
        assert "kafka-ca:/etc/gpr/kafka-ca:ro" in volumenes, servicio
        assert [v for v in volumenes if v.startswith("kafka-clave-")] == [f"kafka-clave-{usuario}:/etc/gpr/kafka-clave:ro"]
        assert servicios[servicio]["depends_on"]["kafka-acceso"]["condition"] == "service_completed_successfully"
    assert comunes["GPR_KAFKA_PROTOCOLO"] == "SASL_SSL" and comunes["GPR_KAFKA_SASL_MECANISMO"] == "SCRAM-SHA-512"
    assert comunes["GPR_KAFKA_TLS_CA"] == "/etc/gpr/kafka-ca/ca.crt"
    assert comunes["GPR_KAFKA_SASL_CLAVE_ARCHIVO"] == "/etc/gpr/kafka-clave/clave"
    # El portal no habla con Kafka: ni secretos de Kafka.
    assert not _kafka(servicios["portal"]["environment"])
    assert not [v for v in servicios["portal"].get("volumes", []) if v.startswith("kafka-")]


def test_compose_el_broker_exige_tls_scram_y_acl_sin_oyente_en_claro():
    kafka = COMPOSE["services"]["kafka"]["environment"]
    protocolos = dict(p.split(":") for p in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    oyentes = [o.split("://")[0] for o in kafka["KAFKA_LISTENERS"].split(",")]
    assert {o: protocolos[o] for o in oyentes} == {"CLIENTES": "SASL_SSL", "CONTROLLER": "SSL", "INTERNO": "SSL"}
    assert "PLAINTEXT" not in protocolos.values()
    # Los servicios entran por el oyente SASL_SSL.
    assert "CLIENTES://kafka:9092" in kafka["KAFKA_ADVERTISED_LISTENERS"]
    assert COMPOSE["services"]["procesador"]["environment"]["GPR_KAFKA_BOOTSTRAP"] == "kafka:9092"
    # Los oyentes de solo TLS exigen certificado de cliente: sin él no hay principal que autorizar.
    assert kafka["KAFKA_LISTENER_NAME_INTERNO_SSL_CLIENT_AUTH"] == "required"
    assert kafka["KAFKA_LISTENER_NAME_CONTROLLER_SSL_CLIENT_AUTH"] == "required"
    assert kafka["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert kafka["KAFKA_AUTHORIZER_CLASS_NAME"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert kafka["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert kafka["KAFKA_SUPER_USERS"] == "User:kafka;User:gpr-admin"
    # El guion de la imagen exige almacenes JKS si un oyente anunciado contiene «SSL://».
    assert "SSL://" not in kafka["KAFKA_ADVERTISED_LISTENERS"]


def test_compose_crea_usuarios_para_cada_cliente_y_aplica_acl_txt():
    servicios = COMPOSE["services"]
    acceso = servicios["kafka-acceso"]
    assert acceso["entrypoint"] == ["/bin/bash", "/acceso.sh", "kafka:9094", "/acl.txt"]
    assert "./despliegue/kafka/acl.txt:/acl.txt:ro" in acceso["volumes"]
    secretos = servicios["kafka-secretos"]["volumes"]
    guion = (RAIZ / "despliegue" / "kafka" / "generar-secretos.sh").read_text(encoding="utf-8")
    (usuarios,) = re.findall(r'^usuarios="([^"]+)"', guion, re.MULTILINE)
    principales = {p for p, *_ in _acl_txt()}
    for usuario in USUARIOS.values():
        assert usuario in usuarios.split(), f"generar-secretos.sh no crea la contraseña de {usuario}"
        assert f"kafka-clave-{usuario}:/secretos/clave-{usuario}" in secretos
        assert usuario in principales, f"{usuario} no tiene ACL: no podría hacer nada"
    # Las herramientas de administración entran como gpr-admin por INTERNO.
    assert "kafka:9094 --command-config /secretos/admin/admin.properties" in servicios["topicos"]["command"][0]


# --------------------------------------------------------------------------- Kubernetes

def _documentos(carpeta: Path):
    for archivo in sorted(carpeta.rglob("*.yaml")):
        if archivo.name != "kustomization.yaml":
            yield from (d for d in yaml.safe_load_all(archivo.read_text(encoding="utf-8")) if d)


def _contenedores_kafka():
    """(deployment o job, contenedor, pod) de cada contenedor que recibe GPR_KAFKA_BOOTSTRAP."""
    for doc in _documentos(K8S):
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        pod = doc["spec"]["template"]["spec"]
        for contenedor in pod.get("initContainers", []) + pod["containers"]:
            nombres = [e["name"] for e in contenedor.get("env", [])]
            if "GPR_KAFKA_BOOTSTRAP" in nombres:
                yield doc["metadata"]["name"], contenedor, pod


def test_kubernetes_da_a_cada_cliente_kafka_la_misma_seguridad_y_el_secret_de_su_usuario():
    configmap = next(d for d in _documentos(K8S) if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "gpr-config")
    assert configmap["data"]["GPR_KAFKA_PROTOCOLO"] == "SASL_SSL"
    assert configmap["data"]["GPR_KAFKA_SASL_MECANISMO"] == "SCRAM-SHA-512"
    vistos = set()
    for nombre, contenedor, pod in _contenedores_kafka():
        env = {e["name"]: e for e in contenedor["env"] if e["name"].startswith("GPR_KAFKA_")}
        esperado_usuario = "gpr-admin" if nombre == "gpr-topicos" else USUARIOS[nombre]
        assert env["GPR_KAFKA_SASL_USUARIO"]["value"] == esperado_usuario, nombre
        assert set(env) == COMUNES | {"GPR_KAFKA_SASL_USUARIO"}, f"{nombre}/{contenedor['name']}"
        for variable in ("GPR_KAFKA_BOOTSTRAP", "GPR_KAFKA_PROTOCOLO", "GPR_KAFKA_SASL_MECANISMO"):
            assert env[variable]["valueFrom"]["configMapKeyRef"] == {"name": "gpr-config", "key": variable}
        assert env["GPR_KAFKA_TLS_CA"]["value"] == "/etc/gpr/kafka-ca/ca.crt"
        assert env["GPR_KAFKA_SASL_CLAVE_ARCHIVO"]["value"] == "/etc/gpr/kafka-usuario/password"
        # La contraseña montada es la del Secret de *su* KafkaUser; la CA, la del clúster.
        montajes = {m["mountPath"]: m["name"] for m in contenedor["volumeMounts"]}
        volumenes = {v["name"]: v for v in pod["volumes"]}
        assert volumenes[montajes["/etc/gpr/kafka-usuario"]]["secret"]["secretName"] == esperado_usuario
        assert volumenes[montajes["/etc/gpr/kafka-ca"]]["secret"]["secretName"] == "gpr-kafka-ca"
        vistos.add(nombre)
    assert vistos == {*USUARIOS, "gpr-topicos"}


def test_los_kafkauser_de_strimzi_dan_exactamente_las_acl_de_acl_txt():
    usuarios = [d for d in _documentos(K8S / "strimzi") if d["kind"] == "KafkaUser"]
    filas = set()
    for usuario in usuarios:
        assert usuario["metadata"]["namespace"] == "gpr", "el User Operator vigila gpr (strimzi/kafka.yaml)"
        assert usuario["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert usuario["spec"]["authorization"]["type"] == "simple"
        for acl in usuario["spec"]["authorization"]["acls"]:
            recurso = acl["resource"]
            patron = {"literal": "literal", "prefix": "prefixed"}[recurso["patternType"]]
            filas.add((usuario["metadata"]["name"], recurso["type"], recurso["name"], patron,
                       frozenset(acl["operations"])))
    assert filas == _acl_txt()
    # Cada servicio que monta el Secret de un usuario tiene su KafkaUser.
    assert {*USUARIOS.values(), "gpr-admin"} <= {u["metadata"]["name"] for u in usuarios}
    (kafka,) = [d for d in _documentos(K8S / "strimzi") if d["kind"] == "Kafka"]
    (oyente,) = kafka["spec"]["kafka"]["listeners"]
    assert (oyente["tls"], oyente["authentication"]["type"], oyente["port"]) == (True, "scram-sha-512", 9093)
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    assert kafka["spec"]["entityOperator"]["userOperator"]["watchedNamespace"] == "gpr"
    configmap = next(d for d in _documentos(K8S) if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "gpr-config")
    assert configmap["data"]["GPR_KAFKA_BOOTSTRAP"] == f"{kafka['metadata']['name']}-kafka-bootstrap." \
                                                      f"{kafka['metadata']['namespace']}.svc:{oyente['port']}"


def test_la_tabla_de_acl_de_la_documentacion_es_acl_txt():
    filas = set()
    for linea in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*`([\w.-]+)`\s*\|\s*(topic|group)\s*\|\s*`([\w.-]+)`\s*\|\s*(literal|prefixed)\s*\|([^|]+)\|",
                     linea)
        if m:
            principal, recurso, nombre, patron, operaciones = m.groups()
            filas.add((principal, recurso, nombre, patron,
                       frozenset(o.strip() for o in operaciones.split(",") if o.strip())))
    assert filas == _acl_txt()


# ---------------------------------------------------------------- certificados de compose

@pytest.mark.integracion
def test_los_certificados_que_genera_compose_sirven_para_tls_mutuo(tmp_path):
    """generar-secretos.sh de verdad (openssl); su broker.pem delante de un frente TLS que
    exige certificado de cliente: el cliente admin entra, uno sin certificado no."""
    raiz = tmp_path / "secretos"
    r = subprocess.run(["sh", str(RAIZ / "despliegue" / "kafka" / "generar-secretos.sh"), str(raiz)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    broker = raiz / "broker" / "broker.pem"
    certificados = Certificados(ca=raiz / "broker" / "ca.crt", broker_cert=broker, broker_clave=broker,
                                cliente_cert=raiz / "admin" / "admin.pem", cliente_clave=raiz / "admin" / "admin.pem")
    frente = FrenteTLS(puerto_libre(), certificados, exigir_cliente=True)
    frente.iniciar()
    try:
        # «localhost» está en el certificado del broker, como «kafka».
        direccion = f"localhost:{frente.puerto}"
        admin = ConexionKafka(direccion, "SSL", tls_ca=str(raiz / "ca" / "ca.crt"),
                              tls_cert=str(raiz / "admin" / "admin.pem"), tls_clave=str(raiz / "admin" / "admin.pem"))
        comprobar_saludo_tls(admin, 10)
        sin_certificado = ConexionKafka(direccion, "SSL", tls_ca=str(raiz / "ca" / "ca.crt"))
        with pytest.raises(KafkaInalcanzable):
            # TLS 1.3: el rechazo del certificado llega con la primera lectura, no en el saludo.
            _saludo_y_lectura(sin_certificado)
    finally:
        frente.detener()
    # Una contraseña distinta por usuario, y la misma en su volumen que en el del administrador.
    claves = {p.name: p.read_text() for p in (raiz / "admin").glob("clave-*")}
    assert len(set(claves.values())) == len(claves) == 5
    for nombre, clave in claves.items():
        assert (raiz / nombre / "clave").read_text() == clave
        assert re.fullmatch(r"[0-9a-f]{48}\n", clave)
    # Correr de nuevo no cambia nada (compose lo corre en cada `up`).
    antes = broker.read_bytes()
    subprocess.run(["sh", str(RAIZ / "despliegue" / "kafka" / "generar-secretos.sh"), str(raiz)], check=True,
                   capture_output=True, timeout=60)
    assert broker.read_bytes() == antes


def _saludo_y_lectura(conexion: ConexionKafka) -> None:
    import socket
    import ssl

    host, _, puerto = conexion.bootstrap.rpartition(":")
    try:
        with socket.create_connection((host, int(puerto)), timeout=10) as crudo:
            with conexion.contexto_tls().wrap_socket(crudo, server_hostname=host) as tls:
                tls.settimeout(10)
                if not tls.recv(1):
                    raise KafkaInalcanzable("el frente cerró la conexión")
    except (OSError, ssl.SSLError) as error:
        raise KafkaInalcanzable(str(error)) from None
