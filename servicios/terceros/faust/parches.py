"""Correcciones a faust-streaming 0.15: que confirmar un offset implique que sus efectos en
las tablas ya están en Kafka, y que entregar un registro no cueste cuatro tareas.

Las escrituras en una tabla de faust no van directo al productor: `tabla[clave] = valor`
deja el registro del changelog en un búfer (`ProducerBuffer`) que una tarea de fondo vacía
de a un mensaje. Antes de confirmar offsets faust vacía ese búfer con `flush()`, pero ese
`flush()` se rinde en cuanto pasan 0,1 s sin que salga un mensaje y devuelve con el búfer a
medias; faust confirma igual. Visto aquí, con dos núcleos ocupados: un `flush()` devolvió
con registros de changelog pendientes y la confirmación siguió. Si el proceso muere en ese
momento, los eventos de esos registros ya no se releen y sus efectos en las tablas se pierden
(visto en las pruebas SIGKILL con el almacén en memoria: un total una solicitud corto).

La corrección: `flush()` espera hasta que no quede nada en el búfer *ni en vuelo* (el mensaje
que la tarea de fondo ya sacó de la cola pero aún no entregó al productor de aiokafka), y si
el búfer ya se está deteniendo, entrega él mismo lo que queda en vez de fallar.

Tras un lote fallido, `olvidar_entregados` quita de la espera de faust los mensajes ya
entregados que no se confirmarán nunca (ver su docstring). Y `entrega_directa` quita del
bucle de consumo de faust el costo fijo por registro de `wait_first` (ver la suya).
"""

from __future__ import annotations

import asyncio
import logging
import types

registro = logging.getLogger("gpr.procesador")

# Cada cuánto se vuelve a mirar el búfer mientras se vacía: solo acota la espera cuando se
# pierde un aviso de `message_sent` entre dos comprobaciones.
_SONDEO_S = 0.1


def vaciar_el_bufer_del_todo() -> None:
    """Corrige el `ProducerBuffer` de faust para todo el proceso (idempotente)."""
    from faust.transport.producer import ProducerBuffer

    corregir_bufer(ProducerBuffer)


def corregir_bufer(clase) -> None:
    """Reemplaza `flush` de `clase` (un `ProducerBuffer`) y cuenta sus mensajes en vuelo."""
    if clase.__dict__.get("_gpr_vaciado_completo", False):
        return
    enviar_original = clase._send_pending

    async def _send_pending(self, fut) -> None:
        self._gpr_en_vuelo = getattr(self, "_gpr_en_vuelo", 0) + 1
        try:
            await enviar_original(self, fut)
        finally:
            self._gpr_en_vuelo -= 1

    async def flush(self) -> None:
        while self.size or getattr(self, "_gpr_en_vuelo", 0):
            if self.state != "running" or self.should_stop:
                # La tarea de fondo ya no saca de la cola: se entrega aquí lo que quede.
                await _entregar_lo_que_queda(self)
                if not getattr(self, "_gpr_en_vuelo", 0):
                    return
            self.message_sent.clear()
            try:
                await asyncio.wait_for(self.message_sent.wait(), timeout=_SONDEO_S)
            except TimeoutError:
                continue

    clase._send_pending = _send_pending
    clase.flush = flush
    clase._gpr_vaciado_completo = True


def huecos_solo_confirmados() -> None:
    """Quita a faust la costumbre de dar por procesados los offsets que se salta.

    Cuando el offset leído salta (p. ej. tras volver al confirmado mientras llegaban
    registros viejos), faust registra el intervalo como "hueco" y lo confirma como si se
    hubiera procesado, *incluido* el registro que acaba de llegar. Con la guardia de orden
    (`orden.py`) esos registros se releen, pero si el proceso muere antes, la confirmación ya
    los dejó atrás. Aquí solo la guardia declara huecos (`confirmar_hueco`), cuando comprobó
    que esos offsets no existen.
    """
    from faust.transport.consumer import Consumer

    if Consumer.__dict__.get("_gpr_huecos_propios", False):
        return
    Consumer._gpr_agregar_hueco = Consumer._add_gap

    async def _add_gap(self, tp, offset_from, offset_to) -> None:
        return None

    Consumer._add_gap = _add_gap
    Consumer._gpr_huecos_propios = True


