"""Retraso (consumer lag) del procesador, medido desde fuera para /metrics.

Por qué lo mide la consulta y no el procesador: un trabajador atascado o caído no informa su
propio retraso, y con varias réplicas ninguna ve todas las particiones. Aquí se comparan los
offsets confirmados del grupo de consumidores del procesador (`GPR_GRUPO_PROCESADOR`, el
`GPR_APP_ID` del procesador) con el fin real de cada partición de sus tópicos de entrada.

El fin del log es el de `lector.fin_de_log` (la marca de agua de un Fetch, como en toda la
lectura de la consulta): con `end_offsets()` solo, en el broker embebido el retraso quedaría
subestimado en el último lote. Una partición sin offset confirmado (el grupo nunca la
procesó) cuenta desde el inicio del log: un procesador que nunca arrancó también está atrasado.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from servicios.comun.kafka_conexion import ConexionKafka
from servicios.consulta.lector import Tarea, cerrar, fin_de_log, nuevo_consumidor

log = logging.getLogger(__name__)

Particion = tuple[str, int]


def calcular_retraso(fines: Mapping[Particion, int], inicios: Mapping[Particion, int],
                     confirmados: Mapping[Particion, int]) -> dict[Particion, int]:
    """Registros por procesar en cada partición: fin del log − offset confirmado.

    Un offset confirmado negativo o ausente significa «sin confirmar»: se cuenta desde el
    inicio del log. Nunca es negativo (un offset confirmado puede adelantarse a un fin leído
    un instante antes).
    """
    retraso = {}
    for particion, fin in fines.items():
        confirmado = confirmados.get(particion, -1)
        desde = confirmado if confirmado >= 0 else inicios.get(particion, 0)
        retraso[particion] = max(0, fin - desde)
    return retraso


class RetrasoProcesador(Tarea):
    """Mide el retraso del grupo cada `intervalo_s` segundos en una tarea asyncio."""

    def __init__(self, bootstrap: "str | ConexionKafka", grupo: str, topicos: list[str], intervalo_s: float,
                 cliente_id: str = "gpr-consulta-retraso"):
        super().__init__(f"retraso {grupo}")
        # La dirección, o una ConexionKafka con TLS y SASL (GPR_KAFKA_*).
        self._conexion = ConexionKafka.de(bootstrap)
        self._grupo = grupo
        self._topicos = list(topicos)
        self._intervalo_s = intervalo_s
        self._cliente_id = cliente_id
        self._valores: dict[Particion, int] = {}

    def valores(self) -> dict[Particion, int]:
        """Última medición (el hilo de /metrics la lee; se reemplaza entera, nunca se modifica)."""
        return self._valores

    async def _ejecutar(self) -> None:
        while True:
            try:
                self._valores = await self.medir()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # Mejor sin serie que con un número viejo: una alerta no debe apoyarse en él.
                self._valores = {}
                log.warning("no se pudo medir el retraso del grupo %s: %s", self._grupo, error)
            await asyncio.sleep(self._intervalo_s)

    async def medir(self) -> dict[Particion, int]:
        """Una medición completa; los tópicos que aún no existen se omiten."""
        consumidor = nuevo_consumidor(self._conexion, self._cliente_id)
        admin = AIOKafkaAdminClient(**self._conexion.para_aiokafka(), client_id=self._cliente_id)
        await consumidor.start()
        try:
            await admin.start()
            try:
                tps = [TopicPartition(t, p) for t in self._topicos
                       for p in sorted(consumidor.partitions_for_topic(t) or ())]
                if not tps:
                    return {}
                fines = await fin_de_log(consumidor, tps)
                inicios = await consumidor.beginning_offsets(tps)
                # Con las particiones explícitas: sin ellas el broker embebido responde un
                # OffsetFetch que aiokafka no sabe decodificar.
                confirmados = await admin.list_consumer_group_offsets(self._grupo, partitions=tps)
            finally:
                await admin.close()
        finally:
            await cerrar(consumidor)
        return calcular_retraso(
            {(tp.topic, tp.partition): fin for tp, fin in fines.items()},
            {(tp.topic, tp.partition): inicio for tp, inicio in inicios.items()},
            {(tp.topic, tp.partition): om.offset for tp, om in confirmados.items()},
        )
