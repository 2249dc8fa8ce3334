"""Los manifiestos de despliegue/kubernetes/ son válidos y concuerdan con el código.

No hay clúster en estas máquinas: cada objeto se valida contra los esquemas JSON de la API
de Kubernetes que trae el paquete `kubernetes-validate` (sin red), en modo estricto (un
campo mal escrito es un error, no algo que el servidor ignora en silencio). Y se comprueba lo
que un esquema no ve: que cada contenedor arranque un módulo que existe, que cada variable
GPR_* la lea de verdad su servicio, que las réplicas del procesador sean las particiones, que
los ConfigMaps sean copia fiel del catálogo y las metas, que el Job cree los tópicos del
contrato y los changelog de las tablas de faust, y que todo contenedor corra sin privilegios.

Los KafkaTopic de Strimzi (strimzi/) son recursos de un CRD que no está en esos esquemas:
quedan fuera de la validación estricta a propósito, pero se leen y se comparan con el Job.
"""

from __future__ import annotations

import ast
import hashlib
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath

import pytest
import yaml

from servicios.comun import topicos
from servicios.comun.kafka_conexion import VARIABLES_SEGURIDAD
from servicios.comun.metas import archivos_de
from servicios.comun.tiempo import parsear_duracion

from conftest import RAIZ

K8S = RAIZ / "despliegue" / "kubernetes"
COMPOSE = RAIZ / "docker-compose.yml"
DOCKERFILE = RAIZ / "Dockerfile"
REGENERAR = ".venv/bin/python despliegue/kubernetes/generar_configmaps.py"
INSTALAR = ".venv/bin/python -m pip install kubernetes-validate==1.37.0"

# 1.31: la primera versión con todo lo que usan los manifiestos ya estable (sondas gRPC
# nativas desde 1.27, unhealthyPodEvictionPolicy de los PDB desde 1.31). 1.37: la más nueva
# cuyos esquemas trae kubernetes-validate 1.37.0.
VERSIONES_K8S = ("1.31.0", "1.37.0")

# Únicos objetos sin esquema en kubernetes-validate: CRD de Strimzi, solo en strimzi/.
SIN_ESQUEMA = {("kafka.strimzi.io/v1beta2", tipo) for tipo in ("KafkaTopic", "KafkaUser", "Kafka", "KafkaNodePool")}

# Deployment → módulo que arranca (`python -m ...`).
MODULOS = {
    "procesador": "servicios.procesador",
    "consulta": "servicios.consulta",
    "ingesta": "servicios.ingesta",
    "simulador": "servicios.simulador",
    "portal": "servicios.portal",
}
IMAGEN_PROYECTO = "gpr-monitor"
# Deployments que no hablan con Kafka (el portal es un cliente de la API gRPC).
SIN_KAFKA = {"portal"}
# Secrets que crea el operador → claves que se montan.
SECRETS = {
    "gpr-ingesta-credenciales": ["credenciales.yaml"],
    "gpr-consulta-tls": ["tls.crt", "tls.key"],
    "gpr-consulta-tokens": ["tokens.yaml"],
    "gpr-portal-consulta": ["ca.crt"],
    # Kafka (docs/seguridad-kafka.md): la CA del clúster, copiada del Secret de Strimzi, y la
    # contraseña de cada KafkaUser, que crea el User Operator (strimzi/usuarios.yaml).
    "gpr-kafka-ca": ["ca.crt"],
    **{usuario: ["password"] for usuario in ("gpr-procesador", "gpr-consulta", "gpr-ingesta", "gpr-simulador",
                                             "gpr-admin")},
}


# ----------------------------------------------------------------- lectura de manifiestos

def _documentos() -> list[tuple[Path, dict]]:
    docs = []
    for archivo in sorted(K8S.rglob("*.yaml")):
        if archivo.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(archivo.read_text(encoding="utf-8")):
            if doc:
                docs.append((archivo, doc))
    return docs


DOCUMENTOS = _documentos()


def _objetos(tipo: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for _, d in DOCUMENTOS if d["kind"] == tipo}


def _configmaps() -> dict[str, dict[str, str]]:
    return {nombre: cm.get("data", {}) for nombre, cm in _objetos("ConfigMap").items()}


def _plantillas() -> list[tuple[str, dict, dict]]:
    """(tipo/nombre, metadatos de la plantilla, spec del pod) de cada Deployment y Job."""
    return [(f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["metadata"],
             d["spec"]["template"]["spec"])
            for _, d in DOCUMENTOS if d["kind"] in ("Deployment", "Job")]


def _contenedores(pod: dict) -> list[dict]:
    return pod.get("initContainers", []) + pod["containers"]


