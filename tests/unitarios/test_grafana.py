"""Grafana: los tableros versionados son JSON válido y coherente, y el aprovisionamiento los carga.

Sin Grafana en estas máquinas, se comprueba lo que sí se puede sin él: que cada panel tenga
una fuente de datos aprovisionada y consultas, que cada variable de plantilla usada exista, que
los indicadores y métricas que se nombran sean los que el código exporta, y que
docker-compose.yml monte el aprovisionamiento y los tableros donde los buscan. Que cada
consulta corra de verdad en Prometheus lo prueba tests/e2e/test_alertas.py.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from apoyo import tableros
from conftest import RAIZ
from servicios.comun.indicadores import INDICADORES, Forma

DATASOURCES = tableros.GRAFANA / "provisioning" / "datasources" / "gpr.yml"
DASHBOARDS = tableros.GRAFANA / "provisioning" / "dashboards" / "gpr.yml"
COMPOSE = RAIZ / "docker-compose.yml"
REGLAS = RAIZ / "despliegue" / "prometheus" / "reglas" / "metas.yml"
# Paneles sin consultas propias: una fila agrupa, la lista de alertas lee las reglas de la
# fuente de datos (options.datasource) en vez de consultas.
SIN_CONSULTAS = {"row", "alertlist", "text"}
# Métricas que no exporta el proyecto y que un tablero puede usar igual.
AJENAS = {"ALERTS", "up", "process_resident_memory_bytes"}


@pytest.fixture(scope="module")
def fuentes() -> dict[str, dict]:
    return {d["uid"]: d for d in yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _todos() -> list[tuple[str, dict]]:
    return [(a.name, tableros.cargar(a)) for a in tableros.archivos()]


def test_hay_los_tres_tableros_con_uid_unico():
    todos = _todos()
    assert {nombre for nombre, _ in todos} >= {"gpr-agencia.json", "gpr-servicio.json", "gpr-plataforma.json"}
    uids = [t["uid"] for _, t in todos]
    assert len(uids) == len(set(uids)), uids
    for nombre, t in todos:
        assert t["title"] and t["description"], nombre
        assert "gpr" in t.get("tags", []), f"{nombre}: sin la etiqueta gpr (la usan los enlaces entre tableros)"


@pytest.mark.parametrize("archivo", tableros.archivos(), ids=lambda a: a.name)
def test_cada_panel_tiene_fuente_aprovisionada_y_consultas(archivo, fuentes):
    tablero = tableros.cargar(archivo)
    nombres_fuentes = {d["name"]: d for d in fuentes.values()}
    ids = []
    for panel in tableros.paneles(tablero):
        ids.append(panel["id"])
        titulo = panel.get("title")
        assert titulo, f"{archivo.name}: panel {panel['id']} sin título"
        if panel["type"] == "row":
            continue
        assert panel.get("description"), f"{archivo.name} «{titulo}»: sin descripción"
        fuente = panel.get("datasource") or {}
        assert fuente.get("uid") in fuentes, f"{archivo.name} «{titulo}»: fuente {fuente} no aprovisionada"
        assert fuente.get("type") == fuentes[fuente["uid"]]["type"], f"{archivo.name} «{titulo}»"
        if panel["type"] == "alertlist":
            # La lista de alertas de Grafana muestra las reglas de una fuente por su nombre.
            nombre = panel["options"]["datasource"]
            assert nombres_fuentes.get(nombre, {}).get("type") == "prometheus", f"{archivo.name} «{titulo}»"
            assert "agencia" in panel["options"]["alertInstanceLabelFilter"], f"{archivo.name} «{titulo}»"
            continue
        assert panel["type"] not in SIN_CONSULTAS
        objetivos = panel.get("targets") or []
        assert objetivos, f"{archivo.name} «{titulo}»: sin consultas"
        refs = [o["refId"] for o in objetivos]
        assert len(refs) == len(set(refs)), f"{archivo.name} «{titulo}»: refId repetidos {refs}"
        for objetivo in objetivos:
            assert objetivo.get("expr", "").strip(), f"{archivo.name} «{titulo}» {objetivo['refId']}: sin expr"
            assert objetivo.get("datasource", fuente) == fuente, f"{archivo.name} «{titulo}»"
    assert len(ids) == len(set(ids)), f"{archivo.name}: id de panel repetidos"


@pytest.mark.parametrize("archivo", tableros.archivos(), ids=lambda a: a.name)
def test_las_variables_usadas_estan_definidas(archivo):
    tablero = tableros.cargar(archivo)
    definidas = tableros.variables(tablero)
    valores = {v: "x" for v in definidas}
    for consulta in tableros.consultas(archivo):
        tableros.sustituir(consulta.expr, valores)  # KeyError si falta una
    for variable in tablero.get("templating", {}).get("list", []):
        if variable["type"] == "query":
            # Una variable puede depender de las anteriores, no de las que vienen después.
            anteriores = {v: "x" for v in definidas[:definidas.index(variable["name"])]}
            tableros.sustituir(variable["query"]["query"], anteriores)
            assert variable["datasource"]["uid"] == "gpr-prometheus"


def _metricas_del_proyecto() -> set[str]:
    """Nombres que aparecen como literal `"gpr_…"`/`"grpc_server_…"` en el código (con y sin el
    sufijo _total de los contadores) y las series registradas de las reglas versionadas."""
    nombres = set()
    for archivo in (RAIZ / "servicios").rglob("*.py"):
        for nombre in re.findall(r'"((?:gpr|grpc_server)_[a-z0-9_]+)"', archivo.read_text(encoding="utf-8")):
            nombres |= {nombre, f"{nombre}_total", f"{nombre}_bucket", f"{nombre}_count", f"{nombre}_sum"}
    reglas = yaml.safe_load(REGLAS.read_text(encoding="utf-8"))
    nombres |= {r["record"] for g in reglas["groups"] for r in g["rules"] if "record" in r}
    return nombres


def test_las_metricas_y_los_indicadores_nombrados_existen():
    conocidas = _metricas_del_proyecto() | AJENAS
    indicadores = set(INDICADORES)
    faltan = []
    for archivo in tableros.archivos():
        for consulta in tableros.consultas(archivo):
            expr = consulta.expr
            sin_cadenas = re.sub(r'"[^"]*"', '""', expr)
            for nombre in re.findall(r"\b((?:gpr|grpc_server)[a-z0-9_:]*|ALERTS|up|process_[a-z_]+)\b", sin_cadenas):
                if nombre not in conocidas:
                    faltan.append(f"{archivo.name} «{consulta.panel}»: métrica {nombre}")
            for valor in re.findall(r'indicador=~?"([^"]+)"', expr):
                for nombre in valor.split("|"):
                    if nombre not in indicadores:
                        faltan.append(f"{archivo.name} «{consulta.panel}»: indicador {nombre}")
    assert not faltan, "\n".join(faltan)


def test_las_proporciones_de_los_tableros_son_las_del_catalogo_de_indicadores():
    """Los paneles en porcentaje filtran por la lista de indicadores de proporción: si se agrega
    uno al catálogo de indicadores, los tableros deben mostrarlo."""
    proporciones = {n for n, d in INDICADORES.items() if d.forma is Forma.PROPORCION}
    listas = set()
    for archivo in tableros.archivos():
        for consulta in tableros.consultas(archivo):
            for valor in re.findall(r'indicador[!=]~"([^"]+)"', consulta.expr):
                if "cumplimiento_plazo" in valor and "|" in valor and "tiempo" not in valor:
                    listas.add(frozenset(valor.split("|")))
    assert listas == {frozenset(proporciones)}


def test_aprovisionamiento_de_fuentes_prometheus_y_alertmanager(fuentes, compose):
    prometheus = fuentes["gpr-prometheus"]
    alertmanager = fuentes["gpr-alertmanager"]
    assert prometheus["type"] == "prometheus" and prometheus["isDefault"]
    assert alertmanager["type"] == "alertmanager"
    assert alertmanager["jsonData"]["implementation"] == "prometheus"
    # Grafana muestra en su vista de alertas las reglas de Prometheus y su Alertmanager.
    assert prometheus["jsonData"]["alertmanagerUid"] == alertmanager["uid"]
    servicios = compose["services"]
    for fuente, servicio, puerto in ((prometheus, "prometheus", "9090"), (alertmanager, "alertmanager", "9093")):
        assert fuente["url"] == f"http://{servicio}:{puerto}"
        assert servicio in servicios and f"{puerto}:{puerto}" in servicios[servicio]["ports"]


def test_compose_monta_el_aprovisionamiento_y_los_tableros(compose):
    montajes = {}
    for volumen in compose["services"]["grafana"]["volumes"]:
        origen, destino, *_ = volumen.split(":")
        montajes[destino] = origen
    assert montajes.get("/etc/grafana/provisioning") == "./despliegue/grafana/provisioning"
    proveedores = yaml.safe_load(DASHBOARDS.read_text(encoding="utf-8"))["providers"]
    assert len(proveedores) == 1 and proveedores[0]["type"] == "file"
    ruta = proveedores[0]["options"]["path"]
    assert ruta in montajes, f"provisioning/dashboards/gpr.yml busca los tableros en {ruta}, que compose no monta"
    origen = RAIZ / montajes[ruta]
    assert origen.resolve() == tableros.TABLEROS.resolve()
    assert sorted(origen.glob("*.json")), f"{montajes[ruta]} no tiene tableros"


@pytest.mark.parametrize("archivo", tableros.archivos(), ids=lambda a: a.name)
def test_el_json_esta_normalizado(archivo):
    """Indentado y con UTF-8 literal, como lo escribe Grafana al exportar: diffs legibles."""
    texto = archivo.read_text(encoding="utf-8")
    assert texto == json.dumps(json.loads(texto), ensure_ascii=False, indent=2) + "\n"
