"""Vista materializada de `gpr.indicadores.v1`: el último `Indicador` de cada serie, en memoria.

La lee un `LectorTopico` (lector.py): todas las particiones desde el principio, sin grupo de
consumidores (cada réplica de la consulta tiene su vista completa), y después todo lo que
llega. Un registro con valor nulo es una lápida: la serie desaparece. Hasta que la lectura
llega por primera vez al final del tópico (`cargada`) la API responde UNAVAILABLE; `al_dia` es
lo que dice la salud gRPC (al final del tópico y con Kafka respondiendo). Si el tópico vuelve
más corto o desaparece, la vista se vacía y se reconstruye.

Instantáneas que no se aceptan (se cuentan por motivo en `descartados`, nunca cambian la
vista ni llegan a los suscriptores): sin clave UTF-8 (`sin_clave`), que no son un
`gpr.v1.Indicador` (`protobuf_invalido`), cuya clave no es la de su contenido
(`clave_no_coincide`: la clave de una serie con los datos de otra), con identificadores
vacíos, con «/», desconocidos o de más de `LARGO_MAXIMO_ID` caracteres, muestras negativas o
una unidad que no es la del catálogo (`campo_invalido`), y con valores no finitos
(`valor_no_finito`). Quien puede escribir en gpr.indicadores.v1 puede falsificar una
instantánea bien formada; eso solo lo impiden las ACL de Kafka (docs/consulta.md).

Memoria: la vista es casi toda la memoria de la consulta (1,2 millones de series con 10 000
pares). Cada serie se guarda serializada (`bytes`) y se decodifica al servirla; el listado
ordenado es un índice de claves; el historial de `ObtenerHistorial` comparte esos mismos
`bytes` y tiene tope por serie y global (`conservar_historial`), y en memoria solo quedan las
instantáneas que `ObtenerHistorial` puede devolver.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence

from aiokafka import ConsumerRecord
from google.protobuf.message import DecodeError

from gpr.v1 import indicadores_pb2 as ipb
from servicios.comun.indicadores import INDICADORES as DEFINICIONES
from servicios.comun.indicadores import (VENTANA_TOTAL, VENTANAS_MOVILES, clave_serie, unidad_admisible,
                                         ventana_valida)
from servicios.comun.kafka_conexion import ConexionKafka
from servicios.comun.topicos import INDICADORES
from servicios.consulta.lector import LectorTopico
from servicios.consulta.peticiones import LARGO_MAXIMO_ID, ClaveOrden, Filtro, cumple

log = logging.getLogger(__name__)

# Recibe la clave de la serie y su nuevo valor, o None si la serie se borró (lápida).
Suscriptor = Callable[[str, "ipb.Indicador | None"], None]
# (agencia, servicio, indicador, ventana, etapa) de una serie.
Campos = tuple[str, str, str, str, str]


_VENTANAS_FIJAS = frozenset(VENTANAS_MOVILES) | {VENTANA_TOTAL}
# Motivos de `Vista.descartados` (gpr_consulta_registros_descartados_total{motivo}).
MOTIVOS_DESCARTE = ("sin_clave", "protobuf_invalido", "clave_no_coincide", "campo_invalido", "valor_no_finito")


def interna(clave: str) -> str:
    """Clave interna de la vista para la clave de Kafka `clave` (NUL en lugar de "/")."""
    return clave.replace("/", "\0")


def motivo_de_descarte(clave: str, indicador: ipb.Indicador) -> str | None:
    """Por qué una instantánea con clave `clave` no se acepta, o None si se acepta.

    Se llama con cada registro del tópico (la carga de la vista): lo común, una instantánea
    válida, pasa por comparaciones baratas; el detalle del motivo se busca solo al rechazar.
    """
    campos = (indicador.agencia_id, indicador.servicio_id, indicador.indicador, indicador.ventana,
              indicador.etapa_id)
    # Con la clave igual a la canónica y sin "/" de más, ningún campo tiene "/" (ni NUL: la
    # clave ya se revisó), así que las etiquetas que salen de la clave son las del contenido.
    if clave != clave_serie(*campos) or clave.count("/") != (4 if campos[4] else 3):
        if any("/" in c for c in campos):
            return "campo_invalido"
        return "clave_no_coincide"
    # Estas cadenas son etiquetas de /metrics: acotadas.
    if max(map(len, campos)) > LARGO_MAXIMO_ID or len(indicador.etapa_cuello_botella) > LARGO_MAXIMO_ID:
        return "campo_invalido"
    definicion = DEFINICIONES.get(campos[2])
    # La unidad es la etiqueta `unidad` de /metrics: solo las del catálogo (o un código ISO 4217
    # en los importes), para que sus valores sigan acotados y los tableros la puedan elegir.
    if (definicion is None or not campos[0] or not campos[1] or definicion.por_etapa != bool(campos[4])
            or indicador.muestras < 0 or not (campos[3] in _VENTANAS_FIJAS or ventana_valida(campos[3]))
            or not unidad_admisible(definicion, indicador.unidad)):
        return "campo_invalido"
    if not (math.isfinite(indicador.valor) and math.isfinite(indicador.numerador)):
        return "valor_no_finito"
    if indicador.HasField("meta"):
        meta = indicador.meta
        if max(len(meta.operador), len(meta.severidad), len(meta.equipo)) > LARGO_MAXIMO_ID:
            return "campo_invalido"
        if not math.isfinite(meta.valor):
            return "valor_no_finito"
    return None


class Vista:
    """Último valor de cada serie de gpr.indicadores.v1, alimentado por un `LectorTopico`.

    Compacta: cada serie se guarda como los bytes serializados que llegaron de Kafka (un
    `bytes` de un centenar de bytes) y no como un `ipb.Indicador` decodificado (varias veces
    más con upb: cada mensaje lleva su arena). Se decodifica al servir. Las etiquetas (agencia,
    servicio, indicador, ventana, etapa) salen de la clave, que siempre es la canónica de
    `clave_serie` (`motivo_de_descarte` rechaza las demás).
    """

    def __init__(self, bootstrap: "str | ConexionKafka", topico: str = INDICADORES, *, reintento_s: float = 1.0,
                 cliente_id: str = "gpr-consulta", plazo_kafka_s: float = 10.0,
                 reloj: Callable[[], float] = time.monotonic):
        self._topico = topico
        # Clave interna (la de Kafka con NUL por "/") → Indicador serializado. Con NUL, el
        # orden de las claves internas como texto es el del listado (ver `ordenadas`).
        self._series: dict[str, bytes] = {}
        self._suscriptores: list[Suscriptor] = []
        # Cambia solo cuando aparece o desaparece una serie: el índice ordenado del listado
        # se reconstruye entonces y no con cada actualización de valor (una por segundo).
        self._version_claves = 0
        self._ordenadas: tuple[int, list[str]] = (-1, [])
        self._historial: _Historial | None = None
        self.descartados: dict[str, int] = dict.fromkeys(MOTIVOS_DESCARTE, 0)
        self.lector = LectorTopico(bootstrap, topico, self._leidos, self._vaciar, self._describir,
                                   cliente_id=cliente_id, reintento_s=reintento_s, plazo_kafka_s=plazo_kafka_s,
                                   reloj=reloj)

    @property
    def cargada(self) -> asyncio.Event:
        """Leída entera al menos una vez (desde el arranque o la última reconstrucción)."""
        return self.lector.cargada

    @property
    def al_dia(self) -> bool:
        """Cargada, al final del tópico y con Kafka respondiendo (lo que dice la salud)."""
        return self.lector.al_dia

    def revisar(self) -> bool:
        return self.lector.revisar()

    def iniciar(self) -> None:
        self.lector.iniciar()

    async def detener(self) -> None:
        await self.lector.detener()

    # --- lectura -------------------------------------------------------------------------

    def obtener(self, clave: str) -> ipb.Indicador | None:
        crudo = self._series.get(interna(clave))
        return None if crudo is None else ipb.Indicador.FromString(crudo)

    def crudo(self, clave: str) -> bytes | None:
        """El Indicador serializado tal como llegó de Kafka."""
        return self._series.get(interna(clave))

    @staticmethod
    def etiquetas(clave_interna: str) -> Campos:
        """(agencia, servicio, indicador, ventana, etapa) de la serie, sin decodificarla."""
        partes = clave_interna.split("\0", 4)
        if len(partes) < 5:
            # Sin etapa.
            partes += [""] * (5 - len(partes))
        return (partes[0], partes[1], partes[2], partes[3], partes[4])

    def instantanea(self) -> list[tuple[str, bytes]]:
        """(clave interna, serializado) de cada serie; segura de leer desde otro hilo (/metrics).

        Se copia el diccionario antes de recorrerlo: `dict.copy()` con claves `str` no crea
        objetos del recolector ni ejecuta código Python, así que no cede el GIL; recorrerlo
        directamente sí crea tuplas, y un recolector de basura a mitad de camino puede correr
        un finalizador que lo ceda mientras el lector de Kafka cambia la vista. Los valores se
        reemplazan, nunca se modifican.
        """
        return list(self._series.copy().items())

    def indicadores(self, filtro: Filtro) -> Iterator[ipb.Indicador]:
        """Las series que entran en `filtro`, decodificadas.

        Se filtra por las etiquetas, sin decodificar: solo se decodifica lo que se entrega.
        """
        for clave, crudo in self.instantanea():
            if cumple(self.etiquetas(clave), filtro):
                yield ipb.Indicador.FromString(crudo)

    def ordenadas(self) -> ListaOrdenada:
        """Series en el orden del listado (agencia, servicio, indicador, ventana, etapa, clave).

        El índice (solo las claves, 8 B por serie) se reutiliza mientras no aparezcan ni
        desaparezcan series. Como todas las claves son canónicas basta ordenar las claves
        internas como texto: con NUL como separador, menor que cualquier otro carácter, el
        orden del texto es el de la tupla (un campo que es prefijo de otro va antes, y sin
        etapa antes que con).
        """
        version, claves = self._ordenadas
        if version != self._version_claves:
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
        vista, y siempre está. Lo que sale por el tope de su serie deja de ocupar memoria y
        lugar en el tope global al momento.
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

    # --- alimentación (la llama el lector) --------------------------------------------

    def _leidos(self, particion: int, registros: list[ConsumerRecord]) -> None:
        aplicar = self._aplicar
        for registro in registros:
            aplicar(registro.key, registro.value, particion, registro.offset)

    def _vaciar(self) -> None:
        """El tópico volvió más corto o desapareció: la vista empieza de nuevo, y cada
        suscriptor recibe la lápida de cada serie que tenía."""
        claves = [k.replace("\0", "/") for k in self._series]
        self._series.clear()
        if self._historial is not None:
            self._historial = _Historial(self._historial.maximo, self._historial.total)
        self._version_claves += 1
        for clave in claves:
            self._avisar(clave, None)

    def _describir(self) -> str:
        return f"la vista ({len(self._series)} series)"

    def _aplicar(self, clave_bytes: bytes | None, valor: bytes | None, particion: int, offset: int) -> None:
        try:
            clave = clave_bytes.decode("utf-8") if clave_bytes is not None else None
        except UnicodeDecodeError:
            clave = None
        if not clave or "\0" in clave:
            # NUL es el separador de la clave interna: una clave con NUL se confundiría.
            self._descartar(particion, offset, "sin_clave", "sin clave UTF-8 válida")
            return
        k = interna(clave)
        if valor is None:
            if self._series.pop(k, None) is None:
                return
            if self._historial is not None:
                self._historial.olvidar(k)
            self._version_claves += 1
            indicador = None
        else:
            try:
                indicador = ipb.Indicador.FromString(valor)
            except DecodeError as error:
                self._descartar(particion, offset, "protobuf_invalido", f"no es un protobuf gpr.v1.Indicador: {error}")
                return
            motivo = motivo_de_descarte(clave, indicador)
            if motivo is not None:
                self._descartar(particion, offset, motivo, "la instantánea no corresponde a su clave o no es válida")
                return
            # Se guarda una copia exacta: `valor` puede ser una vista de un búfer mayor.
            crudo = bytes(valor)
            anterior = self._series.get(k)
            self._series[k] = crudo
            if anterior is None:
                self._version_claves += 1
            if self._historial is not None and anterior is not None and anterior != crudo:
                self._historial.guardar(k, anterior)
        self._avisar(clave, indicador)

    def _avisar(self, clave: str, indicador: ipb.Indicador | None) -> None:
        for suscriptor in list(self._suscriptores):
            try:
                suscriptor(clave, indicador)
            except Exception:
                log.exception("un suscriptor de la vista falló con la serie %s", clave)

    def _descartar(self, particion: int, offset: int, motivo: str, detalle: str) -> None:
        self.descartados[motivo] += 1
        # Sin la clave ni el contenido: pueden ser de cualquier tamaño. Una línea por motivo
        # y por intervalo (el registro filtra los repetidos).
        log.warning("registro de %s descartado (%s) en la partición %d, offset %d: %s", self._topico, motivo,
                    particion, offset, detalle)


class _Historial:
    """Instantáneas anteriores de cada serie (serializadas), con tope por serie y global.

    Por serie, un `bytes` si hay una sola anterior (lo común) o una tupla si hay más: una
    tupla o un deque por serie costarían 60–600 B aunque la serie no cambie nunca.

    El tope global olvida primero la instantánea guardada más vieja de todas. `_orden` es la
    cola de las claves en el orden en que se guardó cada instantánea (8 B por entrada: la
    cadena es la de la vista); nunca guarda los bytes, así que lo que sale por el tope de su
    serie (o por una lápida) se libera al momento. Esas entradas quedan «huérfanas» en la
    cola: `_huerfanas[k]` dice cuántas de las primeras entradas de `k` lo son, y se saltan al
    llegar al frente. Cuando las huérfanas pasan de la mitad del tope, la cola se rehace sin
    ellas (coste amortizado constante): así la cola mide a lo más 1,5 × `total`.
    """

    def __init__(self, maximo: int, total: int):
        self.maximo = maximo
        self.total = total
        # La actual ocupa uno de los `maximo` lugares de la serie.
        self._lugares = maximo - 1
        self._series: dict[str, bytes | tuple[bytes, ...]] = {}
        self._orden: deque[str] = deque()
        self._huerfanas: dict[str, int] = {}
        self._n_huerfanas = 0
        self.guardadas = 0

    def de(self, k: str) -> tuple[bytes, ...]:
        guardadas = self._series.get(k)
        if guardadas is None:
            return ()
        return (guardadas,) if isinstance(guardadas, bytes) else guardadas

    def _poner(self, k: str, guardadas: tuple[bytes, ...]) -> None:
        if not guardadas:
            self._series.pop(k, None)
        else:
            self._series[k] = guardadas[0] if len(guardadas) == 1 else guardadas

    def _huerfana(self, k: str, cuantas: int = 1) -> None:
        self._huerfanas[k] = self._huerfanas.get(k, 0) + cuantas
        self._n_huerfanas += cuantas

    def guardar(self, k: str, crudo: bytes) -> None:
        if self._lugares <= 0 or self.total <= 0:
            return
        guardadas = (*self.de(k), crudo)
        if len(guardadas) > self._lugares:
            # Sale la más vieja de la serie: su entrada de la cola queda huérfana.
            guardadas = guardadas[1:]
            self._huerfana(k)
        else:
            self.guardadas += 1
        self._poner(k, guardadas)
        self._orden.append(k)
        while self.guardadas > self.total:
            self._olvidar_la_mas_vieja()
        if self._n_huerfanas > max(self.total // 2, 64):
            self._compactar()

    def _olvidar_la_mas_vieja(self) -> None:
        k = self._orden.popleft()
        huerfanas = self._huerfanas.get(k, 0)
        if huerfanas:
            if huerfanas == 1:
                del self._huerfanas[k]
            else:
                self._huerfanas[k] = huerfanas - 1
            self._n_huerfanas -= 1
            return
        # Las primeras entradas no huérfanas de `k` son, en orden, sus guardadas.
        self._poner(k, self.de(k)[1:])
        self.guardadas -= 1

    def _compactar(self) -> None:
        pendientes = self._huerfanas
        orden: deque[str] = deque()
        for k in self._orden:
            n = pendientes.get(k, 0)
            if n:
                pendientes[k] = n - 1
            else:
                orden.append(k)
        self._orden = orden
        self._huerfanas = {}
        self._n_huerfanas = 0

    def olvidar(self, k: str) -> None:
        # Lápida: las entradas de la serie en la cola quedan huérfanas y se saltan.
        cuantas = len(self.de(k))
        if cuantas:
            self._series.pop(k, None)
            self.guardadas -= cuantas
            self._huerfana(k, cuantas)

    def __len__(self) -> int:
        return self.guardadas


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