def _todos_los_contenedores() -> list[tuple[str, dict, dict]]:
    return [(f"{nombre}/{c['name']}", c, pod) for nombre, _, pod in _plantillas()
            for c in _contenedores(pod)]


def _principal(nombre: str) -> dict:
    """El contenedor del servicio en el Deployment `nombre`."""
    pod = _objetos("Deployment")[nombre]["spec"]["template"]["spec"]
    (contenedor,) = [c for c in pod["containers"] if c["name"] == nombre]
    return contenedor


def _env_literal(contenedor: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in contenedor.get("env", []) if "value" in e}


def _env_resuelto(contenedor: dict) -> dict[str, str]:
    """Variables con su valor, resolviendo las que vienen de un ConfigMap."""
    configmaps = _configmaps()
    valores = {}
    for e in contenedor.get("env", []):
        if "value" in e:
            valores[e["name"]] = e["value"]
        elif "configMapKeyRef" in e.get("valueFrom", {}):
            ref = e["valueFrom"]["configMapKeyRef"]
            valores[e["name"]] = configmaps[ref["name"]][ref["key"]]
    return valores


def _modulo(contenedor: dict) -> str | None:
    comando = contenedor.get("command", [])
    return comando[2] if comando[:2] == ["python", "-m"] and len(comando) > 2 else None


def _kustomization(carpeta: Path) -> dict:
    return yaml.safe_load((carpeta / "kustomization.yaml").read_text(encoding="utf-8"))


def _particiones() -> int:
    return int(_configmaps()["gpr-config"]["GPR_PARTICIONES"])


# ------------------------------------------------------------------ validación de esquema

def _kv():
    # Sin el paquete la prueba falla (no se salta): un `make test` verde debe haber validado.
    try:
        import kubernetes_validate.utils as utilidades
    except ImportError:
        pytest.fail(f"falta el paquete kubernetes-validate (valida los manifiestos sin red); "
                    f"instálelo con: {INSTALAR}")
    return utilidades


def test_kubernetes_validate_esta_instalado():
    kv = _kv()
    soportadas = {v.rsplit(".", 1)[0] for v in kv.all_versions()}
    for version in VERSIONES_K8S:
        assert version.rsplit(".", 1)[0] in soportadas, \
            f"kubernetes-validate no trae esquemas de Kubernetes {version}; {INSTALAR}"


@pytest.mark.parametrize("version", VERSIONES_K8S)
def test_cada_objeto_cumple_el_esquema_de_kubernetes(version):
    kv = _kv()
    validados, errores = [], []
    for archivo, doc in DOCUMENTOS:
        if (doc.get("apiVersion"), doc.get("kind")) in SIN_ESQUEMA:
            continue
        nombre = f"{archivo.relative_to(K8S)}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as error:
            ruta = ".".join(str(p) for p in error.path)
            errores.append(f"{nombre}: {ruta}: {error.message}")
        except kv.SchemaNotFoundError as error:
            errores.append(f"{nombre}: {error.message}")
        else:
            validados.append(doc["kind"])
    assert not errores, f"objetos que no cumplen el esquema de Kubernetes {version}:\n" + "\n".join(errores)
    assert {"Namespace", "ConfigMap", "Job", "Deployment", "Service", "HorizontalPodAutoscaler",
            "PodDisruptionBudget"} <= set(validados)


def test_solo_los_kafkatopic_de_strimzi_quedan_sin_validar():
    sin_validar = [(archivo, doc) for archivo, doc in DOCUMENTOS
                   if (doc.get("apiVersion"), doc.get("kind")) in SIN_ESQUEMA]
    assert sin_validar, "se esperaban los KafkaTopic de strimzi/topicos.yaml"
    fuera = [str(a.relative_to(K8S)) for a, _ in sin_validar if a.parent != K8S / "strimzi"]
    assert not fuera, f"recursos sin esquema fuera de strimzi/: {fuera}"


def test_las_kustomizations_incluyen_todos_los_manifiestos():
    """Un archivo que ninguna kustomization lista es un objeto que nunca se aplica."""
    assert _kustomization(K8S)["resources"] == ["base"]
    base = _kustomization(K8S / "base")
    en_base = sorted(a.name for a in (K8S / "base").glob("*.yaml") if a.name != "kustomization.yaml")
    assert sorted(base["resources"]) == en_base
    assert [i["name"] for i in base["images"]] == [IMAGEN_PROYECTO]
    demo = _kustomization(K8S / "demo")
    assert sorted(demo["resources"]) == ["../base", "simulador.yaml"]
    assert sorted(a.name for a in (K8S / "demo").glob("*.yaml")) == ["kustomization.yaml", "simulador.yaml"]
    assert sorted(a.name for a in K8S.glob("*.yaml")) == ["kustomization.yaml"]
    subcarpetas = sorted(p.name for p in K8S.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert subcarpetas == ["base", "demo", "strimzi"], "strimzi/ se aplica aparte; ¿qué es la carpeta nueva?"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="sin kubectl: la prueba anterior cubre la estructura")
