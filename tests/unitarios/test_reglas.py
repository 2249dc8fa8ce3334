"""Reglas de alerta generadas desde las metas: deriva, promtool y la aritmética de las ventanas.

Lo esperado se escribe a mano (ventanas escaladas, condiciones posibles) o sale de otra pieza
del sistema (`IndiceMetas.buscar`, la precedencia que aplica el procesador); el comportamiento
de las reglas se prueba con los binarios reales `promtool check rules` y `promtool test rules`
(archivos escritos a mano en despliegue/prometheus/pruebas/).
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import CATALOGO, RAIZ
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.metas import IndiceMetas, Meta, archivos_de, cargar_metas
from servicios.comun.reglas import (Condicion, cobertura, condiciones, duracion, escalar, generar,
                                    generar_yaml)

REGLAS = RAIZ / "despliegue" / "prometheus" / "reglas" / "metas.yml"
PRUEBAS = RAIZ / "despliegue" / "prometheus" / "pruebas"
INSTALAR = "sudo bash despliegue/instalar-herramientas.sh"


def _promtool() -> str:
    ruta = shutil.which("promtool")
    if ruta is None:
        pytest.fail(f"falta promtool en el PATH; instálelo con: {INSTALAR}")
    return ruta


@pytest.fixture(scope="module")
def catalogo():
    return cargar_catalogo(CATALOGO)


@pytest.fixture(scope="module")
def metas(catalogo):
    return cargar_metas(archivos_de(RAIZ / "despliegue" / "metas"), catalogo)


def meta(servicio="*", indicador="cumplimiento_plazo", ventana="24h", operador=">=", valor=0.9, etapa="",
         muestra_minima=5, severidad="critica", equipo="e", agencia="reniec") -> Meta:
    return Meta(agencia, servicio, indicador, etapa, ventana, operador, valor, muestra_minima, severidad, equipo,
                "prueba", "metas.yaml", 1)


def test_el_archivo_versionado_es_lo_que_genera_el_catalogo(metas, catalogo):
    """Deriva: si alguien cambia una meta o el generador sin regenerar, esto falla."""
    assert REGLAS.is_file(), f"falta {REGLAS.relative_to(RAIZ)}: ejecute `gpr metas reglas`"
    generado = generar_yaml(metas, catalogo)
    assert REGLAS.read_text(encoding="utf-8") == generado, (
        f"{REGLAS.relative_to(RAIZ)} no coincide con las metas: ejecute `gpr metas reglas` y versione el resultado")


def test_la_salida_no_depende_del_orden_de_los_archivos(metas, catalogo):
    assert generar_yaml(list(reversed(metas)), catalogo) == generar_yaml(metas, catalogo)


def test_promtool_check_rules():
    r = subprocess.run([_promtool(), "check", "rules", str(REGLAS)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


@pytest.mark.parametrize("archivo", ["umbral.yml", "quema.yml", "plataforma.yml", "vigilancia.yml"])
def test_promtool_test_rules(archivo):
    r = subprocess.run([_promtool(), "test", "rules", archivo], capture_output=True, text=True, cwd=PRUEBAS)
    assert r.returncode == 0, r.stdout + r.stderr


def test_cada_archivo_de_pruebas_se_ejecuta():
    assert {p.name for p in PRUEBAS.glob("*.yml")} == {"umbral.yml", "quema.yml", "plataforma.yml", "vigilancia.yml"}


def test_cada_meta_tiene_su_alerta_de_umbral_y_las_de_quema_que_le_tocan(metas, catalogo):
    reglas = generar(metas, catalogo)["groups"][0]["rules"]
    por_meta = {}
    for regla in reglas:
        if "alert" in regla:
            por_meta.setdefault(regla["labels"]["meta"], []).append(regla["alert"])
    # A mano, desde despliegue/metas/*.yaml: las proporciones con margen < 1/6 tienen página y
    # ticket; satisfaccion_top2 >= 0,8 (margen 0,2: 6 × 0,2 ≥ 1) solo ticket; el resto, umbral.
    assert por_meta == {
        "minsa/cita-especialidad/tiempo_atencion_p90/7d": ["MetaIncumplida"],
        "reniec/*/cumplimiento_plazo/24h": ["MetaIncumplida", "MetaQuemaRapida", "MetaQuemaLenta"],
        "reniec/dni-duplicado/satisfaccion_top2/7d": ["MetaIncumplida", "MetaQuemaLenta"],
        "sunarp/*/casos_vencidos/24h": ["MetaIncumplida"],
        "sunarp/certificado-literal/cumplimiento_plazo/24h": ["MetaIncumplida", "MetaQuemaRapida", "MetaQuemaLenta"],
        "sunarp/inscripcion-propiedad/tasa_reproceso/7d": ["MetaIncumplida", "MetaQuemaRapida", "MetaQuemaLenta"],
    }
    plataforma = generar(metas, catalogo)["groups"][1]["rules"]
    agencias = [sorted(set(re.findall(r'agencia="([^"]+)"', r["expr"]))) for r in plataforma]
    # Cada agencia avisa a los equipos de sus metas; lo de agencias desconocidas, a plataforma.
    assert [(r["alert"], r["labels"]["equipo"], a) for r, a in zip(plataforma, agencias)] == [
        ("AgenciaSinEventos", "redes-de-salud", ["minsa"]),
        ("AgenciaSinEventos", "atencion-ciudadana", ["reniec"]),
        ("AgenciaSinEventos", "registros", ["sunarp"]),
        ("EventosRechazados", "redes-de-salud", ["minsa"]),
        ("EventosRechazados", "atencion-ciudadana", ["reniec"]),
        ("EventosRechazados", "registros", ["sunarp"]),
        ("EventosRechazados", "plataforma", ["desconocida"]),
        ("ProcesadorRetrasado", "plataforma", []),
    ]
    vigilancia = generar(metas, catalogo)["groups"][2]["rules"]
    assert [r["alert"] for r in vigilancia] == [
        "Watchdog", "ServicioCaido", "ObjetivoCaido", "TrabajoAusente", "ReglasFallan", "NotificacionesFallan",
        "AlertasSinEnviar", "ConfiguracionNoRecargada"]


def test_la_vigilancia_cubre_cada_trabajo_de_prometheus():
    """`up == 0` y `absent()` para cada trabajo que raspa el Prometheus de producción (y solo esos)."""
    from servicios.comun.reglas import TRABAJOS

    configuracion = yaml.safe_load((RAIZ / "despliegue" / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    trabajos = sorted(t["job_name"] for t in configuracion["scrape_configs"])
    reglas = {r["alert"]: r["expr"] for r in yaml.safe_load(REGLAS.read_text(encoding="utf-8"))["groups"][2]["rules"]}
    assert sorted(TRABAJOS) == trabajos
    assert sorted(re.findall(r'absent\(up\{job="([^"]+)"\}\)', reglas["TrabajoAusente"])) == trabajos
    for alerta in ("ServicioCaido", "ObjetivoCaido"):
        assert f'up{{job=~"{"|".join(trabajos)}"}}' in reglas[alerta] and "== 0" in reglas[alerta], reglas[alerta]


def test_reglas_con_etiquetas_y_anotaciones_obligatorias(metas, catalogo):
    for grupo in generar(metas, catalogo)["groups"]:
        for regla in grupo["rules"]:
            if "alert" not in regla:
                continue
            if regla["alert"] == "Watchdog":
                assert regla["labels"]["severidad"] == "info"
            else:
                assert regla["labels"]["severidad"] in ("critica", "advertencia"), regla["alert"]
            assert regla["labels"]["equipo"], regla["alert"]
            esperadas = {"summary", "description", "runbook_url"}
            if grupo["name"] == "gpr-metas":
                # Valor y meta por separado, para las plantillas de notificación.
                esperadas |= {"valor", "objetivo"}
            assert set(regla["annotations"]) == esperadas, regla["alert"]


def _anclas(archivo) -> set[str]:
    """Anclas de los títulos de un runbook, como las arma GitHub y `gpr runbooks`: en minúsculas,
    sin puntuación, espacios → guiones."""
    titulos = re.findall(r"^#+ (.+)$", archivo.read_text(encoding="utf-8"), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", t.strip().lower()).replace(" ", "-") for t in titulos}


@pytest.mark.parametrize("base", [None, "https://wiki.ejemplo.gob/gpr/runbooks/", "http://portal:8080/runbooks"])
def test_cada_runbook_url_lleva_a_un_runbook_con_su_seccion(metas, catalogo, base):
    """Cada enlace es la base configurada (GPR_RUNBOOKS_URL) seguida de un archivo que existe en
    despliegue/runbooks/ y, si tiene ancla, de una sección que existe en él."""
    argumentos = {} if base is None else {"runbooks": base}
    prefijo = "http://localhost:8099/runbooks/" if base is None else base.rstrip("/") + "/"
    urls = {r["annotations"]["runbook_url"] for g in generar(metas, catalogo, **argumentos)["groups"]
            for r in g["rules"] if "alert" in r}
    assert len(urls) >= 8
    for url in urls:
        assert url.startswith(prefijo), url
        ruta, _, ancla = url.removeprefix(prefijo).partition("#")
        archivo = RAIZ / "despliegue" / "runbooks" / ruta
        assert "/" not in ruta and archivo.is_file(), url
        if ancla:
            assert ancla in _anclas(archivo), f"{url}: no hay una sección «{ancla}»"


def test_cada_runbook_lo_enlaza_alguna_alerta(metas, catalogo):
    enlazados = {r["annotations"]["runbook_url"].rpartition("/")[2].partition("#")[0]
                 for g in generar(metas, catalogo)["groups"] for r in g["rules"] if "alert" in r}
    assert {p.name for p in (RAIZ / "despliegue" / "runbooks").glob("*.md")} == enlazados


def test_con_una_meta_de_30_dias_son_las_del_libro_de_sre():
    assert escalar(30 * 86400) == [
        Condicion("pagina", 14.4, 3600, 300), Condicion("pagina", 6.0, 21600, 1800),
        Condicion("ticket", 3.0, 86400, 7200), Condicion("ticket", 1.0, 259200, 21600),
    ]


def test_escalado_a_24h_y_7d():
    # 24h/30d = 1/30: 1h → 120 s, 5m → 10 s (mínimo 60), 6h → 720, 30m → 60, 1d → 2880,
    # 2h → 240, 3d → 8640, 6h → 720.
    assert escalar(86400) == [
        Condicion("pagina", 14.4, 120, 60), Condicion("pagina", 6.0, 720, 60),
        Condicion("ticket", 3.0, 2880, 240), Condicion("ticket", 1.0, 8640, 720),
    ]
    # 7d/30d = 7/30: 1h → 840, 5m → 70, 6h → 5040, 30m → 420, 1d → 20160, 2h → 1680, 3d → 60480.
    assert escalar(7 * 86400) == [
        Condicion("pagina", 14.4, 840, 70), Condicion("pagina", 6.0, 5040, 420),
        Condicion("ticket", 3.0, 20160, 1680), Condicion("ticket", 1.0, 60480, 5040),
    ]
    # 1h/30d = 1/720: todo por debajo del minuto salvo 1d → 120 y 3d → 360.
    assert escalar(3600) == [
        Condicion("pagina", 14.4, 60, 60), Condicion("pagina", 6.0, 60, 60),
        Condicion("ticket", 3.0, 120, 60), Condicion("ticket", 1.0, 360, 60),
    ]


@pytest.mark.parametrize("segundos, texto", [(60, "1m"), (70, "1m10s"), (3600, "1h"), (5040, "1h24m"),
                                             (8640, "2h24m"), (259200, "3d"), (60480, "16h48m"), (90061, "1d1h1m1s")])
def test_duracion_promql(segundos, texto):
    assert duracion(segundos) == texto


@pytest.mark.parametrize("argumentos, factores", [
    # Margen 0,01: todas posibles (14,4 × 0,01 < 1).
    ({"valor": 0.99}, [14.4, 6.0, 3.0, 1.0]),
    # Margen 0,1: 14,4 × 0,1 = 1,44 ≥ 1 no puede cumplirse.
    ({"valor": 0.9}, [6.0, 3.0, 1.0]),
    # Margen 0,2: 6 × 0,2 = 1,2 tampoco; solo los tickets.
    ({"valor": 0.8}, [3.0, 1.0]),
    # Margen 0,5: 3 × 0,5 = 1,5; solo 1×.
    ({"valor": 0.5}, [1.0]),
    # Sin margen (100 %): no hay tasa de quema.
    ({"valor": 1.0}, []),
    # Metas que mejoran al bajar: el margen es el valor mismo.
    ({"indicador": "tasa_error", "operador": "<=", "valor": 0.05}, [14.4, 6.0, 3.0, 1.0]),
    ({"indicador": "tasa_error", "operador": "<=", "valor": 0.1}, [6.0, 3.0, 1.0]),
    ({"indicador": "tasa_error", "operador": "<=", "valor": 0.0}, []),
    # No son proporciones: solo umbral.
    ({"indicador": "tiempo_atencion_p90", "operador": "<=", "valor": 3600.0}, []),
    ({"indicador": "satisfaccion_indice", "valor": 0.8}, []),
    # Meta de 1h: 14,4× y 6× caen en las mismas ventanas (1m y 1m); sobra la de 14,4×.
    ({"valor": 0.99, "ventana": "1h"}, [6.0, 3.0, 1.0]),
])
def test_condiciones_posibles(argumentos, factores):
    assert [c.factor for c in condiciones(meta(**argumentos))] == factores


# --- Qué series juzga cada meta -----------------------------------------------------------------

SERVICIOS = ["dni-duplicado", "dni-primera-vez"]
ETAPAS = ["verificacion", "impresion"]


def test_la_cobertura_sigue_la_precedencia_del_procesador():
    """Para todo subconjunto de metas posibles (servicio concreto o `*`, etapa concreta o
    ninguna), cada serie la juzga exactamente la meta que elige `IndiceMetas.buscar`."""
    posibles = [(s, e) for s in ["*", *SERVICIOS] for e in ["", *ETAPAS]]
    series = [(s, e) for s in [*SERVICIOS, "otro"] for e in ["", *ETAPAS, "otra"]]
    for n in range(len(posibles) + 1):
        for elegidas in itertools.combinations(posibles, n):
            lista = [meta(servicio=s, etapa=e, indicador="tiempo_etapa_p50", operador="<=", valor=60.0)
                     for s, e in elegidas]
            indice = IndiceMetas(lista)
            coberturas = [(m, cobertura(m, lista)) for m in lista]
            for servicio, etapa in series:
                esperada = indice.buscar("reniec", servicio, "tiempo_etapa_p50", etapa, "24h")
                cubren = [m for m, c in coberturas if c.cubre(servicio, etapa)]
                assert cubren == ([esperada] if esperada else []), (elegidas, servicio, etapa)


def test_prometheus_aplica_la_misma_precedencia(tmp_path, catalogo):
    """Las reglas generadas, evaluadas por Prometheus: cada serie dispara la alerta de la meta
    que elige el procesador, y solo esa (consultando la serie ALERTS)."""
    lista = [
        meta(indicador="tiempo_etapa_p50", operador="<=", valor=100.0),
        meta(indicador="tiempo_etapa_p50", operador="<=", valor=200.0, etapa="impresion"),
        meta(servicio="dni-duplicado", indicador="tiempo_etapa_p50", operador="<=", valor=300.0),
        meta(servicio="dni-primera-vez", indicador="tiempo_etapa_p50", operador="<=", valor=400.0, etapa="registro"),
    ]
    (tmp_path / "reglas.yml").write_text(generar_yaml(lista, catalogo), encoding="utf-8")
    etapas = {"dni-duplicado": ["verificacion", "impresion", "entrega"],
              "dni-primera-vez": ["registro", "verificacion", "impresion", "entrega"]}
    indice = IndiceMetas(lista)
    entradas, esperadas = [], []
    for servicio, nombres in etapas.items():
        for etapa in nombres:
            etiquetas = (f'agencia="reniec",servicio="{servicio}",indicador="tiempo_etapa_p50",ventana="24h",'
                         f'etapa="{etapa}"')
            entradas += [{"series": f"gpr_indicador_valor{{{etiquetas},unidad=\"segundos\"}}", "values": "1000x30"},
                         {"series": f"gpr_indicador_muestras{{{etiquetas}}}", "values": "10x30"}]
            elegida = indice.buscar("reniec", servicio, "tiempo_etapa_p50", etapa, "24h")
            nombre = "/".join([elegida.agencia, elegida.servicio, elegida.indicador]
                              + ([elegida.etapa] if elegida.etapa else []) + [elegida.ventana])
            esperadas.append({"labels": (
                f'ALERTS{{alertname="MetaIncumplida",alertstate="firing",{etiquetas},'
                f'cuello_botella="sin_datos",severidad="critica",equipo="e",meta="{nombre}"}}'), "value": 1})
    prueba = {"rule_files": ["reglas.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": entradas,
        "promql_expr_test": [{"expr": 'ALERTS{alertname="MetaIncumplida"}', "eval_time": "20m",
                              "exp_samples": esperadas}]}]}
    (tmp_path / "prueba.yml").write_text(yaml.safe_dump(prueba, allow_unicode=True), encoding="utf-8")
    for orden in (["check", "rules", "reglas.yml"], ["test", "rules", "prueba.yml"]):
        r = subprocess.run([_promtool(), *orden], capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
    # Un solo servicio con meta propia sin etapa excluye por etiqueta, no con `unless`.
    assert 'servicio!~"dni-duplicado"' in (tmp_path / "reglas.yml").read_text(encoding="utf-8")


def test_metas_exoticas_siguen_siendo_reglas_validas(tmp_path, catalogo):
    """Ventana de 1h (todas las ventanas en el mínimo), 30d, margen cero y metas `<=` de
    proporción: promtool las acepta y no hay reglas duplicadas."""
    lista = [
        meta(ventana="1h", valor=0.99),
        meta(ventana="30d", valor=0.999, servicio="dni-duplicado"),
        meta(indicador="tasa_error", operador="<=", valor=0.0, ventana="7d"),
        meta(indicador="tasa_error", operador="<=", valor=0.02, ventana="24h", muestra_minima=0),
        meta(indicador="adopcion_digital", valor=0.5, agencia="sunarp", servicio="certificado-literal"),
    ]
    archivo = tmp_path / "exoticas.yml"
    archivo.write_text(generar_yaml(lista, catalogo), encoding="utf-8")
    r = subprocess.run([_promtool(), "check", "rules", str(archivo)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    texto = archivo.read_text(encoding="utf-8")
    # 1h: 14,4× y 6× quedan ambas en 1m y 1m; queda la de 6×, que incluye a la otra, sin repetir
    # la misma ventana como larga y corta.
    [pagina_1h] = [r for r in yaml.safe_load(texto)["groups"][0]["rules"]
                   if r.get("alert") == "MetaQuemaRapida" and r["labels"]["ventana"] == "1h"]
    assert pagina_1h["expr"].startswith(
        '(\n  gpr:indicador_malos:ratio_rate1m{agencia="reniec",indicador="cumplimiento_plazo"} / 0.01 > 6\n'
        "  and on (agencia, servicio, indicador)\n")
    assert "ratio_rate1h{" in texto and "ratio_rate3d{" in texto
    # tasa_error <= 0: sin margen, sin tasa de quema; <= 0,02: margen 0,02 y el numerador son los malos.
    assert "tasa_error\"} / 0.02 > 14.4" in texto
    assert "tasa_error\"} / 0 " not in texto


# --- Unidades en el texto de las alertas ----------------------------------------------------------

@pytest.mark.parametrize("indicador,operador,objetivo,valor,serie_unidad,texto_valor,texto_objetivo", [
    # El importe en la moneda de la agencia del catálogo (RENIEC: PEN), con dos decimales.
    ("costo_por_tramite", "<=", 30.0, 31.256, "PEN", "31.26 PEN", "<= 30.00 PEN"),
    ("reclamos_por_mil", "<=", 5.0, 7.5, "por_mil", "7.50 por mil", "<= 5.00 por mil"),
    # Un índice de 0 a 1 no es un porcentaje.
    ("satisfaccion_indice", ">=", 0.8, 0.7234, "indice", "0.72", ">= 0.80"),
    ("cumplimiento_plazo", ">=", 0.9, 0.75, "proporcion", "75%", ">= 90%"),
])
def test_el_texto_de_la_alerta_va_en_la_unidad_del_indicador(tmp_path, catalogo, indicador, operador, objetivo,
                                                            valor, serie_unidad, texto_valor, texto_objetivo):
    """promtool expande las plantillas de la alerta como Prometheus: valor y objetivo en la unidad
    del indicador (la que el procesador pone en `Indicador.unidad`), escritos a mano."""
    m = meta(servicio="dni-duplicado", indicador=indicador, operador=operador, valor=objetivo, muestra_minima=3)
    (tmp_path / "reglas.yml").write_text(generar_yaml([m], catalogo), encoding="utf-8")
    etiquetas = f'agencia="reniec",servicio="dni-duplicado",indicador="{indicador}",ventana="24h",etapa=""'
    prueba = {"rule_files": ["reglas.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": f'gpr_indicador_valor{{{etiquetas},unidad="{serie_unidad}"}}',
                          "values": f"{valor}x40"},
                         {"series": f"gpr_indicador_muestras{{{etiquetas}}}", "values": "12x40"}],
        "alert_rule_test": [{"eval_time": "30m", "alertname": "MetaIncumplida", "exp_alerts": [{
            "exp_labels": {"agencia": "reniec", "servicio": "dni-duplicado", "indicador": indicador,
                           "ventana": "24h", "cuello_botella": "sin_datos", "severidad": "critica", "equipo": "e",
                           "meta": f"reniec/dni-duplicado/{indicador}/24h"},
            "exp_annotations": {
                "summary": f"reniec/dni-duplicado: {indicador} (24h) no cumple su meta",
                "description": (f"reniec/dni-duplicado: {indicador} vale {texto_valor} en 24h y la meta es "
                                f"{texto_objetivo}, con 12 muestras (mínimo 3). Etapa cuello de botella: "
                                "sin_datos. Meta: prueba"),
                "valor": texto_valor, "objetivo": texto_objetivo,
                "runbook_url": f"http://localhost:8099/runbooks/meta-incumplida.md#{indicador}"}}]}]}]}
    (tmp_path / "prueba.yml").write_text(yaml.safe_dump(prueba, allow_unicode=True), encoding="utf-8")
    r = subprocess.run([_promtool(), "test", "rules", "prueba.yml"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
