"""docker-compose.yml y despliegue/kubernetes/ dan a cada servicio lo que el servicio lee, y
los dos le dan lo mismo.

Para cada servicio del proyecto (`python -m servicios.X` en los dos despliegues) se arma el
entorno que recibe en cada uno —las `ENV` del Dockerfile (la imagen es la misma en los dos)
más las variables de compose o del Deployment, con los ConfigMaps resueltos— y se le pasa al
`config.leer` del propio servicio, que anota qué variables consulta. Así:

* el servicio arranca con esa configuración (ninguna variable obligatoria falta ni es inválida);
* cada variable `GPR_*` que el despliegue fija la lee el servicio;
* cada archivo o carpeta que la configuración nombra —también por omisión, relativa a la
  carpeta de trabajo de la imagen— existe en el contenedor y contiene lo que debe: el catálogo
  y las metas del repositorio (copiados en la imagen, montados desde el repositorio o desde un
  ConfigMap idéntico a ellos), el secreto que pone el operador, o un volumen escribible;
* las dos configuraciones son iguales campo a campo, salvo las diferencias de la lista
  DIFERENCIAS_ADMITIDAS, cada una con su porqué.

Esta prueba es la que habría visto que compose arrancaba el procesador sin metas.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path, PurePosixPath

import pytest
import yaml

from conftest import RAIZ

COMPOSE = RAIZ / "docker-compose.yml"
DOCKERFILE = RAIZ / "Dockerfile"
K8S = RAIZ / "despliegue" / "kubernetes"

# Variable → (campo de la configuración, qué debe haber en esa ruta, origen en el repositorio).
ARCHIVOS = {
    "GPR_CATALOGO": ("catalogo", "archivo", "despliegue/catalogo.yaml"),
    "GPR_METAS": ("metas", "carpeta", "despliegue/metas"),
    "GPR_INGESTA_CREDENCIALES": ("credenciales", "secreto", None),
    "GPR_DIRECTORIO_DATOS": ("directorio_datos", "escribible", None),
}

# Material TLS que la configuración lee al arrancar (variable → bloque PEM que busca). Aquí se
# le da un PEM de prueba, y aparte se comprueba que la ruta del contenedor la pone el operador
# (Secret, ${VAR}) o un volumen que genera otro servicio del despliegue (el certificado de la
# consulta en compose).
PEM = {
    "GPR_CONSULTA_TLS_CERT": "certificado",
    "GPR_CONSULTA_TLS_KEY": "clave",
    "GPR_PORTAL_CONSULTA_TLS_CA": "ca",
    "GPR_KAFKA_TLS_CA": "ca",
    "GPR_KAFKA_TLS_CERT": "certificado",
    "GPR_KAFKA_TLS_CLAVE": "clave",
    "GPR_KAFKA_SASL_CLAVE_ARCHIVO": "contraseña",
}


def _material_de_prueba(directorio: Path) -> dict[str, Path]:
    """Una CA, un certificado con su clave (que la configuración valida con ssl de verdad) y una
    contraseña, en archivos."""
    import trustme

    ca = trustme.CA()
    emitido = ca.issue_cert("prueba")
    rutas = {"ca": directorio / "ca.crt", "certificado": directorio / "tls.crt", "clave": directorio / "tls.key",
             "contraseña": directorio / "clave"}
    ca.cert_pem.write_to_path(rutas["ca"])
    emitido.cert_chain_pems[0].write_to_path(rutas["certificado"])
    emitido.private_key_pem.write_to_path(rutas["clave"])
    rutas["contraseña"].write_text("secreto-de-prueba\n")
    return rutas
ARCHIVOS["GPR_CONSULTA_TOKENS"] = ("tokens", "secreto", None)

# (servicio, campo) → por qué puede diferir entre compose y Kubernetes. "*": cualquier servicio.
DIFERENCIAS_ADMITIDAS = {
    ("portal", "token"): "en compose, el token público de demostración; en Kubernetes, el Secret del operador",
    ("portal", "consulta"): "en Kubernetes, el Service sin IP de la consulta con balanceo por llamada; en compose, "
                            "el único contenedor de la consulta",
    ("consulta", "salud_puerto"): "Kubernetes sondea la salud por un puerto sin TLS (sus sondas gRPC no hablan TLS); "
                                  "compose la comprueba con TLS desde el contenedor",
    ("*", "bootstrap"): "cada despliegue nombra su propio Kafka (kafka:9092 en compose, el de Strimzi en Kubernetes)",
    ("consulta", "gracia_s"): "en Kubernetes el preStop de 5 s ya retiró el pod del Service; compose no tiene preStop",
    ("ingesta", "gracia_s"): "en Kubernetes el preStop de 5 s ya retiró el pod del Service; compose no tiene preStop",
}


class Lectura(dict):
    """Un entorno que anota qué variables consulta quien lo lee."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.leidas: set[str] = set()

    def get(self, clave, defecto=None):
        self.leidas.add(clave)
        return super().get(clave, defecto)

    def __getitem__(self, clave):
        self.leidas.add(clave)
        return super().__getitem__(clave)

    def __contains__(self, clave):
        self.leidas.add(clave)
        return super().__contains__(clave)