@pytest.mark.parametrize("carpeta", [".", "demo"])
def test_kustomize_arma_los_mismos_objetos_que_se_validan(carpeta):
    """Con kubectl a mano, `kubectl kustomize` (sin clúster) debe dar justo los objetos validados."""
    salida = subprocess.run(["kubectl", "kustomize", str(K8S / carpeta)], capture_output=True, text=True,
                            timeout=60)
    assert salida.returncode == 0, salida.stderr
    armados = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(salida.stdout) if d}
    propios = {(d["kind"], d["metadata"]["name"]): d for a, d in DOCUMENTOS
               if a.parent == K8S / "base" or (carpeta == "demo" and a.parent == K8S / "demo")}
    assert armados == propios


def test_todo_vive_en_el_namespace_gpr():
    fuera = [f"{d['kind']}/{d['metadata']['name']}" for a, d in DOCUMENTOS
             if a.parent != K8S / "strimzi" and d["kind"] != "Namespace"
             and d["metadata"].get("namespace") != "gpr"]
    assert not fuera, f"objetos fuera del namespace gpr: {fuera}"
    assert list(_objetos("Namespace")) == ["gpr"]
    claves = [(d["kind"], d["metadata"]["name"]) for _, d in DOCUMENTOS]
    assert len(claves) == len(set(claves)), "objetos repetidos: uno pisaría al otro al aplicar"


# ------------------------------------------------------------------------- ConfigMaps

def _suma(datos: dict[str, str]) -> str:
    h = hashlib.sha256()
    for clave in sorted(datos):
        h.update(clave.encode() + b"\0" + datos[clave].encode() + b"\0")
    return h.hexdigest()


def _esperados() -> dict[str, dict[str, str]]:
    """Lo que deben contener los ConfigMaps generados, leído de los archivos del repositorio."""
    catalogo = RAIZ / "despliegue" / "catalogo.yaml"
    return {
        "gpr-catalogo": {"catalogo.yaml": catalogo.read_text(encoding="utf-8")},
        # La misma selección de archivos que hace el procesador al leer GPR_METAS.
        "gpr-metas": {a.name: a.read_text(encoding="utf-8")
                      for a in archivos_de(RAIZ / "despliegue" / "metas")},
    }


def test_los_configmaps_son_copia_fiel_del_catalogo_y_las_metas():
    configmaps = _configmaps()
    for nombre, esperado in _esperados().items():
        assert esperado, f"{nombre}: no hay archivos de origen"
        assert configmaps[nombre] == esperado, \
            f"el ConfigMap {nombre} no coincide con los archivos de despliegue/; regenere con: {REGENERAR}"
        tamano = sum(len(k.encode()) + len(v.encode()) for k, v in esperado.items())
        assert tamano < 1024 * 1024, f"{nombre}: {tamano} bytes supera el límite de 1 MiB de un ConfigMap"


def test_cada_pod_lleva_la_suma_de_los_configmaps_que_monta():
    """Sin la suma en la plantilla, cambiar una meta no reiniciaría el procesador que la lee."""
    esperados = _esperados()
    for nombre, metadatos, pod in _plantillas():
        anotaciones = metadatos.get("annotations", {})
        montados = {v["configMap"]["name"] for v in pod.get("volumes", []) if "configMap" in v}
        for configmap, datos in esperados.items():
            clave = f"gpr-monitor/{configmap}-sha256"
            if configmap in montados:
                assert anotaciones.get(clave) == _suma(datos), \
                    f"{nombre}: {clave} desactualizada; regenere con: {REGENERAR}"
            else:
                assert clave not in anotaciones, f"{nombre}: {clave} sin montar {configmap}"


def test_las_metas_montadas_desde_un_configmap_se_leen_una_vez(tmp_path):
    """El kubelet monta un ConfigMap con enlaces (`..data` → `..<fecha>/`, cada clave →
    `..data/<clave>`) para cambiarlo de forma atómica. GPR_METAS apunta a esa carpeta: el
    procesador debe leer cada archivo una vez, no también las copias de las carpetas ocultas."""
    from servicios.comun.catalogo import cargar_catalogo
    from servicios.comun.metas import cargar_metas

    datos = _configmaps()["gpr-metas"]
    fecha = tmp_path / "..2026_01_01_00_00_00.000000001"
    fecha.mkdir()
    for clave, texto in datos.items():
        (fecha / clave).write_text(texto, encoding="utf-8")
    (tmp_path / "..data").symlink_to(fecha.name)
    for clave in datos:
        (tmp_path / clave).symlink_to(f"..data/{clave}")
    assert [a.name for a in archivos_de(tmp_path)] == sorted(datos)
    metas = cargar_metas(archivos_de(tmp_path), cargar_catalogo(RAIZ / "despliegue" / "catalogo.yaml"))
    assert len(metas) == sum(len(yaml.safe_load(texto)["metas"]) for texto in datos.values())


