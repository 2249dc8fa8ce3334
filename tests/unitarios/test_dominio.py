"""Núcleo puro del procesador: aportes por caso, ventanas, percentiles, vencimientos e
indicadores, con valores calculados a mano."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from gpr.v1 import eventos_pb2 as pb
from gpr.v1 import interno_pb2 as interno
from servicios.procesador.dominio import vencimientos, ventanas
from apoyo.caso_unico import aplicar_evento
from servicios.procesador.dominio.casos import Caso, aportes_de, cambios_de
from servicios.procesador.dominio.indicadores import ValorIndicador, calcular_con_cuello
from servicios.procesador.dominio.percentiles import clave, percentil, percentiles

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
        # Guardado y leído entre eventos, como entre dos lotes de la etapa por caso.
        estado = interno.EstadoCaso.FromString(r.estado.SerializeToString())
        if not r.duplicado:
            for medida, instante, valor in aportes_de(r.lote):
                total[(medida, instante)] += valor
    return Counter({k: v for k, v in total.items() if v})


def solo(aportes, *medidas):
    return Counter({k: v for k, v in aportes.items() if k[0] in medidas})


def _calcular(sumas, vencidos, etapas=()):
    return calcular_con_cuello(sumas, vencidos, etapas)[0]


def test_entrega_en_plazo_exacto_cuenta_como_en_plazo():
    # 7 días exactos con plazo de 7 días: en plazo (≤).
    aportes = aplicar_todos([ev("1", pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, 1000), ev("2", pb.TIPO_EVENTO_SERVICIO_ENTREGADO, 1000 + 7 * D)])
    assert solo(aportes, "solicitudes", "plazo_casos", "plazo_buenos", "entregas") == Counter({
        ("solicitudes", 1000): 1, ("plazo_casos", 1000 + 7 * D): 1,
        ("plazo_buenos", 1000 + 7 * D): 1, ("entregas", 1000 + 7 * D): 1})
    # Concluido justo al cumplir el plazo: nunca estuvo vencido.
    assert solo(aportes, "vencidos") == Counter()


def test_un_segundo_tarde_no_cumple():
    aportes = aplicar_todos([ev("1", pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, 1000), ev("2", pb.TIPO_EVENTO_SERVICIO_ENTREGADO, 1001 + 7 * D)])
    assert solo(aportes, "plazo_casos", "plazo_buenos") == Counter({("plazo_casos", 1001 + 7 * D): 1})
    # Su edad supera el plazo en 1000+7d+1, el mismo segundo en que concluye: nunca vencido.
    assert solo(aportes, "vencidos") == Counter()
    aportes = aplicar_todos([ev("1", pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, 1000), ev("2", pb.TIPO_EVENTO_SERVICIO_ENTREGADO, 1002 + 7 * D)])
    assert solo(aportes, "vencidos") == Counter({("vencidos", 1001 + 7 * D): 1, ("vencidos", 1002 + 7 * D): -1})


def test_caso_abierto_vence_al_superar_el_plazo():
    aportes = aplicar_todos([ev("1", pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, 50, plazo=2)])
    assert solo(aportes, "vencidos", "conclusion_casos", "conclusion_buenos") == Counter({
        ("vencidos", 50 + 2 * D + 1): 1, ("conclusion_casos", 50): 1})


def test_plazo_propio_del_evento_sustituye_al_del_servicio():
    aportes = aplicar_todos([ev("1", pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, 0, plazo=1), ev("2", pb.TIPO_EVENTO_SERVICIO_ENTREGADO, 2 * D)])
    assert ("plazo_buenos", 2 * D) not in aportes and aportes[("plazo_casos", 2 * D)] == 1


def test_entrega_anterior_que_llega_despues_mueve_el_aporte():
    # Primero se conoce una entrega tardía; luego llega otra anterior, que es la primera.
    aportes = aplicar_todos([
        ev("1", pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, 0),
        ev("2", pb.TIPO_EVENTO_SERVICIO_ENTREGADO, 9 * D),
        ev("3", pb.TIPO_EVENTO_SERVICIO_ENTREGADO, 2 * D),
    ])
    assert solo(aportes, "solicitudes", "plazo_casos", "plazo_buenos", "entregas", "concluidos") == Counter({
        ("solicitudes", 0): 1, ("plazo_casos", 2 * D): 1, ("plazo_buenos", 2 * D): 1,
        ("entregas", 2 * D): 1, ("concluidos", 2 * D): 1})


def test_reintento_resultado_de_la_conclusion_y_etapa_sin_inicio():
    inicio, fin = ev("2", pb.TIPO_EVENTO_ETAPA_INICIADA, 20), ev("3", pb.TIPO_EVENTO_ETAPA_COMPLETADA, 80)
    inicio.etapa_id = fin.etapa_id = "revision"
    fin.intento = 2  # completa el intento 2, que nunca empezó: no hay permanencia que medir
    cierre = ev("4", pb.TIPO_EVENTO_CASO_CERRADO, 100)
    cierre.resultado = pb.RESULTADO_DESISTIDO
    aportes = aplicar_todos([ev("1", pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, 10), inicio, fin, cierre])
    assert solo(aportes, "reproceso", "errores", "concluidos", "conclusion_buenos") == Counter({
        ("reproceso", 100): 1, ("errores", 100): 1, ("concluidos", 100): 1, ("conclusion_buenos", 10): 1})
    assert not [k for k in aportes if k[0].startswith("etapa:")]


def test_permanencia_en_etapa():
    inicio, fin = ev("2", pb.TIPO_EVENTO_ETAPA_INICIADA, 20), ev("3", pb.TIPO_EVENTO_ETAPA_COMPLETADA, 3620)
    inicio.etapa_id = fin.etapa_id = "revision"
    aportes = aplicar_todos([fin, inicio])
    assert aportes == Counter({(f"etapa:revision#{clave(3600)}", 3620): 1})


def test_duplicado_devuelve_el_mismo_lote_con_su_secuencia_original():
    primero = aplicar_evento(None, ev("1", pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, 10), 7, 3, 100)
    otra_vez = aplicar_evento(primero.estado, ev("1", pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, 10), 7, 3, 999)
    assert otra_vez.duplicado and otra_vez.lote.secuencia == 100 and otra_vez.lote == primero.lote
    # Otro emisor con el mismo evento_id es otro evento.
    otro = aplicar_evento(primero.estado, ev("1", pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, 10, fuente="g"), 7, 3, 101)
    assert not otro.duplicado


_TIPOS_DEL_CASO = [pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, pb.TIPO_EVENTO_SERVICIO_ENTREGADO, pb.TIPO_EVENTO_CASO_CERRADO, pb.TIPO_EVENTO_CASO_DEVUELTO,
                   pb.TIPO_EVENTO_ETAPA_INICIADA, pb.TIPO_EVENTO_ETAPA_COMPLETADA, pb.TIPO_EVENTO_ENCUESTA_RESPONDIDA, pb.TIPO_EVENTO_COSTO_REGISTRADO]


@st.composite
def eventos_de_un_caso(draw):
    eventos = []
    for i in range(draw(st.integers(1, 12))):
        tipo = draw(st.sampled_from(_TIPOS_DEL_CASO))
        e = ev(str(i), tipo, draw(st.integers(1, 20)) * H, plazo=draw(st.sampled_from([None, 1, 3])))
        if tipo in (pb.TIPO_EVENTO_ETAPA_INICIADA, pb.TIPO_EVENTO_ETAPA_COMPLETADA):
            e.etapa_id, e.intento = draw(st.sampled_from(["a", "b"])), draw(st.integers(0, 2))
        elif tipo == pb.TIPO_EVENTO_ENCUESTA_RESPONDIDA:
            e.satisfaccion.puntaje, e.satisfaccion.escala_max = draw(st.integers(1, 5)), 5
        elif tipo == pb.TIPO_EVENTO_COSTO_REGISTRADO:
            e.costo.unidades = draw(st.integers(0, 100))
        elif tipo == pb.TIPO_EVENTO_SERVICIO_ENTREGADO:
            e.canal = draw(st.sampled_from([pb.CANAL_WEB, pb.CANAL_PRESENCIAL]))
        eventos.append(e)
    return eventos


@given(eventos_de_un_caso(), st.sampled_from([1, 7]), st.sampled_from([2, 30]))
def test_repetido_reconstruye_el_lote_de_la_primera_vez(eventos, plazo_al_crear, plazo_despues):
    """El lote de un repetido se reconstruye desde los eventos guardados: debe ser idéntico
    al que salió la primera vez, aunque el catálogo cambie el plazo entretanto."""
    estado, primeros = None, []
    for i, e in enumerate(eventos):
        r = aplicar_evento(estado, e, plazo_al_crear if estado is None else plazo_despues, i % 3, 1000 + i)
        estado = interno.EstadoCaso.FromString(r.estado.SerializeToString())
        primeros.append(r.lote)
    for e, primero in zip(eventos, primeros):
        otra_vez = aplicar_evento(estado, e, plazo_despues, 9, 99999)
        assert otra_vez.duplicado and otra_vez.lote == primero


def test_canal_y_resultado_vuelven_a_cero_entre_lotes():
    """Entregas anteriores sin canal ni resultado, cada una en otro lote (estado guardado y
    leído), sustituyen a la primera: la entrega digital y el error se retiran y no vuelven
    a restarse cuando la siguiente recalcula lo que había antes."""
    primera = ev("e1", pb.TIPO_EVENTO_SERVICIO_ENTREGADO, 100 * H)
    primera.canal, primera.resultado = pb.CANAL_WEB, pb.RESULTADO_ERROR
    aportes = aplicar_todos([primera, ev("e0", pb.TIPO_EVENTO_SERVICIO_ENTREGADO, 50 * H), ev("e00", pb.TIPO_EVENTO_SERVICIO_ENTREGADO, 20 * H)])
    assert solo(aportes, "entregas", "entregas_digitales", "errores", "concluidos") == Counter({
        ("entregas", 20 * H): 1, ("concluidos", 20 * H): 1})


def test_rango_movil_alineado_a_la_hora():
    marca = 100 * H + 1234
    rango = ventanas.rango_movil(marca, 24 * H)
    assert (rango.primera_hora, rango.ultima_hora) == (77, 100)
    assert (rango.desde_s, rango.hasta_s) == (77 * H, marca)
    assert len(rango.horas()) == 24


def test_meses_en_la_zona_de_la_agencia():
    # 2026-03-01 00:00 en Lima (UTC−5) es 2026-03-01 05:00 UTC = 1772341200.
    assert ventanas.limites_mes("2026-03", "America/Lima") == (1772341200, 1772341200 + 31 * D)
    assert ventanas.mes_de(1772341200 - 1, "America/Lima") == "2026-02"
    assert ventanas.mes_de(1772341200, "America/Lima") == "2026-03"
    assert ventanas.meses_hasta("2026-02", 3) == ["2025-12", "2026-01", "2026-02"]


@given(st.lists(st.dictionaries(st.sampled_from("abc"), st.integers(-5, 5)), max_size=6))
def test_suma_de_cubos_es_asociativa(cubos):
    mitad = len(cubos) // 2
    por_partes = ventanas.sumar([ventanas.sumar(cubos[:mitad]), ventanas.sumar(cubos[mitad:])])
    assert por_partes == ventanas.sumar(cubos)


@given(st.lists(st.tuples(st.integers(0, 200 * D), st.sampled_from([1, -1])), max_size=30),
       st.lists(st.integers(0, 200 * D), max_size=4))
def test_linea_de_vencimientos_plegada_da_lo_mismo_que_sin_plegar(deltas, plegados):
    """Plegar en cualquier punto (con deltas que llegan antes y después) no cambia los cierres de mes."""
    zona = "America/Lima"
    plegada, simple = interno.LineaVencimientos(), interno.LineaVencimientos()
    puntos = sorted(plegados)
    for i, (t, d) in enumerate(deltas):
        vencimientos.aplicar(plegada, t, d, zona)
        vencimientos.aplicar(simple, t, d, zona)
        if puntos and i == len(deltas) // 2:
            for p in puntos:
                vencimientos.plegar(plegada, p, zona, meses_retenidos=100)
    marca = 200 * D
    for mes in ventanas.meses_hasta(ventanas.mes_de(marca, zona), 8):
        fin = min(ventanas.limites_mes(mes, zona)[1] - 1, marca)
        a_mano = sum(d for t, d in deltas if t <= fin)
        assert vencimientos.valor_al_cierre(plegada, mes, zona, marca) == a_mano
        assert vencimientos.valor_al_cierre(simple, mes, zona, marca) == a_mano


def test_indicadores_con_denominador_vacio_no_tienen_valor():
    valores = {(v.indicador, v.etapa_id): v for v in _calcular({}, 0, etapas=["a"])}
    for nombre in ("cumplimiento_plazo", "tasa_conclusion", "tiempo_atencion_p50", "reclamos_por_mil",
                   "costo_por_tramite", "satisfaccion_indice", "tasa_error", "adopcion_digital"):
        assert valores[(nombre, "")].valor is None and valores[(nombre, "")].muestras == 0
    assert valores[("tiempo_etapa_p90", "a")].valor is None
    assert valores[("solicitudes", "")].valor == 0.0  # un conteo de cero sí es un valor


def test_indicadores_a_mano():
    sumas = {"solicitudes": 5, "plazo_casos": 4, "plazo_buenos": 3, "entregas": 4, "entregas_digitales": 1,
             "reclamos": 2, "costo_total": 1_000_000.0, "encuestas": 4, "encuestas_top2": 3, "satisfaccion_suma": 2.5}
    valores = {v.indicador: v for v in _calcular(sumas, 7)}
    assert valores["cumplimiento_plazo"] == ValorIndicador("cumplimiento_plazo", 0.75, 4, 3)
    assert valores["solicitudes"].valor == 5 and valores["solicitudes"].muestras == 5
    assert valores["reclamos_por_mil"].valor == 500.0
    assert valores["costo_por_tramite"].valor == 25.0  # 100 unidades (en diezmilésimas) en 4 entregas
    assert valores["adopcion_digital"].valor == 0.25
    assert valores["satisfaccion_top2"].valor == 0.75 and valores["satisfaccion_indice"].valor == 0.625
    assert valores["casos_vencidos"].valor == 7


def test_percentil_rango_mas_cercano_con_error_relativo_acotado():
    histograma = Counter(clave(x) for x in [10, 20, 30, 40, 50, 60, 70, 80, 90, 100])
    # Rango más cercano: p50 → 5.º valor (50); p90 → 9.º (90); error relativo ≤ 1 %.
    assert abs(percentil(histograma, 0.5) - 50) <= 0.5
    assert abs(percentil(histograma, 0.9) - 90) <= 0.9
    assert percentil(Counter({clave(0): 3}), 0.5) == 0.0
    assert percentil({}, 0.5) is None


def test_cuello_de_botella_mayor_mediana_y_empate_alfabetico():
    def cuello(**histogramas):
        # Como suma de cubos: cada observación es la medida `histograma#clave`.
        sumas = Counter(f"{nombre.replace('_', ':')}#{clave(x)}" for nombre, xs in histogramas.items() for x in xs)
        return calcular_con_cuello(sumas, 0, etapas=["c"])[1]

    # Medianas 200 (b) y 20 (a); la atención no es una etapa; "c" está en el catálogo sin datos.
    assert cuello(etapa_b=[100, 200, 300], etapa_a=[10, 20, 30], atencion=[9999]) == "b"
    assert cuello(etapa_b=[100], etapa_a=[100]) == "a"
    assert cuello() == ""


def _percentil_de_referencia(histograma, q):
    """El algoritmo directo: ordena las claves y recorre hasta alcanzar el rango ⌈q·n⌉."""
    import math

    from servicios.procesador.dominio.percentiles import _orden, _valor

    n = round(sum(histograma.values()))
    if n <= 0:
        return None
    rango = max(1, math.ceil(q * n - 1e-9))
    acumulado = 0.0
    for c in sorted(histograma, key=_orden):
        acumulado += histograma[c]
        if acumulado >= rango - 1e-9:
            return _valor(c)
    return _valor(max(histograma, key=_orden))


@given(st.dictionaries(st.sampled_from(["z"] + [str(k) for k in range(-5, 400, 7)]),
                       st.integers(min_value=-3, max_value=20).map(float), max_size=25),
       st.lists(st.sampled_from([0.5, 0.9, 0.99, 0.1, 1.0]), min_size=1, max_size=4))
def test_varios_percentiles_de_una_vez_dan_lo_mismo_que_uno_a_uno(histograma, cuantiles):
    # Conteos negativos incluidos: son observaciones retiradas por eventos tardíos.
    assert percentiles(histograma, cuantiles) == [_percentil_de_referencia(histograma, q) for q in cuantiles]


def test_costo_por_tramite_exacto_al_centimo():
    """0,10 + 0,20 + 0,30 en tres trámites: en coma flotante la suma es 0,6000000000000001 y
    el costo por trámite 0,20000000000000004; con importes exactos, 0,2 (el float más cercano)."""
    assert (0.1 + 0.2 + 0.3) / 3 != 0.2
    caso = Caso("reniec", "dni-duplicado", 7)
    sumas = {"entregas": 3.0}
    for n, centimos in enumerate((10, 20, 30)):
        e = pb.Evento(evento_id=f"c{n}", tipo=pb.TIPO_EVENTO_COSTO_REGISTRADO,
                      costo=pb.Costo(unidades=0, nanos=centimos * 10_000_000, moneda="PEN"))
        for (medida, _), valor in cambios_de(caso, e, e.tipo, 1_800_000_000).items():
            sumas[medida] = sumas.get(medida, 0.0) + valor
    valor = {v.indicador: v for v in _calcular(sumas, 0)}["costo_por_tramite"]
    assert (valor.valor, valor.numerador, valor.muestras) == (0.2, 0.6, 3)
