"""`entrega_por_lotes`: lo que faust hace con cada registro entre el fetch y el agente
(`getmany`, `_drain_messages`, `Stream`) se hace aquí por lista, con el mismo resultado.

El consumidor es un sustituto con lo que la entrega usa del de faust, pero sus piezas son las
de faust y mode: `wait_first` de un servicio de mode, mensajes `ConsumerMessage`, registros
`ConsumerRecord` de aiokafka, la cola y el control de flujo de mode, y la confirmación es
`Consumer.ack` de faust sobre el estado del sustituto. Las pruebas de cortes
(`tests/integracion/test_motor_kafka.py`) cubren la entrega con el broker y el procesador
enteros: todo evento del procesador llega por aquí."""

from __future__ import annotations

import asyncio
import inspect
import types
import weakref
from collections import defaultdict
from pathlib import Path

import faust
import faust.streams
import faust.transport.consumer
import faust.transport.drivers.aiokafka
import mode
import pytest
from aiokafka.structs import ConsumerRecord
from faust.types import TP
from faust.types.tuples import ConsumerMessage
from mode.utils.queues import FlowControlEvent

from servicios.terceros.faust.entrega_por_lotes import Entregado, EntregaPorLotes

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

TOPICO = "gpr.eventos.v1"
OTRO = "gpr.aportes.v1"


class _Topico:
    def __init__(self, nombre: str) -> None:
        self.nombre = nombre

    def get_topic_name(self) -> str:
        return self.nombre


class _Consumidor(mode.Service):
    """Lo que la entrega usa del consumidor de faust, con su `wait_first` y su `ack`."""

    def __init__(self, app) -> None:
        super().__init__()
        self.app = app
        self.suspend_flow = asyncio.Event()
        self.flow_active = True
        self._buffered_partitions: set = set()
        self._read_offset = defaultdict(lambda: None)
        self._commit_every = None
        self._n_acked = 0
        self.commits = 0
        self._unacked_messages = weakref.WeakSet()
        self._committed_offset = defaultdict(lambda: None)
        self._acked = defaultdict(list)
        self._acked_index = defaultdict(set)
        self._waiting_for_ack = None

    async def commit(self, *args, **kwargs) -> bool:
        self.commits += 1
        return True

    def _to_message(self, tp, record) -> ConsumerMessage:
        return ConsumerMessage(record.topic, record.partition, record.offset, record.timestamp / 1000.0,
                               record.timestamp_type, record.headers, record.key, record.value, record.checksum,
                               record.serialized_key_size, record.serialized_value_size, tp,
                               generation_id=self.app.consumer_generation_id)

    ack = faust.transport.consumer.Consumer.ack


class _App:
    def __init__(self) -> None:
        self.flow_control = FlowControlEvent()
        self.flow_control.resume()
        self.consumer_generation_id = 7
        self.in_recovery = False
        self.suscritos: list = []
        self.topics = types.SimpleNamespace(add=self.suscritos.append,
                                            acks_enabled_for=lambda topico: topico == TOPICO)
        self.consumer = _Consumidor(self)


def _registros(topico: str, particion: int, desde: int, hasta: int) -> list[ConsumerRecord]:
    return [ConsumerRecord(topico, particion, offset, 1_700_000_000_000 + offset, 0, f"k{offset}".encode(),
                           f"v{particion}-{offset}".encode(), None, 3, 5, ())
            for offset in range(desde, hasta)]


def _correr(corrutina_de):
    """Corre `corrutina_de(app, entrega)` con una app y una entrega nuevas."""
    async def principal():
        app = _App()
        entrega = EntregaPorLotes(app, _Topico(TOPICO), listas_en_cola=2)
        return await corrutina_de(app, entrega)

    return asyncio.run(principal())


def _en_cola(entrega) -> list[list[tuple[int, int]]]:
    listas = []
    while not entrega.cola.empty():
        listas.append([(m.partition, m.offset) for m in entrega.cola.get_nowait()])
    return listas


