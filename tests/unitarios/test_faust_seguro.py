"""El búfer de changelog de faust, de verdad, con un canal que tarda en aceptar cada
mensaje: `flush()` debe devolver solo cuando todo salió del búfer, también lo que ya estaba
en vuelo, y al detenerse debe entregar lo que quede.

El canal lento es el único sustituto: imita un productor de aiokafka ocupado (o un bucle de
eventos saturado), que es justo la condición en la que faust confirmaba offsets con registros
de changelog aún sin enviar."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import faust
from faust.transport.producer import ProducerBuffer

from servicios.terceros.faust.parches import corregir_bufer

TARDANZA_S = 0.25
MENSAJES = 4


class CanalLento:
    """Acepta cada mensaje tras `TARDANZA_S`, más que los 0,1 s que faust espera por mensaje."""

    def __init__(self):
        self.aceptados: list[int] = []

    async def publish_message(self, futuro, wait: bool = False):
        await asyncio.sleep(TARDANZA_S)
        self.aceptados.append(futuro.message.numero)


def _futuro(canal: CanalLento, numero: int):
    return SimpleNamespace(message=SimpleNamespace(channel=canal, numero=numero))


def _clase(corregida: bool):
    """Una subclase propia del búfer de faust: la corrección no toca la clase del proceso."""
    clase = type("Bufer", (ProducerBuffer,), {})
    if corregida:
        corregir_bufer(clase)
    return clase


async def _bufer_en_marcha(clase):
    bufer = clase()
    bufer.app = faust.App("prueba-bufer", broker="memory://", web_enabled=False)
    await bufer.start()
    return bufer


def _vaciar(clase) -> tuple[list[int], Exception | None]:
    """Lo aceptado por el canal cuando `flush()` devuelve, y el error al detener el búfer."""
    async def escenario():
        bufer = await _bufer_en_marcha(clase)
        canal = CanalLento()
        for numero in range(MENSAJES):
            bufer.put(_futuro(canal, numero))
        await bufer.flush()
        aceptados_al_volver = list(canal.aceptados)
        try:
            await bufer.stop()
        except RuntimeError as error:
            return aceptados_al_volver, error
        return aceptados_al_volver, None

    return asyncio.run(escenario())


def test_sin_la_correccion_faust_vuelve_con_mensajes_pendientes():
    # Si faust corrigiera esto, la corrección sobraría: esta prueba avisaría.
    aceptados, error = _vaciar(_clase(corregida=False))
    assert len(aceptados) < MENSAJES
    assert "not Running" in str(error)


def test_con_la_correccion_flush_espera_a_que_salga_todo_en_orden():
    assert _vaciar(_clase(corregida=True)) == (list(range(MENSAJES)), None)


def test_al_detenerse_entrega_lo_que_la_tarea_de_fondo_ya_no_saca():
    async def escenario():
        bufer = await _bufer_en_marcha(_clase(corregida=True))
        canal = CanalLento()
        for numero in range(MENSAJES):
            bufer.put(_futuro(canal, numero))
        await bufer.stop()
        return canal.aceptados

    assert asyncio.run(escenario()) == list(range(MENSAJES))