@dataclasses.dataclass(frozen=True)
class Montaje:
    """Algo que ocupa una ruta del contenedor."""

    destino: str
    tipo: str        # repo | configmap | secreto | escribible
    origen: str = ""  # ruta en el repositorio, o nombre del ConfigMap


@dataclasses.dataclass
class Contenedor:
    entorno: dict[str, str]
    montajes: list[Montaje]
    trabajo: str  # carpeta de trabajo (WORKDIR de la imagen)
    propias: frozenset[str] = frozenset()  # las que fija el despliegue (no la imagen, común a todos)

    def resolver(self, ruta: str) -> tuple[Montaje, str] | None:
        """El montaje que sirve `ruta` (el de destino más largo que la contiene) y el resto."""
        absoluta = str(PurePosixPath(self.trabajo) / ruta)
        candidatos = [m for m in self.montajes
                      if absoluta == m.destino or absoluta.startswith(m.destino.rstrip("/") + "/")]
        if not candidatos:
            return None
        montaje = max(candidatos, key=lambda m: len(m.destino))
        return montaje, absoluta[len(montaje.destino.rstrip("/")):].lstrip("/")


# --- La imagen ---------------------------------------------------------------------------------

def _imagen() -> tuple[dict[str, str], list[Montaje], str]:
    """ENV GPR_*, archivos copiados del repositorio y WORKDIR de la etapa final del Dockerfile."""
    texto = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    final = texto.split("\nFROM ")[-1]
    entorno = dict(re.findall(r"\b(GPR_[A-Z0-9_]+)=(\S+)", final))
    trabajo = re.findall(r"^WORKDIR\s+(\S+)", final, re.M)[-1]
    copias = [Montaje(destino.rstrip("/"), "repo", origen.rstrip("/"))
              for origen, destino in re.findall(r"^COPY\s+(?!--from)(\S+)\s+(\S+)", final, re.M)]
    escribibles = [Montaje(d, "escribible") for d in re.findall(r"chown\s+\S+\s+(/\S+)", final)]
    return entorno, copias + escribibles, trabajo


def _modulo_de(comando) -> str | None:
    if isinstance(comando, str):
        comando = comando.split()
    if comando and comando[:2] == ["python", "-m"] and comando[2].startswith("servicios."):
        modulo = comando[2]
        # Solo los servicios con su config.py (no la CLI, que corre tareas sueltas).
        if (RAIZ / Path(*modulo.split(".")) / "config.py").is_file():
            return modulo
    return None


# --- docker-compose.yml --------------------------------------------------------------------------

_INTERPOLACION = re.compile(r"\$\{(\w+)(?::?[-?])?([^}]*)\}")


def _por_omision(valor: str) -> tuple[str, bool]:
    """El valor de compose con `${VAR:-defecto}` resuelto al defecto, y si lo pone el operador."""
    operador = bool(_INTERPOLACION.search(valor))
    return _INTERPOLACION.sub(lambda m: m.group(2), valor), operador


