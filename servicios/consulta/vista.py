"""Vista materializada de `gpr.indicadores.v1`: el último `Indicador` de cada serie, en memoria.

Al arrancar se leen todas las particiones del tópico compactado desde el principio, sin
grupo de consumidores (cada réplica de la consulta tiene su vista completa), y se sigue
leyendo para siempre. Un registro con valor nulo es una lápida: la serie desaparece.

Cuándo la vista está «al día»: cuando, en cada partición, la posición de lectura alcanzó la
marca de agua alta (high watermark) que trajo la última respuesta de `Fetch`
(`AIOKafkaConsumer.highwater`). No se usa `end_offsets()`: el broker embebido (Tansu)
responde a `ListOffsets` con el offset base del último lote y no con el final del registro
(DISENO.md §6), así que compararse con él declararía la vista al día antes de tiempo. La
marca de agua del `Fetch` es correcta en Tansu y en Apache Kafka, y también cubre el tópico
vacío (marca 0, posición 0). Una vez al día, la vista no vuelve atrás: lo que llegue después
son actualizaciones en vivo.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from google.protobuf.message import DecodeError

from gpr.v1 import indicadores_pb2 as ipb
from servicios.comun.topicos import INDICADORES
from servicios.consulta.peticiones import ClaveOrden, clave_orden

log = logging.getLogger(__name__)

# Recibe la clave de la serie y su nuevo valor, o None si la serie se borró (lápida).
Suscriptor = Callable[[str, "ipb.Indicador | None"], None]


class Vista:
    """Último valor de cada serie de gpr.indicadores.v1, alimentado por una tarea asyncio."""

    def __init__(self, bootstrap: str, topico: str = INDICADORES, *, reintento_s: float = 1.0,
                 cliente_id: str = "gpr-consulta"):
        self._bootstrap = bootstrap
        self._topico = topico
        self._reintento_s = reintento_s
        self._cliente_id = cliente_id
        self._series: dict[str, ipb.Indicador] = {}
        self._suscriptores: list[Suscriptor] = []
        # Siguiente offset por partición: si el consumidor falla, se retoma desde aquí y no
        # desde el principio, para no resucitar series cuyas lápidas ya se compactaron.
        self._posiciones: dict[int, int] = {}
        self._version = 0
        self._ordenadas: tuple[int, list[tuple[ClaveOrden, ipb.Indicador]]] = (-1, [])
        self._tarea: asyncio.Task | None = None
        self.al_dia = asyncio.Event()
        self.descartados = 0

    def obtener(self, clave: str) -> ipb.Indicador | None:
        return self._series.get(clave)

    def instantanea(self) -> dict[str, ipb.Indicador]:
        """Copia de las series, segura de leer desde otro hilo (el de /metrics).

        `dict.copy()` no cede el GIL, y los mensajes se reemplazan, nunca se modifican.
        """
        return self._series.copy()

    def ordenadas(self) -> list[tuple[ClaveOrden, ipb.Indicador]]:
        """Series en el orden del listado; la lista se reutiliza mientras la vista no cambie."""
        version, lista = self._ordenadas
        if version != self._version:
            lista = sorted((clave_orden(k, v), v) for k, v in self._series.items())
            self._ordenadas = (self._version, lista)
        return lista

    def __len__(self) -> int:
        return len(self._series)

    def suscribir(self, suscriptor: Suscriptor) -> Callable[[], None]:
        """Avisa de cada cambio a `suscriptor` (en el bucle de eventos; no debe bloquear).

        Devuelve la función que cancela la suscripción.
        """
        self._suscriptores.append(suscriptor)

        def cancelar() -> None:
            if suscriptor in self._suscriptores:
                self._suscriptores.remove(suscriptor)

        return cancelar

    def iniciar(self) -> None:
        if self._tarea is None:
            self._tarea = asyncio.create_task(self._ejecutar(), name=f"vista {self._topico}")

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
        while True:
            try:
                await self._leer()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("falló la lectura de %s; se reintenta en %.0f s", self._topico, self._reintento_s)
                await asyncio.sleep(self._reintento_s)

    async def _conectar(self) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
        """Un consumidor iniciado y las particiones del tópico; espera a que el tópico exista."""
        avisado = False
        while True:
            consumidor = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                client_id=self._cliente_id,
            )
            try:
                await consumidor.start()
            except KafkaError as error:
                log.warning("no se pudo conectar con Kafka en %s: %s", self._bootstrap, error)
            else:
                particiones = consumidor.partitions_for_topic(self._topico)
                if particiones:
                    return consumidor, [TopicPartition(self._topico, p) for p in sorted(particiones)]
                if not avisado:
                    log.info("esperando a que exista el tópico %s", self._topico)
                    avisado = True
            await _cerrar(consumidor)
            await asyncio.sleep(self._reintento_s)

    async def _leer(self) -> None:
        consumidor, particiones = await self._conectar()
        inicio = time.monotonic()
        try:
            consumidor.assign(particiones)
            for tp in particiones:
                if tp.partition in self._posiciones:
                    consumidor.seek(tp, self._posiciones[tp.partition])
                else:
                    await consumidor.seek_to_beginning(tp)
            while True:
                lotes = await consumidor.getmany(timeout_ms=250, max_records=10_000)
                for tp, registros in lotes.items():
                    for registro in registros:
                        self._aplicar(registro.key, registro.value, tp.partition, registro.offset)
                    self._posiciones[tp.partition] = registros[-1].offset + 1
                if not self.al_dia.is_set() and await self._alcanzada_marca_de_agua(consumidor, particiones):
                    self.al_dia.set()
                    log.info("vista de %s al día: %d series en %.1f s", self._topico, len(self._series),
                             time.monotonic() - inicio)
        finally:
            await _cerrar(consumidor)

    @staticmethod
    async def _alcanzada_marca_de_agua(consumidor: AIOKafkaConsumer, particiones: list[TopicPartition]) -> bool:
        for tp in particiones:
            marca = consumidor.highwater(tp)
            # Sin marca todavía: ninguna respuesta de Fetch de esa partición ha llegado.
            if marca is None or await consumidor.position(tp) < marca:
                return False
        return True

    def _aplicar(self, clave_bytes: bytes | None, valor: bytes | None, particion: int, offset: int) -> None:
        try:
            clave = clave_bytes.decode("utf-8") if clave_bytes is not None else None
        except UnicodeDecodeError:
            clave = None
        if not clave:
            self._descartar(particion, offset, "registro sin clave UTF-8")
            return
        if valor is None:
            if self._series.pop(clave, None) is None:
                return
            indicador = None
        else:
            try:
                indicador = ipb.Indicador.FromString(valor)
            except DecodeError as error:
                self._descartar(particion, offset, f"no es un protobuf gpr.v1.Indicador: {error}")
                return
            self._series[clave] = indicador
        self._version += 1
        for suscriptor in list(self._suscriptores):
            try:
                suscriptor(clave, indicador)
            except Exception:
                log.exception("un suscriptor de la vista falló con la serie %s", clave)

    def _descartar(self, particion: int, offset: int, motivo: str) -> None:
        self.descartados += 1
        log.warning("registro descartado en %s[%d]@%d: %s", self._topico, particion, offset, motivo)


async def _cerrar(consumidor: AIOKafkaConsumer) -> None:
    # aiokafka 0.14 sin grupo: si stop() llega antes de que la tarea interna creada en
    # start() haya corrido una vez, esa tarea cancelada propaga CancelledError desde stop()
    # y cancela a quien lo llamó. Ceder el bucle una vez le deja entrar en su try.
    await asyncio.sleep(0)
    await consumidor.stop()
