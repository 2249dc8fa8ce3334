"""Entrega por lotes: los registros de un tópico pasan del consumidor de faust al procesador
de a una lista por partición y fetch, sin el flujo (`Stream`) de faust registro a registro.

Por qué. Un agente de faust recibe cada registro por una cadena de corrutinas: el bucle de
consumo lo entrega al conductor, que arma un `Event`, lo pone en la cola del canal, y el
flujo lo saca, lo anota, fija el evento en curso y lo pasa a `take`. Entregando la lista
de registros de cada fetch, con el mismo consumidor, sus mensajes y su confirmación, un
agente que no hace nada gasta una fracción de la CPU por registro que gasta con esa cadena
(también con `parches.entrega_directa`; cifras en docs/rendimiento.md). Con un evento por
registro ese costo era más de la mitad del trabajador.

Qué sigue siendo de faust: el consumidor (grupo, reparto de particiones, pausa de las
particiones mientras se recuperan las tablas, vuelta al offset confirmado tras un
reequilibrio), la confirmación de offsets (cada mensaje se confirma con `Consumer.ack`, y
faust confirma en Kafka el prefijo contiguo de lo confirmado), el control de flujo (la cola
es un `FlowControlQueue` de faust: no admite nada con el flujo suspendido) y las tablas con su changelog y su recuperación.

Qué se hace aquí como lo hace faust, para que nada cambie salvo el costo:

- `Consumer.getmany` descarta lo leído si el flujo está detenido (y vuelve al offset
  confirmado) o si la partición no está activa: aquí igual (`entregar`).
- `Consumer._drain_messages` descarta un registro anterior al último leído de su partición,
  confirma cada `broker_commit_every` mensajes confirmados, entrega en carrera con la
  suspensión del flujo y anota el último offset leído: aquí por lista. Una diferencia: si
  mientras la lista esperaba sitio en la cola se pidió releer la partición, no se anota (faust
  la anotaría y descartaría la relectura por ya leída).
- `Stream` descarta, al sacarlo de la cola, el mensaje de otra generación del grupo o con
  el flujo detenido (se vuelve a leer), y anota el resto como pendiente de confirmar para
  que un reequilibrio o una parada esperen a que se procesen (`wait_empty`): aquí en
  `lotes`, con el mismo conjunto débil de faust. Dos diferencias: con el flujo detenido
  (o las tablas recuperándose) se espera en vez de descartar, y la cola no se vacía al
  reanudar el flujo (ver `EntregaPorLotes.__init__`): lo descartado así solo se relee si
  faust vuelve al offset confirmado, y una partición sin offset confirmado no vuelve.

El gancho es `Consumer._wait_next_records` (lo que `getmany` llama para obtener el fetch):
saca del resultado las particiones del tópico y `getmany` sigue con el resto (los aportes,
los changelogs) como siempre. `tests/unitarios/test_entrega_por_lotes.py` comprueba que el
código de faust que esto replica sigue siendo el mismo.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from mode.utils.queues import FlowControlQueue

registro = logging.getLogger("gpr.procesador")

# Listas (una por partición y fetch) que caben en la cola: el consumidor espera cuando se llena.
LISTAS_EN_COLA = 8
# Tope de un lote en bytes de registros, además del de registros (`GPR_LOTE_MAXIMO`): con
# `LoteEventos` de 500 eventos, 3 000 registros serían 1,5 millones de eventos en memoria a la
# vez; con 64 MiB, unos 450 000, lo que daban antes 1 000 registros. Menos cuesta caudal: un
# tope más bajo gastaba claramente más CPU por evento en lotes (banco 1: más agregados por
# par y menos eventos del mismo caso por lote). Con un evento por registro manda el número.
BYTES_MAXIMOS_POR_LOTE = 64 << 20
# Cada cuánto se mira si el flujo volvió tras un reequilibrio.
_SONDEO_FLUJO_S = 0.05


class Entregado:
    """Un registro entregado, con la forma que el procesador espera de un evento de faust:
    `message` y `ack()`."""

    # `__weakref__`: faust guarda el evento en curso como referencia débil (`app.en_particion`).
    __slots__ = ("message", "_confirmar", "__weakref__")

    def __init__(self, mensaje: Any, confirmar) -> None:
        self.message = mensaje
        self._confirmar = confirmar

    def ack(self) -> bool:
        return self._confirmar(self.message)


class EntregaPorLotes:
    """Los registros de `topico` para una app faust. Se crea antes de arrancar el trabajador;
    el tópico se suscribe con la app (`app.topics.add`), sin agente. Una por tópico (el
    procesador tiene dos: el reparto y la etapa por caso); todas comparten el consumidor."""

    def __init__(self, app: Any, topico: Any, listas_en_cola: int = LISTAS_EN_COLA) -> None:
        entregas = app.__dict__.setdefault("_gpr_entregas_por_lotes", {})
        if topico.get_topic_name() in entregas:
            raise RuntimeError(f"la app ya tiene una entrega por lotes de {topico.get_topic_name()}")
        instalar()
        self.app = app
        self.topico = topico.get_topic_name()
        # Sin `clear_on_resume`, a diferencia de las colas de los agentes: faust las vacía al
        # reanudar el flujo tras una recuperación, y lo leído entre la vuelta al offset
        # confirmado y esa reanudación (faust reanuda las particiones antes: ver `orden.py`)
        # se perdía sin volver a leerse. Lo de una generación anterior se descarta al sacarlo.
        self.cola: FlowControlQueue = FlowControlQueue(maxsize=listas_en_cola, flow_control=app.flow_control)
        self._resto: list = []
        # Relecturas pedidas por partición (`anotar_relectura`): ver `entregar`.
        self._relecturas: dict = {}
        app.topics.add(topico)
        entregas[self.topico] = self

    async def entregar(self, consumidor: Any, registros: dict, activas: set | None) -> None:
        """Saca de `registros` (el fetch: partición → registros de aiokafka) los del tópico y
        los pone en la cola, una lista de mensajes de faust por partición."""
        for tp in [tp for tp in registros if tp.topic == self.topico]:
            lista = registros.pop(tp)
            if consumidor.should_stop or not consumidor.flow_active:
                continue
            if activas is not None and tp not in activas and tp not in consumidor._buffered_partitions:
                continue
            leido = consumidor._read_offset[tp]
            a_mensaje = consumidor._to_message
            mensajes = [a_mensaje(tp, r) for r in lista if leido is None or r.offset >= leido]
            if not mensajes:
                continue
            cada = consumidor._commit_every
            if cada is not None and consumidor._n_acked >= cada:
                consumidor._n_acked = 0
                await consumidor.commit()
            relecturas = self._relecturas.get(tp, 0)
            await consumidor.wait_first(self.cola.put(mensajes), consumidor.suspend_flow.wait())
            # Salvo que mientras tanto se pidiera releer la partición: anotar lo entregado haría
            # descartar la relectura como ya leída. Se mira el contador (una relectura al mismo
            # offset no cambia `_read_offset`) y el offset (faust también vuelve atrás solo).
            if consumidor._read_offset[tp] == leido and self._relecturas.get(tp, 0) == relecturas:
                consumidor._read_offset[tp] = mensajes[-1].offset

    def anotar_relectura(self, tp: Any) -> None:
        """Avisa que se pidió releer `tp` (antes de pedirlo al consumidor)."""
        self._relecturas[tp] = self._relecturas.get(tp, 0) + 1

    async def lotes(self, maximo: int, espera_s: float,
                    bytes_maximos: int = BYTES_MAXIMOS_POR_LOTE) -> AsyncIterator[list[Entregado]]:
        """Lotes de hasta `maximo` registros, como `stream.noack_take(maximo, within=espera_s)`:
        cada uno sale lleno o `espera_s` después de su primer registro. Además, un lote se
        cierra al pasar de `bytes_maximos` de valores (con al menos un registro). Nada se
        confirma aquí."""
        reloj = asyncio.get_running_loop().time
        while True:
            if not self._resto:
                self._resto = await self.cola.get()
            lote: list = []
            tamano = 0
            limite = reloj() + espera_s
            while True:
                tamano = self._tomar(lote, maximo, tamano, bytes_maximos)
                if len(lote) >= maximo or tamano >= bytes_maximos:
                    break
                if not self.cola.empty():
                    self._resto = self.cola.get_nowait()
                    continue
                queda = limite - reloj()
                if queda <= 0:
                    break
                try:
                    self._resto = await asyncio.wait_for(self.cola.get(), queda)
                except TimeoutError:
                    break
            await self._flujo_activo()
            entregados = self._anotar(lote)
            if entregados:
                yield entregados

    def _tomar(self, lote: list, maximo: int, tamano: int, bytes_maximos: int) -> int:
        """Pasa mensajes de `_resto` a `lote` hasta llenarlo; devuelve el tamaño del lote."""
        tomados = 0
        for mensaje in self._resto:
            if len(lote) >= maximo or tamano >= bytes_maximos:
                break
            lote.append(mensaje)
            tamano += len(mensaje.value or b"")
            tomados += 1
        self._resto = self._resto[tomados:]
        return tamano

    async def _flujo_activo(self) -> None:
        """Espera a que el flujo esté activo y las tablas recuperadas. faust descarta lo que
        saca de la cola con el flujo detenido; aquí se espera, y después se descarta lo que
        quede de otra generación (tras un reequilibrio faust vuelve al offset confirmado)."""
        app = self.app
        while not app.flow_control.is_active() or app.in_recovery:
            await asyncio.sleep(_SONDEO_FLUJO_S)

    def _anotar(self, mensajes: list) -> list[Entregado]:
        """Los mensajes que se procesan, anotados como pendientes de confirmar; descarta (sin
        confirmar: se vuelven a leer) los de otra generación."""
        app = self.app
        generacion = app.consumer_generation_id
        consumidor = app.consumer
        pendientes = consumidor._unacked_messages
        confirmar = consumidor.ack
        entregados = []
        for mensaje in mensajes:
            if mensaje.generation_id != generacion:
                continue
            mensaje.tracked = True
            pendientes.add(mensaje)
            entregados.append(Entregado(mensaje, confirmar))
        if len(entregados) < len(mensajes):
            registro.info("%d registros de una generación anterior descartados; se leerán de nuevo",
                          len(mensajes) - len(entregados))
        return entregados


def instalar() -> None:
    """Engancha la entrega en `Consumer._wait_next_records` de faust (una vez por proceso; a
    las apps sin entrega por lotes no les cambia nada)."""
    from faust.transport.consumer import Consumer

    if Consumer.__dict__.get("_gpr_entrega_por_lotes_instalada", False):
        return
    original = Consumer._wait_next_records

    async def _wait_next_records(self, timeout):
        registros, activas = await original(self, timeout)
        if registros:
            for entrega in getattr(self.app, "_gpr_entregas_por_lotes", {}).values():
                await entrega.entregar(self, registros, activas)
        return registros, activas

    Consumer._wait_next_records = _wait_next_records
    Consumer._gpr_entrega_por_lotes_instalada = True