async def _lotes(entrega, cuantos: int, maximo: int, espera_s: float = 0.01) -> list[list[Entregado]]:
    lotes = []
    iterador = entrega.lotes(maximo, espera_s)
    for _ in range(cuantos):
        lotes.append(await anext(iterador))
    await iterador.aclose()
    return lotes


async def _tercera_con_la_cola_llena(app, entrega) -> asyncio.Future:
    """Llena la cola (dos listas de la partición 0: offsets 0 y 1) y empieza a entregar una
    tercera (offset 2), que queda esperando sitio."""
    tp = TP(TOPICO, 0)
    for offset in range(2):
        await entrega.entregar(app.consumer, {tp: _registros(TOPICO, 0, offset, offset + 1)}, None)
    tercera = asyncio.ensure_future(entrega.entregar(app.consumer, {tp: _registros(TOPICO, 0, 2, 3)}, None))
    await asyncio.sleep(0.05)
    return tercera


def test_saca_del_fetch_solo_las_particiones_del_topico_y_las_entrega_en_orden():
    async def escenario(app, entrega):
        tp0, tp1, otro = TP(TOPICO, 0), TP(TOPICO, 1), TP(OTRO, 0)
        fetch = {tp0: _registros(TOPICO, 0, 0, 3), otro: _registros(OTRO, 0, 0, 2), tp1: _registros(TOPICO, 1, 10, 12)}
        await entrega.entregar(app.consumer, fetch, activas={tp0, tp1, otro})
        assert list(fetch) == [otro] and len(fetch[otro]) == 2
        assert app.consumer._read_offset[tp0] == 2 and app.consumer._read_offset[tp1] == 11
        primera = entrega.cola.get_nowait()
        assert [m.value for m in primera] == [b"v0-0", b"v0-1", b"v0-2"]
        assert all(isinstance(m, ConsumerMessage) and m.tp == tp0 and m.generation_id == 7 for m in primera)
        return _en_cola(entrega)

    assert _correr(escenario) == [[(1, 10), (1, 11)]]


def test_la_app_suscribe_el_topico_sin_agente():
    async def escenario(app, entrega):
        return [t.get_topic_name() for t in app.suscritos], app._gpr_entregas_por_lotes == {TOPICO: entrega}

    assert _correr(escenario) == ([TOPICO], True)


def test_descarta_lo_anterior_al_ultimo_offset_leido_como_faust():
    async def escenario(app, entrega):
        tp = TP(TOPICO, 0)
        app.consumer._read_offset[tp] = 5
        await entrega.entregar(app.consumer, {tp: _registros(TOPICO, 0, 3, 8)}, activas=None)
        return _en_cola(entrega)

    # `_drain_messages` entrega el offset igual al leído (`offset >= r_offset`).
    assert _correr(escenario) == [[(0, 5), (0, 6), (0, 7)]]


def test_con_el_flujo_detenido_no_entrega_nada_y_lo_quita_del_fetch():
    async def escenario(app, entrega):
        tp = TP(TOPICO, 0)
        app.consumer.flow_active = False
        fetch = {tp: _registros(TOPICO, 0, 0, 3)}
        await entrega.entregar(app.consumer, fetch, activas=None)
        return fetch, _en_cola(entrega), app.consumer._read_offset[tp]

    # faust vuelve al offset confirmado (`getmany` con el flujo detenido): no se anota nada leído.
    assert _correr(escenario) == ({}, [], None)


def test_solo_entrega_particiones_activas_o_con_bufer():
    async def escenario(app, entrega):
        activa, pausada, con_bufer = TP(TOPICO, 0), TP(TOPICO, 1), TP(TOPICO, 2)
        app.consumer._buffered_partitions.add(con_bufer)
        fetch = {tp: _registros(TOPICO, tp.partition, 0, 1) for tp in (activa, pausada, con_bufer)}
        await entrega.entregar(app.consumer, fetch, activas={activa})
        return _en_cola(entrega)

    assert _correr(escenario) == [[(0, 0)], [(2, 0)]]


