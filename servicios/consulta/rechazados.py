"""Eventos rechazados por motivo, contados desde `gpr.eventos.rechazados.v1` (para /metrics).

Se cuenta aquí, leyendo el tópico desde el principio, y no solo en el procesador: el contador
del procesador vive en la memoria de cada trabajador (vuelve a 0 al reiniciarse y cada réplica
ve solo sus particiones), mientras que el tópico es la verdad completa y sobrevive reinicios:
una consulta nueva llega al mismo total. El motivo es la parte de la cabecera `gpr-motivo`
antes de ':' (`campo_requerido:agencia_id` → `campo_requerido`), para que las etiquetas sean
pocas y fijas.

Los conteos se publican solo cuando la lectura alcanzó la marca de agua alta de cada partición
(la del Fetch, no `end_offsets()`: ver DISENO §6). Un raspado a medio cargar mostraría un total
menor que el del proceso anterior y Prometheus lo tomaría por un reinicio del contador.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from servicios.comun.topicos import CABECERA_MOTIVO, RECHAZADOS

log = logging.getLogger(__name__)

SIN_MOTIVO = "desconocido"


def motivo_de(cabeceras) -> str:
    """Motivo de un registro rechazado a partir de sus cabeceras (pares nombre, bytes)."""
    for nombre, valor in cabeceras or ():
        if nombre == CABECERA_MOTIVO and valor:
            motivo = valor.decode("utf-8", errors="replace").split(":", 1)[0].strip()
            return motivo or SIN_MOTIVO
    return SIN_MOTIVO


class ContadorRechazados:
    """Total de registros de gpr.eventos.rechazados.v1 por motivo, alimentado por una tarea asyncio."""

    def __init__(self, bootstrap: str, topico: str = RECHAZADOS, *, reintento_s: float = 1.0,
                 cliente_id: str = "gpr-consulta-rechazados"):
        self._bootstrap = bootstrap
        self._topico = topico
        self._reintento_s = reintento_s
        self._cliente_id = cliente_id
        self._conteos: Counter[str] = Counter()
        # Siguiente offset por partición: tras un fallo se retoma aquí y no se cuenta dos veces.
        self._posiciones: dict[int, int] = {}
        self._tarea: asyncio.Task | None = None
        self.al_dia = asyncio.Event()

    def conteos(self) -> dict[str, int] | None:
        """Copia de los conteos (segura desde el hilo de /metrics); None hasta estar al día."""
        if not self.al_dia.is_set():
            return None
        return dict(self._conteos)

    def iniciar(self) -> None:
        if self._tarea is None:
            self._tarea = asyncio.create_task(self._ejecutar(), name=f"conteo {self._topico}")

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

    async def _leer(self) -> None:
        consumidor = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, group_id=None, enable_auto_commit=False,
                                      auto_offset_reset="earliest", client_id=self._cliente_id)
        try:
            try:
                await consumidor.start()
            except KafkaError as error:
                log.warning("no se pudo conectar con Kafka en %s: %s", self._bootstrap, error)
                await asyncio.sleep(self._reintento_s)
                return
            particiones = consumidor.partitions_for_topic(self._topico)
            if not particiones:
                # El tópico aún no existe: se vuelve a mirar en el próximo intento.
                await asyncio.sleep(self._reintento_s)
                return
            tps = [TopicPartition(self._topico, p) for p in sorted(particiones)]
            consumidor.assign(tps)
            for tp in tps:
                if tp.partition in self._posiciones:
                    consumidor.seek(tp, self._posiciones[tp.partition])
                else:
                    await consumidor.seek_to_beginning(tp)
            while True:
                lotes = await consumidor.getmany(timeout_ms=250, max_records=10_000)
                for tp, registros in lotes.items():
                    for registro in registros:
                        self._conteos[motivo_de(registro.headers)] += 1
                    self._posiciones[tp.partition] = registros[-1].offset + 1
                if not self.al_dia.is_set() and await _alcanzada_marca_de_agua(consumidor, tps):
                    self.al_dia.set()
                    log.info("conteo de %s al día: %d registros", self._topico, sum(self._conteos.values()))
        finally:
            # Ver vista._cerrar: ceder el bucle antes de stop() evita un CancelledError espurio.
            await asyncio.sleep(0)
            await consumidor.stop()


async def _alcanzada_marca_de_agua(consumidor: AIOKafkaConsumer, particiones: list[TopicPartition]) -> bool:
    for tp in particiones:
        marca = consumidor.highwater(tp)
        if marca is None or await consumidor.position(tp) < marca:
            return False
    return True