async def confirmar_hueco(consumidor, tp, desde: int, hasta: int) -> None:
    """Marca como confirmables los offsets `desde`..`hasta` (inclusive), que no existen."""
    agregar = getattr(consumidor, "_gpr_agregar_hueco", None) or consumidor._add_gap
    await agregar(tp, desde, hasta)


async def _entregar_lo_que_queda(bufer) -> None:
    entregados = 0
    while bufer.size:
        await bufer._send_pending(bufer.pending.get_nowait())
        entregados += 1
    if entregados:
        registro.info("búfer de changelog vaciado al detenerse: %d registros entregados", entregados)


def olvidar_entregados(consumidor, mensajes) -> int:
    """Tras un lote fallido, deja de esperar sus `mensajes` (de faust, ya entregados y sin
    confirmar); devuelve cuántos quitó.

    faust anota cada mensaje entregado a un flujo y, antes de un reequilibrio o de una parada
    ordenada (`wait_empty`), espera a que todos se confirmen o dejen de existir (es un
    conjunto débil). Los de un lote fallido no se confirmarán nunca (se releen como mensajes
    nuevos), y la traza del error, que el supervisor de faust guarda, los mantiene vivos:
    visto, tras un lote fallido la parada se quedaba en `wait_empty` hasta el SIGKILL, y un
    reequilibrio quedaría igual. Solo esos: los que siguen en la cola del agente los procesa
    el agente reiniciado, y faust debe seguir esperándolos. Confirmar no depende de esta
    anotación. Es un atributo interno de faust: si cambiara, no se quita nada.
    """
    pendientes = getattr(consumidor, "_unacked_messages", None)
    if pendientes is None:
        return 0
    quitados = 0
    for mensaje in mensajes:
        if not mensaje.acked and mensaje in pendientes:
            pendientes.discard(mensaje)
            quitados += 1
    return quitados


def entrega_directa(clase=None) -> None:
    """Entrega cada registro al flujo sin crear tareas cuando nada lo detiene (idempotente).

    El bucle de consumo de faust (`Consumer._drain_messages`) entrega cada registro con
    `wait_first(callback(mensaje), suspend_flow.wait())`: si empieza un reequilibrio mientras
    la entrega espera (flujo suspendido, cola del flujo llena), la abandona. `wait_first` crea
    cuatro tareas y un `asyncio.wait` por registro: una parte grande de lo que gasta por
    registro un agente de faust que no hace nada (docs/rendimiento.md). Y casi siempre la
    entrega termina sin esperar nada: cola con sitio, flujo activo.

    Aquí se da el primer paso de la entrega en el propio bucle. Si termina, es lo mismo que
    habría hecho `wait_first` (la entrega corre primero y gana; su resultado no se usa). Si
    queda esperando, el resto corre como antes, dentro del `wait_first` original y en
    carrera con la suspensión del flujo. Solo toca esa llamada (dos corrutinas, la segunda
    `Event.wait` de asyncio, sin plazo): las demás esperas van al original sin cambios.
    Y no mientras el grupo se reequilibra (`app.rebalancing`, que sigue activo hasta un poco
    después de que faust vuelve al offset confirmado): al terminar una recuperación faust
    reanuda las particiones antes de esa vuelta y descarta lo leído en medio (`orden.py`);
    entregando directo en ese intervalo, visto en el banco de arranque, el último registro
    de una partición quieta a veces se perdía así en los reinicios con estado local, y solo
    el vigía lo releía (con el original, nunca).
    `clase`: la del consumidor de faust; otra solo en las pruebas.

    Dos diferencias, sin efecto hoy: el primer paso corre en la tarea del bucle de consumo y
    no en una nueva (una variable de contexto fijada ahí quedaría en ella; nada en la
    entrega de faust ni en la nuestra fija ninguna ni usa `current_task`), y el bucle ya no
    cede el turno por registro sino cada 100 (`_drain_messages` lo hace con `sleep(0)`):
    unos milisegundos sin ceder; el latido del grupo va en el hilo del consumidor.
    """
    from mode.services import WaitResults

    if clase is None:
        from faust.transport.consumer import Consumer as clase
    if clase.__dict__.get("_gpr_entrega_directa", False):
        return
    original = clase.wait_first
    espera_de_suspension = asyncio.Event.wait.__code__

    async def wait_first(self, *coros, timeout=None):
        if (len(coros) != 2 or timeout is not None or not asyncio.iscoroutine(coros[0])
                or getattr(coros[1], "cr_code", None) is not espera_de_suspension
                or self.app.rebalancing):
            return await original(self, *coros, timeout=timeout)
        entrega, suspension = coros
        try:
            pendiente = entrega.send(None)
        except StopIteration as fin:
            suspension.close()
            if self._stopped.is_set() or self._crashed.is_set():
                # Como el original: con el servicio detenido o caído no hay ganador.
                return WaitResults([], [], True)
            return WaitResults([entrega], [fin.value], False)
        except BaseException:
            suspension.close()
            raise
        return await original(self, _continuar(entrega, pendiente), suspension)

    clase.wait_first = wait_first
    clase._gpr_entrega_directa = True


