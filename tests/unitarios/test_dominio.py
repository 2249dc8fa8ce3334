"""Núcleo puro del procesador: aportes por caso, ventanas e indicadores, con valores a mano."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from gpr.v1 import eventos_pb2 as pb
from servicios.procesador.dominio import ventanas
from servicios.procesador.dominio.casos import aplicar_evento
from servicios.procesador.dominio.indicadores import ValorIndicador, calcular

H, D = 3600, 86400


def ev(eid, tipo, t, caso="c1", plazo=None, fuente="f"):
    e = pb.Evento(evento_id=eid, fuente=fuente, tipo=tipo, agencia_id="a", servicio_id="s", caso_id=caso)
    e.ocurrido_en.seconds = t
    if plazo is not None:
        e.plazo_dias = plazo
    return e


def aplicar_todos(eventos, plazo_servicio=7):
    """Suma neta de aportes (medida, instante) tras aplicar los eventos en orden."""
    estado, total = None, Counter()
    for i, e in enumerate(eventos):
        r = aplicar_evento(estado, e, plazo_servicio, 0, i)
        estado = r.estado
        if not r.duplicado:
            for a in r.lote.aportes:
                total[(a.medida, a.instante)] += a.valor
    return +total


def test_entrega_en_plazo_exacto_cuenta_como_en_plazo():
    # 7 días exactos con plazo de 7 días: en plazo (≤).
    aportes = aplicar_todos([ev("1", pb.SOLICITUD_RECIBIDA, 1000), ev("2", pb.SERVICIO_ENTREGADO, 1000 + 7 * D)])
    assert aportes == Counter({("solicitudes", 1000): 1, ("plazo_casos", 1000 + 7 * D): 1,
                               ("plazo_buenos", 1000 + 7 * D): 1})


def test_un_segundo_tarde_no_cumple():
    aportes = aplicar_todos([ev("1", pb.SOLICITUD_RECIBIDA, 1000), ev("2", pb.SERVICIO_ENTREGADO, 1001 + 7 * D)])
    assert aportes == Counter({("solicitudes", 1000): 1, ("plazo_casos", 1001 + 7 * D): 1})


def test_plazo_propio_del_evento_sustituye_al_del_servicio():
    aportes = aplicar_todos([ev("1", pb.SOLICITUD_RECIBIDA, 0, plazo=1), ev("2", pb.SERVICIO_ENTREGADO, 2 * D)])
    assert ("plazo_buenos", 2 * D) not in aportes and aportes[("plazo_casos", 2 * D)] == 1


def test_entrega_anterior_que_llega_despues_mueve_el_aporte():
    # Primero se conoce una entrega tardía; luego llega otra anterior, que es la primera.
    aportes = aplicar_todos([
        ev("1", pb.SOLICITUD_RECIBIDA, 0),
        ev("2", pb.SERVICIO_ENTREGADO, 9 * D),
        ev("3", pb.SERVICIO_ENTREGADO, 2 * D),
    ])
    assert aportes == Counter({("solicitudes", 0): 1, ("plazo_casos", 2 * D): 1, ("plazo_buenos", 2 * D): 1})


def test_duplicado_devuelve_el_mismo_lote_con_su_secuencia_original():
    primero = aplicar_evento(None, ev("1", pb.SOLICITUD_RECIBIDA, 10), 7, 3, 100)
    otra_vez = aplicar_evento(primero.estado, ev("1", pb.SOLICITUD_RECIBIDA, 10), 7, 3, 999)
    assert otra_vez.duplicado and otra_vez.lote.secuencia == 100 and otra_vez.lote == primero.lote
    # Otro emisor con el mismo evento_id es otro evento.
    otro = aplicar_evento(primero.estado, ev("1", pb.SOLICITUD_RECIBIDA, 10, fuente="g"), 7, 3, 101)
    assert not otro.duplicado


CASOS = st.lists(
    st.tuples(st.sampled_from([pb.SOLICITUD_RECIBIDA, pb.SERVICIO_ENTREGADO]), st.integers(0, 20 * D)),
    min_size=1, max_size=6,
)


def referencia(pares, plazo=7):
    """Definición directa: recepción y entrega = las primeras; en plazo si la diferencia ≤ plazo."""
    recepciones = [t for tipo, t in pares if tipo == pb.SOLICITUD_RECIBIDA]
    entregas = [t for tipo, t in pares if tipo == pb.SERVICIO_ENTREGADO]
    esperado = Counter()
    for t in recepciones:
        esperado[("solicitudes", t)] += 1
    if recepciones and entregas:
        r, e = min(recepciones), min(entregas)
        esperado[("plazo_casos", e)] += 1
        if e - r <= plazo * D:
            esperado[("plazo_buenos", e)] += 1
    return +esperado


@settings(max_examples=300, deadline=None)
@given(CASOS, st.randoms(use_true_random=False), st.lists(st.integers(0, 5), max_size=4))
def test_orden_y_duplicados_no_cambian_los_aportes(pares, azar, repetir):
    eventos = [ev(str(i), tipo, t) for i, (tipo, t) in enumerate(pares)]
    con_duplicados = eventos + [eventos[i % len(eventos)] for i in repetir]
    azar.shuffle(con_duplicados)
    assert aplicar_todos(con_duplicados) == referencia(pares)


def test_rango_movil_alineado_a_la_hora():
    marca = 100 * H + 1234
    rango = ventanas.rango_movil(marca, 24 * H)
    assert (rango.primera_hora, rango.ultima_hora) == (77, 100)
    assert (rango.desde_s, rango.hasta_s) == (77 * H, marca)
    assert len(rango.horas()) == 24


@given(st.lists(st.dictionaries(st.sampled_from("abc"), st.integers(-5, 5)), max_size=6))
def test_suma_de_cubos_es_asociativa(cubos):
    mitad = len(cubos) // 2
    por_partes = ventanas.sumar([ventanas.sumar(cubos[:mitad]), ventanas.sumar(cubos[mitad:])])
    assert por_partes == ventanas.sumar(cubos)


def test_indicadores_con_denominador_vacio_no_tienen_valor():
    valores = {v.indicador: v for v in calcular({})}
    assert valores["cumplimiento_plazo"] == ValorIndicador("cumplimiento_plazo", None, 0)
    assert valores["solicitudes"].valor == 0.0  # un conteo de cero sí es un valor


def test_indicadores_a_mano():
    valores = {v.indicador: v for v in calcular({"solicitudes": 5, "plazo_casos": 4, "plazo_buenos": 3})}
    assert valores["cumplimiento_plazo"] == ValorIndicador("cumplimiento_plazo", 0.75, 4, 3)
    assert valores["solicitudes"].valor == 5 and valores["solicitudes"].muestras == 5
