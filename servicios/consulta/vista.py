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

Memoria: la vista es casi toda la memoria de la consulta (1,2 millones de series con 10 000
pares). Cada serie se guarda serializada (`bytes`) y se decodifica al servirla; el listado
ordenado es un índice de claves; el historial de `ObtenerHistorial` comparte esos mismos
`bytes` y tiene tope por serie y global (`conservar_historial`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from google.protobuf.message import DecodeError

from gpr.v1 import indicadores_pb2 as ipb
from servicios.comun.topicos import INDICADORES
from servicios.consulta.peticiones import ClaveOrden

log = logging.getLogger(__name__)

# Recibe la clave de la serie y su nuevo valor, o None si la serie se borró (lápida).
Suscriptor = Callable[[str, "ipb.Indicador | None"], None]
# (agencia, servicio, indicador, ventana, etapa) de una serie.
Campos = tuple[str, str, str, str, str]


def interna(clave: str) -> str:
    """Clave interna de la vista para la clave de Kafka `clave` (NUL en lugar de "/")."""
    return clave.replace("/", "\0")


class Vista:
    """Último valor de cada serie de gpr.indicadores.v1, alimentado por una tarea asyncio.

    Compacta: cada serie se guarda como los bytes serializados que llegaron de Kafka (un
    `bytes` de ~110 B) y no como un `ipb.Indicador` decodificado (~1,4 KB cada uno con upb,
    medido: el arena de cada mensaje). Se decodifica al servir. Las etiquetas (agencia,
    servicio, indicador, ventana, etapa) salen de la clave cuando es la canónica de
    `clave_serie`, que es lo que publica el procesador; para las demás se guardan aparte.
    """

    def __init__(self, bootstrap: str, topico: str = INDICADORES, *, reintento_s: float = 1.0,
                 cliente_id: str = "gpr-consulta"):
        self._bootstrap = bootstrap
        self._topico = topico
        self._reintento_s = reintento_s
        self._cliente_id = cliente_id
        # Clave interna (la de Kafka con NUL por "/") → Indicador serializado. Con NUL, el
        # orden de las claves internas como texto es el del listado (ver `ordenadas`).
        self._series: dict[str, bytes] = {}
        # Solo las series cuya clave no es la canónica de sus campos: sus etiquetas.
        self._campos: dict[str, Campos] = {}
        self._suscriptores: list[Suscriptor] = []
        # Siguiente offset por partición: si el consumidor falla, se retoma desde aquí y no
        # desde el principio, para no resucitar series cuyas lápidas ya se compactaron.
        self._posiciones: dict[int, int] = {}
        # Cambia solo cuando aparece o desaparece una serie: el índice ordenado del listado
        # se reconstruye entonces y no con cada actualización de valor (una por segundo).
        self._version_claves = 0
        self._ordenadas: tuple[int, list[str]] = (-1, [])
        self._historial: _Historial | None = None
        self._tarea: asyncio.Task | None = None
        self.al_dia = asyncio.Event()
        self.descartados = 0

    # --- lectura -------------------------------------------------------------------------

    def obtener(self, clave: str) -> ipb.Indicador | None:
        crudo = self._series.get(interna(clave))
        return None if crudo is None else ipb.Indicador.FromString(crudo)

    def crudo(self, clave: str) -> bytes | None:
        """El Indicador serializado tal como llegó de Kafka."""
        return self._series.get(interna(clave))

    def etiquetas(self, clave_interna: str) -> Campos:
        """(agencia, servicio, indicador, ventana, etapa) de la serie, sin decodificarla."""
        campos = self._campos.get(clave_interna)
        if campos is not None:
            return campos
        partes = clave_interna.split("\0", 4)
        if len(partes) < 5:
            # Sin etapa (o, si /metrics leyó una clave no canónica justo antes de su lápida,
            # menos partes): se completa para no romper el raspado.
            partes += [""] * (5 - len(partes))
        return (partes[0], partes[1], partes[2], partes[3], partes[4])

    def instantanea(self) -> list[tuple[str, bytes]]:
        """(clave interna, serializado) de cada serie; segura de leer desde otro hilo (/metrics).

        `list(dict.items())` con claves `str` y valores `bytes` no ejecuta código Python ni
        cede el GIL, y los valores se reemplazan, nunca se modifican.
        """
        return list(self._series.items())

    def indicadores(self, agencia: str = "", servicio: str = "", indicador: str = "",
                    ventana: str = "") -> Iterator[ipb.Indicador]:
        """Las series que cumplen el filtro (vacío: sin filtrar ese campo), decodificadas.

        Se filtra por las etiquetas, sin decodificar: solo se decodifica lo que se entrega.
        """
        filtro = (agencia, servicio, indicador, ventana)
        for clave, crudo in self.instantanea():
            campos = self.etiquetas(clave)
            if all(not f or f == c for f, c in zip(filtro, campos)):
                yield ipb.Indicador.FromString(crudo)

    def ordenadas(self) -> ListaOrdenada:
        """Series en el orden del listado (agencia, servicio, indicador, ventana, etapa, clave).

        El índice (solo las claves, 8 B por serie) se reutiliza mientras no aparezcan ni
        desaparezcan series. Sin claves no canónicas basta ordenar las claves internas como
        texto: con NUL como separador, menor que cualquier otro carácter, el orden del texto
        es el de la tupla (un campo que es prefijo de otro va antes, y sin etapa antes que con).
        """
        version, claves = self._ordenadas
        if version != self._version_claves:
            if self._campos:
                claves = sorted(self._series, key=self._clave_orden)
            else:
                claves = sorted(self._series)
            self._ordenadas = (self._version_claves, claves)
        return ListaOrdenada(self, claves)

    def _clave_orden(self, clave_interna: str) -> ClaveOrden:
        return (*self.etiquetas(clave_interna), clave_interna.replace("\0", "/"))

    def __len__(self) -> int:
        return len(self._series)

    # --- historial ---------------------------------------------------------------------

    def conservar_historial(self, maximo: int, total: int) -> None:
        """Guarda instantáneas anteriores: hasta `maximo` por serie (contando la actual) y
        hasta `total` anteriores entre todas las series (las más viejas se olvidan primero).

        Sin el tope global, `maximo` por serie no acota nada en la práctica: el procesador
        republica cada segundo las series de una agencia activa, y 100 instantáneas de
        1,2 millones de series serían ~18 GB. El actual no cuenta contra `total`: es el de la
        vista, y siempre está.
        """
        self._historial = _Historial(maximo, total)

    def historial(self, clave: str, maximo: int = 0) -> list[ipb.Indicador]:
        """Instantáneas de la serie, de la más antigua a la actual (las `maximo` últimas si > 0)."""
        k = interna(clave)
        actual = self._series.get(k)
        if actual is None:
            return []
        anteriores = self._historial.de(k) if self._historial is not None else ()
        crudos = [*anteriores, actual]
        if maximo > 0:
            crudos = crudos[-maximo:]
        return [ipb.Indicador.FromString(c) for c in crudos]

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
        if not clave or "\0" in clave:
            # NUL es el separador de la clave interna: una clave con NUL se confundiría.
            self._descartar(particion, offset, "registro sin clave UTF-8 válida")
            return
        k = interna(clave)
        if valor is None:
            if self._series.pop(k, None) is None:
                return
            self._campos.pop(k, None)
            if self._historial is not None:
                self._historial.olvidar(k)
            self._version_claves += 1
            indicador = None
        else:
            try:
                indicador = ipb.Indicador.FromString(valor)
            except DecodeError as error:
                self._descartar(particion, offset, f"no es un protobuf gpr.v1.Indicador: {error}")
                return
            # Se guarda una copia exacta: `valor` puede ser una vista de un búfer mayor.
            crudo = bytes(valor)
            anterior = self._series.get(k)
            self._series[k] = crudo
            if anterior is None:
                self._version_claves += 1
            campos = (indicador.agencia_id, indicador.servicio_id, indicador.indicador,
                      indicador.ventana, indicador.etapa_id)
            canonica = [*campos[:4], campos[4]] if campos[4] else list(campos[:4])
            if k.split("\0") == canonica:
                self._campos.pop(k, None)
            else:
                self._campos[k] = tuple(sys.intern(c) for c in campos)
            if self._historial is not None and anterior is not None and anterior != crudo:
                self._historial.guardar(k, anterior)
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


class _Historial:
    """Instantáneas anteriores de cada serie (serializadas), con tope por serie y global.

    Por serie, un `bytes` si hay una sola anterior (lo común) o una tupla si hay más: una
    tupla o un deque por serie costarían 60–600 B aunque la serie no cambie nunca. El tope
    global es una cola FIFO (claves y bytes en dos deques, 16 B por entrada) de lo guardado:
    al pasarse de `total` se olvida la instantánea más vieja de todas si sigue guardada (se
    compara por identidad; si ya salió por el tope de su serie o por una lápida, se salta).
    """

    def __init__(self, maximo: int, total: int):
        self.maximo = maximo
        self.total = total
        self._series: dict[str, bytes | tuple[bytes, ...]] = {}
        self._cola_claves: deque[str] = deque()
        self._cola_crudos: deque[bytes] = deque()

    def de(self, k: str) -> tuple[bytes, ...]:
        guardadas = self._series.get(k)
        if guardadas is None:
            return ()
        return (guardadas,) if isinstance(guardadas, bytes) else guardadas

    def guardar(self, k: str, crudo: bytes) -> None:
        # La actual ocupa uno de los `maximo` lugares de la serie.
        lugares = self.maximo - 1
        if lugares <= 0 or self.total <= 0:
            return
        guardadas = (*self.de(k), crudo)[-lugares:]
        self._series[k] = guardadas[0] if len(guardadas) == 1 else guardadas
        self._cola_claves.append(k)
        self._cola_crudos.append(crudo)
        while len(self._cola_claves) > self.total:
            self._quitar_mas_vieja(self._cola_claves.popleft(), self._cola_crudos.popleft())

    def _quitar_mas_vieja(self, k: str, crudo: bytes) -> None:
        guardadas = self.de(k)
        if not guardadas or guardadas[0] is not crudo:
            return
        resto = guardadas[1:]
        if not resto:
            del self._series[k]
        else:
            self._series[k] = resto[0] if len(resto) == 1 else resto

    def olvidar(self, k: str) -> None:
        # Las entradas de la cola quedan huérfanas y se saltan al llegar al frente.
        self._series.pop(k, None)

    def __len__(self) -> int:
        return sum(len(self.de(k)) for k in list(self._series))


class _Entrada:
    """Un elemento del listado: [0] su clave de orden, [1] el Indicador (se decodifica al pedirlo)."""

    __slots__ = ("_vista", "_clave")

    def __init__(self, vista: Vista, clave_interna: str):
        self._vista = vista
        self._clave = clave_interna

    def __getitem__(self, i: int):
        if i == 0:
            return self._vista._clave_orden(self._clave)
        if i == 1:
            return ipb.Indicador.FromString(self._vista._series[self._clave])
        raise IndexError(i)


class ListaOrdenada(Sequence):
    """Las series en orden de listado como secuencia de pares (clave de orden, Indicador),
    sin materializarlos: cada elemento se arma al leerlo. Vale mientras no cambie el conjunto
    de series (la usa una sola petición, sin ceder el bucle)."""

    def __init__(self, vista: Vista, claves: list[str]):
        self._vista = vista
        self._claves = claves

    def __len__(self) -> int:
        return len(self._claves)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self._claves)))]
        return _Entrada(self._vista, self._claves[i])
