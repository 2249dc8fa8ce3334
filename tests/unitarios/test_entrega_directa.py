"""`entrega_directa`: la llamada de faust que entrega cada registro
(`wait_first(entrega, suspend_flow.wait())`) debe comportarse como la de mode — mismo
resultado, mismos errores, la entrega que espera se abandona si el flujo se suspende — pero sin
crear tareas cuando la entrega no espera nada.

La referencia es el `wait_first` de mode sin tocar: cada escenario corre con un servicio de
mode real corregido y con otro sin corregir, sobre el bucle de asyncio y sobre uvloop (el del
procesador), y se comparan. Una corrutina que quedara sin esperar falla la prueba."""

from __future__ import annotations

import asyncio
import inspect
import types

import faust.transport.consumer
import mode
import pytest
import uvloop

from servicios.terceros.faust.parches import entrega_directa

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")
BUCLES = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


class _Consumidor(mode.Service):
    """Lo que el bucle de consumo de faust usa de su consumidor: un servicio de mode con
    `suspend_flow` (un `asyncio.Event`, como en faust)."""

    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = asyncio.Event()
        self.app = types.SimpleNamespace(rebalancing=False)

    async def entregar(self, entrega):
        return await self.wait_first(entrega, self.suspend_flow.wait())


def _clase(corregida: bool):
    # Una subclase propia: la corrección no toca más clase que esta.
    clase = type("Consumidor", (_Consumidor,), {})
    if corregida:
        entrega_directa(clase)
    return clase


def _correr(clase, escenario, bucle: str = "asyncio") -> tuple[object, int]:
    """Lo que devuelve `escenario(consumidor)` y cuántas tareas se crearon mientras corría."""
    async def principal():
        tareas = 0
        bucle = asyncio.get_running_loop()

        def fabrica(bucle_, corrutina, **opciones):
            nonlocal tareas
            tareas += 1
            return asyncio.Task(corrutina, loop=bucle_, **opciones)

        consumidor = clase()
        bucle.set_task_factory(fabrica)
        try:
            resultado = await escenario(consumidor)
        finally:
            bucle.set_task_factory(None)
        return resultado, tareas

    with asyncio.Runner(loop_factory=BUCLES[bucle]) as corredor:
        return corredor.run(principal())


def test_la_llamada_que_se_corrige_es_la_del_bucle_de_consumo_de_faust():
    # Si faust cambiara la forma de entregar, la corrección dejaría de aplicarse en silencio
    # (todo iría al original): esta prueba avisa.
    fuente = inspect.getsource(faust.transport.consumer.Consumer._drain_messages)
    assert "self.wait_first(" in fuente and "callback(message), self.suspend_flow.wait()" in fuente
    assert faust.transport.consumer.Event is asyncio.Event


@pytest.mark.parametrize("bucle", BUCLES)
@pytest.mark.parametrize("corregida", [False, True])
def test_una_entrega_que_no_espera_da_su_resultado(corregida, bucle):
    registro = []

    async def entrega():
        registro.append("entregado")
        return 7

    async def escenario(consumidor):
        resultado = await consumidor.entregar(entrega())
        return resultado.results, resultado.stopped

    (resultados, detenido), tareas = _correr(_clase(corregida), escenario, bucle)
    assert (resultados[0], detenido, registro) == (7, False, ["entregado"])
    # Sin corregir: la entrega, la suspensión y las esperas de parada y caída del servicio.
    assert tareas == (0 if corregida else 4)


