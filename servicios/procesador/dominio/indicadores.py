"""Indicadores de una ventana a partir de la suma de sus cubos (definiciones en docs/indicadores.md).

Un indicador cuyo denominador está vacío no tiene valor (`valor is None`), nunca 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from servicios.comun import dinero
from servicios.procesador.dominio import medidas as m
from servicios.procesador.dominio.percentiles import percentiles, total


@dataclass(frozen=True)
class ValorIndicador:
    indicador: str
    valor: float | None
    muestras: int
    numerador: float = 0.0
    etapa_id: str = ""


def _proporcion(indicador: str, numerador: float, denominador: float, escala: float = 1.0) -> ValorIndicador:
    casos = round(denominador)
    if casos <= 0:
        return ValorIndicador(indicador, None, 0)
    return ValorIndicador(indicador, numerador / denominador * escala, casos, numerador)


def _importe_por_caso(indicador: str, diezmilesimas: float, denominador: float) -> ValorIndicador:
    """Un importe (suma exacta de enteros en diezmilésimas) por caso, en unidades de la moneda:
    una sola división, redondeada una vez (0,10 + 0,20 + 0,30 en 3 trámites da 0,20 justo)."""
    casos = round(denominador)
    if casos <= 0:
        return ValorIndicador(indicador, None, 0)
    return ValorIndicador(indicador, diezmilesimas / (denominador * dinero.ESCALA), casos,
                          diezmilesimas / dinero.ESCALA)


def _conteo(indicador: str, valor: float) -> ValorIndicador:
    n = round(valor)
    return ValorIndicador(indicador, float(n), n, float(n))


def _percentiles(indicador: str, histograma: Mapping[str, float], etapa_id: str = "") -> list[ValorIndicador]:
    n = total(histograma)
    p50, p90 = percentiles(histograma, (0.5, 0.9))
    muestras = n if n > 0 else 0
    return [ValorIndicador(f"{indicador}_p50", p50, muestras, etapa_id=etapa_id),
            ValorIndicador(f"{indicador}_p90", p90, muestras, etapa_id=etapa_id)]


def calcular_con_cuello(sumas: Mapping[str, float], vencidos: float,
                        etapas: Iterable[str] = ()) -> tuple[list[ValorIndicador], str]:
    """Todos los indicadores de la ventana y la etapa cuello de botella: la de mayor mediana de
    permanencia (empate: la primera alfabéticamente; sin datos de etapas, ""). Los histogramas
    se separan y cada mediana se calcula una sola vez (la publicación lo hace para cada
    ventana de cada servicio en cada pasada)."""
    simples, histogramas = m.separar_histogramas(sumas)
    s = simples.get
    entregas = s(m.ENTREGAS, 0.0)
    resultado = [
        _conteo("solicitudes", s(m.SOLICITUDES, 0.0)),
        _conteo("entregas", entregas),
        _proporcion("tasa_conclusion", s(m.CONCLUSION_BUENOS, 0.0), s(m.CONCLUSION_CASOS, 0.0)),
        _proporcion("cumplimiento_plazo", s(m.PLAZO_BUENOS, 0.0), s(m.PLAZO_CASOS, 0.0)),
        *_percentiles("tiempo_atencion", histogramas.get(m.ATENCION, {})),
        _conteo("casos_vencidos", vencidos),
        _proporcion("tasa_reproceso", s(m.REPROCESO, 0.0), s(m.CONCLUIDOS, 0.0)),
        _proporcion("satisfaccion_top2", s(m.ENCUESTAS_TOP2, 0.0), s(m.ENCUESTAS, 0.0)),
        _proporcion("satisfaccion_indice", s(m.SATISFACCION_SUMA, 0.0), s(m.ENCUESTAS, 0.0)),
        _proporcion("reclamos_por_mil", s(m.RECLAMOS, 0.0), entregas, escala=1000.0),
        _proporcion("adopcion_digital", s(m.ENTREGAS_DIGITALES, 0.0), entregas),
        _importe_por_caso("costo_por_tramite", s(m.COSTO_TOTAL, 0.0), entregas),
        _proporcion("tasa_error", s(m.ERRORES, 0.0), s(m.CONCLUIDOS, 0.0)),
    ]
    con_datos = {m.etapa_de(n) for n in histogramas if m.etapa_de(n) is not None}
    medianas = []
    for etapa in sorted(con_datos | set(etapas)):
        p50, p90 = _percentiles("tiempo_etapa", histogramas.get(m.etapa(etapa), {}), etapa)
        resultado.extend((p50, p90))
        if etapa in con_datos and p50.valor is not None:
            medianas.append((-p50.valor, etapa))
    return resultado, (min(medianas)[1] if medianas else "")
