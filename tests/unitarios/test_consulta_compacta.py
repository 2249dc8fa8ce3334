"""Vista compacta de la consulta sin Kafka: exposición /metrics, orden del listado y filtros (el historial, en test_consulta_vista.py).

La vista se alimenta con `_aplicar`, el mismo camino que los registros de Kafka. Lo esperado
se calcula aparte, desde los mensajes publicados, y la exposición en trozos se compara byte a
byte con la de `prometheus_client` sobre el mismo registro.
"""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_latest_om
from prometheus_client.parser import text_string_to_metric_families

from gpr.v1 import indicadores_pb2 as ipb
from servicios.comun.indicadores import clave_serie
from servicios.consulta.exportador import exposicion
from servicios.consulta.metricas import ColectorIndicadores
from servicios.consulta.api import Suscripcion
from servicios.consulta.peticiones import filtro_de, paginar
from servicios.consulta.vista import Vista

ETAPAS = ["", "recepcion", "revision"]
# Unidad de cada indicador del escenario, escrita a mano (la de costo_por_tramite, por agencia;
# la agencia "a-b" publica instantáneas de antes de que existiera el campo: sin unidad).
UNIDADES = {"solicitudes": "conteo", "cumplimiento_plazo": "proporcion", "tiempo_etapa_p90": "segundos",
            "satisfaccion_indice": "indice", "reclamos_por_mil": "por_mil"}
MONEDAS = {"a": "PEN", "sunarp": "PEN", 'raro"\\x': "USD", "a-b": ""}


def _indicador(a, s, i, v, e, valor, muestras, sin_datos=False, cuello="", actualizado=0, hasta=0, meta=None):
    unidad = "" if a == "a-b" else UNIDADES.get(i, MONEDAS.get(a))
    ind = ipb.Indicador(agencia_id=a, servicio_id=s, indicador=i, ventana=v, etapa_id=e, valor=valor,
                        muestras=muestras, sin_datos=sin_datos, numerador=valor * muestras,
                        etapa_cuello_botella=cuello, unidad=unidad)
    ind.actualizado_en.seconds = actualizado
    ind.hasta.seconds, ind.hasta.nanos = hasta, 500_000_000
    if meta is not None:
        ind.meta.CopyFrom(meta)
    return ind


def clave_orden(clave, indicador):
    """Orden del listado, del contrato: agencia, servicio, indicador, ventana, etapa (y la clave, que desempata)."""
    return (indicador.agencia_id, indicador.servicio_id, indicador.indicador, indicador.ventana, indicador.etapa_id,
            clave)


def _escenario(semilla=7):
    """Series variadas: con y sin datos, por etapa, con metas juzgadas y no, etiquetas con
    comillas, una agencia que es prefijo de otra ("a" y "a-b")."""
    azar = random.Random(semilla)
    registros = []
    for a in ("a", "a-b", "sunarp", 'raro"\\x'):
        for s in ("s1", "s-2"):
            for i in ("solicitudes", "cumplimiento_plazo", "tiempo_etapa_p90", "satisfaccion_indice",
                      "reclamos_por_mil", "costo_por_tramite"):
                for v in ("24h", "7d", "total", "mes:2026-02"):
                    for e in (ETAPAS[1:] if i.startswith("tiempo_etapa") else [""]):
                        meta = None
                        if v == "7d" and i in ("cumplimiento_plazo", "costo_por_tramite"):
                            meta = ipb.EvaluacionMeta(operador=">=", valor=0.9, muestra_minima=5,
                                                      estado=azar.choice([ipb.ESTADO_CUMPLIMIENTO_CUMPLE, ipb.ESTADO_CUMPLIMIENTO_INCUMPLE, ipb.ESTADO_CUMPLIMIENTO_SIN_DATOS]),
                                                      severidad="critica", equipo="equipo-" + a)
                        sin = azar.random() < 0.2
                        ind = _indicador(a, s, i, v, e, 0.0 if sin else round(azar.uniform(0, 2000), 3),
                                         0 if sin else azar.randint(1, 10**7), sin_datos=sin,
                                         cuello=azar.choice(["recepcion", "revision"]), actualizado=azar.randint(1, 10**9),
                                         hasta=azar.randint(1, 10**9), meta=meta)
                        registros.append((clave_serie(a, s, i, v, e), ind))
    return registros