def test_confirma_cada_broker_commit_every_mensajes_confirmados():
    async def escenario(app, entrega):
        consumidor = app.consumer
        consumidor._commit_every = 3
        consumidor._n_acked = 2
        await entrega.entregar(consumidor, {TP(TOPICO, 0): _registros(TOPICO, 0, 0, 1)}, activas=None)
        antes = consumidor.commits
        consumidor._n_acked = 3
        await entrega.entregar(consumidor, {TP(TOPICO, 0): _registros(TOPICO, 0, 1, 2)}, activas=None)
        return antes, consumidor.commits, consumidor._n_acked

    assert _correr(escenario) == (0, 1, 0)


def test_con_la_cola_llena_espera_y_entrega_en_cuanto_hay_sitio():
    async def escenario(app, entrega):
        tercera = await _tercera_con_la_cola_llena(app, entrega)
        esperaba = not tercera.done()
        primera = [m.offset for m in entrega.cola.get_nowait()]
        await asyncio.wait_for(tercera, 1)
        return esperaba, primera, _en_cola(entrega)

    assert _correr(escenario) == (True, [0], [[(0, 1)], [(0, 2)]])


def test_con_la_cola_llena_un_reequilibrio_abandona_la_entrega_como_faust():
    async def escenario(app, entrega):
        tp = TP(TOPICO, 0)
        tercera = await _tercera_con_la_cola_llena(app, entrega)
        # Lo que hace faust al empezar un reequilibrio: suspende el flujo del consumidor.
        app.consumer.suspend_flow.set()
        app.flow_control.suspend()
        await asyncio.wait_for(tercera, 1)
        return _en_cola(entrega), app.consumer._read_offset[tp]

    # Como `_drain_messages`, el offset queda anotado como leído aunque no se entregara: tras el
    # reequilibrio faust vuelve al confirmado y lo vuelve a leer.
    assert _correr(escenario) == ([[(0, 0)], [(0, 1)]], 2)


# Vueltas atrás mientras la tercera lista espera sitio, como las anota `seek_wait` de faust:
# faust vuelve solo al 0 (borra el offset leído: se nota por el valor); la app pide releer
# desde el 1, el último leído (el valor no cambia: solo lo delata `anotar_relectura`).
@pytest.mark.parametrize("desde", [0, 1])
def test_si_se_pide_releer_mientras_la_lista_espera_sitio_la_relectura_no_se_descarta(desde):
    async def escenario(app, entrega):
        tp = TP(TOPICO, 0)
        tercera = await _tercera_con_la_cola_llena(app, entrega)
        if desde:
            entrega.anotar_relectura(tp)
            app.consumer._read_offset[tp] = desde
        else:
            del app.consumer._read_offset[tp]
        entrega.cola.get_nowait()
        await asyncio.wait_for(tercera, 1)
        leido = app.consumer._read_offset[tp]
        antes = _en_cola(entrega)
        # La relectura pasa el filtro de lo ya leído.
        await entrega.entregar(app.consumer, {tp: _registros(TOPICO, 0, desde, 3)}, None)
        return leido, antes, _en_cola(entrega)

    assert _correr(escenario) == (desde or None, [[(0, 1)], [(0, 2)]], [[(0, o) for o in range(desde, 3)]])


def test_los_lotes_se_cortan_en_el_maximo_y_siguen_en_orden():
    async def escenario(app, entrega):
        await entrega.entregar(app.consumer, {TP(TOPICO, 0): _registros(TOPICO, 0, 0, 5),
                                              TP(TOPICO, 1): _registros(TOPICO, 1, 0, 2)}, None)
        return [[(e.message.partition, e.message.offset) for e in lote] for lote in await _lotes(entrega, 3, 3)]

    assert _correr(escenario) == [[(0, 0), (0, 1), (0, 2)], [(0, 3), (0, 4), (1, 0)], [(1, 1)]]


