"""Portal de punta a punta en un navegador real: broker embebido, procesador, consulta y portal
como procesos, alimentados con un escenario pequeño cuyos valores calcula esta prueba a mano.

Escenario (agencia `muni`, America/Lima, cuyo nombre trae `"><img src=x onerror=alert(1)>`):

* `licencias` (plazo 5 días, etapas revision → emision): en mayo 20 casos recibidos entre el
  4 y el 7, 15 entregados a los 2 días y 5 a los 8 (tarde): 75 % en plazo, mediana 2 días. En
  junio 12 casos recibidos del 10 al 13, todos entregados a los 2 días: 100 %; 9 por la web
  (75 % digital). Cada caso pasa 1 día en revisión y 12 horas en emisión.
* `tramite` (nombre `<script>alert(1)</script>`, plazo 3 días): 3 casos en junio, uno a
  tiempo: 33,3 % en plazo con 3 casos, que NUNCA debe verse (páginas, texto alternativo y
  tablas de los gráficos, SVG, informe, CSV, JSON).

La última entrega (marca de agua) es del 16 de junio: la ventana de 30 días empieza el 17 de
mayo y no toca a mayo. Meta de la agencia: `cumplimiento_plazo` 7d ≥ 90 % (con una
descripción con HTML). El reloj del portal está fijo en el 17 de junio de 2026.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import yaml

from apoyo.kafka import publicar_eventos
from apoyo.portal import navegador  # noqa: F401  (accesorio)
from apoyo.portal import segundos
from conftest import Procesos
from gpr.v1 import eventos_pb2 as pb
from gpr.v1 import indicadores_pb2 as ipb
from gpr.v1 import indicadores_pb2_grpc as ipb_grpc
from servicios.comun.broker import broker_kafka, puerto_libre
from servicios.comun.topicos import crear_topicos

pytestmark = pytest.mark.integracion

AGENCIA = "muni"
NOMBRE_AGENCIA = 'Municipalidad "><img src=x onerror=alert(1)>'
SERVICIO, SERVICIO_XSS = "licencias", "tramite"
NOMBRE_SERVICIO, NOMBRE_XSS = "Licencia de funcionamiento", "<script>alert(1)</script>"
DESCRIPCION_META = 'Nueve de cada diez a tiempo "><img src=x onerror=alert(1)><script>alert(2)</script>'
AHORA = "2026-06-17T15:00:00Z"
D, H = 86400, 3600
NBSP = "\u00a0"
# Textos de los valores del servicio de 3 casos: ninguno puede aparecer en lo publicado.
SUPRIMIDOS = ["33,3", "0.333", "33.3", "4,0" + NBSP + "días", "4,5" + NBSP + "días", "3,3" + NBSP + "días"]


def _evento(tipo, servicio, t, caso, **campos) -> pb.Evento:
    e = pb.Evento(evento_id=str(uuid.uuid4()), fuente="prueba-portal", tipo=tipo, agencia_id=AGENCIA,
                  servicio_id=servicio, caso_id=caso, **campos)
    e.ocurrido_en.seconds = t
    return e


def _caso(servicio, caso, recibido, entrega, canal, etapas=(("revision", D), ("emision", 12 * H))):
    eventos = [_evento(pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, servicio, recibido, caso, canal=canal)]
    t = recibido + H
    for etapa, duracion in etapas:
        eventos.append(_evento(pb.TIPO_EVENTO_ETAPA_INICIADA, servicio, t, caso, etapa_id=etapa, intento=1))
        eventos.append(_evento(pb.TIPO_EVENTO_ETAPA_COMPLETADA, servicio, t + duracion, caso, etapa_id=etapa, intento=1))
        t += duracion
    eventos.append(_evento(pb.TIPO_EVENTO_SERVICIO_ENTREGADO, servicio, recibido + entrega, caso, canal=canal,
                           resultado=pb.RESULTADO_OTORGADO))
    return eventos


def escenario() -> list[pb.Evento]:
    eventos = []
    mayo = segundos("2026-05-04T15:00:00Z")
    for i in range(20):
        eventos += _caso(SERVICIO, f"L-05-{i}", mayo + i * 3 * H, (2 if i < 15 else 8) * D, pb.CANAL_PRESENCIAL)
    junio = segundos("2026-06-10T15:00:00Z")
    for i in range(12):
        eventos += _caso(SERVICIO, f"L-06-{i}", junio + i * 6 * H, 2 * D, pb.CANAL_WEB if i < 9 else pb.CANAL_PRESENCIAL)
    xss = segundos("2026-06-11T15:00:00Z")
    for i, entrega in enumerate((1 * D, 4 * D, int(4.5 * D))):
        eventos += _caso(SERVICIO_XSS, f"T-{i}", xss + i * 5 * H, entrega, pb.CANAL_WEB,
                         etapas=(("revision", int(3.3 * D) if i else H),))
    eventos.sort(key=lambda e: e.ocurrido_en.seconds)
    return eventos


@dataclass
class Pila:
    url: str
    directorio: Path
    procesos: Procesos

    def get(self, ruta: str, cabeceras: dict | None = None) -> tuple[int, dict, bytes]:
        pedido = urllib.request.Request(self.url + ruta, headers=cabeceras or {})
        try:
            with urllib.request.urlopen(pedido, timeout=10) as r:
                return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
        except urllib.error.HTTPError as error:
            return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()

    def registros(self) -> str:
        return "\n".join(f"--- {n} ---\n{self.procesos.registro(n)[-3000:]}" for n in ("procesador", "consulta", "portal"))


def _listo(stub) -> bool:
    """Todas las series que la prueba mira ya tienen su valor final en la consulta."""
    try:
        series = {(i.servicio_id, i.indicador, i.ventana, i.etapa_id): i
                  for i in _listar(stub)}
    except grpc.RpcError:
        return False
    esperado = {(SERVICIO, "entregas", "mes:2026-05", ""): 20, (SERVICIO, "entregas", "mes:2026-06", ""): 12,
                (SERVICIO, "entregas", "30d", ""): 12, (SERVICIO_XSS, "entregas", "30d", ""): 3,
                (SERVICIO, "tiempo_etapa_p50", "30d", "emision"): 12}
    for clave, valor in esperado.items():
        i = series.get(clave)
        if i is None or (i.valor if clave[1] == "entregas" else i.muestras) != valor:
            return False
    return (series.get((SERVICIO, "cumplimiento_plazo", "7d", "")) is not None
            and series[(SERVICIO, "cumplimiento_plazo", "7d", "")].meta.estado == ipb.ESTADO_CUMPLIMIENTO_CUMPLE)


def _listar(stub) -> list[ipb.Indicador]:
    todos, token = [], ""
    while True:
        pagina = stub.ListarIndicadores(ipb.FiltroIndicadores(agencia_id=AGENCIA, tamano_pagina=1000,
                                                              token_pagina=token), timeout=5)
        todos += pagina.indicadores
        token = pagina.siguiente_pagina
        if not token:
            return todos


@pytest.fixture(scope="module")
def pila(tmp_path_factory):
    directorio = tmp_path_factory.mktemp("portal")
    catalogo = directorio / "catalogo.yaml"
    catalogo.write_text(yaml.safe_dump({
        "agencias": [{"id": AGENCIA, "nombre": NOMBRE_AGENCIA, "zona_horaria": "America/Lima", "moneda": "PEN"}],
        "servicios": [
            {"id": SERVICIO, "nombre": NOMBRE_SERVICIO, "agencia": AGENCIA, "plazo_dias": 5,
             "etapas": ["revision", "emision"]},
            {"id": SERVICIO_XSS, "nombre": NOMBRE_XSS, "agencia": AGENCIA, "plazo_dias": 3, "etapas": ["revision"]},
        ]}, allow_unicode=True), encoding="utf-8")
    metas = directorio / "metas"
    metas.mkdir()
    (metas / "muni.yaml").write_text(yaml.safe_dump({"metas": [{
        "agencia": AGENCIA, "servicio": "*", "indicador": "cumplimiento_plazo", "ventana": "7d", "operador": ">=",
        "valor": 0.9, "muestra_minima": 5, "severidad": "critica", "equipo": "atencion",
        "descripcion": DESCRIPCION_META}]}, allow_unicode=True), encoding="utf-8")
    puertos = {n: puerto_libre() for n in ("grpc", "portal")}
    procesos = Procesos(directorio)
    with broker_kafka(None, registro=directorio / "broker.log") as bootstrap:
        try:
            crear_topicos(bootstrap, 2)
            comun = {"GPR_KAFKA_BOOTSTRAP": bootstrap, "GPR_PARTICIONES": "2", "GPR_CATALOGO": str(catalogo)}
            procesos.lanzar("servicios.procesador", {
                **comun, "GPR_METAS": str(metas), "GPR_ALMACEN": "memoria",
                "GPR_DIRECTORIO_DATOS": str(directorio / "procesador"), "GPR_METRICAS_PUERTO": "0"})
            procesos.lanzar("servicios.consulta", {
                **comun, "GPR_GRPC_HOST": "127.0.0.1", "GPR_GRPC_PUERTO": str(puertos["grpc"]),
                "GPR_METRICAS_PUERTO": "0"})
            procesos.lanzar("servicios.portal", {
                "GPR_CATALOGO": str(catalogo), "GPR_PORTAL_CONSULTA": f"127.0.0.1:{puertos['grpc']}",
                "GPR_PORTAL_HOST": "127.0.0.1", "GPR_PORTAL_PUERTO": str(puertos["portal"]),
                "GPR_PORTAL_CACHE": "1", "GPR_PORTAL_AHORA": AHORA})
            publicar_eventos(bootstrap, escenario())
            pila = Pila(f"http://127.0.0.1:{puertos['portal']}", directorio, procesos)
            canal = grpc.insecure_channel(f"127.0.0.1:{puertos['grpc']}")
            stub = ipb_grpc.IndicadoresStub(canal)
            fin = time.monotonic() + 150
            while not _listo(stub):
                assert time.monotonic() < fin, "la consulta no llegó a los valores del escenario\n" + pila.registros()
                time.sleep(1)
            canal.close()
            # La caché del portal (1 s) ya no guarda una lectura anterior a los valores finales.
            time.sleep(1.5)
            yield pila
        finally:
            procesos.detener_todos()
    for nombre in ("procesador", "consulta", "portal"):
        assert "Traceback" not in procesos.registro(nombre), f"{nombre}:\n{procesos.registro(nombre)[-3000:]}"


def _texto(pagina) -> str:
    return pagina.inner_text("body").replace(NBSP, " ")


def _sin_suprimidos(contenido: str, donde: str) -> None:
    for valor in SUPRIMIDOS:
        assert valor not in contenido and valor.replace(NBSP, " ") not in contenido, f"{valor!r} se ve en {donde}"


PAGINAS = {
    "inicio": "/",
    "agencia": f"/agencias/{AGENCIA}",
    "servicio": f"/agencias/{AGENCIA}/servicios/{SERVICIO}",
    "servicio-pocos-casos": f"/agencias/{AGENCIA}/servicios/{SERVICIO_XSS}",
    "informe": f"/agencias/{AGENCIA}/informe/2026-06",
    "metodologia": "/metodologia",
    "datos": "/datos/",
    "404": "/agencias/nadie",
}


def test_cada_pagina_muestra_los_valores_del_escenario_y_nada_suprimido(pila, navegador):
    contexto = navegador.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900})
    pagina = contexto.new_page()
    dialogos = []
    pagina.on("dialog", lambda d: (dialogos.append(d.message), d.dismiss()))
    try:
        pagina.goto(pila.url + "/")
        texto = _texto(pagina)
        assert NOMBRE_AGENCIA in texto
        # Este mes y 30 días: licencias 12/12 en plazo (≥ 90 %) cumple; el trámite de 3 casos no se juzga.
        assert "1 de 1 servicio cumple sus metas (1 sin casos suficientes o sin metas)" in texto
        fila = lambda t: re.search(rf"{t}\t([^\t\n]*)\t?([^\t\n]*)", texto)  # noqa: E731
        assert fila("Solicitudes recibidas").groups() == ("12 (sin 1 servicio con menos de 10 casos)", "12")
        assert fila("Entregas dentro del plazo").groups() == ("100 % (sin 1 servicio con menos de 10 casos)", "12")
        assert fila("Entregas por canal digital").group(1).startswith("75 %")
        _sin_suprimidos(pagina.content(), "/")

        pagina.goto(pila.url + f"/agencias/{AGENCIA}")
        texto = _texto(pagina)
        assert "La etapa que más demora es revision: mediana 1,0 día." in texto
        # Tendencia de licencias: mayo 75 % con 20 casos, junio 100 % con 12.
        assert re.search(r"may 2026\t75 %\t20\t", texto) and re.search(r"jun 2026\t100 %\t12\t", texto)
        # La meta de 7 días contra su valor: 100 % con 12 casos.
        assert re.search(r"Entregas dentro del plazo\n[^\t]*\túltimos 7 días\t100 %\t≥ 90 %\t✔ Cumple", texto)
        imagenes = pagina.locator("figure img")
        assert imagenes.count() == 2
        for k in range(2):
            alt = imagenes.nth(k).get_attribute("alt")
            _sin_suprimidos(alt, "el texto alternativo")
        assert "Último valor publicado: 100 % (jun 2026)" in imagenes.nth(0).get_attribute("alt").replace(NBSP, " ")
        assert "Ningún mes tiene un valor publicado" in imagenes.nth(1).get_attribute("alt")
        _sin_suprimidos(pagina.content(), "la página de la entidad")

        pagina.goto(pila.url + f"/agencias/{AGENCIA}/servicios/{SERVICIO}")
        texto = _texto(pagina)
        for esperado in ("Solicitudes recibidas\t12\t12", "Servicios entregados\t12\t12",
                         "Entregas dentro del plazo\t100 %\t12\t≥ 90 %", "Tiempo de atención (mediana)\t2,0 días\t12",
                         "Entregas por canal digital\t75 %\t12", "revision\t1,0 día\t1,0 día\t12",
                         "emision\t12,0 horas\t12,0 horas\t12"):
            assert esperado in texto, esperado
        # Sin JavaScript, el formulario del periodo funciona: 7 días tiene los mismos 12 casos.
        pagina.select_option("#ventana", "7d")
        pagina.click("button[type=submit]")
        assert pagina.url.endswith("?ventana=7d") and "Resultados de los últimos 7 días" in _texto(pagina)

        pagina.goto(pila.url + f"/agencias/{AGENCIA}/servicios/{SERVICIO_XSS}")
        texto = _texto(pagina)
        assert texto.count("menos de 10 casos") >= 8 and "La etapa que más demora es" not in texto
        _sin_suprimidos(pagina.content(), "la página del servicio de 3 casos")
        for img in pagina.locator("figure img").all():
            _sin_suprimidos(img.get_attribute("alt"), "un texto alternativo")
            codigo, _, svg = pila.get(img.get_attribute("src"))
            assert codigo == 200
            _sin_suprimidos(svg.decode(), img.get_attribute("src"))

        pagina.goto(pila.url + f"/agencias/{AGENCIA}/informe/2026-06")
        texto = _texto(pagina)
        assert re.search(r"Entregas dentro del plazo\t100 %\t75 %\tMejoró\t≥ 90 %\t✔ Cumple", texto)
        assert "Mejoró: Entregas dentro del plazo" in texto
        _sin_suprimidos(pagina.content(), "el informe")
        assert dialogos == []
    finally:
        contexto.close()


def test_los_nombres_con_html_quedan_inertes_en_el_navegador(pila, navegador):
    contexto = navegador.new_context(viewport={"width": 1280, "height": 900})  # con JavaScript
    pagina = contexto.new_page()
    dialogos, consola = [], []
    pagina.on("dialog", lambda d: (dialogos.append(d.message), d.dismiss()))
    pagina.on("console", lambda m: consola.append(m.text))
    try:
        for ruta in ("/", f"/agencias/{AGENCIA}", f"/agencias/{AGENCIA}/servicios/{SERVICIO_XSS}",
                     f"/agencias/{AGENCIA}/informe/2026-06"):
            pagina.goto(pila.url + ruta)
            pagina.wait_for_load_state("load")
            assert pagina.locator("script").count() == 0 and pagina.locator("img[src='x']").count() == 0, ruta
            texto = pagina.inner_text("body")
            assert NOMBRE_AGENCIA in texto, ruta
            if ruta != "/":
                assert NOMBRE_XSS in texto, ruta
        pagina.goto(pila.url + f"/agencias/{AGENCIA}")
        assert DESCRIPCION_META in pagina.inner_text("body")
        assert dialogos == [] and not [m for m in consola if "alert" in m]
    finally:
        contexto.close()


@pytest.mark.parametrize("ancho", [360, 1280])
def test_axe_sin_violaciones_graves_y_sin_desborde(pila, navegador, ancho):
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()
    contexto = navegador.new_context(viewport={"width": ancho, "height": 900})
    pagina = contexto.new_page()
    try:
        for nombre, ruta in PAGINAS.items():
            pagina.goto(pila.url + ruta)
            resultado = axe.run(pagina, options={"runOnly": {"type": "tag", "values": [
                "wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]}, "resultTypes": ["violations"]})
            graves = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
                      for v in resultado.response["violations"] if v["impact"] in ("serious", "critical")]
            assert graves == [], f"{nombre} a {ancho} px: {graves}"
            ancho_documento = pagina.evaluate("document.documentElement.scrollWidth")
            assert ancho_documento <= ancho, f"{nombre} desborda a {ancho} px ({ancho_documento} px)"
            assert pagina.locator("h1").count() == 1 and pagina.locator("html").get_attribute("lang") == "es"
    finally:
        contexto.close()


def test_el_informe_se_imprime_en_a4(pila, navegador):
    pagina = navegador.new_page()
    try:
        pagina.goto(pila.url + f"/agencias/{AGENCIA}/informe/2026-06")
        pagina.emulate_media(media="print")
        assert not pagina.locator("header.cabecera").is_visible()
        pdf = pagina.pdf(prefer_css_page_size=True)
        cajas = {tuple(round(float(x)) for x in m.groups())
                 for m in re.finditer(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]", pdf)}
        # A4: 210 × 297 mm = 595 × 842 puntos (Chromium redondea a 594,96 × 841,92).
        assert cajas and all(abs(a - 595) <= 1 and abs(b - 842) <= 1 for a, b in cajas), cajas
    finally:
        pagina.close()


def test_errores_en_espanol_y_cabeceras_de_seguridad(pila):
    for ruta, codigo in ((f"/agencias/{AGENCIA}/informe/2025-01", 404), ("/agencias/nadie", 404),
                         (f"/agencias/{AGENCIA}/servicios/nada", 404), (f"/agencias/{AGENCIA}/informe/2026-13", 404),
                         (f"/agencias/{AGENCIA}/servicios/{SERVICIO}?ventana=1h", 400),
                         ("/datos/valores-actuales.csv?agencia=otra", 400)):
        estado, cabeceras, cuerpo = pila.get(ruta)
        assert estado == codigo, ruta
        assert "default-src 'none'" in cabeceras["content-security-policy"] and "set-cookie" not in cabeceras
        html = cuerpo.decode()
        assert 'lang="es"' in html and "Traceback" not in html
        assert ("Página no encontrada" if codigo == 404 else "Petición inválida") in html
    estado, _, cuerpo = pila.get("/salud")
    assert estado == 200 and json.loads(cuerpo) == {"estado": "ok"}
    _, _, metricas = pila.get("/metrics")
    assert b'gpr_portal_rpc_total{codigo="OK",rpc="ListarIndicadores"}' in metricas
    assert b'gpr_portal_cache_total{resultado="acierto"}' in metricas


def test_los_datos_abiertos_validan_y_no_publican_lo_suprimido(pila, tmp_path):
    from frictionless import Package

    estado, _, paquete = pila.get("/datos/datapackage.json")
    assert estado == 200
    (tmp_path / "datapackage.json").write_bytes(paquete)
    for recurso in json.loads(paquete)["resources"]:
        estado, cabeceras, cuerpo = pila.get("/datos/" + recurso["path"])
        assert estado == 200 and cabeceras["etag"] and cabeceras["last-modified"]
        assert pila.get("/datos/" + recurso["path"], {"If-None-Match": cabeceras["etag"]})[0] == 304
        _sin_suprimidos(cuerpo.decode("utf-8"), recurso["path"])
        (tmp_path / recurso["path"]).write_bytes(cuerpo)
    informe = Package(str(tmp_path / "datapackage.json")).validate()
    assert informe.valid, informe.flatten(["resourceName", "rowNumber", "fieldName", "type", "note"])[:10]

    filas = json.loads((tmp_path / "series-mensuales.json").read_text(encoding="utf-8"))
    por_clave = {(f["servicio_id"], f["indicador"], f["mes"], f["etapa_id"]): f for f in filas}
    mayo = por_clave[(SERVICIO, "cumplimiento_plazo", "2026-05", None)]
    assert (mayo["valor"], mayo["casos"], mayo["suprimido"]) == (0.75, 20, False)
    xss = por_clave[(SERVICIO_XSS, "cumplimiento_plazo", "2026-06", None)]
    assert (xss["valor"], xss["casos"], xss["suprimido"], xss["servicio"]) == (None, None, True, NOMBRE_XSS)
    actuales = json.loads((tmp_path / "valores-actuales.json").read_text(encoding="utf-8"))
    plazo = [f for f in actuales if (f["servicio_id"], f["indicador"], f["ventana"]) == (SERVICIO, "cumplimiento_plazo", "7d")]
    assert [(f["valor"], f["casos"], f["meta_operador"], f["meta_valor"], f["estado_meta"]) for f in plazo] == [
        (1.0, 12, ">=", 0.9, "cumple")]
    assert all(f["casos"] is None or f["casos"] >= 10 for f in actuales + filas)