def test_las_referencias_a_configmaps_y_secrets_existen():
    configmaps = _configmaps()
    errores = []
    for nombre, contenedor, pod in _todos_los_contenedores():
        for e in contenedor.get("env", []):
            ref = e.get("valueFrom", {}).get("configMapKeyRef")
            if ref and ref["key"] not in configmaps.get(ref["name"], {}):
                errores.append(f"{nombre}: {e['name']} → {ref['name']}/{ref['key']} no existe")
        volumenes = {v["name"] for v in pod.get("volumes", [])}
        for m in contenedor.get("volumeMounts", []):
            if m["name"] not in volumenes:
                errores.append(f"{nombre}: monta el volumen inexistente {m['name']}")
    for nombre, _, pod in _plantillas():
        for v in pod.get("volumes", []):
            if "configMap" in v and v["configMap"]["name"] not in configmaps:
                errores.append(f"{nombre}: ConfigMap {v['configMap']['name']} no existe")
            if "secret" in v:
                # Los Secrets los crea el operador (ingesta.yaml y consulta.yaml dicen cómo): nunca van aquí.
                assert v["secret"]["secretName"] in SECRETS, nombre
                assert [i["key"] for i in v["secret"]["items"]] == SECRETS[v["secret"]["secretName"]], nombre
    assert not errores, "\n".join(errores)
    assert not _objetos("Secret"), "las credenciales no van en el repositorio"


# -------------------------------------------------------------- contenedores y servicios

def test_cada_deployment_arranca_su_modulo_y_el_modulo_existe():
    deployments = _objetos("Deployment")
    assert set(deployments) == set(MODULOS)
    faltan = []
    for nombre, modulo in MODULOS.items():
        assert _modulo(_principal(nombre)) == modulo, f"{nombre} debe arrancar python -m {modulo}"
        carpeta = RAIZ / Path(*modulo.split("."))
        if not (carpeta / "__main__.py").is_file():
            # La ingesta se está escribiendo: se tolera solo mientras su carpeta no exista.
            if modulo == "servicios.ingesta" and not carpeta.exists():
                continue
            faltan.append(f"{nombre}: {(carpeta / '__main__.py').relative_to(RAIZ)}")
    assert not faltan, "Deployments que arrancan módulos sin __main__.py: " + ", ".join(faltan)


def _leido_por(variable: str, carpetas: list[Path]) -> bool:
    patron = re.compile(rf"[\"']{re.escape(variable)}[\"']")
    return any(patron.search(archivo.read_text(encoding="utf-8"))
               for carpeta in carpetas if carpeta.is_dir() for archivo in carpeta.rglob("*.py"))


def test_cada_variable_gpr_la_lee_su_servicio():
    """Una variable que nadie lee es una configuración que no hace nada."""
    guion = _configmaps()["gpr-esperar-topicos"]["esperar_topicos.py"]
    sin_uso = []
    for nombre, contenedor, _ in _todos_los_contenedores():
        variables = [e["name"] for e in contenedor.get("env", []) if e["name"].startswith("GPR_")]
        modulo = _modulo(contenedor)
        if modulo is not None:
            carpeta = RAIZ / Path(*modulo.split("."))
            if not carpeta.exists():
                continue  # ingesta aún sin escribir (ver la prueba anterior)
            sin_uso += [f"{nombre}: {v}" for v in variables
                        if not _leido_por(v, [carpeta, RAIZ / "servicios" / "comun"])]
        elif contenedor.get("command") == ["python", "/etc/gpr/scripts/esperar_topicos.py"]:
            # Las de TLS y SASL las lee kafka_conexion.leer(), como en los servicios.
            sin_uso += [f"{nombre}: {v}" for v in variables if f'"{v}"' not in guion
                        and not (v in VARIABLES_SEGURIDAD and "kafka_conexion.leer(os.environ)" in guion)]
        elif contenedor.get("command") == ["/bin/bash", "-c"]:
            sin_uso += [f"{nombre}: {v}" for v in variables if f'"${v}"' not in contenedor["args"][0]]
        else:
            assert not variables, f"{nombre}: ¿quién lee {variables}?"
    assert not sin_uso, "variables GPR_* que el contenedor no lee: " + ", ".join(sin_uso)