def test_un_lote_se_cierra_tambien_al_pasar_del_tope_de_bytes():
    async def escenario(app, entrega):
        # Cada valor ocupa 5 bytes ("v0-10"…): con un tope de 12, tres registros por lote.
        await entrega.entregar(app.consumer, {TP(TOPICO, 0): _registros(TOPICO, 0, 10, 17)}, None)
        iterador = entrega.lotes(100, 0.01, bytes_maximos=12)
        lotes = [[e.message.offset for e in await anext(iterador)] for _ in range(3)]
        await iterador.aclose()
        return lotes

    assert _correr(escenario) == [[10, 11, 12], [13, 14, 15], [16]]


def test_un_lote_incompleto_sale_al_vencer_la_espera_y_recoge_lo_que_llega_antes():
    async def escenario(app, entrega):
        tp = TP(TOPICO, 0)
        await entrega.entregar(app.consumer, {tp: _registros(TOPICO, 0, 0, 2)}, None)

        async def despues():
            await asyncio.sleep(0.05)
            await entrega.entregar(app.consumer, {tp: _registros(TOPICO, 0, 2, 3)}, None)

        tarde = asyncio.ensure_future(despues())
        inicio = asyncio.get_running_loop().time()
        lote = (await _lotes(entrega, 1, 100, espera_s=0.3))[0]
        await tarde
        return [e.message.offset for e in lote], asyncio.get_running_loop().time() - inicio

    offsets, segundos = _correr(escenario)
    assert offsets == [0, 1, 2]
    assert 0.25 <= segundos < 2


def test_descarta_sin_confirmar_lo_de_otra_generacion_y_anota_el_resto_como_pendiente():
    async def escenario(app, entrega):
        tp = TP(TOPICO, 0)
        await entrega.entregar(app.consumer, {tp: _registros(TOPICO, 0, 0, 2)}, None)
        app.consumer_generation_id = 8
        await entrega.entregar(app.consumer, {tp: _registros(TOPICO, 0, 2, 4)}, None)
        lote = (await _lotes(entrega, 1, 100))[0]
        pendientes = sorted(m.offset for m in app.consumer._unacked_messages)
        return [e.message.offset for e in lote], pendientes, dict(app.consumer._acked)

    assert _correr(escenario) == ([2, 3], [2, 3], {})


def test_con_el_flujo_suspendido_o_las_tablas_recuperandose_espera_y_despues_entrega():
    async def escenario(app, entrega):
        tp = TP(TOPICO, 0)
        await entrega.entregar(app.consumer, {tp: _registros(TOPICO, 0, 0, 2)}, None)
        app.flow_control.suspend()
        app.in_recovery = True
        lote = asyncio.ensure_future(_lotes(entrega, 1, 100))
        await asyncio.sleep(0.2)
        esperando_flujo = not lote.done()
        app.flow_control.resume()
        await asyncio.sleep(0.2)
        esperando_tablas = not lote.done() and len(app.consumer._unacked_messages) == 0
        app.in_recovery = False
        entregado = await asyncio.wait_for(lote, 1)
        return esperando_flujo, esperando_tablas, [e.message.offset for e in entregado[0]]

    assert _correr(escenario) == (True, True, [0, 1])


def test_confirmar_un_entregado_es_la_confirmacion_de_faust():
    async def escenario(app, entrega):
        tp = TP(TOPICO, 3)
        app.consumer._committed_offset[tp] = 1
        await entrega.entregar(app.consumer, {tp: _registros(TOPICO, 3, 1, 4)}, None)
        lote = (await _lotes(entrega, 1, 100))[0]
        resultados = [lote[2].ack(), lote[0].ack(), lote[0].ack()]
        consumidor = app.consumer
        return (resultados, consumidor._acked[tp], consumidor._n_acked,
                sorted(m.offset for m in consumidor._unacked_messages))

    # Un segundo ack del mismo mensaje no cuenta; el que falta sigue pendiente.
    assert _correr(escenario) == ([True, True, False], [3, 1], 2, [2])


