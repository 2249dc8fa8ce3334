"""La guardia de orden contra un modelo de la entrega de faust: un log con offsets (a veces
con huecos legítimos), un fetcher que llena una cola desde su posición, un stream que a veces
descarta registros sin confirmarlos (lo que hace faust 0.15 tras una recuperación) y
relecturas desde el confirmado. Lo procesado debe ser exactamente el log, en orden, una vez."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
import random

from faust.types import TP
from hypothesis import given, settings
from hypothesis import strategies as st

from servicios.terceros.faust.puerto import PuertoFaust
from servicios.procesador.orden import RELECTURAS_PARA_ACEPTAR, Decision, GuardiaDeOrden


def test_en_orden_procesa_todo():
    guardia = GuardiaDeOrden()
    assert [guardia.decidir("p0", o) for o in range(5, 9)] == [Decision.PROCESAR] * 4


def test_un_registro_saltado_se_relee_y_lo_viejo_de_la_cola_se_ignora():
    guardia = GuardiaDeOrden()
    decisiones = [guardia.decidir("p0", o) for o in (645, 646, 648, 649, 650, 647, 648, 649)]
    assert decisiones == [
        Decision.PROCESAR, Decision.PROCESAR,
        Decision.RELEER,                      # falta 647: volver a 647
        Decision.IGNORAR, Decision.IGNORAR,   # 649 y 650 ya estaban en la cola
        Decision.PROCESAR, Decision.PROCESAR, Decision.PROCESAR,  # relectura desde 647
    ]
    assert guardia.huecos_releidos == 1 and guardia.esperado("p0") == 650


def test_un_hueco_legitimo_se_acepta_cuando_todas_las_relecturas_lo_repiten():
    guardia = GuardiaDeOrden()
    # 12 no existe (marca de transacción): cada relectura desde 12 empieza en 13.
    assert [guardia.decidir("p0", o) for o in (10, 11, 13, 14)] == [
        Decision.PROCESAR, Decision.PROCESAR, Decision.RELEER, Decision.IGNORAR]
    for _ in range(RELECTURAS_PARA_ACEPTAR - 1):
        assert guardia.decidir("p0", 13) == Decision.RELEER
        assert guardia.decidir("p0", 14) == Decision.IGNORAR
    assert guardia.decidir("p0", 13) == Decision.PROCESAR
    assert guardia.decidir("p0", 14) == Decision.PROCESAR
    assert guardia.huecos_legitimos == 1


def test_un_descarte_repetido_en_la_relectura_no_pasa_por_hueco_legitimo():
    guardia = GuardiaDeOrden()
    for o in (10, 11, 13):
        guardia.decidir("p0", o)
    # La relectura desde 12 pierde otra vez el 12 (faust aún suspendido), luego lo trae.
    assert guardia.decidir("p0", 13) == Decision.RELEER
    assert guardia.decidir("p0", 12) == Decision.PROCESAR
    assert guardia.decidir("p0", 13) == Decision.PROCESAR
    assert guardia.huecos_legitimos == 0


def test_lo_ya_procesado_que_vuelve_es_repetido_y_no_mueve_lo_esperado():
    guardia = GuardiaDeOrden()
    for o in (3, 4, 5):
        guardia.decidir("p0", o)
    assert [guardia.decidir("p0", o) for o in (4, 5, 6)] == [Decision.REPETIDO, Decision.REPETIDO, Decision.PROCESAR]


def test_con_el_confirmado_detecta_que_falta_el_primero():
    guardia = GuardiaDeOrden()
    assert guardia.decidir("p0", 646, confirmado=645) == Decision.RELEER
    assert guardia.decidir("p0", 645) == Decision.PROCESAR


def test_tras_un_lote_fallido_se_relee_desde_su_primer_registro_y_lo_que_venia_detras_se_ignora():
    guardia = GuardiaDeOrden()
    # El lote 400–599 de p0 pasó la guardia y falló al procesarse; p1 no estaba en él.
    assert {guardia.decidir("p0", o) for o in range(400, 600)} == {Decision.PROCESAR}
    guardia.decidir("p1", 20)
    guardia.releer_desde("p0", 400)
    assert guardia.esperado("p0") == 400
    # 600 y 601 ya venían en la cola: se ignoran; luego llega la relectura desde 400.
    assert [guardia.decidir("p0", o) for o in (600, 601, 400, 401)] == [
        Decision.IGNORAR, Decision.IGNORAR, Decision.PROCESAR, Decision.PROCESAR]
    assert guardia.decidir("p1", 21) == Decision.PROCESAR
    assert guardia.huecos_releidos == 0


def test_releer_desde_una_particion_que_la_guardia_no_conocia():
    guardia = GuardiaDeOrden()
    guardia.releer_desde("p3", 12)
    assert [guardia.decidir("p3", o) for o in (15, 12, 13)] == [Decision.IGNORAR, Decision.PROCESAR, Decision.PROCESAR]


def test_el_vigia_senala_una_particion_quieta_con_log_por_delante():
    guardia = GuardiaDeOrden()
    guardia.decidir("p0", 7, ahora=100.0)
    guardia.decidir("p1", 3, ahora=100.0)
    fines = {"p0": 10, "p1": 4}  # en p0 faltan 8 y 9; p1 está al día
    assert guardia.rezagadas(fines, ahora=101.0, quietud_s=5.0) == []
    assert guardia.rezagadas(fines, ahora=105.0, quietud_s=5.0) == [("p0", 8)]


def test_las_particiones_son_independientes_y_se_olvidan_al_reequilibrar():
    guardia = GuardiaDeOrden()
    guardia.decidir("p0", 1)
    guardia.decidir("p1", 7)
    assert guardia.decidir("p1", 8) == Decision.PROCESAR
    assert guardia.decidir("p1", 10) == Decision.RELEER
    assert guardia.decidir("p0", 2) == Decision.PROCESAR  # p0 no se entera del hueco de p1
    guardia.olvidar()
    assert guardia.decidir("p0", 40) == Decision.PROCESAR
    assert guardia.decidir("p1", 3) == Decision.PROCESAR


def _entregar(log: list[int], azar: random.Random, prob_descarte: float, prob_releer_confirmado: float):
    """Simula faust: devuelve (offsets procesados en orden, número de decisiones)."""
    guardia = GuardiaDeOrden()
    procesados: list[int] = []
    cola: list[int] = []
    posicion = 0  # índice en el log del próximo registro que trae el fetcher
    confirmado = 0  # índice: todo lo anterior está procesado
    pasos = 0
    while len(procesados) < len(log) or cola:
        pasos += 1
        assert pasos < 50 * len(log) + 100, "la entrega no converge"
        if not cola:
            if posicion >= len(log):
                # Nada más llega: el vigía relee lo que quedó más allá de lo esperado.
                rezagadas = guardia.rezagadas({"p": log[-1] + 1}, ahora=pasos, quietud_s=0,
                                              confirmados={"p": log[confirmado] if confirmado < len(log) else None})
                if not rezagadas:
                    break
                destino = rezagadas[0][1]
                posicion = next((i for i, o in enumerate(log) if o >= destino), len(log))
                if posicion >= len(log):
                    break
                continue
            cola.extend(log[posicion:posicion + azar.randint(1, 6)])
            posicion = min(len(log), posicion + len(cola))
            continue
        offset = cola.pop(0)
        if azar.random() < prob_descarte:
            continue  # faust lo descarta sin confirmarlo
        inicio = log[confirmado] if confirmado < len(log) else None
        decision = guardia.decidir("p", offset, confirmado=inicio)
        if decision is Decision.PROCESAR:
            procesados.append(offset)
            confirmado = len(procesados)
        elif decision is Decision.RELEER:
            destino = guardia.esperado("p")
            posicion = next((i for i, o in enumerate(log) if o >= destino), len(log))
        if azar.random() < prob_releer_confirmado:
            # Un reequilibrio: faust vacía la cola y vuelve al confirmado; la guardia se olvida.
            cola.clear()
            posicion = confirmado
            guardia.olvidar()
    return procesados


# Derandomizado: con descartes al azar, ocho descartes seguidos del mismo registro son
# posibles (0,2^8 por hueco) aunque improbables; la batería no debe depender de la suerte.
@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    semilla=st.integers(0, 10_000),
    largo=st.integers(1, 120),
    prob_hueco=st.sampled_from([0.0, 0.05, 0.2]),
    prob_descarte=st.sampled_from([0.0, 0.05, 0.2]),
    prob_releer=st.sampled_from([0.0, 0.02]),
)
def test_modelo_de_entrega_procesa_el_log_exacto(semilla, largo, prob_hueco, prob_descarte, prob_releer):
    azar = random.Random(semilla)
    log = [o for o in range(1000, 1000 + largo) if azar.random() >= prob_hueco] or [1000]
    assert _entregar(log, azar, prob_descarte, prob_releer) == log


P0, P1 = TP("gpr.eventos.v1", 0), TP("gpr.eventos.v1", 1)


class _ConsumidorSinFetch:
    """Las dos lecturas del fin del log que hace el vigía sobre el consumidor de faust: el
    highwater del último fetch (None si la partición no leyó nada) y el que da el broker. Una
    partición asignada que nunca recibe un fetch no se puede provocar a voluntad con el broker
    embebido: este sustituto es el único de la prueba."""

    def __init__(self, por_fetch: dict, en_el_broker: dict, error: Exception | None = None):
        self.por_fetch, self.en_el_broker, self.error = por_fetch, en_el_broker, error
        self.preguntadas: list = []

    def highwater(self, tp):
        return self.por_fetch.get(tp)

    async def highwaters(self, *tps):
        self.preguntadas.extend(tps)
        if self.error:
            raise self.error
        return {tp: self.en_el_broker[tp] for tp in tps}

    async def earliest_offsets(self, *tps):
        return await self.highwaters(*tps)


def _puerto(consumidor) -> PuertoFaust:
    return PuertoFaust(SimpleNamespace(consumer=consumidor))


def test_el_vigia_mira_tambien_las_particiones_que_nunca_leyeron():
    consumidor = _ConsumidorSinFetch(por_fetch={P0: 8}, en_el_broker={P0: 99, P1: 15})
    fines = asyncio.run(_puerto(consumidor).fines_de_log([P0, P1]))
    # p0 ya tiene highwater (no se pregunta al broker); p1 nunca leyó: el broker dice 15.
    assert fines == {P0: 8, P1: 15} and consumidor.preguntadas == [P1]
    guardia = GuardiaDeOrden()
    guardia.decidir(P0, 8, confirmado=8, ahora=0.0)
    # p1, confirmada en 10 y sin nada entregado, queda rezagada y se relee desde 10.
    assert guardia.rezagadas(fines, ahora=100.0, quietud_s=30.0, confirmados={P0: 8, P1: 10}) == [(P1, 10)]


def test_si_el_broker_no_da_el_fin_del_log_el_vigia_sigue(caplog):
    consumidor = _ConsumidorSinFetch(por_fetch={P0: 8}, en_el_broker={}, error=ConnectionError("sin broker"))
    assert asyncio.run(_puerto(consumidor).fines_de_log([P0, P1])) == {P0: 8, P1: None}
    assert "no se pudo leer el fin del log de gpr.eventos.v1[1]" in caplog.text and "sin broker" in caplog.text


def test_sin_offset_confirmado_el_vigia_cuenta_desde_el_inicio_del_log():
    # Para el sustituto, "el broker" da aquí el inicio del log: 3 en p0.
    consumidor = _ConsumidorSinFetch(por_fetch={}, en_el_broker={P0: 3})
    inicio = asyncio.run(_puerto(consumidor).inicios_de_log([P0]))
    assert inicio == {P0: 3}
    # Sin nada entregado y con el log más allá de su inicio, el vigía relee desde el inicio.
    assert GuardiaDeOrden().rezagadas({P0: 9}, ahora=100.0, quietud_s=30.0, confirmados=inicio) == [(P0, 3)]
    # Con el log vacío (fin = inicio) no hay nada que releer.
    assert GuardiaDeOrden().rezagadas({P0: 3}, ahora=100.0, quietud_s=30.0, confirmados=inicio) == []


def test_si_el_broker_no_da_el_inicio_del_log_no_se_supone_nada(caplog):
    consumidor = _ConsumidorSinFetch(por_fetch={}, en_el_broker={}, error=ConnectionError("sin broker"))
    assert asyncio.run(_puerto(consumidor).inicios_de_log([P1])) == {}
    assert asyncio.run(_puerto(consumidor).inicios_de_log([])) == {} and consumidor.preguntadas == [P1]
    assert "no se pudo leer el inicio del log de gpr.eventos.v1[1]" in caplog.text and "sin broker" in caplog.text