def contenedores_compose() -> dict[str, Contenedor]:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    entorno_imagen, copias, trabajo = _imagen()
    resultado = {}
    for servicio in compose["services"].values():
        modulo = _modulo_de(servicio.get("command"))
        if modulo is None:
            continue
        entorno = dict(entorno_imagen)
        for nombre, valor in (servicio.get("environment") or {}).items():
            entorno[nombre] = _por_omision(str(valor))[0]
        montajes = list(copias)
        for volumen in servicio.get("volumes", []):
            resuelto, operador = _por_omision(volumen)
            partes = resuelto.split(":")
            if len(partes) == 1 or not partes[0].startswith((".", "/")):
                # Volumen anónimo o con nombre: escribible, vacío al principio.
                montajes.append(Montaje(partes[-1] if len(partes) == 1 else partes[1], "escribible"))
                continue
            # Un origen `${VAR:-ejemplo}` lo elige el operador: es su secreto (el ejemplo solo
            # sirve para probar); un origen fijo es el archivo del repositorio.
            tipo = "secreto" if operador else "repo"
            montajes.append(Montaje(partes[1], tipo, partes[0].removeprefix("./")))
        resultado[modulo] = Contenedor(entorno, montajes, trabajo, frozenset(servicio.get("environment") or {}))
    return resultado


# --- Kubernetes ------------------------------------------------------------------------------------

def _documentos():
    for archivo in sorted(K8S.rglob("*.yaml")):
        if archivo.name != "kustomization.yaml":
            yield from (d for d in yaml.safe_load_all(archivo.read_text(encoding="utf-8")) if d)


def contenedores_kubernetes() -> dict[str, Contenedor]:
    documentos = list(_documentos())
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in documentos if d["kind"] == "ConfigMap"}
    entorno_imagen, copias, trabajo = _imagen()
    resultado = {}
    for despliegue in (d for d in documentos if d["kind"] == "Deployment"):
        pod = despliegue["spec"]["template"]["spec"]
        volumenes = {v["name"]: v for v in pod.get("volumes", [])}
        for contenedor in pod["containers"]:
            modulo = _modulo_de(contenedor.get("command"))
            if modulo is None:
                continue
            entorno = dict(entorno_imagen)
            for variable in contenedor.get("env", []):
                if "value" in variable:
                    entorno[variable["name"]] = str(variable["value"])
                elif "configMapKeyRef" in variable["valueFrom"]:
                    ref = variable["valueFrom"]["configMapKeyRef"]
                    entorno[variable["name"]] = configmaps[ref["name"]][ref["key"]]
                else:
                    entorno[variable["name"]] = "(secreto)"
            montajes = list(copias)
            for montaje in contenedor.get("volumeMounts", []):
                volumen = volumenes[montaje["name"]]
                if "configMap" in volumen:
                    montajes.append(Montaje(montaje["mountPath"], "configmap", volumen["configMap"]["name"]))
                elif "secret" in volumen:
                    montajes.append(Montaje(montaje["mountPath"], "secreto", volumen["secret"]["secretName"]))
                else:
                    montajes.append(Montaje(montaje["mountPath"], "escribible"))
            propias = frozenset(v["name"] for v in contenedor.get("env", []))
            resultado[modulo] = Contenedor(entorno, montajes, trabajo, propias)
    return resultado, configmaps


COMPOSE_CONTENEDORES = contenedores_compose()
K8S_CONTENEDORES, CONFIGMAPS = contenedores_kubernetes()
SERVICIOS = sorted(COMPOSE_CONTENEDORES)


@pytest.fixture(scope="module")
def material(tmp_path_factory) -> dict[str, Path]:
    return _material_de_prueba(tmp_path_factory.mktemp("material"))


def _leer(modulo: str, contenedor: Contenedor, material: dict[str, Path]):
    config = importlib.import_module(f"{modulo}.config")
    entorno = dict(contenedor.entorno)
    for variable, que in PEM.items():
        if entorno.get(variable):
            entorno[variable] = str(material[que])
    lectura = Lectura(entorno)
    return config.leer(lectura), lectura.leidas


# --- Pruebas ---------------------------------------------------------------------------------------

def test_los_dos_despliegues_tienen_los_mismos_servicios():
    assert SERVICIOS, "docker-compose.yml no arranca ningún servicio del proyecto"
    assert sorted(K8S_CONTENEDORES) == SERVICIOS


