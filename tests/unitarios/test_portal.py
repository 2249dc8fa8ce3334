"""Portal sin la pila: regla de divulgación, metas, agregados, meses con reloj fijo, caché,
configuración, y las páginas y archivos que arma la aplicación real (Starlette + Jinja2)
sobre una fuente en memoria. Lo esperado está calculado a mano en cada prueba.

Los valores de los servicios con pocos casos son «centinelas» (0,4321, 987,65…): ningún
texto que el portal entrega puede contenerlos, en ninguna forma.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from html.parser import HTMLParser

import pytest
from starlette.testclient import TestClient

from apoyo.portal import FuenteFija, ind, instante, segundos
from conftest import CATALOGO
from servicios.comun.catalogo import cargar_catalogo, desde_datos
from servicios.comun.config import ConfiguracionInvalida
from servicios.comun.indicadores import INDICADORES, UNIDADES, unidad_de
from servicios.portal import config as config_portal
from servicios.portal import dominio as d
from servicios.portal.app import Portal
from servicios.portal.cache import CacheCorta
from servicios.portal.cliente import ConsultaNoDisponible
from servicios.portal.config import ConfigPortal

AHORA = "2026-06-17T15:00:00Z"
H = segundos(AHORA)
A = "reniec"
GRANDE, CHICO = "dni-duplicado", "dni-primera-vez"
META_PLAZO = (">=", 0.9, 5, "Nueve de cada diez DNI se entregan dentro del plazo legal.")
# Centinelas: valores de series con menos de 10 casos. Sus textos posibles, en cualquier formato.
CENTINELAS = ["0.4321", "43,2", "43.2", "987.65", "987,65", "0.1234", "12,3", "12.34", "7777"]


def _series() -> list:
    s = [
        # Servicio grande: 100 entregas en 30 días.
        ind(A, GRANDE, "solicitudes", "30d", 120, 120, hasta=H, cuello="impresion"),
        ind(A, GRANDE, "entregas", "30d", 100, 100, hasta=H),
        ind(A, GRANDE, "cumplimiento_plazo", "30d", 0.85, 100, numerador=85, hasta=H),
        ind(A, GRANDE, "cumplimiento_plazo", "24h", 0.95, 20, numerador=19, meta=META_PLAZO, hasta=H),
        ind(A, GRANDE, "cumplimiento_plazo", "7d", 0.5, 4, numerador=2, meta=META_PLAZO, hasta=H),
        ind(A, GRANDE, "satisfaccion_top2", "30d", 0.8, 50, numerador=40, hasta=H),
        ind(A, GRANDE, "adopcion_digital", "30d", 0.6, 100, numerador=60, hasta=H),
        ind(A, GRANDE, "costo_por_tramite", "30d", 25.5, 100, numerador=2550, hasta=H),
        ind(A, GRANDE, "tasa_reproceso", "30d", None, 0, hasta=H),
        ind(A, GRANDE, "tiempo_etapa_p50", "30d", 2.1 * 86400, 90, etapa="impresion", hasta=H),
        ind(A, GRANDE, "tiempo_etapa_p90", "30d", 4 * 86400, 90, etapa="impresion", hasta=H),
        ind(A, GRANDE, "tiempo_etapa_p50", "30d", 86400, 90, etapa="verificacion", hasta=H),
        # Servicio chico: todo con menos de 10 casos, con valores centinela.
        ind(A, CHICO, "solicitudes", "30d", 7, 7, hasta=H, cuello="registro"),
        ind(A, CHICO, "entregas", "30d", 6, 6, hasta=H),
        ind(A, CHICO, "cumplimiento_plazo", "30d", 0.4321, 6, numerador=2.5926, hasta=H),
        ind(A, CHICO, "cumplimiento_plazo", "24h", 0.4321, 6, meta=META_PLAZO, hasta=H),
        ind(A, CHICO, "costo_por_tramite", "30d", 987.65, 6, numerador=5925.9, hasta=H),
        ind(A, CHICO, "satisfaccion_top2", "30d", 0.1234, 3, numerador=0.3702, hasta=H),
        ind(A, CHICO, "tiempo_etapa_p50", "30d", 7777, 6, etapa="registro", hasta=H),
    ]
    for k, mes in enumerate(d.meses_hasta("2026-06")):
        # Grande: 0,70 + 0,02·k con 50 casos, salvo diciembre con 4 casos (centinela).
        if mes == "2025-12":
            s.append(ind(A, GRANDE, "cumplimiento_plazo", f"mes:{mes}", 0.4321, 4, hasta=H))
        else:
            s.append(ind(A, GRANDE, "cumplimiento_plazo", f"mes:{mes}", round(0.70 + 0.02 * k, 4), 50, hasta=H))
        s.append(ind(A, CHICO, "cumplimiento_plazo", f"mes:{mes}", 0.4321, 5, hasta=H))
    s.append(ind(A, GRANDE, "tiempo_etapa_p50", "mes:2026-06", 3 * 3600, 40, etapa="impresion", hasta=H,
                 cuello="impresion"))
    return s


@pytest.fixture
def catalogo():
    return cargar_catalogo(CATALOGO)


@pytest.fixture
def cliente(catalogo):
    portal = Portal(catalogo, FuenteFija(_series()), ConfigPortal(), lambda: instante(AHORA))
    with TestClient(portal.app(), raise_server_exceptions=False) as c:
        yield c


# --- dominio -------------------------------------------------------------------------


def test_la_regla_publica_desde_el_minimo_y_distingue_sin_datos():
    regla = d.Regla(10)
    assert regla.estado(ind(A, GRANDE, "entregas", "30d", 9, 9)) == d.SUPRIMIDO
    assert regla.estado(ind(A, GRANDE, "entregas", "30d", 10, 10)) == d.PUBLICADO
    assert regla.estado(ind(A, GRANDE, "tasa_reproceso", "30d", None, 0)) == d.SIN_DATOS
    assert regla.estado(None) == d.SIN_DATOS
    c = d.celda(ind(A, GRANDE, "cumplimiento_plazo", "30d", 0.4321, 9), regla)
    assert (c.estado, c.texto, c.valor, c.casos) == (d.SUPRIMIDO, "menos de 10 casos", None, None)
    c = d.celda(ind(A, GRANDE, "cumplimiento_plazo", "30d", 0.75, 12), regla)
    assert (c.texto, c.valor, c.casos) == ("75\u00a0%", 0.75, 12)


def test_una_meta_solo_se_juzga_con_casos_publicables_y_su_muestra_minima():
    regla = d.Regla(10)
    meta = d.MetaPublica(">=", 0.9, 20, "", "7d")
    assert d.juzgar(meta, ind(A, GRANDE, "cumplimiento_plazo", "30d", 0.95, 19), regla) == d.NO_JUZGADO
    assert d.juzgar(meta, ind(A, GRANDE, "cumplimiento_plazo", "30d", 0.95, 20), regla) == d.CUMPLE
    assert d.juzgar(meta, ind(A, GRANDE, "cumplimiento_plazo", "30d", 0.85, 20), regla) == d.INCUMPLE
    # La muestra mínima de la meta (5) es menor que la de divulgación: manda la de divulgación.
    baja = d.MetaPublica(">=", 0.9, 5, "", "24h")
    assert d.juzgar(baja, ind(A, GRANDE, "cumplimiento_plazo", "30d", 0.2, 9), regla) == d.NO_JUZGADO
    menor = d.MetaPublica("<=", 3600, 1, "", "24h")
    assert d.juzgar(menor, ind(A, GRANDE, "tiempo_atencion_p50", "30d", 3600, 10), regla) == d.CUMPLE


def test_la_meta_de_un_indicador_es_la_de_su_ventana_mas_larga():
    datos = d.DatosAgencia(A, _series())
    meta = datos.meta(GRANDE, "cumplimiento_plazo")
    assert (meta.ventana, meta.operador, meta.valor, meta.muestra_minima) == ("7d", ">=", 0.9, 5)


def test_el_agregado_de_la_agencia_deja_fuera_los_servicios_suprimidos(catalogo):
    datos = d.DatosAgencia(A, _series())
    servicios = catalogo.servicios_de(A)
    regla = d.Regla(10)
    plazo = d.agregado(datos, servicios, "cumplimiento_plazo", "30d", regla)
    # Solo el servicio grande (85/100); con el chico sería (85 + 2,59)/106.
    assert (plazo.celda.valor, plazo.celda.casos, plazo.excluidos) == (0.85, 100, 1)
    costo = d.agregado(datos, servicios, "costo_por_tramite", "30d", regla)
    assert (costo.celda.valor, costo.celda.texto) == (25.5, "25,50\u00a0PEN")
    solicitudes = d.agregado(datos, servicios, "solicitudes", "30d", regla)
    assert (solicitudes.celda.valor, solicitudes.excluidos) == (120, 1)
    # Con un mínimo de 200 nada se publica, tampoco el total.
    nada = d.agregado(datos, servicios, "entregas", "30d", d.Regla(200))
    assert (nada.celda.estado, nada.celda.valor, nada.excluidos) == (d.SUPRIMIDO, None, 2)
    with pytest.raises(ValueError):
        d.agregado(datos, servicios, "tiempo_atencion_p50", "30d", regla)


def test_el_mes_es_el_de_la_zona_de_la_agencia_y_los_13_meses_cruzan_el_anio():
    # 03:00 UTC del 1 de julio son las 22:00 del 30 de junio en Lima (UTC−5).
    assert d.mes_de(instante("2026-07-01T03:00:00Z"), "America/Lima") == "2026-06"
    assert d.mes_de(instante("2026-07-01T05:00:00Z"), "America/Lima") == "2026-07"
    meses = d.meses_hasta("2026-02")
    assert (len(meses), meses[0], meses[10], meses[-1]) == (13, "2025-02", "2025-12", "2026-02")


def test_el_cambio_respeta_el_sentido_del_indicador():
    pub = lambda v: d.Celda(d.PUBLICADO, "", v, 20)  # noqa: E731
    sup = d.Celda(d.SUPRIMIDO, "menos de 10 casos")
    assert d.cambio(INDICADORES["cumplimiento_plazo"], pub(0.9), pub(0.8)) == d.MEJORO
    assert d.cambio(INDICADORES["tiempo_atencion_p50"], pub(100), pub(50)) == d.EMPEORO
    assert d.cambio(INDICADORES["solicitudes"], pub(100), pub(50)) == d.SUBIO
    assert d.cambio(INDICADORES["cumplimiento_plazo"], pub(0.9), sup) == d.NO_COMPARABLE
    assert d.cambio(INDICADORES["cumplimiento_plazo"], pub(0.9), pub(0.9)) == d.IGUAL


def test_la_etapa_que_mas_demora_solo_se_nombra_con_casos_suficientes():
    datos = d.DatosAgencia(A, _series())
    regla = d.Regla(10)
    assert d.cuello_en_palabras(datos, GRANDE, "30d", regla) == "La etapa que más demora es impresion: mediana 2,1\u00a0días."
    texto = d.cuello_en_palabras(datos, CHICO, "30d", regla)
    assert "registro" not in texto and "menos de 10 casos" in texto


def test_la_tendencia_y_su_texto_alternativo_no_usan_meses_suprimidos():
    datos = d.DatosAgencia(A, _series())
    regla = d.Regla(10)
    t = d.tendencia(datos, GRANDE, "cumplimiento_plazo", d.meses_hasta("2026-06"), regla)
    assert len(t.puntos) == 13 and t.suprimidos == 1
    alt = t.texto_alternativo(regla)
    # Último: junio (k = 12) 0,70 + 0,24 = 94 %; mínimo junio 2025 (70 %); diciembre no aparece.
    assert "Último valor publicado: 94\u00a0%" in alt and "Mínimo 70\u00a0%" in alt
    assert "1 mes tiene menos de 10 casos" in alt and "Meta: ≥\u00a090\u00a0%" in alt
    assert not any(c in alt for c in CENTINELAS)


def test_la_ficha_de_cada_indicador_esta_completa_y_usa_el_vocabulario_de_unidades():
    for nombre, f in INDICADORES.items():
        assert f.titulo and f.descripcion and f.numerador and f.casos, nombre
        assert f.unidad in UNIDADES, nombre
    cocientes = {n for n, f in INDICADORES.items() if f.denominador}
    assert {"cumplimiento_plazo", "costo_por_tramite", "reclamos_por_mil", "satisfaccion_indice"} <= cocientes
    assert unidad_de(INDICADORES["costo_por_tramite"], "USD") == "USD"
    assert unidad_de(INDICADORES["reclamos_por_mil"], "USD") == "por_mil"
    assert INDICADORES["tiempo_atencion_p90"].sentido_en_palabras == "más bajo es mejor"


# --- caché -----------------------------------------------------------------------------


def test_la_cache_carga_una_vez_por_periodo_aunque_lleguen_muchas_a_la_vez():
    ahora = [100.0]
    cache = CacheCorta(5.0, reloj=lambda: ahora[0])
    cargas = []

    async def cargar():
        cargas.append(ahora[0])
        await asyncio.sleep(0.01)
        return len(cargas)

    async def escenario():
        primeras = await asyncio.gather(*(cache.obtener("k", cargar) for _ in range(50)))
        ahora[0] = 104.9
        dentro = await cache.obtener("k", cargar)
        ahora[0] = 105.0
        vencida = await cache.obtener("k", cargar)
        return primeras, dentro, vencida

    primeras, dentro, vencida = asyncio.run(escenario())
    assert primeras == [1] * 50 and dentro == 1 and vencida == 2 and cargas == [100.0, 105.0]


def test_la_cache_recuerda_un_fallo_durante_el_periodo():
    ahora = [0.0]
    cache = CacheCorta(5.0, reloj=lambda: ahora[0])
    intentos = []

    async def fallar():
        intentos.append(1)
        raise ConsultaNoDisponible(None, "caída")

    async def escenario():
        for t in (0.0, 1.0, 4.9, 5.0):
            ahora[0] = t
            with pytest.raises(ConsultaNoDisponible):
                await cache.obtener("k", fallar)

    asyncio.run(escenario())
    assert len(intentos) == 2


# --- configuración ---------------------------------------------------------------------


def test_la_configuracion_por_omision_y_sus_errores_nombran_la_variable(tmp_path):
    cfg = config_portal.leer({})
    assert (cfg.cache_s, cfg.muestra_minima, cfg.licencia, cfg.token, cfg.tls_ca, cfg.ahora) == (
        5.0, 10, "CC-BY-4.0", None, None, None)
    assert config_portal.leer({"GPR_PORTAL_CACHE": "500ms".replace("ms", "") or "x"}).cache_s == 500.0
    assert config_portal.leer({"GPR_PORTAL_CACHE": "2m"}).cache_s == 120.0
    assert config_portal.leer({"GPR_PORTAL_AHORA": "2026-06-17T15:00:00Z"}).ahora == instante(AHORA)
    malos = {
        "GPR_PORTAL_CACHE": "pronto", "GPR_PORTAL_MUESTRA_MINIMA": "0", "GPR_PORTAL_AHORA": "2026-06-17T15:00:00",
        "GPR_PORTAL_LICENCIA": "propia", "GPR_PORTAL_CONSULTA_TLS_CA": str(tmp_path / "no-existe.pem"),
        "GPR_PORTAL_PUERTO": "70000",
    }
    for variable, valor in malos.items():
        with pytest.raises(ConfiguracionInvalida, match=variable):
            config_portal.leer({variable: valor})
    otra = config_portal.leer({"GPR_PORTAL_LICENCIA": "propia", "GPR_PORTAL_LICENCIA_URL": "https://ejemplo.gob/licencia"})
    assert (otra.licencia, otra.licencia_url) == ("propia", "https://ejemplo.gob/licencia")


# --- páginas ---------------------------------------------------------------------------


class _Estructura(HTMLParser):
    def __init__(self):
        super().__init__()
        self.etiquetas: list[str] = []
        self.lang = None
        self.imagenes_sin_alt = 0

    def handle_starttag(self, tag, attrs):
        self.etiquetas.append(tag)
        atributos = dict(attrs)
        if tag == "html":
            self.lang = atributos.get("lang")
        if tag == "img" and not atributos.get("alt"):
            self.imagenes_sin_alt += 1
        if tag == "script":
            raise AssertionError("una página del portal trae <script>")


PAGINAS = ["/", f"/agencias/{A}", f"/agencias/{A}/servicios/{GRANDE}", f"/agencias/{A}/servicios/{CHICO}",
           f"/agencias/{A}/informe/2026-06", f"/agencias/{A}/informe/2026-01", "/metodologia", "/datos/"]


@pytest.mark.parametrize("ruta", PAGINAS)
def test_cada_pagina_es_html_en_espanol_con_un_h1_y_puntos_de_referencia(cliente, ruta):
    r = cliente.get(ruta)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    e = _Estructura()
    e.feed(r.text)
    assert e.lang == "es" and e.etiquetas.count("h1") == 1
    assert {"header", "nav", "main", "footer"} <= set(e.etiquetas)
    assert e.imagenes_sin_alt == 0
    assert not any(c in r.text for c in CENTINELAS), ruta


def test_la_portada_muestra_los_agregados_calculados_a_mano(cliente):
    texto = cliente.get("/").text
    assert "85\u00a0%" in texto and "25,50\u00a0PEN" in texto and "80\u00a0%" in texto
    assert "sin 1 servicio con menos de 10 casos" in texto
    # Últimos 30 días: la meta de plazo (≥ 90 %) contra 85 % con 100 casos: incumple.
    assert "0 de 1 servicio cumple sus metas" in texto


def test_la_pagina_del_servicio_dice_la_etapa_que_mas_demora_y_suprime_lo_chico(cliente):
    grande = cliente.get(f"/agencias/{A}/servicios/{GRANDE}").text
    assert "La etapa que más demora es impresion: mediana 2,1\u00a0días." in grande
    chico = cliente.get(f"/agencias/{A}/servicios/{CHICO}").text
    assert chico.count("menos de 10 casos") >= 5 and "La etapa que más demora es" not in chico


def test_el_informe_compara_con_el_mes_anterior_solo_lo_publicado(cliente):
    texto = cliente.get(f"/agencias/{A}/informe/2026-06").text
    # Junio 94 % frente a mayo 92 %: mejoró; la etapa del mes tiene 40 casos.
    assert "Mejoró: Entregas dentro del plazo." in texto
    assert "La etapa que más demora es impresion: mediana 3,0\u00a0horas." in texto
    enero = cliente.get(f"/agencias/{A}/informe/2026-01").text
    # Enero (k = 7) contra diciembre suprimido: no comparable, y diciembre no se muestra.
    assert "No comparable" in enero and "Mejoró: Entregas" not in enero


def test_los_graficos_son_svg_sin_los_valores_suprimidos(cliente):
    r = cliente.get(f"/agencias/{A}/servicios/{GRANDE}/graficos/cumplimiento_plazo.svg")
    assert r.status_code == 200 and r.headers["content-type"] == "image/svg+xml"
    assert r.text.lstrip().startswith("<svg") and "<script" not in r.text
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert not any(c in r.text for c in CENTINELAS)
    chico = cliente.get(f"/agencias/{A}/servicios/{CHICO}/graficos/cumplimiento_plazo.svg").text
    assert not any(c in chico for c in CENTINELAS)


@pytest.mark.parametrize("ruta", [
    "/agencias/nadie", f"/agencias/{A}/servicios/nada", f"/agencias/{A}/informe/2026-13",
    f"/agencias/{A}/informe/2026-07", f"/agencias/{A}/informe/2025-05", f"/agencias/{A}/informe/junio",
    f"/agencias/{A}/servicios/{GRANDE}/graficos/tiempo_etapa_p50.svg", "/datos/otra-cosa.csv",
    "/datos/valores-actuales.xml", "/no/existe",
])
def test_lo_desconocido_es_un_404_en_espanol(cliente, ruta):
    r = cliente.get(ruta)
    assert r.status_code == 404 and "<h1>Página no encontrada</h1>" in r.text and 'lang="es"' in r.text
    assert "Traceback" not in r.text


@pytest.mark.parametrize("ruta, parametro", [
    (f"/agencias/{A}/servicios/{GRANDE}?ventana=2d", "ventana"),
    (f"/agencias/{A}/servicios/{GRANDE}?ventana=7d&ventana=30d", "ventana"),
    ("/datos/valores-actuales.csv?agencia=nadie", "agencia"),
])
def test_un_parametro_invalido_es_un_400_que_lo_nombra(cliente, ruta, parametro):
    r = cliente.get(ruta)
    assert r.status_code == 400 and f"«{parametro}»" in r.text and "Petición inválida" in r.text


def test_las_cabeceras_de_seguridad_van_en_toda_respuesta_y_nunca_una_cookie(catalogo):
    class Rota(FuenteFija):
        async def datos(self, agencia_id):
            if agencia_id == "minsa":
                raise RuntimeError("fallo interno con detalle privado")
            return await super().datos(agencia_id)

    class Caida(FuenteFija):
        async def datos(self, agencia_id):
            raise ConsultaNoDisponible(None, "caída")

    rota = Portal(catalogo, Rota(_series()), ConfigPortal(), lambda: instante(AHORA))
    caida = Portal(catalogo, Caida([]), ConfigPortal(), lambda: instante(AHORA))
    with TestClient(rota.app(), raise_server_exceptions=False) as c, \
            TestClient(caida.app(), raise_server_exceptions=False) as c2:
        respuestas = {200: c.get(f"/agencias/{A}"), 404: c.get("/x"), 400: c.get("/datos/indicadores.csv?agencia=x"),
                      405: c.post("/"), 500: c.get("/agencias/minsa"), 503: c2.get(f"/agencias/{A}")}
        for codigo, r in respuestas.items():
            assert r.status_code == codigo
            h = r.headers
            assert "script-src" not in h["content-security-policy"] and "default-src 'none'" in h["content-security-policy"]
            assert "frame-ancestors 'none'" in h["content-security-policy"]
            assert h["x-content-type-options"] == "nosniff" and h["referrer-policy"] == "no-referrer"
            assert "set-cookie" not in h
        assert "detalle privado" not in respuestas[500].text and "Traceback" not in respuestas[500].text
        assert "Error del portal" in respuestas[500].text
        assert respuestas[503].headers["retry-after"] == "5"
        metricas = c.get("/metrics").text
        assert 'gpr_portal_peticiones_total{codigo="200",metodo="GET",ruta="/agencias/{agencia}"} 1.0' in metricas


def test_los_textos_del_catalogo_y_de_las_metas_se_escapan():
    xss_servicio, xss_agencia = "<script>alert(1)</script>", '"><img src=x onerror=alert(1)>'
    catalogo = desde_datos({
        "agencias": [{"id": "xss", "nombre": xss_agencia}],
        "servicios": [{"id": "s", "nombre": xss_servicio, "agencia": "xss", "plazo_dias": 3}],
    })
    series = [ind("xss", "s", "cumplimiento_plazo", "24h", 0.95, 30, meta=(">=", 0.9, 1, xss_servicio + xss_agencia),
                  hasta=H),
              ind("xss", "s", "solicitudes", "30d", 30, 30, hasta=H, cuello=xss_agencia)]
    portal = Portal(catalogo, FuenteFija(series), ConfigPortal(), lambda: instante(AHORA))
    with TestClient(portal.app()) as c:
        for ruta in ("/", "/agencias/xss", "/agencias/xss/servicios/s", "/agencias/xss/informe/2026-06"):
            texto = c.get(ruta).text
            assert "<script>" not in texto and "<img src=x" not in texto, ruta
            assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in texto, ruta  # el nombre de la agencia
            if ruta != "/":
                assert "&lt;script&gt;alert(1)&lt;/script&gt;" in texto, ruta
        csv_ = c.get("/datos/valores-actuales.csv").text
        assert xss_servicio in csv_  # en CSV es texto (text/csv, nosniff), no HTML


def _filas_html(html: str, leyenda: str = "") -> dict[str, list[str]]:
    """Las filas de las tablas de una página (o de la tabla cuya leyenda contiene `leyenda`):
    el texto de su primera celda → el de las demás."""
    if leyenda:
        (html,) = [t for t in re.findall(r"<table[^>]*>(.*?)</table>", html, re.S) if leyenda in t]
    filas = {}
    for fila in re.findall(r"<tr>(.*?)</tr>", html, re.S):
        celdas = [re.sub(r"[ \t\n]+", " ", re.sub(r"<[^>]+>", "", c)).strip(" \t\n")
                  for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", fila, re.S)]
        if celdas:
            filas[celdas[0]] = celdas[1:]
    return filas


def test_cada_valor_y_su_meta_se_escriben_en_la_unidad_que_informa_la_api(catalogo):
    """El catálogo del portal dice que RENIEC cobra en soles y que el cumplimiento del plazo es
    una proporción; la API (`Indicador.unidad`) dice otra cosa y el portal la sigue: en las
    páginas, los agregados, los gráficos y los datos abiertos."""
    series = [
        ind(A, GRANDE, "costo_por_tramite", "30d", 25.5, 100, numerador=2550, hasta=H, unidad="USD",
            meta=("<=", 30.0, 10, "Costo contenido.")),
        ind(A, GRANDE, "cumplimiento_plazo", "30d", 0.85, 100, numerador=85, hasta=H, unidad="indice"),
        ind(A, GRANDE, "satisfaccion_indice", "30d", 0.8, 100, numerador=80, hasta=H),
        ind(A, CHICO, "costo_por_tramite", "30d", 40.0, 50, numerador=2000, hasta=H, unidad="PEN"),
    ] + [ind(A, GRANDE, "costo_por_tramite", f"mes:{mes}", 20.0 + k, 50, numerador=50 * (20.0 + k), hasta=H,
             unidad="USD") for k, mes in enumerate(d.meses_hasta("2026-06"))]
    portal = Portal(catalogo, FuenteFija(series), ConfigPortal(), lambda: instante(AHORA))
    with TestClient(portal.app()) as c:
        pagina = c.get(f"/agencias/{A}/servicios/{GRANDE}").text
        filas = _filas_html(pagina)
        # Valor, casos, meta, estado.
        assert filas["Costo por trámite"] == ["25,50\u00a0US$", "100", "≤\u00a030,00\u00a0US$", "✔ Cumple"]
        assert filas["Entregas dentro del plazo"][:2] == ["0,85", "100"]
        assert filas["Índice de satisfacción"][:2] == ["0,80", "100"]
        # La tabla del gráfico mensual y su eje: en dólares (junio, k = 12: 32,00).
        assert _filas_html(pagina, "Datos del gráfico «Costo por trámite»")["jun 2026"][:1] == ["32,00\u00a0US$"]
        svg = c.get(f"/agencias/{A}/servicios/{GRANDE}/graficos/costo_por_tramite.svg").text
        assert ">USD</text>" in svg and "PEN" not in svg
        # La agencia no suma dólares con soles.
        portada = c.get("/").text
        tarjeta = portada.split(f'aria-labelledby="agencia-{A}"')[1].split("<section")[0]
        assert _filas_html(tarjeta)["Costo por trámite"][0] == "no se suman unidades distintas"
        assert "25,5" not in portada and "40,00" not in portada
        actuales = {(f["servicio_id"], f["indicador"]): f["unidad"]
                    for f in csv.DictReader(io.StringIO(c.get("/datos/valores-actuales.csv").text))}
        assert actuales == {(GRANDE, "costo_por_tramite"): "USD", (GRANDE, "cumplimiento_plazo"): "indice",
                            (GRANDE, "satisfaccion_indice"): "indice", (CHICO, "costo_por_tramite"): "PEN"}


# --- datos abiertos --------------------------------------------------------------------


def test_los_datos_abiertos_suprimen_con_bandera_y_sin_casos(cliente):
    r = cliente.get("/datos/valores-actuales.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    filas = list(csv.DictReader(io.StringIO(r.content.decode("utf-8"))))
    por_clave = {(f["servicio_id"], f["indicador"], f["ventana"], f["etapa_id"]): f for f in filas}
    chico = por_clave[(CHICO, "cumplimiento_plazo", "30d", "")]
    assert (chico["valor"], chico["casos"], chico["suprimido"], chico["sin_datos"]) == ("", "", "true", "false")
    grande = por_clave[(GRANDE, "cumplimiento_plazo", "30d", "")]
    assert (float(grande["valor"]), grande["casos"], grande["suprimido"], grande["unidad"]) == (0.85, "100", "false",
                                                                                               "proporcion")
    assert por_clave[(GRANDE, "costo_por_tramite", "30d", "")]["unidad"] == "PEN"
    vacio = por_clave[(GRANDE, "tasa_reproceso", "30d", "")]
    assert (vacio["valor"], vacio["sin_datos"], vacio["suprimido"]) == ("", "true", "false")
    # La meta de 7d (4 casos) no se juzga; la de 24h del servicio chico tampoco.
    assert por_clave[(GRANDE, "cumplimiento_plazo", "7d", "")]["estado_meta"] == d.NO_JUZGADO
    assert por_clave[(GRANDE, "cumplimiento_plazo", "24h", "")]["estado_meta"] == d.CUMPLE
    for ruta in ("/datos/valores-actuales.csv", "/datos/valores-actuales.json", "/datos/series-mensuales.csv",
                 "/datos/series-mensuales.json", f"/datos/series-mensuales.json?agencia={A}"):
        assert not any(c in cliente.get(ruta).text for c in CENTINELAS), ruta
    mensual = json.loads(cliente.get(f"/datos/series-mensuales.json?agencia={A}").content)
    diciembre = [f for f in mensual if f["servicio_id"] == GRANDE and f["mes"] == "2025-12"][0]
    assert diciembre["valor"] is None and diciembre["suprimido"] is True and diciembre["casos"] is None
    assert len([f for f in mensual if f["servicio_id"] == GRANDE and f["indicador"] == "cumplimiento_plazo"]) == 13


def test_los_datos_abiertos_tienen_etag_last_modified_y_304(cliente):
    r = cliente.get("/datos/series-mensuales.csv")
    assert r.headers["cache-control"] == "public, max-age=5"
    assert r.headers["last-modified"] == "Wed, 17 Jun 2026 15:00:00 GMT"
    assert cliente.get("/datos/series-mensuales.csv", headers={"if-none-match": r.headers["etag"]}).status_code == 304
    assert cliente.get("/datos/series-mensuales.csv",
                       headers={"if-modified-since": r.headers["last-modified"]}).status_code == 304
    assert cliente.get("/datos/series-mensuales.csv", headers={"if-none-match": '"otra"'}).status_code == 200
    assert cliente.get("/datos/series-mensuales.json").headers["etag"] != r.headers["etag"]


def test_el_paquete_de_datos_valida_con_frictionless(cliente, tmp_path):
    from frictionless import Package

    (tmp_path / "datapackage.json").write_bytes(cliente.get("/datos/datapackage.json").content)
    paquete = json.loads((tmp_path / "datapackage.json").read_text())
    assert paquete["licenses"][0]["name"] == "CC-BY-4.0"
    for recurso in paquete["resources"]:
        (tmp_path / recurso["path"]).write_bytes(cliente.get(f"/datos/{recurso['path']}").content)
    informe = Package(str(tmp_path / "datapackage.json")).validate()
    assert informe.valid, informe.flatten(["resourceName", "rowNumber", "fieldName", "type", "note"])[:10]
    assert len(paquete["resources"]) == 6


def test_un_paquete_con_un_caso_de_menos_no_valida(cliente, tmp_path):
    """El esquema lleva la regla (casos ≥ mínimo): un archivo que la violara no pasaría."""
    from frictionless import Package

    (tmp_path / "datapackage.json").write_bytes(cliente.get("/datos/datapackage.json").content)
    texto = cliente.get("/datos/valores-actuales.csv").content.decode()
    lineas = texto.splitlines()
    cabecera = lineas[0].split(",")
    columna = cabecera.index("casos")
    fila = next(i for i, l in enumerate(lineas) if l.split(",")[columna] == "100")
    partes = lineas[fila].split(",")
    partes[columna] = "9"
    lineas[fila] = ",".join(partes)
    (tmp_path / "valores-actuales.csv").write_text("\r\n".join(lineas) + "\r\n", encoding="utf-8")
    paquete = Package(str(tmp_path / "datapackage.json"))
    informe = paquete.get_resource("valores-actuales").validate()
    assert not informe.valid
    assert [e[2] for e in informe.flatten(["rowNumber", "fieldName", "type"])] == ["constraint-error"]


def test_el_reloj_inyectado_decide_el_mes_en_curso(catalogo):
    # 03:00 UTC del 1 de julio: en Lima aún es junio, así que el informe de julio no existe.
    portal = Portal(catalogo, FuenteFija(_series()), ConfigPortal(), lambda: instante("2026-07-01T03:00:00Z"))
    with TestClient(portal.app()) as c:
        assert c.get(f"/agencias/{A}/informe/2026-07").status_code == 404
        assert '/informe/2026-06">junio de 2026</a> (en curso)' in c.get(f"/agencias/{A}").text
        assert c.get(f"/agencias/{A}/informe/2025-06").status_code == 200


def test_una_pagina_armada_se_reusa_solo_mientras_la_lectura_sea_la_misma(catalogo):
    class Fija:
        def __init__(self):
            self.lectura = d.DatosAgencia(A, _series())

        async def datos(self, agencia_id):
            return self.lectura if agencia_id == A else d.DatosAgencia(agencia_id, [])

    fuente = Fija()
    portal = Portal(catalogo, fuente, ConfigPortal(), lambda: instante(AHORA))
    ruta = f"/agencias/{A}/servicios/{GRANDE}"
    with TestClient(portal.app()) as c:
        assert "120" in c.get(ruta).text
        # La misma lectura (misma versión): la página guardada, aunque sus series cambien por dentro.
        fuente.lectura.series[(GRANDE, "solicitudes", "30d", "")] = ind(A, GRANDE, "solicitudes", "30d", 345, 345)
        assert ">345<" not in c.get(ruta).text
        # Una lectura nueva de la API (otra versión): la página se arma de nuevo.
        fuente.lectura = d.DatosAgencia(A, [*_series(), ind(A, GRANDE, "solicitudes", "30d", 345, 345, hasta=H)])
        assert ">345<" in c.get(ruta).text