@pytest.mark.parametrize("bucle", BUCLES)
@pytest.mark.parametrize("corregida", [False, True])
def test_una_entrega_que_espera_sigue_hasta_terminar(corregida, bucle):
    registro = []
    tareas_del_primer_paso = []

    async def entrega(listo):
        tareas_del_primer_paso.append(asyncio.current_task())
        registro.append("antes")
        valor = await listo
        registro.append(f"después {valor}")
        return valor * 2

    async def escenario(consumidor):
        listo = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.05, listo.set_result, 21)
        resultado = await consumidor.entregar(entrega(listo))
        return resultado.results, resultado.stopped, asyncio.current_task()

    (resultados, detenido, quien_llama), _ = _correr(_clase(corregida), escenario, bucle)
    assert (resultados, detenido, registro) == ([42], False, ["antes", "después 21"])
    # Corregida, el primer paso corre en quien llama y el resto en una tarea aparte.
    assert (tareas_del_primer_paso == [quien_llama]) is corregida


@pytest.mark.parametrize("bucle", BUCLES)
@pytest.mark.parametrize("corregida", [False, True])
def test_si_el_flujo_se_suspende_la_entrega_en_espera_se_abandona(corregida, bucle):
    registro = []
    tareas_del_primer_paso = []

    async def entrega(nunca):
        tareas_del_primer_paso.append(asyncio.current_task())
        registro.append("antes")
        try:
            await nunca
        except asyncio.CancelledError:
            registro.append("cancelada")
            raise
        registro.append("después")

    async def escenario(consumidor):
        nunca = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.05, consumidor.suspend_flow.set)
        resultado = await consumidor.entregar(entrega(nunca))
        # La cancelación de la entrega abandonada llega en la vuelta siguiente del bucle.
        await asyncio.sleep(0.01)
        return resultado.results, resultado.stopped, asyncio.current_task()

    (resultados, detenido, quien_llama), _ = _correr(_clase(corregida), escenario, bucle)
    assert (resultados, detenido, registro) == ([True], False, ["antes", "cancelada"])
    assert (tareas_del_primer_paso == [quien_llama]) is corregida


@pytest.mark.parametrize("bucle", BUCLES)
@pytest.mark.parametrize("corregida", [False, True])
@pytest.mark.parametrize("espera_antes", [False, True])
def test_el_error_de_una_entrega_llega_a_quien_espera(corregida, espera_antes, bucle):
    async def entrega():
        if espera_antes:
            await asyncio.sleep(0.01)
        raise ValueError("registro ilegible")

    async def escenario(consumidor):
        with pytest.raises(ValueError, match="registro ilegible"):
            await consumidor.entregar(entrega())
        return "propagado"

    assert _correr(_clase(corregida), escenario, bucle)[0] == "propagado"


def test_las_demas_esperas_del_servicio_van_al_original():
    async def escenario(consumidor):
        # Una espera con plazo (como las de la recuperación de faust): vence sin ganador.
        nunca = asyncio.Event()
        resultado = await consumidor.wait_first(nunca.wait(), timeout=0.05)
        return resultado.results, resultado.stopped

    (resultados, detenido), tareas = _correr(_clase(True), escenario)
    # El original: sin ganador, y sus tres tareas (la espera y las de parada y caída).
    assert (resultados, detenido, tareas) == ([], True, 3)


@pytest.mark.parametrize("corregida", [False, True])
def test_con_el_servicio_detenido_no_hay_ganador(corregida):
    async def entrega():
        return 7

    async def escenario(consumidor):
        consumidor._stopped.set()
        resultado = await consumidor.entregar(entrega())
        return resultado.results, resultado.stopped

    assert _correr(_clase(corregida), escenario)[0] == ([], True)


def test_mientras_el_grupo_se_reequilibra_la_entrega_va_por_el_original():
    registro = []

    async def entrega():
        registro.append("entregado")
        return 7

    async def escenario(consumidor):
        consumidor.app.rebalancing = True
        resultado = await consumidor.entregar(entrega())
        return resultado.results, resultado.stopped

    (resultados, detenido), tareas = _correr(_clase(True), escenario)
    # Las cuatro tareas del original: en un reequilibrio, la entrega de siempre.
    assert (resultados, detenido, registro, tareas) == ([7], False, ["entregado"], 4)