@pytest.mark.parametrize("despliegue", ["compose", "kubernetes"])
@pytest.mark.parametrize("modulo", SERVICIOS)
def test_el_servicio_arranca_con_lo_que_le_da_el_despliegue(modulo, despliegue, material):
    contenedor = (COMPOSE_CONTENEDORES if despliegue == "compose" else K8S_CONTENEDORES)[modulo]
    cfg, leidas = _leer(modulo, contenedor, material)  # una variable obligatoria que falta lanza aquí
    fijadas = {v for v in contenedor.propias if v.startswith("GPR_")}
    assert not fijadas - leidas, f"{despliegue} fija a {modulo} variables que no lee: {sorted(fijadas - leidas)}"

    for variable in sorted(leidas):
        valor = contenedor.entorno.get(variable, "")
        if variable in PEM and valor:
            resuelto = contenedor.resolver(valor)
            assert resuelto is not None, f"{despliegue}: {modulo} lee {variable}={valor} y nada lo pone en el contenedor"
            assert resuelto[0].tipo in ("secreto", "escribible"), (
                f"{despliegue}: {modulo} {variable}={valor} debe ponerlo el operador o un volumen generado, es {resuelto[0]}")
            continue
        if variable not in ARCHIVOS:
            assert not valor.startswith("/"), (
                f"{modulo}: {variable}={valor} parece una ruta; declárela en ARCHIVOS para comprobar qué contiene")
            continue
        campo, que, origen = ARCHIVOS[variable]
        ruta = getattr(cfg, campo)
        if ruta is None:
            continue
        resuelto = contenedor.resolver(str(ruta))
        assert resuelto is not None, f"{despliegue}: {modulo} lee {variable}={ruta} y nada lo pone en el contenedor"
        montaje, resto = resuelto
        donde = f"{despliegue}: {modulo} {variable}={ruta}"
        if que == "escribible":
            assert montaje.tipo == "escribible", f"{donde}: debe ser un volumen escribible, es {montaje}"
        elif que == "secreto":
            assert montaje.tipo == "secreto", f"{donde}: lo debe poner el operador (Secret o ${{VAR}}), es {montaje}"
        elif montaje.tipo == "repo":
            assert PurePosixPath(montaje.origen) / resto == PurePosixPath(origen), f"{donde}: es {montaje.origen}/{resto}"
            assert (RAIZ / origen).exists(), origen
        elif montaje.tipo == "configmap":
            datos = CONFIGMAPS[montaje.origen]
            esperado = ({p.name: p.read_text(encoding="utf-8") for p in sorted((RAIZ / origen).glob("*.yaml"))}
                        if que == "carpeta" else {Path(origen).name: (RAIZ / origen).read_text(encoding="utf-8")})
            if que == "carpeta":
                assert resto == "", f"{donde}: debe ser la carpeta del ConfigMap {montaje.origen}"
                assert datos == esperado, f"{donde}: el ConfigMap {montaje.origen} no es {origen}"
            else:
                assert {resto: datos.get(resto)} == esperado, f"{donde}: el ConfigMap {montaje.origen} no es {origen}"
        else:
            pytest.fail(f"{donde}: debe venir del repositorio ({origen}), viene de {montaje}")


@pytest.mark.parametrize("modulo", SERVICIOS)
def test_compose_y_kubernetes_configuran_igual_cada_servicio(modulo, material):
    compose, _ = _leer(modulo, COMPOSE_CONTENEDORES[modulo], material)
    k8s, _ = _leer(modulo, K8S_CONTENEDORES[modulo], material)
    rutas = {campo for campo, _, _ in ARCHIVOS.values()}
    nombre = modulo.rsplit(".", 1)[-1]
    distintos = {}
    for campo in dataclasses.fields(compose):
        a, b = getattr(compose, campo.name), getattr(k8s, campo.name)
        if campo.name == "kafka" and a is not None and b is not None:
            # La conexión a Kafka, salvo su dirección (ver ("*", "bootstrap")).
            a, b = dataclasses.replace(a, bootstrap=""), dataclasses.replace(b, bootstrap="")
        if a == b or campo.name in rutas:  # las rutas se comparan por su contenido, arriba
            continue
        if (nombre, campo.name) in DIFERENCIAS_ADMITIDAS or ("*", campo.name) in DIFERENCIAS_ADMITIDAS:
            continue
        distintos[campo.name] = (a, b)
    assert not distintos, f"{modulo}: compose y Kubernetes difieren en (compose, kubernetes): {distintos}"


def test_sin_las_metas_montadas_compose_no_daria_las_metas_al_procesador(material):
    """La prueba de arriba ve el fallo de antes: sin el montaje, GPR_METAS no llega a nada."""
    contenedor = COMPOSE_CONTENEDORES["servicios.procesador"]
    sin_metas = dataclasses.replace(contenedor, montajes=[m for m in contenedor.montajes if "metas" not in m.destino])
    cfg, _ = _leer("servicios.procesador", sin_metas, material)
    assert sin_metas.resolver(cfg.metas) is None
