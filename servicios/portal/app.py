"""La aplicación HTTP del portal (Starlette + Jinja2): páginas, gráficos, datos abiertos,
/salud y /metrics, con cabeceras de seguridad y páginas de error en español.

Solo traduce: lo que cada página publica lo decide `dominio` (puro) y lo que cada archivo
abierto contiene, `datos_abiertos` (puro). El «ahora» se lee una vez al empezar cada
petición del reloj inyectado y se pasa hacia abajo.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Protocol

from jinja2 import Environment, FileSystemLoader, select_autoescape
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from servicios.comun.catalogo import Agencia, Catalogo
from servicios.comun.indicadores import INDICADORES, VENTANAS_MOVILES
from servicios.portal import datos_abiertos as da
from servicios.portal import dominio as d
from servicios.portal import formato
from servicios.portal.cliente import ConsultaNoDisponible
from servicios.portal.config import ConfigPortal
from servicios.portal.graficos import Dibujante, especificacion
from servicios.portal.metricas import MetricasPortal

log = logging.getLogger(__name__)
AQUI = Path(__file__).resolve().parent
_MES = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
PAGINAS_GUARDADAS = 512

# Sin JavaScript en ninguna página: la CSP lo prohíbe del todo (ni inline ni externo).
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")
CSP_SVG = "default-src 'none'; frame-ancestors 'none'"
SEGURIDAD = (
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("permissions-policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()"),
    ("cross-origin-opener-policy", "same-origin"),
)


class Fuente(Protocol):
    async def datos(self, agencia_id: str) -> d.DatosAgencia: ...


class ParametroInvalido(HTTPException):
    def __init__(self, parametro: str, motivo: str):
        super().__init__(400, f"El parámetro «{parametro}» {motivo}.")


@dataclass(frozen=True)
class ResumenAgencia:
    agencia: Agencia
    servicios: int
    mes: str
    cumplimiento_mes: d.ConteoServicios | None
    cumplimiento_30d: d.ConteoServicios | None
    kpis: list[d.Agregado]
    hasta: datetime | None
    disponible: bool = True


def _hasta(datos: d.DatosAgencia, ventana: str) -> datetime | None:
    ultimo = max((i.hasta.seconds for (s, n, v, e), i in datos.series.items() if v == ventana), default=0)
    return datetime.fromtimestamp(ultimo, timezone.utc) if ultimo else None


class Portal:
    def __init__(self, catalogo: Catalogo, fuente: Fuente, cfg: ConfigPortal, reloj: Callable[[], datetime],
                 metricas: MetricasPortal | None = None, dibujante: Dibujante | None = None):
        self.catalogo = catalogo
        self.fuente = fuente
        self.cfg = cfg
        self.reloj = reloj
        self.regla = d.Regla(cfg.muestra_minima)
        self.metricas = metricas or MetricasPortal()
        self.dibujante = dibujante or Dibujante()
        self.detenido = False
        # Páginas ya armadas por (ruta, parámetros, versión de los datos, minuto del reloj):
        # mientras la caché de la API dé la misma lectura, la página es la misma.
        self._paginas: OrderedDict[tuple, bytes] = OrderedDict()
        self._css = (AQUI / "estaticos" / "portal.css").read_bytes()
        self._css_etag = '"' + hashlib.sha256(self._css).hexdigest()[:20] + '"'
        self._plantillas = Environment(
            loader=FileSystemLoader(AQUI / "plantillas"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True, lstrip_blocks=True,
        )
        self._plantillas.globals.update(
            formato=formato, d=d, regla=self.regla, INDICADORES=INDICADORES,
            VENTANAS=d.VENTANAS_EN_PALABRAS, catalogo=catalogo, css_version=self._css_etag.strip('"')[:10],
            nombre_etapa=d.nombre_etapa)
        self._plantillas.filters["fecha"] = formato.fecha_local

    # --- armado -------------------------------------------------------------------------

    def app(self, al_iniciar: Callable[[], Awaitable[None]] | None = None,
            al_detener: Callable[[], Awaitable[None]] | None = None) -> Cabeceras:
        rutas = [
            Route("/", self.inicio),
            Route("/agencias/{agencia}", self.agencia),
            Route("/agencias/{agencia}/servicios/{servicio}", self.servicio),
            Route("/agencias/{agencia}/servicios/{servicio}/graficos/{indicador}.svg", self.grafico),
            Route("/agencias/{agencia}/informe/{mes}", self.informe),
            Route("/metodologia", self.metodologia),
            Route("/datos/", self.datos_indice),
            Route("/datos/datapackage.json", self.datapackage),
            Route("/datos/{recurso}.{formato}", self.datos_archivo),
            Route("/estaticos/portal.css", self.css),
            Route("/salud", self.salud),
            Route("/metrics", self.metrics),
        ]

        async def vida(_app):
            if al_iniciar is not None:
                await al_iniciar()
            try:
                yield
            finally:
                self.detenido = True
                if al_detener is not None:
                    await al_detener()

        from contextlib import asynccontextmanager

        starlette = Starlette(routes=rutas, lifespan=asynccontextmanager(vida), exception_handlers={
            HTTPException: self._error_http,
            ConsultaNoDisponible: self._no_disponible,
            Exception: self._error_interno,
        })
        return Cabeceras(starlette, self.metricas)

    # --- utilidades -----------------------------------------------------------------------

    def _render(self, plantilla: str, codigo: int = 200, cabeceras: dict | None = None, **contexto) -> HTMLResponse:
        html = self._plantillas.get_template(plantilla).render(**contexto)
        respuesta = HTMLResponse(html, status_code=codigo, headers=cabeceras)
        if codigo == 200:
            respuesta.headers["cache-control"] = f"public, max-age={math.ceil(self.cfg.cache_s)}"
        else:
            respuesta.headers["cache-control"] = "no-store"
        return respuesta

    def _cacheada(self, clave: tuple | None, construir: Callable[[], HTMLResponse]) -> Response:
        """La página de `clave` ya armada, o la arma; `clave` None: no se guarda."""
        cuerpo = self._paginas.get(clave) if clave is not None else None
        if cuerpo is None:
            respuesta = construir()
            if clave is None or respuesta.status_code != 200:
                return respuesta
            cuerpo = respuesta.body
            self._paginas[clave] = cuerpo
            while len(self._paginas) > PAGINAS_GUARDADAS:
                self._paginas.popitem(last=False)
        else:
            self._paginas.move_to_end(clave)
        return HTMLResponse(cuerpo, headers={"cache-control": f"public, max-age={math.ceil(self.cfg.cache_s)}"})

    def _agencia(self, request: Request) -> Agencia:
        agencia = self.catalogo.agencias.get(request.path_params["agencia"])
        if agencia is None:
            raise HTTPException(404, "No conocemos esa entidad.")
        return agencia

    def _servicio(self, request: Request, agencia: Agencia):
        servicio = self.catalogo.servicio(agencia.id, request.path_params["servicio"])
        if servicio is None:
            raise HTTPException(404, "Esa entidad no tiene ese servicio.")
        return servicio

    @staticmethod
    def _parametro(request: Request, nombre: str, validos: tuple[str, ...] | None = None) -> str | None:
        valores = request.query_params.getlist(nombre)
        if not valores:
            return None
        if len(valores) > 1:
            raise ParametroInvalido(nombre, "aparece más de una vez")
        valor = valores[0]
        if validos is not None and valor not in validos:
            raise ParametroInvalido(nombre, f"debe ser uno de: {', '.join(validos)}")
        return valor

    # --- páginas --------------------------------------------------------------------------

    async def inicio(self, request: Request) -> Response:
        ahora = self.reloj()
        agencias = list(self.catalogo.agencias.values())
        resultados = await asyncio.gather(*(self.fuente.datos(a.id) for a in agencias), return_exceptions=True)
        for r in resultados:
            if isinstance(r, BaseException) and not isinstance(r, ConsultaNoDisponible):
                raise r
        if agencias and all(isinstance(r, ConsultaNoDisponible) for r in resultados):
            raise resultados[0]
        disponibles = not any(isinstance(r, ConsultaNoDisponible) for r in resultados)
        clave = ("inicio", _minuto(ahora), tuple(r.version for r in resultados)) if disponibles else None
        return self._cacheada(clave, lambda: self._inicio(ahora, agencias, resultados))

    def _inicio(self, ahora: datetime, agencias: list[Agencia], resultados: list) -> HTMLResponse:
        resumenes = []
        for agencia, datos in zip(agencias, resultados):
            mes = d.mes_de(ahora, agencia.zona_horaria)
            servicios = self.catalogo.servicios_de(agencia.id)
            if isinstance(datos, ConsultaNoDisponible):
                resumenes.append(ResumenAgencia(agencia, len(servicios), mes, None, None, [], None, disponible=False))
                continue
            resumenes.append(ResumenAgencia(
                agencia, len(servicios), mes,
                d.contar_servicios(datos, servicios, d.ventana_mes(mes), self.regla),
                d.contar_servicios(datos, servicios, d.VENTANA_RECIENTE, self.regla),
                [d.agregado(datos, servicios, n, d.VENTANA_RECIENTE, self.regla)
                 for n in d.KPI_CIUDADANOS],
                _hasta(datos, d.VENTANA_RECIENTE)))
        return self._render("inicio.html", resumenes=resumenes, ahora=ahora)

    async def agencia(self, request: Request) -> Response:
        agencia = self._agencia(request)
        ahora = self.reloj()
        datos = await self.fuente.datos(agencia.id)
        return self._cacheada(("agencia", agencia.id, _minuto(ahora), datos.version),
                              lambda: self._pagina_agencia(agencia, datos, ahora))

    def _pagina_agencia(self, agencia: Agencia, datos: d.DatosAgencia, ahora: datetime) -> HTMLResponse:
        mes = d.mes_de(ahora, agencia.zona_horaria)
        meses = d.meses_hasta(mes)
        servicios = []
        for servicio in self.catalogo.servicios_de(agencia.id):
            servicios.append({
                "servicio": servicio,
                "metas": d.filas_metas(datos, servicio.id, self.regla),
                "estado_30d": d.estado_metas(datos, servicio.id, d.VENTANA_RECIENTE, self.regla),
                "estado_mes": d.estado_metas(datos, servicio.id, d.ventana_mes(mes), self.regla),
                "tendencia": d.tendencia(datos, servicio.id, d.INDICADOR_TITULAR, meses, self.regla),
                "cuello": d.cuello_en_palabras(datos, servicio.id, d.VENTANA_RECIENTE, self.regla),
            })
        return self._render("agencia.html", agencia=agencia, servicios=servicios, mes=mes,
                            meses=list(reversed(meses)), hasta=_hasta(datos, d.VENTANA_RECIENTE))

    async def servicio(self, request: Request) -> Response:
        agencia = self._agencia(request)
        servicio = self._servicio(request, agencia)
        ventana = self._parametro(request, "ventana", d.VENTANAS_ACTUALES) or d.VENTANA_RECIENTE
        ahora = self.reloj()
        datos = await self.fuente.datos(agencia.id)
        return self._cacheada(("servicio", agencia.id, servicio.id, ventana, _minuto(ahora), datos.version),
                              lambda: self._pagina_servicio(agencia, servicio, ventana, datos, ahora))

    def _pagina_servicio(self, agencia: Agencia, servicio, ventana: str, datos: d.DatosAgencia,
                         ahora: datetime) -> HTMLResponse:
        meses = d.meses_hasta(d.mes_de(ahora, agencia.zona_horaria))
        return self._render(
            "servicio.html", agencia=agencia, servicio=servicio, ventana=ventana,
            filas=[d.fila(datos, servicio.id, n, ventana, self.regla) for n in d.INDICADORES_SERVICIO],
            etapas=d.filas_etapas(datos, servicio, ventana, self.regla),
            cuello=d.cuello_en_palabras(datos, servicio.id, ventana, self.regla),
            tendencias=[d.tendencia(datos, servicio.id, n, meses, self.regla) for n in d.INDICADORES_SERVICIO],
            hasta=_hasta(datos, ventana))

    async def grafico(self, request: Request) -> Response:
        agencia = self._agencia(request)
        servicio = self._servicio(request, agencia)
        nombre = request.path_params["indicador"]
        if nombre not in d.INDICADORES_SERVICIO:
            raise HTTPException(404, "No hay un gráfico con ese nombre.")
        ahora = self.reloj()
        datos = await self.fuente.datos(agencia.id)
        meses = d.meses_hasta(d.mes_de(ahora, agencia.zona_horaria))
        spec = especificacion(d.tendencia(datos, servicio.id, nombre, meses, self.regla))
        svg = await asyncio.to_thread(self.dibujante.svg, spec)
        return self._condicional(request, svg.encode("utf-8"), "image/svg+xml", datos.actualizado_en,
                                 {"content-security-policy": CSP_SVG})

    async def informe(self, request: Request) -> Response:
        agencia = self._agencia(request)
        mes = request.path_params["mes"]
        ahora = self.reloj()
        actual = d.mes_de(ahora, agencia.zona_horaria)
        meses = d.meses_hasta(actual)
        if not _MES.match(mes) or mes not in meses:
            raise HTTPException(404, f"No hay informe de ese mes: los informes cubren de "
                                     f"{formato.mes_largo(meses[0])} a {formato.mes_largo(meses[-1])}.")
        datos = await self.fuente.datos(agencia.id)
        return self._cacheada(("informe", agencia.id, mes, _minuto(ahora), datos.version),
                              lambda: self._pagina_informe(agencia, mes, actual, datos, ahora))

    def _pagina_informe(self, agencia: Agencia, mes: str, actual: str, datos: d.DatosAgencia,
                        ahora: datetime) -> HTMLResponse:
        servicios = [d.informe_servicio(datos, s, mes, self.regla)
                     for s in self.catalogo.servicios_de(agencia.id)]
        resultados = [s.estado.resultado for s in servicios]
        return self._render("informe.html", agencia=agencia, mes=mes, anterior=d.mes_anterior(mes),
                            en_curso=mes == actual, servicios=servicios, ahora=ahora,
                            cumplen=resultados.count(d.CUMPLE), incumplen=resultados.count(d.INCUMPLE),
                            sin_juzgar=resultados.count(d.NO_JUZGADO), hasta=_hasta(datos, d.ventana_mes(mes)))

    async def metodologia(self, request: Request) -> Response:
        monedas = sorted({a.moneda for a in self.catalogo.agencias.values()})
        return self._cacheada(("metodologia",), lambda: self._render(
            "metodologia.html", monedas=monedas, cache_s=self.cfg.cache_s, ventanas_moviles=list(VENTANAS_MOVILES)))

    # --- datos abiertos -------------------------------------------------------------------

    async def datos_indice(self, request: Request) -> Response:
        titulo, url = da.LICENCIAS.get(self.cfg.licencia, (self.cfg.licencia, self.cfg.licencia_url))
        return self._cacheada(("datos",), lambda: self._render("datos.html", recursos=da.RECURSOS, licencia=self.cfg.licencia,
                            licencia_titulo=titulo, licencia_url=self.cfg.licencia_url or url,
                            esquemas=da.esquemas(self.regla.minimo)))

    async def datapackage(self, request: Request) -> Response:
        creado = self._creado()
        cuerpo = JSONResponse(da.paquete(self.regla.minimo, self.cfg.licencia, creado, self.cfg.licencia_url)).body
        return self._condicional(request, cuerpo, "application/json", creado)

    def _creado(self) -> datetime:
        # La fecha del paquete es la del catálogo del código, no la de los datos: el
        # descriptor solo cambia cuando cambian el esquema o la licencia.
        return datetime.fromtimestamp(int(Path(da.__file__).stat().st_mtime), timezone.utc)

    async def datos_archivo(self, request: Request) -> Response:
        recurso, extension = request.path_params["recurso"], request.path_params["formato"]
        if recurso not in da.RECURSOS or extension not in da.FORMATOS:
            raise HTTPException(404, "No publicamos un archivo con ese nombre.")
        agencia_id = self._parametro(request, "agencia")
        if agencia_id is not None and agencia_id not in self.catalogo.agencias:
            raise ParametroInvalido("agencia", "no es una entidad conocida (vea /datos/)")
        esquema = da.esquemas(self.regla.minimo)[recurso]
        if recurso == da.FICHAS:
            filas, modificado = da.filas_fichas(), self._creado()
        else:
            ahora = self.reloj()
            agencias = [self.catalogo.agencias[agencia_id]] if agencia_id else list(self.catalogo.agencias.values())
            todos = await asyncio.gather(*(self.fuente.datos(a.id) for a in agencias))
            if recurso == da.ACTUALES:
                filas = da.filas_actuales(self.catalogo, todos, self.regla)
            else:
                meses = {a.id: d.meses_hasta(d.mes_de(ahora, a.zona_horaria)) for a in agencias}
                filas = da.filas_mensuales(self.catalogo, todos, self.regla, meses)
            fechas = [x.actualizado_en for x in todos if x.actualizado_en is not None]
            modificado = max(fechas) if fechas else ahora
        if extension == "csv":
            return self._condicional(request, da.a_csv(esquema, filas), "text/csv; charset=utf-8; header=present",
                                     modificado)
        return self._condicional(request, da.a_json(esquema, filas), "application/json", modificado)

    def _condicional(self, request: Request, cuerpo: bytes, tipo: str, modificado: datetime | None,
                     extra: dict | None = None) -> Response:
        etag = '"' + hashlib.sha256(cuerpo).hexdigest()[:32] + '"'
        cabeceras = {"etag": etag, "cache-control": f"public, max-age={math.ceil(self.cfg.cache_s)}", **(extra or {})}
        if modificado is not None:
            cabeceras["last-modified"] = format_datetime(modificado.astimezone(timezone.utc), usegmt=True)
        if _no_modificado(request, etag, modificado):
            return Response(status_code=304, headers=cabeceras)
        return Response(cuerpo, media_type=tipo, headers=cabeceras)

    async def css(self, request: Request) -> Response:
        cabeceras = {"etag": self._css_etag, "cache-control": "public, max-age=3600"}
        if request.headers.get("if-none-match") == self._css_etag:
            return Response(status_code=304, headers=cabeceras)
        return Response(self._css, media_type="text/css", headers=cabeceras)

    # --- operación ------------------------------------------------------------------------

    async def salud(self, request: Request) -> Response:
        if self.detenido:
            return JSONResponse({"estado": "deteniendo"}, status_code=503, headers={"cache-control": "no-store"})
        return JSONResponse({"estado": "ok"}, headers={"cache-control": "no-store"})

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.metricas.registro), media_type=CONTENT_TYPE_LATEST,
                        headers={"cache-control": "no-store"})

    # --- errores --------------------------------------------------------------------------

    async def _error_http(self, request: Request, error: HTTPException) -> Response:
        titulos = {400: "Petición inválida", 404: "Página no encontrada", 405: "Método no permitido"}
        mensaje = error.detail if error.status_code in (400, 404) and isinstance(error.detail, str) else ""
        if error.status_code == 404 and not mensaje.endswith("."):
            mensaje = "No encontramos la página que busca."
        cabeceras = dict(error.headers or {})
        return self._render("error.html", codigo=error.status_code, cabeceras=cabeceras,
                            titulo=titulos.get(error.status_code, "Error"), mensaje=mensaje)

    async def _no_disponible(self, request: Request, error: Exception) -> Response:
        return self._render("error.html", codigo=503, cabeceras={"retry-after": str(max(1, math.ceil(self.cfg.cache_s)))},
                            titulo="Datos no disponibles por un momento",
                            mensaje="No pudimos leer los indicadores. Vuelva a intentarlo en unos segundos.")

    async def _error_interno(self, request: Request, error: Exception) -> Response:
        log.error("error al atender %s: %r", request.url.path[:200], error, exc_info=error)
        return self._render("error.html", codigo=500, titulo="Error del portal",
                            mensaje="Algo falló de nuestro lado. Vuelva a intentarlo más tarde.")


def _minuto(ahora: datetime) -> str:
    # Las páginas usan del reloj el mes y, a lo sumo, la hora y el minuto.
    return ahora.strftime("%Y-%m-%dT%H:%M")


def _no_modificado(request: Request, etag: str, modificado: datetime | None) -> bool:
    si_no = request.headers.get("if-none-match")
    if si_no is not None:
        return etag in [e.strip() for e in si_no.split(",")] or si_no.strip() == "*"
    desde = request.headers.get("if-modified-since")
    if desde and modificado is not None:
        try:
            return modificado.replace(microsecond=0) <= parsedate_to_datetime(desde)
        except (TypeError, ValueError):
            return False
    return False


class Cabeceras:
    """ASGI puro por fuera de todo: cabeceras de seguridad en cada respuesta (también en las
    de error) y métricas por plantilla de ruta (no por URL: la cardinalidad queda acotada)."""

    def __init__(self, app, metricas: MetricasPortal):
        self.app = app
        self.metricas = metricas

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        inicio = time.perf_counter()
        codigo = 500

        async def enviar(mensaje) -> None:
            nonlocal codigo
            if mensaje["type"] == "http.response.start":
                codigo = mensaje["status"]
                cabeceras = MutableHeaders(scope=mensaje)
                for nombre, valor in SEGURIDAD:
                    if nombre not in cabeceras:
                        cabeceras[nombre] = valor
                # Solo lectura: nada de cookies, venga de donde venga.
                if "set-cookie" in cabeceras:
                    del cabeceras["set-cookie"]
            await send(mensaje)

        try:
            await self.app(scope, receive, enviar)
        finally:
            ruta = scope.get("route")
            plantilla = getattr(ruta, "path", None) or "otra"
            metodo = scope.get("method", "")
            metodo = metodo if metodo in ("GET", "HEAD") else "otro"
            self.metricas.peticiones.labels(plantilla, metodo, str(codigo)).inc()
            self.metricas.latencia.labels(plantilla).observe(time.perf_counter() - inicio)
