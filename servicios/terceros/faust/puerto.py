"""El `Puerto` del procesador (`servicios/procesador/puerto.py`) sobre una app de faust.

Aquí, y solo aquí (con los demás módulos de este paquete), el procesador toca el interior de
faust y de aiokafka: el offset confirmado que faust guarda por partición, su conjunto de
mensajes pendientes de confirmar, el evento en curso que decide la partición de una escritura
de tabla, la relectura en el hilo del consumidor y los huecos de offsets. Cada uso dice por qué
no basta la API pública.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

import faust
import faust.streams

from servicios.terceros.faust.entrega_por_lotes import EntregaPorLotes
from servicios.terceros.faust.parches import confirmar_hueco, olvidar_entregados
from servicios.terceros.faust.tablas import enviar_en_lotes

logger = logging.getLogger("gpr.procesador")

# Lo más que se espera al broker por el fin o el inicio del log de las particiones.
_ESPERA_LOG_S = 10.0


class PuertoFaust:
    def __init__(self, app: faust.App, *entregas: EntregaPorLotes):
        self.app = app
        self.entregas = {entrega.topico: entrega for entrega in entregas}

    # --- lectura y confirmación ---

    def offset_confirmado(self, tp: Any) -> int | None:
        # faust no expone el último offset confirmado en Kafka (lo vacía al revocar y lo llena
        # al volver a él); la guardia de orden lo necesita para reconocer el primer registro.
        return self.app.consumer._committed_offset.get(tp)

    def generacion(self) -> int:
        return self.app.consumer_generation_id

    def recuperando(self) -> bool:
        # No vale `app.rebalancing`: sigue activo un momento *después* de que faust vuelve al
        # offset confirmado, y lo que llega entonces no se vuelve a leer.
        return self.app.in_recovery

    def reequilibrando(self) -> bool:
        return self.app.rebalancing

    def olvidar(self, mensajes: Iterable[Any]) -> int:
        return olvidar_entregados(self.app.consumer, mensajes)

    async def releer(self, tp: Any, offset: int) -> None:
        # En el hilo del consumidor de aiokafka: `Consumer.seek` de faust lo llama desde el
        # bucle principal y el fetcher no se entera (visto: la partición no volvía a leer).
        entrega = self.entregas.get(tp.topic)
        if entrega is not None:
            entrega.anotar_relectura(tp)
        await self.app.consumer._thread.seek_wait({tp: offset})

    async def confirmar_hueco(self, tp: Any, desde: int, hasta: int) -> None:
        await confirmar_hueco(self.app.consumer, tp, desde, hasta)

    def asignadas(self) -> list[Any]:
        return list(self.app.consumer.assignment())

    async def fines_de_log(self, particiones: list[Any]) -> dict:
        """El highwater del último fetch y, para las que aún no leyeron nada, el que da el
        broker: sin ese respaldo, una partición cuyo fetch no llega nunca no se vigilaría."""
        consumidor = self.app.consumer
        fines = {tp: consumidor.highwater(tp) for tp in particiones}
        sin_fetch = [tp for tp, fin in fines.items() if fin is None]
        if sin_fetch:
            try:
                fines.update(await asyncio.wait_for(consumidor.highwaters(*sin_fetch), timeout=_ESPERA_LOG_S))
            except Exception as error:  # el broker puede no responder: se mira en la vuelta siguiente
                logger.warning("no se pudo leer el fin del log de %s: %r; se mira en la próxima vuelta",
                               ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sin_fetch), error)
        return fines

    async def inicios_de_log(self, particiones: list[Any]) -> dict:
        """Sin offset confirmado faust lee desde el inicio del log (`earliest`): es el primer
        registro que debe procesarse."""
        if not particiones:
            return {}
        try:
            return dict(await asyncio.wait_for(self.app.consumer.earliest_offsets(*particiones),
                                               timeout=_ESPERA_LOG_S))
        except Exception as error:  # el broker puede no responder: se mira en la vuelta siguiente
            logger.warning("no se pudo leer el inicio del log de %s: %r", ", ".join(
                f"{tp.topic}[{tp.partition}]" for tp in particiones), error)
            return {}

    # --- escritura ---

    @contextlib.contextmanager
    def en_particion(self, evento: Any) -> Iterator[None]:
        """faust decide la partición del changelog (y la base RocksDB) de cada escritura por el
        evento en curso, una variable de contexto que fija al iterar un stream evento a evento;
        con lotes (entrega por lotes, `noack_take`) esa variable no apunta a nada útil. Cada
        grupo de un lote es de una partición: se fija a un evento del grupo."""
        ficha = faust.streams._current_event.set(weakref.ref(evento))
        try:
            yield
        finally:
            faust.streams._current_event.reset(ficha)

    async def enviar(self, topico: str, clave: bytes | None, valor: bytes, particion: int | None = None,
                     cabeceras: list[tuple[str, bytes]] | None = None):
        # Directo al productor, sin `Topic.send` de faust (un mensaje pendiente y sus callbacks
        # por registro): con miles de series y agregados por pasada, era la mayor parte del costo.
        return await self.app.producer.send(topico, clave, valor, particion, None, cabeceras)

    async def enviar_lote(self, topico: str, particion: int, registros: list) -> Any:
        """Con `tablas.enviar_en_lotes`, como el changelog. Cada registro conserva su instante:
        la etapa siguiente mide el retraso desde que el emisor lo escribió."""
        envios = await enviar_en_lotes(self.app.producer._ensure_producer(), topico, particion, (
            (clave, valor, int(instante * 1000) if instante else None,
             list(cabeceras.items()) if isinstance(cabeceras, dict) else list(cabeceras or ()))
            for clave, valor, cabeceras, instante in registros))
        return asyncio.gather(*(envio for envio, _ in envios))

    async def vaciar(self) -> None:
        # `flush` de faust, corregido (`parches.vaciar_el_bufer_del_todo`) para esperar también
        # el búfer de changelog de las tablas hasta el último mensaje.
        await self.app.producer.flush()