def _vista(registros, lapidas=()):
    vista = Vista("sin-kafka:9092")
    for offset, (clave, ind) in enumerate(registros):
        vista._aplicar(clave.encode(), bytearray(ind.SerializeToString()), 0, offset)
    for clave in lapidas:
        vista._aplicar(clave.encode(), None, 0, 0)
    return vista


def _actuales(registros, lapidas=()):
    actuales = {}
    for clave, ind in registros:
        actuales[clave] = ind
    for clave in lapidas:
        actuales.pop(clave, None)
    return actuales


def _registro(vista):
    registro = CollectorRegistry()
    registro.register(ColectorIndicadores(vista))
    vista.cargada.set()
    return registro


@pytest.mark.parametrize("codificador", [generate_latest, generate_latest_om], ids=["texto-0.0.4", "openmetrics"])
def test_exposicion_en_trozos_es_la_de_prometheus_client(codificador):
    registros = _escenario()
    registro = _registro(_vista(registros, lapidas=[registros[3][0]]))
    assert b"".join(exposicion(registro, codificador)) == codificador(registro)


def test_metricas_son_exactamente_las_series_de_la_vista():
    registros = _escenario()
    # Una actualización y una lápida: cuenta solo el último valor de cada serie viva.
    registros.append((registros[0][0], _indicador("a", "s1", "solicitudes", "24h", "", 42.0, 42, cuello="revision")))
    lapidas = [registros[5][0]]
    vista = _vista(registros, lapidas)
    texto = b"".join(exposicion(_registro(vista), generate_latest)).decode()
    familias = {f.name: f for f in text_string_to_metric_families(texto)}

    def muestras(nombre):
        return {tuple(sorted(m.labels.items())): m.value for m in familias[nombre].samples}

    def etiquetas(i, *extra):
        return tuple(sorted({"agencia": i.agencia_id, "servicio": i.servicio_id, "indicador": i.indicador,
                             "ventana": i.ventana, "etapa": i.etapa_id, **dict(extra)}.items()))

    actuales = list(_actuales(registros, lapidas).values())
    assert len(vista) == len(actuales)
    # Valor y meta llevan la unidad de la serie; las demás familias, no.
    def unidad(i):
        return ("unidad", "" if i.agencia_id == "a-b" else UNIDADES.get(i.indicador, MONEDAS.get(i.agencia_id)))

    assert muestras("gpr_indicador_valor") == {etiquetas(i, unidad(i)): i.valor for i in actuales if not i.sin_datos}
    assert muestras("gpr_indicador_muestras") == {etiquetas(i): i.muestras for i in actuales}
    assert muestras("gpr_meta_valor") == {etiquetas(i, unidad(i)): i.meta.valor for i in actuales if i.HasField("meta")}
    assert {dict(e)["unidad"] for e in muestras("gpr_indicador_valor")} == {
        "", "conteo", "proporcion", "segundos", "indice", "por_mil", "PEN", "USD"}
    assert muestras("gpr_meta_cumplimiento") == {
        etiquetas(i, ("severidad", i.meta.severidad), ("equipo", i.meta.equipo)): 1 if i.meta.estado == ipb.ESTADO_CUMPLIMIENTO_CUMPLE else 0
        for i in actuales if i.HasField("meta") and i.meta.estado in (ipb.ESTADO_CUMPLIMIENTO_CUMPLE, ipb.ESTADO_CUMPLIMIENTO_INCUMPLE)}
    cuellos = {}
    for i in actuales:
        grupo = (i.agencia_id, i.servicio_id, i.ventana)
        if grupo not in cuellos or (i.actualizado_en.seconds, i.etapa_cuello_botella) > cuellos[grupo]:
            cuellos[grupo] = (i.actualizado_en.seconds, i.etapa_cuello_botella)
    assert muestras("gpr_servicio_cuello_botella_info") == {
        tuple(sorted({"agencia": a, "servicio": s, "ventana": v, "etapa": e}.items())): 1
        for (a, s, v), (_, e) in cuellos.items()}
    ultimos = {}
    for i in actuales:
        ultimos[i.agencia_id] = max(ultimos.get(i.agencia_id, 0.0), i.hasta.seconds + 0.5)
    assert muestras("gpr_eventos_ultimo_timestamp_seconds") == {(("agencia", a),): t for a, t in ultimos.items()}


