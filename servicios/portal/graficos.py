"""Gráficos del portal: especificaciones Vega-Lite que `vl-convert-python` dibuja como SVG en
el servidor (sin red, sin JavaScript en el navegador, sin geometría escrita a mano).

La especificación solo lleva los meses cuyo valor se publica: un valor suprimido no llega al
gráfico ni como punto ni como dato oculto. La página pone el SVG en un `<img>` con su texto
alternativo y, al lado, la tabla de datos; dentro de un `<img>` el navegador no ejecuta nada
del SVG, y además se sirve con una CSP que lo prohíbe.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict

from servicios.comun.indicadores import CONTEO, INDICE, POR_MIL, PROPORCION, SEGUNDOS, es_moneda
from servicios.portal import dominio as d
from servicios.portal import formato

# Formato numérico de d3 en español: coma decimal y espacio fino como separador de miles.
_LOCALE_D3 = {"decimal": ",", "thousands": "\u00a0", "grouping": [3], "currency": ["", ""], "percent": "\u00a0%"}
ANCHO, ALTO = 560, 200
_COLOR_VALOR, _COLOR_META = "#1f4e79", "#a4262c"


def _escala(tendencia: d.Tendencia) -> tuple[float, str, str]:
    """(divisor, formato d3 del eje, título del eje) según la unidad de las series (de la API)."""
    unidad = tendencia.unidad
    if unidad == PROPORCION:
        return 1.0, ".0%", "Porcentaje"
    if unidad == INDICE:
        return 1.0, ",.2f", "Índice (0 a 1)"
    if unidad == SEGUNDOS:
        valores = [p.celda.valor for p in tendencia.publicados] + ([tendencia.meta.valor] if tendencia.meta else [])
        if max(valores, default=0) >= formato.DIA:
            return formato.DIA, ",.1f", "Días"
        if max(valores, default=0) >= formato.HORA:
            return formato.HORA, ",.1f", "Horas"
        return formato.MINUTO, ",.0f", "Minutos"
    if unidad == CONTEO:
        return 1.0, ",.0f", "Casos"
    if unidad == POR_MIL:
        return 1.0, ",.1f", "Por cada mil entregas"
    if es_moneda(unidad):
        return 1.0, ",.2f", unidad
    return 1.0, ",.2f", "Valor"


def especificacion(tendencia: d.Tendencia) -> dict:
    """Vega-Lite: línea de los meses publicados y, si hay meta, la línea de la meta."""
    divisor, formato_eje, titulo_eje = _escala(tendencia)
    # Los meses sin valor publicado van como nulos (la línea se corta ahí): nunca su número.
    valores = [{"mes": p.mes, "valor": p.celda.valor / divisor if p.celda.publicado else None}
               for p in tendencia.puntos]
    eje_x = {"field": "mes", "type": "ordinal", "title": None, "sort": [p.mes for p in tendencia.puntos],
             "scale": {"domain": [p.mes for p in tendencia.puntos]},
             "axis": {"labelAngle": -45, "labelExpr": "substring(datum.value, 5, 7) + '/' + substring(datum.value, 2, 4)"}}
    capas: list[dict] = [{
        "data": {"values": valores},
        "mark": {"type": "line", "point": {"filled": True, "size": 50}, "color": _COLOR_VALOR, "strokeWidth": 2,
                 "invalid": None},
        "encoding": {"x": eje_x,
                     "y": {"field": "valor", "type": "quantitative", "title": titulo_eje,
                           "axis": {"format": formato_eje}, "scale": {"zero": True}}},
    }]
    if tendencia.meta is not None:
        capas.append({
            "data": {"values": [{"meta": tendencia.meta.valor / divisor}]},
            "mark": {"type": "rule", "color": _COLOR_META, "strokeDash": [6, 4], "strokeWidth": 2},
            "encoding": {"y": {"field": "meta", "type": "quantitative"}},
        })
        capas.append({
            "data": {"values": [{"meta": tendencia.meta.valor / divisor, "texto": f"Meta {tendencia.texto_meta}"}]},
            "mark": {"type": "text", "align": "left", "dx": 4, "dy": -6, "color": _COLOR_META, "fontSize": 11},
            "encoding": {"y": {"field": "meta", "type": "quantitative"}, "x": {"value": 0},
                         "text": {"field": "texto", "type": "nominal"}},
        })
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "width": ANCHO, "height": ALTO, "background": "white",
        "config": {"font": "sans-serif", "axis": {"labelFontSize": 11, "titleFontSize": 12}, "view": {"stroke": None}},
        "layer": capas,
        "resolve": {"scale": {"y": "shared"}},
    }


def huella(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


class Dibujante:
    """Convierte especificaciones en SVG con un tope de memoria (las últimas `maximo`)."""

    def __init__(self, maximo: int = 512):
        self._maximo = maximo
        self._hechos: OrderedDict[str, str] = OrderedDict()
        self._cerrojo = threading.Lock()
        self.dibujados = 0

    def svg(self, spec: dict) -> str:
        clave = huella(spec)
        with self._cerrojo:
            hecho = self._hechos.get(clave)
            if hecho is not None:
                self._hechos.move_to_end(clave)
                return hecho
        import vl_convert

        # Sin URL base permitida: la especificación no puede pedir nada a la red.
        svg = vl_convert.vegalite_to_svg(spec, format_locale=_LOCALE_D3, allowed_base_urls=[])
        with self._cerrojo:
            self.dibujados += 1
            self._hechos[clave] = svg
            while len(self._hechos) > self._maximo:
                self._hechos.popitem(last=False)
        return svg
