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
from servicios.comun.indicadores import INDICADORES, MONEDA, UNIDADES, es_moneda

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
            for valor in re.findall(r'unidad!?=~?"([^"]+)"', expr):
                if not any(re.fullmatch(valor, u) for u in UNIVERSO):
                    faltan.append(f"{archivo.name} «{consulta.panel}»: unidad {valor}")
    assert not faltan, "\n".join(faltan)


# --- Unidades --------------------------------------------------------------------------------
# La unidad de Grafana que corresponde a cada unidad de la API (`Indicador.unidad`, etiqueta
# `unidad` de /metrics), escrita aquí a mano: (unidad, decimales o None si da igual). Un importe
# se muestra con dos decimales y el código de su moneda en el nombre de la serie: Grafana no
# tiene unidades para todas las monedas ISO 4217 ni deja poner una variable en la unidad.
UNIDAD_GRAFANA = {"proporcion": ("percentunit", None), "segundos": ("s", None), "conteo": ("short", None),
                  "indice": ("none", 2), "por_mil": ("suffix: ‰", None)}
IMPORTE_GRAFANA = ("none", 2)
# Monedas de ejemplo con que se prueba un panel de importes (cualquier código ISO 4217 sirve).
MONEDAS = ("PEN", "USD")
VALORES = ("gpr_indicador_valor", "gpr_meta_valor")


def _esperada(unidad: str) -> tuple[str, int | None]:
    return IMPORTE_GRAFANA if es_moneda(unidad) else UNIDAD_GRAFANA[unidad]


def _unidades_api(indicador: str) -> set[str]:
    """Las unidades con que la API puede publicar un indicador del catálogo."""
    unidad = INDICADORES[indicador].unidad
    return set(MONEDAS) if unidad == MONEDA else {unidad}


UNIVERSO = {u for nombre in INDICADORES for u in _unidades_api(nombre)}


def _selector(expr: str) -> dict[str, tuple[str, str]] | None:
    """Matchers {etiqueta: (operador, valor)} de la serie que muestra la consulta: la primera
    métrica del proyecto que aparece (a la izquierda de `and`/`unless` están los valores), o
    None si no es gpr_indicador_valor/gpr_meta_valor o la consulta cuenta series (`count`)."""
    if re.match(r"\s*count\b", expr):
        return None
    primera = re.search(r"\b(gpr_[a-z0-9_:]+)(\{[^}]*\})?", expr)
    if primera is None or primera.group(1) not in VALORES:
        return None
    return {m[0]: (m[1], m[2]) for m in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', primera.group(2) or "")}


def _posibles(matchers: dict[str, tuple[str, str]]) -> dict[str, set[str]]:
    """{unidad posible: indicadores del catálogo que pueden traerla} de las series que elige el selector."""
    def pasa(op, valor, x):
        return {"=": x == valor, "!=": x != valor, "=~": bool(re.fullmatch(valor, x)),
                "!~": not re.fullmatch(valor, x)}[op]

    posibles: dict[str, set[str]] = {}
    for nombre in INDICADORES:
        if "indicador" in matchers and not pasa(*matchers["indicador"], nombre):
            continue
        for unidad in _unidades_api(nombre):
            if "unidad" not in matchers or pasa(*matchers["unidad"], unidad):
                posibles.setdefault(unidad, set()).add(nombre)
    return posibles


def _nombre(leyenda: str, etiquetas: dict[str, str]) -> str:
    """El nombre de la serie en Grafana: la leyenda con las etiquetas sustituidas."""
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: etiquetas.get(m.group(1), ""), leyenda or "")


def _efectiva(panel: dict, ref: str, nombre: str, propiedad: str):
    """Valor de `propiedad` para la serie: el de la última anulación que la elige, o el por omisión.
    `byRegexp` como Grafana (stringToJsRegex: sin barras, anclada al principio y al final)."""
    valor = panel.get("fieldConfig", {}).get("defaults", {}).get(propiedad)
    for anulacion in panel.get("fieldConfig", {}).get("overrides", []):
        tipo, opcion = anulacion["matcher"]["id"], anulacion["matcher"].get("options")
        elige = {"byFrameRefID": lambda: ref == opcion, "byName": lambda: nombre == opcion,
                 "byRegexp": lambda: bool(re.fullmatch(opcion, nombre))}[tipo]()
        for p in anulacion["properties"] if elige else []:
            if p["id"] == propiedad:
                valor = p["value"]
    return valor