def test_lo_que_queda_en_la_cola_de_antes_de_un_reequilibrio_se_descarta_al_sacarlo():
    async def escenario(app, entrega):
        tp = TP(TOPICO, 0)
        await entrega.entregar(app.consumer, {tp: _registros(TOPICO, 0, 0, 2)}, None)
        # Un reequilibrio: faust vacía las colas de sus agentes al empezarlo; esta no.
        app.flow_control.suspend()
        app.flow_control.clear()
        app.consumer_generation_id = 8
        del app.consumer._read_offset[tp]  # faust vuelve al offset confirmado (ninguno: el 0)
        app.flow_control.resume()
        # Lo leído ya en la generación nueva (tras volver al offset confirmado) sí se entrega.
        await entrega.entregar(app.consumer, {tp: _registros(TOPICO, 0, 0, 3)}, None)
        lote = (await _lotes(entrega, 1, 100))[0]
        return [e.message.offset for e in lote]

    assert _correr(escenario) == [0, 1, 2]


def test_una_entrega_por_topico_y_cada_una_saca_solo_lo_suyo_del_mismo_fetch():
    async def escenario(app, entrega):
        with pytest.raises(RuntimeError, match="ya tiene"):
            EntregaPorLotes(app, _Topico(TOPICO))
        otra = EntregaPorLotes(app, _Topico(OTRO), listas_en_cola=2)
        tp, otro = TP(TOPICO, 0), TP(OTRO, 0)
        fetch = {tp: _registros(TOPICO, 0, 0, 2), otro: _registros(OTRO, 0, 0, 3)}
        for una in app._gpr_entregas_por_lotes.values():
            await una.entregar(app.consumer, fetch, activas=None)
        return fetch, _en_cola(entrega), _en_cola(otra)

    assert _correr(escenario) == ({}, [[(0, 0), (0, 1)]], [[(0, 0), (0, 1), (0, 2)]])


def test_el_codigo_de_faust_que_se_replica_sigue_igual():
    # Si faust cambiara lo que aquí se replica, la entrega por lotes dejaría de comportarse
    # como sus agentes sin que nada fallara: esta prueba avisa.
    getmany = inspect.getsource(faust.transport.consumer.Consumer.getmany)
    assert "records, active_partitions = await self._wait_next_records(timeout)" in getmany
    for condicion in ("if self.flow_active:", "or tp in active_partitions", "or tp in self._buffered_partitions",
                      "await self.perform_seek()", "yield tp, to_message(tp, record)"):
        assert condicion in getmany, condicion
    drenaje = inspect.getsource(faust.transport.consumer.Consumer._drain_messages)
    for paso in ("if r_offset is None or offset >= r_offset:", "if self._n_acked >= commit_every:",
                 "callback(message), self.suspend_flow.wait()", "set_read_offset(tp, offset)"):
        assert paso in drenaje, paso
    # El flujo de faust tiene dos versiones del mismo bucle: en Python y en Cython (la que corre).
    fuentes = [inspect.getsource(faust.streams.Stream._py_aiter)]
    cython = Path(faust.__file__).parent / "_cython" / "streams.pyx"
    if cython.exists():
        fuentes.append(cython.read_text())
    for flujo in fuentes:
        assert "not self.app.flow_control.is_active()" in flujo
        assert "message.generation_id != self.app.consumer_generation_id" in flujo
        assert "add_unacked" in flujo
    revocar = inspect.getsource(faust.App._on_partitions_revoked)
    assert "self.flow_control.clear" in revocar and "_consumer_wait_empty" in revocar
    assert "def _to_message" in inspect.getsource(faust.transport.drivers.aiokafka.Consumer)