def test_listado_en_orden_de_campos_y_paginas_completas():
    registros = _escenario()
    vista = _vista(registros)
    esperado = sorted(_actuales(registros).items(), key=lambda par: clave_orden(*par))
    ordenadas = vista.ordenadas()
    assert [par[0] for par in ordenadas] == [clave_orden(*par) for par in esperado]
    for filtro in (ipb.FiltroIndicadores(tamano_pagina=7), ipb.FiltroIndicadores(agencia_id="a", tamano_pagina=5),
                   ipb.FiltroIndicadores(agencia_id="a-b", ventana="7d", tamano_pagina=2),
                   ipb.FiltroIndicadores(agencia_id="zeta")):
        vistos, token = [], ""
        while True:
            filtro.token_pagina = token
            pagina = paginar(vista.ordenadas(), filtro)
            vistos += pagina.indicadores
            token = pagina.siguiente
            if not token:
                break
        assert vistos == [i for _, i in esperado
                          if (not filtro.agencia_id or i.agencia_id == filtro.agencia_id)
                          and (not filtro.ventana or i.ventana == filtro.ventana)]


FILTROS = [{}, {"agencia_id": "a"}, {"servicio_id": "s-2", "indicador": "solicitudes"},
           {"agencia_id": 'raro"\\x', "ventana": "mes:2026-02"}, {"indicador": "tiempo_etapa_p90", "ventana": "7d"},
           {"agencia_id": "a", "servicio_id": "s1", "indicador": "cumplimiento_plazo", "ventana": "24h"},
           {"agencia_id": "zeta"}]


@pytest.mark.parametrize("campos", FILTROS, ids=[str(f) for f in FILTROS])
def test_listado_estado_inicial_y_en_vivo_filtran_igual(campos):
    """Los tres caminos que filtran series (listado paginado; estado inicial de una suscripción,
    que es también el del tablero; flujo en vivo) entregan las que elige un filtro escrito aquí."""
    registros = _escenario()
    vista = _vista(registros)
    actuales = _actuales(registros)
    esperadas = sorted(clave for clave, i in actuales.items()
                       if all(getattr(i, campo) == valor for campo, valor in campos.items()))
    filtro = ipb.FiltroIndicadores(tamano_pagina=1000, **campos)
    listadas = paginar(vista.ordenadas(), filtro).indicadores
    iniciales = list(vista.indicadores(filtro_de(filtro)))
    suscripcion = Suscripcion(filtro_de(filtro), bufer=10_000)
    for indicador in actuales.values():
        suscripcion.ofrecer(indicador, (indicador.agencia_id, indicador.servicio_id, indicador.indicador,
                                        indicador.ventana))
    en_vivo = []
    while not suscripcion.cola.empty():
        en_vivo.append(suscripcion.cola.get_nowait())

    def claves(indicadores):
        return sorted(clave_serie(i.agencia_id, i.servicio_id, i.indicador, i.ventana, i.etapa_id) for i in indicadores)

    assert claves(listadas) == claves(iniciales) == claves(en_vivo) == esperadas
