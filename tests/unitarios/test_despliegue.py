"""El despliegue (docker-compose.yml, Dockerfile, Prometheus, Alertmanager) concuerda con el código.

No hay motor de Docker en estas máquinas: docker-compose.yml no se puede levantar aquí, así
que se comprueba lo que sí se puede comprobar sin él — que cada servicio arranque un módulo
que existe, que cada variable GPR_* que se fija la lea de verdad ese servicio, que los
tópicos que se crean sean los del contrato, y que los binarios reales `promtool` y `amtool`
acepten las configuraciones de Prometheus y Alertmanager.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from servicios.comun import topicos

from conftest import RAIZ

COMPOSE = RAIZ / "docker-compose.yml"
DOCKERFILE = RAIZ / "Dockerfile"
PROMETHEUS = RAIZ / "despliegue" / "prometheus" / "prometheus.yml"
REGLAS = RAIZ / "despliegue" / "prometheus" / "reglas"
ALERTMANAGER = RAIZ / "despliegue" / "alertmanager" / "alertmanager.yml"
INSTALAR = "sudo bash despliegue/instalar-herramientas.sh"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _servicios_gpr(compose: dict) -> dict[str, str]:
    """servicio de compose → módulo `servicios.X` que arranca con `python -m`."""
    modulos = {}
    for nombre, servicio in compose["services"].items():
        comando = servicio.get("command")
        if isinstance(comando, str):
            comando = comando.split()
        if comando and comando[:2] == ["python", "-m"]:
            modulos[nombre] = comando[2]
    return modulos


def _binario(*nombres: str) -> str:
    for nombre in nombres:
        ruta = shutil.which(nombre)
        if ruta:
            return ruta
    pytest.fail(f"falta {' o '.join(nombres)} en el PATH; instálelo con: {INSTALAR}")


def _leido_por(variable: str, carpetas: list[Path]) -> bool:
    patron = re.compile(rf"[\"']{re.escape(variable)}[\"']")
    return any(patron.search(archivo.read_text(encoding="utf-8"))
               for carpeta in carpetas for archivo in carpeta.rglob("*.py"))


def test_compose_arranca_los_servicios_esperados(compose):
    assert _servicios_gpr(compose) == {
        "procesador": "servicios.procesador",
        "consulta": "servicios.consulta",
        "ingesta": "servicios.ingesta",
        "simulador": "servicios.simulador",
        "portal": "servicios.portal",
        # Tareas de la CLI: generar reglas y configuración de Alertmanager al arrancar, servir runbooks.
        "reglas": "servicios.cli",
        "alertmanager-configuracion": "servicios.cli",
        "runbooks": "servicios.cli",
    }
    assert compose["services"]["procesador"]["deploy"]["replicas"] == 2
    assert compose["services"]["simulador"]["profiles"] == ["demo"]


def test_cada_comando_de_compose_es_un_modulo_con_main(compose):
    faltan = []
    for servicio, modulo in _servicios_gpr(compose).items():
        main = RAIZ / Path(*modulo.split(".")) / "__main__.py"
        if not main.is_file():
            faltan.append(f"{servicio}: {main.relative_to(RAIZ)}")
    assert not faltan, "docker-compose.yml arranca módulos sin __main__.py: " + ", ".join(faltan)


def test_cada_variable_gpr_de_compose_la_lee_su_servicio(compose):
    """Una variable que ningún config.py lee es una configuración que no hace nada."""
    sin_uso = []
    for servicio, modulo in _servicios_gpr(compose).items():
        entorno = compose["services"][servicio].get("environment", {})
        assert isinstance(entorno, dict), f"{servicio}: environment debe ser un mapa"
        carpetas = [RAIZ / Path(*modulo.split(".")), RAIZ / "servicios" / "comun"]
        for variable in entorno:
            if variable.startswith("GPR_") and not _leido_por(variable, carpetas):
                sin_uso.append(f"{servicio}: {variable}")
    assert not sin_uso, "variables GPR_* que el servicio no lee: " + ", ".join(sin_uso)


def test_las_variables_gpr_del_dockerfile_las_lee_el_codigo():
    variables = set(re.findall(r"\b(GPR_[A-Z0-9_]+)=", DOCKERFILE.read_text(encoding="utf-8")))
    assert variables, "el Dockerfile debería fijar GPR_DIRECTORIO_DATOS (WORKDIR /app no es escribible)"
    sin_uso = sorted(v for v in variables if not _leido_por(v, [RAIZ / "servicios"]))
    assert not sin_uso, f"el Dockerfile fija variables que nadie lee: {sin_uso}"


def test_los_puertos_de_compose_coinciden_con_prometheus(compose):
    servicios = compose["services"]
    prometheus = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    trabajos = {t["job_name"]: t for t in prometheus["scrape_configs"]}
    consulta = trabajos["gpr-consulta"]["static_configs"][0]["targets"]
    assert consulta == [f"consulta:{servicios['consulta']['environment']['GPR_METRICAS_PUERTO']}"]
    dns = trabajos["gpr-procesador"]["dns_sd_configs"][0]
    assert dns["names"] == ["procesador"]
    assert str(dns["port"]) == servicios["procesador"]["environment"]["GPR_METRICAS_PUERTO"]
    puerto_grpc = servicios["consulta"]["environment"]["GPR_GRPC_PUERTO"]
    assert f"{puerto_grpc}:{puerto_grpc}" in servicios["consulta"]["ports"]
    assert f"localhost:{puerto_grpc}" in " ".join(servicios["consulta"]["healthcheck"]["test"])
    puerto_portal = servicios["portal"]["environment"]["GPR_PORTAL_PUERTO"]
    assert trabajos["gpr-portal"]["static_configs"][0]["targets"] == [f"portal:{puerto_portal}"]
    assert f"{puerto_portal}:{puerto_portal}" in servicios["portal"]["ports"]
    assert f"localhost:{puerto_portal}/salud" in " ".join(servicios["portal"]["healthcheck"]["test"])
    assert servicios["portal"]["environment"]["GPR_PORTAL_CONSULTA"] == f"consulta:{puerto_grpc}"


def test_kafka_anuncia_la_direccion_que_usan_los_servicios(compose):
    servicios = compose["services"]
    anunciado = servicios["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    for servicio in _servicios_gpr(compose):
        if "GPR_KAFKA_BOOTSTRAP" not in (servicios[servicio].get("environment") or {}):
            continue  # tareas que no hablan con Kafka (reglas, runbooks…)
        bootstrap = servicios[servicio]["environment"]["GPR_KAFKA_BOOTSTRAP"]
        assert f"://{bootstrap}" in anunciado, f"{servicio}: {bootstrap} no está en {anunciado}"


def test_compose_crea_los_topicos_del_contrato(compose):
    """Mismos tópicos y configuración que crear_topicos(), con 4 particiones."""
    guion = compose["services"]["topicos"]["command"][0]
    creados = {}
    for linea in guion.splitlines():
        m = re.match(r"\s*crear\s+(\S+)(.*)$", linea)
        if m:
            creados[m.group(1)] = dict(re.findall(r"--config\s+([^=\s]+)=(\S+)", m.group(2)))
    esperados = [topicos.EVENTOS, topicos.RECHAZADOS, topicos.INDICADORES, topicos.CUMPLIMIENTO,
                 *topicos.INTERNOS]
    assert creados == {t: topicos.configuracion_topico(t) for t in esperados}
    assert "--partitions 4" in guion and "--if-not-exists" in guion
    for servicio in ("procesador", "simulador"):
        assert compose["services"][servicio]["depends_on"]["topicos"]["condition"] == \
            "service_completed_successfully"


def test_dockerfile_genera_los_protos_con_las_versiones_del_proyecto():
    # grpcio-tools y protobuf salen de requirements/construccion.lock, que debe fijar las
    # versiones de pyproject.toml (tests/unitarios/test_dependencias.py lo comprueba).
    proyecto = tomllib.loads((RAIZ / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    fijadas = {r.split("==")[0]: r for r in proyecto["dependencies"] + proyecto["optional-dependencies"]["dev"]}
    lock = (RAIZ / "requirements" / "construccion.lock").read_text(encoding="utf-8")
    texto = DOCKERFILE.read_text(encoding="utf-8")
    assert "/opt/protoc/bin/pip install --require-hashes -r requirements/construccion.lock" in texto
    for paquete in ("grpcio-tools", "protobuf"):
        assert re.search(rf"^{re.escape(fijadas[paquete])} ", lock, re.M), \
            f"requirements/construccion.lock debe fijar {fijadas[paquete]} como pyproject.toml"
    assert "--python_out=gen --pyi_out=gen --grpc_python_out=gen protos/gpr/v1/*.proto" in texto
    assert "touch gen/gpr/__init__.py gen/gpr/v1/__init__.py" in texto


def test_promtool_acepta_la_configuracion_de_prometheus():
    promtool = _binario("promtool")
    r = subprocess.run([promtool, "check", "config", str(PROMETHEUS)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_acepta_las_reglas_que_compose_monta(tmp_path):
    """La misma configuración, con rule_files apuntando a la carpeta del repositorio: así
    promtool también comprueba las reglas que Prometheus cargará en producción."""
    promtool = _binario("promtool")
    texto = PROMETHEUS.read_text(encoding="utf-8")
    assert "/etc/prometheus/reglas/*.yml" in texto
    copia = tmp_path / "prometheus.yml"
    copia.write_text(texto.replace("/etc/prometheus/reglas/", f"{REGLAS}/"), encoding="utf-8")
    r = subprocess.run([promtool, "check", "config", str(copia)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    ignorados = [p.name for p in REGLAS.iterdir() if p.is_file() and p.suffix != ".yml" and p.name != ".gitkeep"]
    assert not ignorados, f"Prometheus solo carga reglas/*.yml; se ignorarían: {ignorados}"


def test_amtool_acepta_la_configuracion_de_alertmanager():
    amtool = _binario("amtool")
    r = subprocess.run([amtool, "check-config", str(ALERTMANAGER)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _ruta(*etiquetas: str) -> str:
    amtool = _binario("amtool")
    r = subprocess.run([amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}", *etiquetas],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip()


@pytest.mark.parametrize("etiquetas, receptor", [
    (["severidad=critica", "equipo=registros"], "registros-guardia"),
    (["severidad=advertencia", "equipo=registros"], "registros-tickets"),
    (["severidad=critica", "equipo=plataforma"], "plataforma-guardia"),
    (["severidad=advertencia", "equipo=plataforma"], "plataforma-tickets"),
    # Un equipo sin receptor propio cae en los generales de su severidad.
    (["severidad=critica", "equipo=nuevo"], "guardia"),
    (["severidad=advertencia", "equipo=nuevo"], "tickets"),
    (["severidad=info", "equipo=registros"], "operaciones"),
    (["severidad=desconocida", "equipo=registros"], "operaciones"),
])
def test_alertmanager_enruta_por_severidad_y_equipo(etiquetas, receptor):
    assert _ruta(*etiquetas, "agencia=sunarp", "servicio=certificado-literal") == receptor


def test_cada_equipo_de_las_metas_tiene_guardia_y_tickets():
    """Un equipo nuevo en despliegue/metas/ sin receptores propios avisaría a nadie en concreto."""
    from servicios.comun.catalogo import cargar_catalogo
    from servicios.comun.metas import archivos_de, cargar_metas

    catalogo = cargar_catalogo(RAIZ / "despliegue" / "catalogo.yaml")
    metas = cargar_metas(archivos_de(RAIZ / "despliegue" / "metas"), catalogo)
    equipos = sorted({m.equipo for m in metas} | {"plataforma"})
    for equipo in equipos:
        assert _ruta("severidad=critica", f"equipo={equipo}") == f"{equipo}-guardia"
        assert _ruta("severidad=advertencia", f"equipo={equipo}") == f"{equipo}-tickets"


def _alerta(alertname: str, **etiquetas: str) -> dict:
    return {"labels": {"alertname": alertname, **etiquetas}}


def test_alertmanager_inhibe_el_ticket_con_la_pagina(tmp_path):
    """Alertmanager real: las reglas de inhibición silencian lo que deben y nada más."""
    import json
    import time
    import urllib.request

    from servicios.comun.broker import morir_con_el_padre, puerto_libre

    binario = _binario("prometheus-alertmanager", "alertmanager")
    puerto = puerto_libre()
    base = f"http://127.0.0.1:{puerto}"
    registro = open(tmp_path / "alertmanager.log", "wb")
    proceso = subprocess.Popen(
        [binario, f"--config.file={ALERTMANAGER}", f"--storage.path={tmp_path}",
         f"--web.listen-address=127.0.0.1:{puerto}", "--cluster.listen-address="],
        stdout=registro, stderr=subprocess.STDOUT, preexec_fn=morir_con_el_padre())
    serie = {"agencia": "reniec", "servicio": "dni-duplicado", "indicador": "cumplimiento_plazo"}
    alertas = {
        "pagina": _alerta("MetaQuemaRapida", **serie, severidad="critica", equipo="atencion-ciudadana"),
        "ticket": _alerta("MetaQuemaLenta", **serie, severidad="advertencia", equipo="atencion-ciudadana"),
        "ticket_otra_serie": _alerta("MetaQuemaLenta", **{**serie, "servicio": "dni-primera-vez"},
                                     severidad="advertencia", equipo="atencion-ciudadana"),
        "umbral_critica": _alerta("MetaIncumplida", **serie, severidad="critica", equipo="atencion-ciudadana",
                                  meta="reniec/*/cumplimiento_plazo/24h"),
        "umbral_advertencia": _alerta("MetaIncumplida", **serie, severidad="advertencia", equipo="atencion-ciudadana",
                                      meta="reniec/dni-duplicado/cumplimiento_plazo/7d"),
        "umbral_otro_indicador": _alerta("MetaIncumplida", **{**serie, "indicador": "satisfaccion_top2"},
                                         severidad="advertencia", equipo="atencion-ciudadana"),
        "retraso": _alerta("ProcesadorRetrasado", topico="gpr.eventos.v1", severidad="critica", equipo="plataforma"),
        "sin_eventos": _alerta("AgenciaSinEventos", agencia="sunarp", severidad="advertencia", equipo="registros"),
    }
    suprimidas = {"ticket", "umbral_advertencia", "sin_eventos"}
    try:
        fin = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{base}/-/ready", timeout=1)
                break
            except OSError:
                if time.monotonic() > fin or proceso.poll() is not None:
                    pytest.fail("Alertmanager no arrancó:\n" + (tmp_path / "alertmanager.log").read_text())
                time.sleep(0.1)
        pedido = urllib.request.Request(f"{base}/api/v2/alerts", data=json.dumps(list(alertas.values())).encode(),
                                        headers={"Content-Type": "application/json"}, method="POST")
        urllib.request.urlopen(pedido, timeout=5)
        nombres = {json.dumps(a["labels"], sort_keys=True): n for n, a in alertas.items()}
        fin = time.monotonic() + 20
        while True:
            estados = {}
            for alerta in json.load(urllib.request.urlopen(f"{base}/api/v2/alerts", timeout=5)):
                nombre = nombres[json.dumps(alerta["labels"], sort_keys=True)]
                estados[nombre] = alerta["status"]["state"]
            esperados = {n: "suppressed" if n in suprimidas else "active" for n in alertas}
            if estados == esperados or time.monotonic() > fin:
                break
            time.sleep(0.2)
        assert estados == esperados
    finally:
        proceso.terminate()
        proceso.wait(10)
        registro.close()


def _montajes(servicio: dict) -> dict[str, str]:
    """destino en el contenedor → origen (ruta del repositorio o volumen con nombre), sin `:ro`."""
    resultado = {}
    for volumen in servicio.get("volumes", []):
        partes = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", volumen).split(":")
        if len(partes) >= 2:
            resultado[partes[1]] = partes[0]
    return resultado


def _opcion(comando: list[str], nombre: str) -> str:
    return comando[comando.index(nombre) + 1]


def test_prometheus_lee_las_reglas_que_compose_genera_de_las_metas_del_procesador(compose, tmp_path):
    """El servicio `reglas` genera las reglas desde las mismas metas que monta el procesador y las
    deja en el volumen que Prometheus lee; con la base de runbooks por omisión son las versionadas."""
    servicios = compose["services"]
    reglas, procesador, prometheus = servicios["reglas"], servicios["procesador"], servicios["prometheus"]
    montadas = _montajes(reglas)
    assert montadas[reglas["environment"]["GPR_METAS"]] == _montajes(procesador)[procesador["environment"]["GPR_METAS"]]
    salida = _opcion(reglas["command"], "--salida")
    volumen = montadas[str(Path(salida).parent)]
    assert _montajes(prometheus)["/etc/prometheus/reglas"] == volumen
    assert Path(salida).name.endswith(".yml") and "/etc/prometheus/reglas/*.yml" in PROMETHEUS.read_text()
    assert prometheus["depends_on"]["reglas"]["condition"] == "service_completed_successfully"
    # La orden de compose, con las rutas del contenedor cambiadas por las del repositorio.
    por_omision = re.fullmatch(r"\$\{GPR_RUNBOOKS_URL:-(.+)\}", reglas["environment"]["GPR_RUNBOOKS_URL"]).group(1)
    generado = tmp_path / "metas.yml"
    r = subprocess.run([sys.executable, "-m", "servicios.cli", "metas", "reglas", "--salida", str(generado)],
                       cwd=RAIZ, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "GPR_METAS": str(RAIZ / montadas["/app/despliegue/metas"]),
                            "GPR_CATALOGO": str(RAIZ / "despliegue" / "catalogo.yaml"), "GPR_RUNBOOKS_URL": por_omision})
    assert r.returncode == 0, r.stderr
    assert generado.read_text(encoding="utf-8") == (REGLAS / "metas.yml").read_text(encoding="utf-8")
    # Y los runbooks de esa base los sirve el servicio runbooks, en el puerto que publica.
    runbooks = servicios["runbooks"]
    puerto = _opcion(runbooks["command"], "--puerto")
    assert por_omision == f"http://localhost:{puerto}/runbooks/" and f"{puerto}:{puerto}" in runbooks["ports"]
    assert _montajes(runbooks)[_opcion(runbooks["command"], "--carpeta")] == "./despliegue/runbooks"


def test_alertmanager_lee_la_configuracion_que_compose_genera(compose, tmp_path):
    servicios = compose["services"]
    generador, alertmanager = servicios["alertmanager-configuracion"], servicios["alertmanager"]
    comando = generador["command"]
    montadas = _montajes(generador)
    base = Path(_opcion(comando, "--base"))
    assert montadas[str(base.parent)] == "./despliegue/alertmanager"
    salida = Path(_opcion(comando, "--salida"))
    volumen = montadas[str(salida.parent)]
    configuracion = next(a.split("=", 1)[1] for a in alertmanager["command"] if a.startswith("--config.file="))
    destino = next(d for d, o in _montajes(alertmanager).items() if o == volumen)
    assert configuracion == f"{destino}/{salida.name}"
    assert _montajes(alertmanager)[_opcion(comando, "--plantillas")] == "./despliegue/alertmanager/plantillas"
    assert alertmanager["depends_on"]["alertmanager-configuracion"]["condition"] == "service_completed_successfully"
    # El archivo de canales de ejemplo solo trae comentarios: ningún destino en el repositorio.
    ejemplo = RAIZ / re.fullmatch(r"\$\{\w+:-\./(.+)\}", generador["env_file"][0]).group(1)
    assert all(not linea.strip() or linea.startswith("#") for linea in ejemplo.read_text(encoding="utf-8").splitlines())
    # La orden de compose con ese ejemplo genera una configuración que amtool acepta.
    generado = tmp_path / "alertmanager.yml"
    r = subprocess.run([sys.executable, "-m", "servicios.cli", "alertmanager", "configurar", "--salida", str(generado)],
                       cwd=RAIZ, capture_output=True, text=True, timeout=60,
                       env={k: v for k, v in os.environ.items() if not k.startswith(("GPR_ALERTAS_", "GPR_SMTP_"))})
    assert r.returncode == 0, r.stderr
    r = subprocess.run([_binario("amtool"), "check-config", str(generado)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _scripts_con_pipefail() -> list[Path]:
    candidatos = [RAIZ / ".ci" / "run", *RAIZ.glob("despliegue/**/*.sh"), *RAIZ.glob("scripts/**/*.sh")]
    return [p for p in candidatos if p.is_file() and "pipefail" in p.read_text(encoding="utf-8")]


def test_ningun_script_con_pipefail_corta_una_tuberia_con_head():
    # Con `set -o pipefail`, `prog | head -n 1` falla con 141 si prog escribe después de que
    # head cierre la tubería: así cayó la integración continua en una máquina nueva.
    scripts = _scripts_con_pipefail()
    assert RAIZ / ".ci" / "run" in scripts
    culpables = [
        f"{p.relative_to(RAIZ)}:{n}"
        for p in scripts
        for n, linea in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"\|\s*head\b", linea) and not linea.lstrip().startswith("#")
    ]
    assert culpables == []


def test_la_primera_linea_de_una_salida_larga_no_aborta_con_pipefail():
    # La forma que usan los scripts (sed -n 1p) sobrevive a un productor que escribe mucho
    # después de la primera línea; head, en la misma situación, devuelve 141.
    productor = "seq 1 200000"
    con_sed = subprocess.run(["bash", "-c", f"set -o pipefail; {productor} | sed -n 1p"], capture_output=True, text=True)
    con_head = subprocess.run(["bash", "-c", f"set -o pipefail; {productor} | head -n 1"], capture_output=True, text=True)
    assert (con_sed.returncode, con_sed.stdout) == (0, "1\n")
    assert con_head.returncode == 141