def _paneles_de_valores():
    for archivo in tableros.archivos():
        for panel in tableros.paneles(tableros.cargar(archivo)):
            objetivos = [(o["refId"], o.get("legendFormat", ""), _selector(o.get("expr", "")))
                         for o in panel.get("targets", [])]
            objetivos = [(r, l, m) for r, l, m in objetivos if m is not None]
            if objetivos:
                yield archivo.name, panel, objetivos


def test_el_vocabulario_de_unidades_tiene_su_unidad_en_grafana():
    """Una unidad nueva en el catálogo de indicadores obliga a decidir cómo se ve en Grafana."""
    assert set(UNIDADES) - {MONEDA} == set(UNIDAD_GRAFANA)


def test_cada_panel_muestra_cada_serie_en_la_unidad_de_su_etiqueta_unidad():
    """Para cada panel que muestra gpr_indicador_valor o gpr_meta_valor, y cada unidad que su
    selector deja pasar (por la etiqueta `unidad`, o por los indicadores que nombra según su
    unidad en el catálogo), la serie se ve con la unidad de Grafana de esa unidad: un indicador
    nuevo, o uno que cambia de unidad, no puede verse en un panel con otra. Una tabla, que no
    tiene unidades por fila, muestra los números tal cual y la columna Unidad."""
    revisados, errores = 0, []
    for archivo, panel, objetivos in _paneles_de_valores():
        titulo = f"{archivo} «{panel['title']}»"
        revisados += 1
        if panel["type"] == "table":
            organizar = next(t["options"] for t in panel.get("transformations", []) if t["id"] == "organize")
            if organizar.get("excludeByName", {}).get("unidad") or organizar.get("renameByName", {}).get("unidad") != "Unidad":
                errores.append(f"{titulo}: la tabla no muestra la columna Unidad")
            if _efectiva(panel, "", "", "unit") not in (None, "none"):
                errores.append(f"{titulo}: una tabla con varias unidades no puede fijar una")
            continue
        for ref, leyenda, matchers in objetivos:
            posibles = _posibles(matchers)
            if not posibles:
                errores.append(f"{titulo} {ref}: el selector no deja pasar ninguna unidad del catálogo")
            for unidad, indicadores in sorted(posibles.items()):
                for indicador in sorted(indicadores):
                    nombre = _nombre(leyenda, {"agencia": "a", "servicio": "s", "indicador": indicador,
                                               "ventana": "24h", "etapa": "e", "unidad": unidad})
                    vista = (_efectiva(panel, ref, nombre, "unit"), _efectiva(panel, ref, nombre, "decimals"))
                    esperada, decimales = _esperada(unidad)
                    if vista[0] != esperada or (decimales is not None and vista[1] != decimales):
                        errores.append(f"{titulo} {ref}: {indicador} [{unidad}] se vería como {vista}, "
                                       f"debe ser {(esperada, decimales)}")
                    if es_moneda(unidad) and unidad not in nombre:
                        errores.append(f"{titulo} {ref}: un importe en {unidad} sin el código en su nombre ({nombre!r})")
    assert revisados >= 12, "¿faltan paneles de indicadores?"
    assert not errores, "\n".join(errores)


def test_ningun_panel_de_proporciones_las_elige_por_lista_de_nombres():
    """Elegir por lista de nombres («cumplimiento_plazo|tasa_…») es adivinar la unidad: un
    indicador nuevo quedaría fuera, o dentro con otra unidad. Un panel nombra a lo más los
    indicadores que quiere mostrar, todos de la misma unidad; para todos los de una unidad,
    `unidad="…"`."""
    for archivo, panel, objetivos in _paneles_de_valores():
        for ref, _, matchers in objetivos:
            operador, valor = matchers.get("indicador", ("=", ""))
            if operador in ("!=", "!~"):
                raise AssertionError(f"{archivo} «{panel['title']}» {ref}: excluye indicadores por nombre ({valor})")
            if operador == "=~":
                unidades = {u for n in valor.split("|") for u in _unidades_api(n)}
                assert len(unidades) == 1, (archivo, panel["title"], ref, unidades)


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