def _volumen_de(ruta: str, contenedor: dict, pod: dict) -> tuple[dict, dict, str] | None:
    """(montaje, volumen, ruta relativa dentro del volumen) que contiene `ruta`."""
    volumenes = {v["name"]: v for v in pod.get("volumes", [])}
    for m in contenedor.get("volumeMounts", []):
        base = PurePosixPath(m["mountPath"])
        if PurePosixPath(ruta) == base or base in PurePosixPath(ruta).parents:
            return m, volumenes[m["name"]], str(PurePosixPath(ruta).relative_to(base))
    return None


def test_las_rutas_de_configuracion_estan_montadas():
    """La raíz es de solo lectura y la imagen no trae metas: toda ruta debe venir de un volumen."""
    configmaps = _configmaps()
    errores = []
    for nombre, contenedor, pod in _todos_los_contenedores():
        for variable, valor in _env_literal(contenedor).items():
            if not valor.startswith("/"):
                continue
            hallado = _volumen_de(valor, contenedor, pod)
            if hallado is None:
                errores.append(f"{nombre}: {variable}={valor} no está en ningún volumen")
                continue
            montaje, volumen, relativa = hallado
            if "configMap" in volumen and relativa != ".":
                if relativa not in configmaps[volumen["configMap"]["name"]]:
                    errores.append(f"{nombre}: {variable}={valor}: {relativa} no está en el ConfigMap")
            if "secret" in volumen and relativa != ".":
                if relativa not in [i["path"] for i in volumen["secret"]["items"]]:
                    errores.append(f"{nombre}: {variable}={valor}: {relativa} no está en el Secret")
            if variable == "GPR_DIRECTORIO_DATOS" and ("emptyDir" not in volumen or montaje.get("readOnly")):
                errores.append(f"{nombre}: {variable} debe estar en un emptyDir escribible")
    assert not errores, "\n".join(errores)
    assert _env_literal(_principal("procesador"))["GPR_METAS"] == "/etc/gpr/metas"


def test_cada_contenedor_corre_sin_privilegios():
    uid = int(re.search(r"--uid (\d+)", DOCKERFILE.read_text(encoding="utf-8")).group(1))
    errores = []
    for nombre, _, pod in _plantillas():
        seguridad = pod.get("securityContext", {})
        if seguridad.get("runAsNonRoot") is not True or \
                seguridad.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            errores.append(f"{nombre}: el pod debe fijar runAsNonRoot y seccompProfile RuntimeDefault")
        if pod.get("automountServiceAccountToken") is not False:
            errores.append(f"{nombre}: ningún servicio habla con la API de Kubernetes: sin token")
    for nombre, c, _ in _todos_los_contenedores():
        s = c.get("securityContext", {})
        faltas = []
        if s.get("runAsNonRoot") is not True:
            faltas.append("runAsNonRoot: true")
        if not isinstance(s.get("runAsUser"), int) or s["runAsUser"] == 0:
            faltas.append("runAsUser distinto de 0")
        elif c["image"].split(":")[0] == IMAGEN_PROYECTO and s["runAsUser"] != uid:
            faltas.append(f"runAsUser: {uid} (el usuario gpr del Dockerfile)")
        if s.get("allowPrivilegeEscalation") is not False:
            faltas.append("allowPrivilegeEscalation: false")
        if s.get("readOnlyRootFilesystem") is not True:
            faltas.append("readOnlyRootFilesystem: true")
        if s.get("capabilities", {}).get("drop") != ["ALL"] or s.get("capabilities", {}).get("add"):
            faltas.append("capabilities.drop: [ALL] sin add")
        if s.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            faltas.append("seccompProfile RuntimeDefault")
        if s.get("privileged"):
            faltas.append("sin privileged")
        if faltas:
            errores.append(f"{nombre}: falta {', '.join(faltas)}")
    assert not errores, "\n".join(errores)


def _cantidad(valor) -> float:
    texto = str(valor)
    for sufijo, factor in (("Ki", 2**10), ("Mi", 2**20), ("Gi", 2**30), ("m", 1e-3)):
        if texto.endswith(sufijo):
            return float(texto[: -len(sufijo)]) * factor
    return float(texto)


def test_cada_contenedor_declara_recursos():
    errores = []
    for nombre, c, _ in _todos_los_contenedores():
        recursos = c.get("resources", {})
        for recurso in ("cpu", "memory"):
            pedido = recursos.get("requests", {}).get(recurso)
            tope = recursos.get("limits", {}).get(recurso)
            if pedido is None or tope is None:
                errores.append(f"{nombre}: falta requests/limits de {recurso}")
            elif _cantidad(pedido) > _cantidad(tope):
                errores.append(f"{nombre}: {recurso} pide {pedido} por encima del límite {tope}")
    assert not errores, "\n".join(errores)


