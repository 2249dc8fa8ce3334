"""Lectura de Kafka de la consulta: un lector de tópicos, el fin real del log y la tarea de fondo.

Todo lo que la consulta lee de Kafka pasa por aquí (docs/consulta.md, «Lectura de Kafka»):

- `LectorTopico` lee un tópico entero desde el principio, sin grupo de consumidores (cada
  réplica tiene su copia completa), y lo sigue para siempre; entrega cada lote a quien arma
  algo con él: la vista de indicadores (`vista.py`) y el conteo de rechazados
  (`rechazados.py`).
- `fin_de_log` da el fin real de cada partición: lo usa el retraso del procesador
  (`retraso.py`).
- `Tarea`: el arranque y la parada de la tarea asyncio de cada uno.

El fin del log es siempre la marca de agua alta (high watermark) de una respuesta de Fetch
(`AIOKafkaConsumer.highwater`), nunca lo que responde `ListOffsets` (`end_offsets()`): el broker
embebido (Tansu) responde ahí el offset base del último lote y no el final, y compararse con
él declararía el tópico leído antes de tiempo. La marca del Fetch es correcta en Tansu y en
Apache Kafka, y cubre el tópico vacío (marca 0, posición 0).

Estados del lector:

- «cargado» (`cargada`): en cada partición la posición alcanzó la marca de agua, al menos una
  vez desde el arranque o desde la última reconstrucción;
- «al día» (`al_dia`, lo que dice la salud gRPC de la vista): cargado, con la marca de agua
  alcanzada, y con una respuesta de Kafka de cada partición en los últimos `plazo_kafka_s`
  (`Frescura`). Tras un silencio de Kafka hay que volver a alcanzar la marca.

Si el tópico desaparece o vuelve más corto que lo leído (un broker que volvió vacío, un tópico
borrado y creado de nuevo: `OffsetOutOfRange`, o una marca de agua por debajo de lo leído
durante `plazo_kafka_s`), lo armado se vacía (`al_vaciar`) y se lee de nuevo desde el
principio, como recién arrancado. Un tópico recreado que durante el corte creció más allá de
lo leído no se distingue por los offsets (aiokafka no expone el id del tópico), salvo que el
broker lo haya informado ausente en algún momento.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError, OffsetOutOfRangeError

from servicios.comun.kafka_conexion import ConexionKafka, explicar
from servicios.terceros.aiokafka import marcas_de_agua, tolerar_cabeceras_no_utf8

log = logging.getLogger(__name__)

# Recibe la partición y sus registros nuevos, en orden de offset.
AlLeer = Callable[[int, list[ConsumerRecord]], None]


class Tarea:
    """Una tarea asyncio de fondo (`_ejecutar`) con arranque y parada que se pueden repetir."""

    def __init__(self, nombre: str):
        self._nombre = nombre
        self._tarea: asyncio.Task | None = None

    def iniciar(self) -> None:
        if self._tarea is None:
            self._tarea = asyncio.create_task(self._ejecutar(), name=self._nombre)

    async def detener(self) -> None:
        tarea, self._tarea = self._tarea, None
        if tarea is None:
            return
        tarea.cancel()
        try:
            await tarea
        except asyncio.CancelledError:
            pass

    async def _ejecutar(self) -> None:
        raise NotImplementedError


def nuevo_consumidor(conexion: ConexionKafka, cliente_id: str, **opciones) -> AIOKafkaConsumer:
    """Un consumidor sin grupo ni confirmaciones (la consulta solo lee), con la seguridad de
    `conexion` (TLS, SASL: GPR_KAFKA_*)."""
    return AIOKafkaConsumer(**conexion.para_aiokafka(), group_id=None, enable_auto_commit=False,
                            client_id=cliente_id, **opciones)


async def cerrar(consumidor: AIOKafkaConsumer) -> None:
    # aiokafka 0.14 sin grupo: si stop() llega antes de que la tarea interna creada en start()
    # haya corrido una vez, esa tarea cancelada propaga CancelledError desde stop() y cancela a
    # quien lo llamó. Ceder el bucle una vez le deja entrar en su try.
    await asyncio.sleep(0)
    await consumidor.stop()


async def fin_de_log(consumidor: AIOKafkaConsumer, particiones: list[TopicPartition],
                     limite_s: float = 5.0) -> dict[TopicPartition, int]:
    """Fin del log de cada partición: la marca de agua de un Fetch desde lo que dice ListOffsets
    (con Tansu ListOffsets da el inicio del último lote). Asigna `particiones` al consumidor."""
    return await marcas_de_agua(consumidor, await consumidor.end_offsets(particiones), limite_s)


class Frescura:
    """Si Kafka respondió hace poco a la lectura de cada partición.

    `observar` recibe, por partición, la marca de la última respuesta de Fetch que vio el
    consumidor (`last_poll_timestamp`); una marca distinta de la anterior es una respuesta
    nueva y se anota con `reloj` (monótono, inyectable en pruebas). Con el broker caído las
    marcas dejan de cambiar. Una partición recién asignada tiene el plazo entero para su
    primera respuesta.
    """

    def __init__(self, plazo_s: float, reloj: Callable[[], float] = time.monotonic):
        self.plazo_s = plazo_s
        self._reloj = reloj
        self._marcas: dict[int, int] = {}
        self._vistas: dict[int, float] = {}

    def asignar(self, particiones: Iterable[int]) -> None:
        ahora = self._reloj()
        particiones = set(particiones)
        self._vistas = {p: self._vistas.get(p, ahora) for p in particiones}
        self._marcas = {p: m for p, m in self._marcas.items() if p in particiones}

    def observar(self, marcas: dict[int, int | None]) -> None:
        ahora = None
        for particion, marca in marcas.items():
            if marca is not None and marca != self._marcas.get(particion):
                self._marcas[particion] = marca
                self._vistas[particion] = ahora = ahora if ahora is not None else self._reloj()

    def al_dia(self) -> bool:
        ahora = self._reloj()
        return all(ahora - vista <= self.plazo_s for vista in self._vistas.values())


class LectorTopico(Tarea):
    """Lee `topico` desde el principio y lo sigue; entrega cada lote a `al_leer`.

    `al_vaciar()` se llama cuando lo leído deja de valer (el tópico volvió más corto o
    desapareció): quien lo usa vacía lo que armó, y la lectura vuelve a empezar. `describir()`
    dice, para el registro, qué se armó («la vista (12 series)»).
    """

    def __init__(self, bootstrap: "str | ConexionKafka", topico: str, al_leer: AlLeer, al_vaciar: Callable[[], None],
                 describir: Callable[[], str], *, cliente_id: str, reintento_s: float = 1.0,
                 plazo_kafka_s: float = 10.0, reloj: Callable[[], float] = time.monotonic):
        super().__init__(f"lectura {topico}")
        # La dirección, o una ConexionKafka con TLS y SASL (GPR_KAFKA_*).
        self._conexion = ConexionKafka.de(bootstrap)
        self.topico = topico
        self._al_leer = al_leer
        self._al_vaciar = al_vaciar
        self._describir = describir
        self._cliente_id = cliente_id
        self._reintento_s = reintento_s
        self._reloj = reloj
        # Siguiente offset por partición: si el consumidor falla, se retoma desde aquí y no
        # desde el principio (no se cuenta dos veces ni resucitan series cuyas lápidas ya se
        # compactaron).
        self._posiciones: dict[int, int] = {}
        self.cargada = asyncio.Event()
        self._frescura = Frescura(plazo_kafka_s, reloj)
        self._alcanzada = False
        # Desde cuándo una partición informa un final por debajo de lo leído (None: no).
        self._corta_desde: float | None = None
        # Un bool y no un Event: lo lee también el hilo de /metrics.
        self.al_dia = False

    def iniciar(self) -> None:
        # Un registro con una clave de cabecera que no es UTF-8 dejaría a aiokafka (y al
        # lector) detenido para siempre en su lote.
        tolerar_cabeceras_no_utf8()
        super().iniciar()

    def revisar(self) -> bool:
        """Recalcula y devuelve `al_dia`. La llaman el bucle de lectura y, cada poco, la salud
        gRPC (el bucle puede estar esperando a Kafka)."""
        if not self._frescura.al_dia():
            self._alcanzada = False
        self.al_dia = self.cargada.is_set() and self._alcanzada
        return self.al_dia

    async def _ejecutar(self) -> None:
        while True:
            try:
                await self._leer()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("falló la lectura de %s; se reintenta en %.0f s", self.topico, self._reintento_s)
                await asyncio.sleep(self._reintento_s)

    async def _conectar(self) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
        """Un consumidor iniciado y las particiones del tópico; espera a que el tópico exista."""
        avisado = False
        while True:
            # Sin reinicio automático: una posición fuera del log (el tópico volvió vacío o más
            # corto) debe vaciar lo armado, no releer encima de lo que ya tiene.
            consumidor = nuevo_consumidor(self._conexion, self._cliente_id, auto_offset_reset="none")
            try:
                await consumidor.start()
            except KafkaError as error:
                log.warning("no se pudo conectar con Kafka en %s", explicar(self._conexion, error))
            else:
                particiones = consumidor.partitions_for_topic(self.topico)
                if particiones:
                    return consumidor, [TopicPartition(self.topico, p) for p in sorted(particiones)]
                if not avisado:
                    log.info("esperando a que exista el tópico %s", self.topico)
                    avisado = True
            await cerrar(consumidor)
            await asyncio.sleep(self._reintento_s)

    def _reconstruir(self, motivo: str) -> None:
        log.warning("%s: %s se vacía y se reconstruye desde el principio del tópico", motivo, self._describir())
        self._posiciones.clear()
        self.cargada.clear()
        self._alcanzada = False
        self._corta_desde = None
        self.revisar()
        self._al_vaciar()

    async def _leer(self) -> None:
        consumidor, particiones = await self._conectar()
        inicio = time.monotonic()
        self._frescura.asignar(tp.partition for tp in particiones)
        try:
            consumidor.assign(particiones)
            for tp in particiones:
                if tp.partition in self._posiciones:
                    consumidor.seek(tp, self._posiciones[tp.partition])
                else:
                    await consumidor.seek_to_beginning(tp)
            while True:
                try:
                    lotes = await consumidor.getmany(timeout_ms=250, max_records=10_000)
                except OffsetOutOfRangeError as error:
                    self._reconstruir(f"{self.topico} es más corto que lo ya leído ({error})")
                    return
                for tp, registros in lotes.items():
                    self._al_leer(tp.partition, registros)
                    self._posiciones[tp.partition] = registros[-1].offset + 1
                self._frescura.observar({tp.partition: consumidor.last_poll_timestamp(tp) for tp in particiones})
                if not consumidor.partitions_for_topic(self.topico):
                    # El broker responde y dice que el tópico no existe: lo leído ya no vale.
                    self._reconstruir(f"el tópico {self.topico} desapareció del broker")
                    return
                corta = await _mas_corta_que_lo_leido(consumidor, particiones)
                if corta is not None:
                    # Un broker puede responder sin OffsetOutOfRange (Tansu lo hace): la marca
                    # de agua por debajo de lo leído delata igual un log que volvió más corto.
                    # Se espera un plazo: tras un cambio de líder, Apache Kafka puede informar
                    # un momento una marca de agua atrasada, y reconstruir cuesta releer todo.
                    if self._corta_desde is None:
                        self._corta_desde = self._reloj()
                    if self._reloj() - self._corta_desde >= self._frescura.plazo_s:
                        self._reconstruir(f"{self.topico} es más corto que lo ya leído ({corta})")
                        return
                    self._alcanzada = False
                    self.revisar()
                    continue
                self._corta_desde = None
                if not self._alcanzada and await _alcanzada_marca_de_agua(consumidor, particiones):
                    self._alcanzada = True
                    if not self.cargada.is_set():
                        self.cargada.set()
                        log.info("%s leído hasta el final en %.1f s: %s", self.topico, time.monotonic() - inicio,
                                 self._describir())
                self.revisar()
        finally:
            await cerrar(consumidor)


async def _mas_corta_que_lo_leido(consumidor: AIOKafkaConsumer, particiones: list[TopicPartition]) -> str | None:
    for tp in particiones:
        marca = consumidor.highwater(tp)
        if marca is not None:
            posicion = await consumidor.position(tp)
            if posicion > marca:
                return f"partición {tp.partition}: leído hasta {posicion}, el log termina en {marca}"
    return None


async def _alcanzada_marca_de_agua(consumidor: AIOKafkaConsumer, particiones: list[TopicPartition]) -> bool:
    for tp in particiones:
        marca = consumidor.highwater(tp)
        # Sin marca todavía: ninguna respuesta de Fetch de esa partición ha llegado.
        if marca is None or await consumidor.position(tp) < marca:
            return False
    return True
