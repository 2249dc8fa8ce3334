"""Eventos rechazados por agencia, fuente y motivo, contados desde `gpr.eventos.rechazados.v1`
(para /metrics: `gpr_eventos_rechazados_total{agencia, fuente, motivo}`).

Se cuenta aquí, leyendo el tópico desde el principio, y no solo en el procesador: el contador
del procesador vive en la memoria de cada trabajador (vuelve a 0 al reiniciarse y cada réplica
ve solo sus particiones), mientras que el tópico es la verdad completa y sobrevive reinicios:
una consulta nueva llega al mismo total. El motivo es la parte de la cabecera `gpr-motivo`
antes de ':' (`campo_requerido:agencia_id` → `campo_requerido`), para que las etiquetas sean
pocas y fijas.

Agencia y fuente salen de los bytes originales del registro rechazado: un `Evento`, o un
`LoteEventos` si lleva la cabecera `gpr-lote: 1` (se cuenta cada evento del lote, con su
agencia y fuente). La cabecera `gpr-agencia`, si está, manda sobre la agencia del contenido
(la pone la plataforma, que sabe de quién es el registro). Como cualquiera que escriba en
Kafka elige esos textos, las etiquetas se acotan (`EtiquetasRechazos`): una agencia que no
está en el catálogo, o un registro que no se puede decodificar, cuenta como `desconocida`;
cada agencia tiene a lo más `FUENTES_POR_AGENCIA` fuentes con nombre propio (las primeras que
aparecen en el tópico) y las demás cuentan como `otra`; y a lo más `MOTIVOS_MAXIMOS` motivos.

Los conteos se publican solo cuando la lectura alcanzó la marca de agua alta de cada partición
(la del Fetch, no `end_offsets()`: ver DISENO §6). Un raspado a medio cargar mostraría un total
menor que el del proceso anterior y Prometheus lo tomaría por un reinicio del contador.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition

from servicios.comun.cabeceras_tolerantes import tolerar_cabeceras_no_utf8
from servicios.comun.catalogo import Catalogo
from servicios.comun.eventos import RegistroInvalido, decodificar
from servicios.comun.kafka_conexion import ConexionKafka, explicar
from servicios.comun.topicos import CABECERA_MOTIVO, RECHAZADOS

log = logging.getLogger(__name__)

SIN_MOTIVO = "desconocido"
MOTIVO_OTRO = "otro"
AGENCIA_DESCONOCIDA = "desconocida"
FUENTE_DESCONOCIDA = "desconocida"
FUENTE_OTRA = "otra"
# Cabecera opcional con la agencia del registro rechazado (la pone la plataforma).
CABECERA_AGENCIA = "gpr-agencia"
# Un sistema emisor por trámite o canal (trámites, portal, app, centro de llamadas…): 10 dan
# margen a una agencia real y acotan sus series a 12 fuentes (con `otra` y `desconocida`) por
# motivo, aunque un emisor roto mande una fuente distinta en cada evento.
FUENTES_POR_AGENCIA = 10
# Los motivos los fija la plataforma (una docena hoy); el tope solo frena un tópico escrito por otros.
MOTIVOS_MAXIMOS = 50
# Una etiqueta más larga (o con caracteres de control) no es un nombre: cuenta como `otra`.
_LARGO_MAXIMO_ETIQUETA = 64


def motivo_de(cabeceras) -> str:
    """Motivo de un registro rechazado a partir de sus cabeceras (pares nombre, bytes)."""
    for nombre, valor in cabeceras or ():
        if nombre == CABECERA_MOTIVO and valor:
            motivo = valor.decode("utf-8", errors="replace").split(":", 1)[0].strip()
            return motivo or SIN_MOTIVO
    return SIN_MOTIVO


def _cabecera(cabeceras, nombre: str) -> bytes | None:
    for clave, valor in cabeceras or ():
        if clave == nombre:
            return valor
    return None


def _nombre(texto: str) -> bool:
    return 0 < len(texto) <= _LARGO_MAXIMO_ETIQUETA and texto.isprintable()


class EtiquetasRechazos:
    """(agencia, fuente, motivo) acotadas de cada evento de un registro rechazado."""

    def __init__(self, agencias: Iterable[str], fuentes_por_agencia: int = FUENTES_POR_AGENCIA,
                 motivos_maximos: int = MOTIVOS_MAXIMOS):
        self._agencias = frozenset(agencias)
        self._fuentes_por_agencia = fuentes_por_agencia
        self._motivos_maximos = motivos_maximos
        self._fuentes: dict[str, set[str]] = {}
        self._motivos: set[str] = set()

    def de(self, valor: bytes | None, cabeceras) -> list[tuple[str, str, str]]:
        """Una terna por evento del registro (una sola si no se puede decodificar)."""
        motivo = self._motivo(motivo_de(cabeceras))
        cruda = _cabecera(cabeceras, CABECERA_AGENCIA)
        de_cabecera = None if cruda is None else self._agencia(cruda.decode("utf-8", "replace"))
        try:
            eventos = decodificar(valor, cabeceras)
        except RegistroInvalido:
            eventos = []
        if not eventos:
            return [(de_cabecera or AGENCIA_DESCONOCIDA, FUENTE_DESCONOCIDA, motivo)]
        ternas = []
        for evento in eventos:
            agencia = de_cabecera or self._agencia(evento.agencia_id)
            ternas.append((agencia, self._fuente(agencia, evento.fuente), motivo))
        return ternas

    def _agencia(self, agencia: str) -> str:
        return agencia if agencia in self._agencias else AGENCIA_DESCONOCIDA

    def _fuente(self, agencia: str, fuente: str) -> str:
        if not fuente:
            return FUENTE_DESCONOCIDA
        if not _nombre(fuente):
            return FUENTE_OTRA
        conocidas = self._fuentes.setdefault(agencia, set())
        if fuente in conocidas:
            return fuente
        if len(conocidas) < self._fuentes_por_agencia:
            conocidas.add(fuente)
            return fuente
        return FUENTE_OTRA

    def _motivo(self, motivo: str) -> str:
        if motivo in self._motivos:
            return motivo
        if not _nombre(motivo):
            return SIN_MOTIVO
        if len(self._motivos) < self._motivos_maximos:
            self._motivos.add(motivo)
            return motivo
        return MOTIVO_OTRO


class ContadorRechazados:
    """Eventos de gpr.eventos.rechazados.v1 por (agencia, fuente, motivo), alimentado por una tarea asyncio.

    `catalogo`: las agencias que tienen etiqueta propia; sin él, todas cuentan como `desconocida`.
    """

    def __init__(self, bootstrap: "str | ConexionKafka", catalogo: Catalogo | None = None, topico: str = RECHAZADOS,
                 *, reintento_s: float = 1.0, cliente_id: str = "gpr-consulta-rechazados"):
        # La dirección, o una ConexionKafka con TLS y SASL (GPR_KAFKA_*).
        self._conexion = ConexionKafka.de(bootstrap)
        self._topico = topico
        self._reintento_s = reintento_s
        self._cliente_id = cliente_id
        self._etiquetas = EtiquetasRechazos(catalogo.agencias if catalogo is not None else ())
        self._conteos: Counter[tuple[str, str, str]] = Counter()
        # Siguiente offset por partición: tras un fallo se retoma aquí y no se cuenta dos veces.
        self._posiciones: dict[int, int] = {}
        self._tarea: asyncio.Task | None = None
        self.al_dia = asyncio.Event()

    def conteos(self) -> dict[tuple[str, str, str], int] | None:
        """Copia de los conteos por (agencia, fuente, motivo) (segura desde el hilo de
        /metrics); None hasta estar al día."""
        if not self.al_dia.is_set():
            return None
        return dict(self._conteos)

    def contar(self, valor: bytes | None, cabeceras) -> None:
        for terna in self._etiquetas.de(valor, cabeceras):
            self._conteos[terna] += 1

    def iniciar(self) -> None:
        tolerar_cabeceras_no_utf8()
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
        consumidor = AIOKafkaConsumer(**self._conexion.para_aiokafka(), group_id=None, enable_auto_commit=False,
                                      auto_offset_reset="earliest", client_id=self._cliente_id)
        try:
            try:
                await consumidor.start()
            except Exception as error:  # noqa: BLE001 (ver Vista._conectar)
                log.warning("no se pudo conectar con Kafka en %s", explicar(self._conexion, error))
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
                        self.contar(registro.value, registro.headers)
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