async def _continuar(corrutina, pendiente):
    """Sigue, dentro de una tarea, una corrutina que ya dio su primer paso y espera `pendiente`."""
    return await _reanudar(corrutina, pendiente)


@types.coroutine
def _reanudar(corrutina, pendiente):
    # Devuelve a la tarea lo que la corrutina espera y le pasa lo que la tarea le manda (el
    # resultado o la cancelación): lo que haría `await` si la tarea la hubiera empezado.
    while True:
        try:
            enviado = yield pendiente
        except BaseException as error:
            try:
                pendiente = corrutina.throw(error)
            except StopIteration as fin:
                return fin.value
        else:
            try:
                pendiente = corrutina.send(enviado)
            except StopIteration as fin:
                return fin.value


def estado_local_nunca_por_delante() -> None:
    """El estado local de una tabla nunca prevalece sobre su changelog: si va por delante (o no
    se sabe hasta dónde llega), se descarta y se reconstruye desde el changelog, en vez de que
    faust se niegue a arrancar o mezcle lo viejo con lo nuevo.

    Pasa cuando el broker vuelve vacío (el embebido guarda en memoria; un clúster recreado, o
    otro clúster con la misma configuración): RocksDB recuerda el offset del changelog hasta el
    que aplicó y el changelog nuevo no llega ahí. faust 0.15 lanza `ConsistencyError` en la
    recuperación y el trabajador muere en cada arranque hasta que alguien borra `datos/`. Y una
    partición sin offset anotado (p. ej. la de una tabla que escribió un solo lote) faust la
    relee entera sobre lo local, así que las claves viejas que el changelog nuevo no tiene
    sobrevivirían. El changelog es la verdad: en ambos casos lo local se borra (releerlo todo
    es lo que faust haría igual sin offset) y la recuperación lee el changelog desde su inicio.
    Se corrige en `Recovery._build_offsets`, que corre justo antes de esa comprobación con los
    fines de los changelogs ya leídos.
    """
    from faust.tables.recovery import Recovery

    if Recovery.__dict__.get("_gpr_estado_local", False):
        return
    original = Recovery._build_offsets

    async def _build_offsets(self, consumer, tps, destination, title) -> None:
        if title == "active":
            descartadas = []
            for tp in sorted(tps):
                local, fin = destination.get(tp), self.active_highwaters.get(tp)
                adelantado = local is not None and fin is not None and local > fin
                if local is None or adelantado:
                    tabla = self.tp_to_table.get(tp)
                    if tabla is not None and _descartar_particion_local(tabla.data, tp.partition):
                        descartadas.append(f"{tp.topic}[{tp.partition}] (local {local}, changelog {fin})")
                    destination[tp] = None
            if descartadas:
                registro.warning("estado local por delante de su changelog o sin offset anotado en %d particiones: "
                                 "se descarta lo local y se reconstruye desde el changelog (¿el broker volvió vacío?): %s",
                                 len(descartadas), ", ".join(descartadas))
        await original(self, consumer, tps, destination, title)

    Recovery._build_offsets = _build_offsets
    Recovery._gpr_estado_local = True


def _descartar_particion_local(almacen, particion: int) -> bool:
    """Borra la base local de una partición de una tabla en RocksDB; dice si tenía datos (el
    almacén en memoria no guarda nada entre arranques y no se toca)."""
    import shutil

    bases = getattr(almacen, "_dbs", None)
    if bases is None:
        return False
    base = almacen._db_for_partition(particion)
    tenia_datos = next(iter(base.keys()), None) is not None
    if not tenia_datos:
        return False
    bases.pop(particion, None)
    base.close()
    shutil.rmtree(almacen.partition_path(particion))
    indice = getattr(almacen, "_key_index", None)
    if indice is not None:
        indice.clear()
    return True