def test_las_imagenes_son_la_del_proyecto_y_la_de_kafka_de_compose():
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    imagen_kafka = compose["services"]["topicos"]["image"]
    tags = set()
    for nombre, c, _ in _todos_los_contenedores():
        repositorio, _, tag = c["image"].partition(":")
        if nombre.startswith("Job/gpr-topicos/"):
            assert c["image"] == imagen_kafka, f"{nombre}: use {imagen_kafka} como docker-compose.yml"
        else:
            # Un solo nombre: el `images:` de kustomization.yaml lo cambia en todos a la vez.
            assert repositorio == IMAGEN_PROYECTO, nombre
            tags.add(tag)
    assert len(tags) == 1, f"todas las réplicas deben correr la misma versión: {tags}"


def test_los_puertos_coinciden_con_variables_sondas_y_compose():
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    for nombre in ("procesador", "consulta", "ingesta"):
        deployment = _objetos("Deployment")[nombre]
        contenedor = _principal(nombre)
        env = _env_literal(contenedor)
        puertos = {p["name"]: p["containerPort"] for p in contenedor["ports"]}
        anotaciones = deployment["spec"]["template"]["metadata"]["annotations"]
        assert anotaciones["prometheus.io/scrape"] == "true"
        assert anotaciones["prometheus.io/port"] == env["GPR_METRICAS_PUERTO"] == str(puertos["metricas"])
        if nombre in compose:
            entorno = compose[nombre].get("environment", {})
            for variable in ("GPR_GRPC_PUERTO", "GPR_METRICAS_PUERTO"):
                if variable in entorno:
                    assert env[variable] == str(entorno[variable]), f"{nombre}: {variable} distinto de compose"
        if nombre == "procesador":
            continue
        # Servicios gRPC: las sondas nativas preguntan a grpc.health.v1 en el puerto del servidor
        # o, si el servidor habla TLS (las sondas no), en su puerto de salud en claro.
        grpc = int(env["GPR_GRPC_PUERTO"])
        assert puertos["grpc"] == grpc
        salud = int(env.get("GPR_CONSULTA_SALUD_PUERTO", grpc))
        if salud != grpc:
            assert puertos["salud"] == salud, f"{nombre}: el puerto salud debe ser GPR_CONSULTA_SALUD_PUERTO"
        for sonda in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert contenedor[sonda]["grpc"]["port"] == salud, f"{nombre}: {sonda}"
        servicio = _objetos("Service")[nombre]
        assert [(p["port"], p["targetPort"]) for p in servicio["spec"]["ports"]] == [(grpc, "grpc")]


@pytest.mark.parametrize("nombre", ["consulta", "ingesta"])
def test_los_servidores_grpc_se_detienen_con_gracia_antes_de_que_los_maten(nombre):
    """SIGKILL llega tras terminationGracePeriodSeconds: debe caber el preStop más la gracia."""
    pod = _objetos("Deployment")[nombre]["spec"]["template"]["spec"]
    contenedor = _principal(nombre)
    espera = int(contenedor["lifecycle"]["preStop"]["exec"]["command"][-1])
    gracia = parsear_duracion(_env_literal(contenedor)["GPR_GRPC_GRACIA"])
    assert pod["terminationGracePeriodSeconds"] > espera + gracia


def test_el_portal_sondea_salud_http_en_su_puerto_y_se_detiene_con_gracia():
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]["portal"]
    deployment = _objetos("Deployment")["portal"]
    pod = deployment["spec"]["template"]["spec"]
    contenedor = _principal("portal")
    env = _env_literal(contenedor)
    puerto = int(env["GPR_PORTAL_PUERTO"])
    assert {p["name"]: p["containerPort"] for p in contenedor["ports"]} == {"http": puerto}
    assert str(puerto) == compose["environment"]["GPR_PORTAL_PUERTO"]
    for sonda in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert contenedor[sonda]["httpGet"] == {"path": "/salud", "port": "http"}, sonda
    anotaciones = deployment["spec"]["template"]["metadata"]["annotations"]
    assert anotaciones["prometheus.io/port"] == str(puerto) and anotaciones["prometheus.io/path"] == "/metrics"
    espera = int(contenedor["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > espera + parsear_duracion(env["GPR_PORTAL_GRACIA"])
    # La consulta a la que apunta existe y expone ese puerto gRPC.
    destino = env["GPR_PORTAL_CONSULTA"].removeprefix("dns:///")
    servicio, puerto_grpc = destino.split(":")
    nombre, namespace = servicio.split(".")[:2]
    assert namespace == "gpr"
    assert int(puerto_grpc) in [p["port"] for p in _objetos("Service")[nombre]["spec"]["ports"]]
    assert [(p["port"], p["targetPort"]) for p in _objetos("Service")["portal"]["spec"]["ports"]] == [(80, "http")]
    assert deployment["spec"]["replicas"] >= 2, "con una réplica el PDB no deja ninguna atendiendo"


def test_services_y_pdb_seleccionan_los_pods_de_su_deployment():
    deployments = _objetos("Deployment")
    for nombre, d in deployments.items():
        etiquetas = d["spec"]["template"]["metadata"]["labels"]
        assert d["spec"]["selector"]["matchLabels"].items() <= etiquetas.items(), nombre
    pdbs = _objetos("PodDisruptionBudget")
    assert set(pdbs) == {"procesador", "consulta", "ingesta", "portal"}
    selecciones = [(f"PDB/{n}", p["spec"]["selector"]["matchLabels"]) for n, p in pdbs.items()]
    selecciones += [(f"Service/{n}", s["spec"]["selector"]) for n, s in _objetos("Service").items()]
    for nombre, selector in selecciones:
        elegidos = [n for n, d in deployments.items()
                    if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(elegidos) == 1, f"{nombre} elige {elegidos}"
        assert elegidos[0] == nombre.split("/")[1].removesuffix("-pods"), nombre


def test_el_hpa_escala_la_consulta_por_cpu():
    (hpa,) = _objetos("HorizontalPodAutoscaler").values()
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "consulta"}
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"] == ["cpu"]
    # Con menos de 2 el PDB no podría dejar ninguna réplica atendiendo durante un drenaje.
    assert hpa["spec"]["minReplicas"] >= 2
    consulta = _objetos("Deployment")["consulta"]
    assert "replicas" not in consulta["spec"], "las réplicas de la consulta las fija el HPA"
    assert "cpu" in _principal("consulta")["resources"]["requests"], "el HPA mide CPU contra lo pedido"


# ------------------------------------------------------------ procesador y particiones

def test_el_procesador_tiene_una_replica_por_particion():
    procesador = _objetos("Deployment")["procesador"]
    contenedor = _principal("procesador")
    assert procesador["spec"]["replicas"] == _particiones()
    (particiones,) = [e for e in contenedor["env"] if e["name"] == "GPR_PARTICIONES"]
    assert particiones["valueFrom"]["configMapKeyRef"] == {"name": "gpr-config", "key": "GPR_PARTICIONES"}
    assert _env_literal(contenedor)["GPR_ALMACEN"] == "rocksdb"
    # Una réplica de más durante la actualización no tendría partición.
    assert procesador["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0


def _topicos_del_job() -> dict[str, dict[str, str]]:
    (job,) = _objetos("Job").values()
    guion = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    creados = {}
    for linea in guion.splitlines():
        m = re.match(r"\s*crear\s+(\S+)(.*)$", linea)
        if m:
            creados[m.group(1)] = dict(re.findall(r"--config\s+([^=\s]+)=(\S+)", m.group(2)))
    return creados


def _changelog_del_procesador() -> set[str]:
    """Los changelog que declara la app faust con la configuración del manifiesto."""
    from servicios.comun.catalogo import cargar_catalogo
    from servicios.comun.metas import IndiceMetas
    from servicios.procesador import config
    from servicios.procesador.app import crear_app
    from servicios.procesador.metricas import MetricasProcesador

    # Sin TLS ni SASL: sus archivos están en el clúster, y no cambian los nombres de las tablas.
    env = {k: v for k, v in _env_resuelto(_principal("procesador")).items() if k not in VARIABLES_SEGURIDAD}
    cfg = config.leer(env)
    app = crear_app(cfg, cargar_catalogo(RAIZ / "despliegue" / "catalogo.yaml"), IndiceMetas([]),
                    MetricasProcesador())
    nombres = set()
    for tabla in app.tables.values():
        topico = tabla.changelog_topic
        # Si una tabla pasa a tener ventana o configuración propia, el Job debe reflejarlo.
        assert topico.compacting and topico.retention is None, topico
        assert topico.config == topicos.configuracion_interna(), topico
        nombres.add(topico.get_topic_name())
    return nombres


def test_el_job_crea_los_topicos_del_contrato_y_los_changelog():
    creados = _topicos_del_job()
    contrato = [topicos.EVENTOS, topicos.RECHAZADOS, topicos.INDICADORES, topicos.CUMPLIMIENTO,
                *topicos.INTERNOS]
    esperados = {t: topicos.configuracion_topico(t) for t in contrato}
    esperados |= {t: {"cleanup.policy": "compact", **topicos.configuracion_interna()} for t in _changelog_del_procesador()}
    assert creados == esperados

    (job,) = _objetos("Job").values()
    contenedor = job["spec"]["template"]["spec"]["containers"][0]
    guion = contenedor["args"][0]
    assert "--if-not-exists" in guion and "set -euo pipefail" in guion
    assert '--partitions "$PARTICIONES"' in guion and '--replication-factor "$REPLICACION"' in guion
    env = _env_resuelto(contenedor)
    assert int(env["PARTICIONES"]) == _particiones()
    # Producción: 3 réplicas y 2 al día para confirmar (tolera perder un broker).
    assert (env["REPLICACION"], env["MIN_ISR"]) == ("3", "2")


def test_los_servicios_esperan_los_topicos_que_crea_el_job():
    guion = _configmaps()["gpr-esperar-topicos"]["esperar_topicos.py"]
    (asignacion,) = [n for n in ast.parse(guion).body if isinstance(n, ast.Assign)
                     and [t.id for t in n.targets if isinstance(t, ast.Name)] == ["TOPICOS"]]
    assert ast.literal_eval(asignacion.value) == set(_topicos_del_job())
    for nombre in MODULOS:
        pod = _objetos("Deployment")[nombre]["spec"]["template"]["spec"]
        iniciales = [c["command"] for c in pod.get("initContainers", [])]
        if nombre in SIN_KAFKA:
            # Lee solo la API gRPC: ni espera tópicos ni conoce el broker.
            assert iniciales == [] and "GPR_KAFKA_BOOTSTRAP" not in _env_resuelto(_principal(nombre)), nombre
            continue
        assert iniciales == [["python", "/etc/gpr/scripts/esperar_topicos.py"]], \
            f"{nombre}: arrancaría antes de que el Job cree los tópicos y los crearía con réplica 1"


def test_los_kafkatopic_de_strimzi_coinciden_con_el_job():
    (job,) = _objetos("Job").values()
    env = _env_resuelto(job["spec"]["template"]["spec"]["containers"][0])
    strimzi = {}
    clusteres = set()
    for archivo, doc in DOCUMENTOS:
        if doc["kind"] != "KafkaTopic":
            continue
        spec = doc["spec"]
        strimzi[spec.get("topicName", doc["metadata"]["name"])] = spec
        clusteres.add((doc["metadata"]["labels"]["strimzi.io/cluster"], doc["metadata"]["namespace"]))
    creados = _topicos_del_job()
    assert set(strimzi) == set(creados)
    for nombre, spec in strimzi.items():
        assert spec["partitions"] == _particiones(), nombre
        assert str(spec["replicas"]) == env["REPLICACION"], nombre
        config = {k: str(v) for k, v in spec.get("config", {}).items()}
        assert config == {**creados[nombre], "min.insync.replicas": env["MIN_ISR"]}, nombre
    # La dirección de config.yaml es la del mismo clúster Strimzi.
    (cluster, namespace), = clusteres
    assert _configmaps()["gpr-config"]["GPR_KAFKA_BOOTSTRAP"].startswith(
        f"{cluster}-kafka-bootstrap.{namespace}.svc:")


@pytest.mark.integracion
def test_esperar_topicos_termina_cuando_el_job_los_creo(bootstrap, tmp_path):
    """El init container de verdad contra el broker embebido: espera y luego deja pasar."""
    from servicios.comun.topicos import crear_topicos

    guion = tmp_path / "esperar_topicos.py"
    guion.write_text(_configmaps()["gpr-esperar-topicos"]["esperar_topicos.py"], encoding="utf-8")
    registro = tmp_path / "esperar.log"
    with open(registro, "wb") as salida:
        proceso = subprocess.Popen([sys.executable, str(guion)], stdout=salida, stderr=subprocess.STDOUT,
                                   env={"GPR_KAFKA_BOOTSTRAP": bootstrap, "ESPERA_PAUSA_S": "0.2"})
        try:
            fin = time.monotonic() + 30
            while "faltan" not in registro.read_text() and time.monotonic() < fin:
                assert proceso.poll() is None, registro.read_text()
                time.sleep(0.1)
            assert proceso.poll() is None, "terminó sin que existieran los tópicos"
            crear_topicos(bootstrap, 1, nombres=sorted(_topicos_del_job()))
            assert proceso.wait(30) == 0, registro.read_text()
        finally:
            if proceso.poll() is None:
                proceso.kill()
                proceso.wait()
    assert "tópicos listos" in registro.read_text()
