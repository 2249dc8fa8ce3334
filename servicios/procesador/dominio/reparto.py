"""El reparto: cada registro de gpr.eventos.v1 a la partición de su agencia en
gpr.eventos.agencias.v1.

Por qué. La etapa por caso deduplica por (`fuente`, `evento_id`) dentro de la agencia, sea
cual sea el caso (`identidades.py`), y eso solo se puede decidir donde están todos los
eventos de la agencia. Los emisores escriben con la clave del caso (`"<agencia>/<caso>"`,
el contrato), que reparte los casos de una agencia entre todas las particiones; el reparto
los junta, sin cambiar el contrato de los emisores. Es la misma partición que la agencia
tiene en gpr.aportes.v1.

Sin estado: un registro que se reparte dos veces (un reproceso tras un corte) llega dos
veces a la etapa por caso, que lo reconoce como ya visto, igual que un reintento del emisor.

Los eventos van empaquetados: por partición de destino y de origen, en registros
`LoteEventos` con sus bytes originales (ver `Reparto`), porque el costo por registro de Kafka
del salto de más se paga así una vez por paquete. Cada paquete lleva la partición de origen
(`gpr-origen`): la tardanza se juzga por partición de origen (`etapa_casos.clave_marca`). La
etapa por caso los decodifica, valida y rechaza como siempre; un evento rechazado lleva sus
bytes y la clave del contrato. Lo que no se puede decodificar sigue tal cual, con sus
cabeceras, a una partición fija (la de su clave), y allí se rechaza con su motivo y sus bytes.

Sin E/S.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from gpr.v1 import eventos_pb2 as pb
from servicios.comun.eventos import clave_kafka, decodificar, es_lote, eventos_en_bruto
from servicios.comun.topicos import CABECERA_LOTE, CABECERA_ORIGEN


def particion_de_agencia(agencia_id: str, particiones: int) -> int:
    """La partición de una agencia en los tópicos internos (gpr.eventos.agencias.v1 y
    gpr.aportes.v1): la deduplicación y la marca de agua de la agencia son locales a un
    trabajador."""
    return zlib.crc32(agencia_id.encode()) % particiones


# Tope de un registro empaquetado por el reparto (bytes de eventos y eventos): muy por debajo
# del registro máximo interno (16 MiB) y de las 2^20 posiciones por registro de la etapa por
# caso (`etapa_casos.BITS_POSICION`).
BYTES_POR_PAQUETE = 1 << 20
EVENTOS_POR_PAQUETE = 20_000


class Repartido:
    """Un registro para gpr.eventos.agencias.v1; `instante`: el del registro original más
    reciente que trae (segundos; la etapa por caso mide el retraso desde ahí)."""

    __slots__ = ("particion", "clave", "valor", "cabeceras", "instante")

    def __init__(self, particion: int, clave: bytes | None, valor: bytes | None,
                 cabeceras: Sequence[tuple[str, bytes]], instante: float | None = None):
        self.particion = particion
        self.clave = clave
        self.valor = valor
        self.cabeceras = cabeceras
        self.instante = instante


def _varint(n: int) -> bytes:
    partes = bytearray()
    while n > 0x7F:
        partes.append((n & 0x7F) | 0x80)
        n >>= 7
    partes.append(n)
    return bytes(partes)


class _Paquete:
    """Eventos de una (partición de destino, partición de origen), ya codificados como el
    campo `eventos` de un LoteEventos: juntar sus bytes *es* el LoteEventos (un campo repetido
    se codifica como la concatenación de sus elementos), sin volver a serializar nada."""

    __slots__ = ("clave", "partes", "bytes", "eventos", "instante")

    def __init__(self, clave: bytes) -> None:
        self.clave = clave
        self.partes: list[bytes] = []
        self.bytes = 0
        self.eventos = 0
        self.instante: float | None = None


class Reparto:
    """Reparte los registros de un lote de gpr.eventos.v1 por agencia.

    Los eventos decodificables se empaquetan, por partición de destino y de origen, en
    registros `LoteEventos` con la cabecera de lote: la etapa por caso paga su costo por
    registro de Kafka una vez por paquete y no por evento (un evento por registro costaba
    un tercio del caudal con el salto de más). Cada evento va con sus bytes originales. Lo que
    no se decodifica (o un `LoteEventos` vacío) sigue tal cual, solo, a la partición de su
    clave, donde la etapa por caso lo rechaza con su motivo y sus bytes.

    Nunca lanza: un registro que hiciera fallar el lote del reparto lo haría fallar en cada
    relectura."""

    def __init__(self, particiones: int, bytes_por_paquete: int = BYTES_POR_PAQUETE,
                 eventos_por_paquete: int = EVENTOS_POR_PAQUETE) -> None:
        self.particiones = particiones
        self.bytes_por_paquete = bytes_por_paquete
        self.eventos_por_paquete = eventos_por_paquete
        self._salida: list[Repartido] = []
        # Los paquetes abiertos, y los ya cerrados (llevan además las cabeceras de `registros`).
        self._paquetes: dict[tuple[int, int], _Paquete] = {}
        self._cerrados: list[Repartido] = []

    def agregar(self, clave: bytes | None, valor: bytes | None, cabeceras: Sequence[tuple[str, bytes]],
                particion_origen: int, instante: float | None = None) -> None:
        marca_origen = (CABECERA_ORIGEN, str(particion_origen).encode())
        # Sin más cabeceras que la de origen si ni siquiera se pueden copiar.
        escribibles = [marca_origen]
        try:
            escribibles = [*_cabeceras_escribibles(cabeceras), marca_origen]
            eventos = decodificar(valor, escribibles)
            if not eventos:
                raise ValueError("LoteEventos vacío")
            suelto = len(eventos) == 1 and not es_lote(escribibles)
            destinos = [(particion_de_agencia(evento.agencia_id, self.particiones), evento) for evento in eventos]
        except Exception:
            self._salida.append(Repartido(zlib.crc32(clave or b"") % self.particiones, clave, valor, escribibles,
                                          instante))
            return
        # Los bytes de cada evento tal como llegaron (de un lote, recortados de él): el rechazo
        # de uno lleva lo que mandó el emisor, y no se vuelve a serializar nada.
        brutos = [valor] if suelto else eventos_en_bruto(valor)
        if brutos is None or len(brutos) != len(eventos):
            brutos = [evento.SerializeToString() for evento in eventos]
        for (particion, evento), bruto in zip(destinos, brutos):
            self._empaquetar(particion, particion_origen, evento, bruto, instante)

    def _empaquetar(self, particion: int, particion_origen: int, evento: pb.Evento, bruto: bytes,
                    instante: float | None) -> None:
        clave = (particion, particion_origen)
        paquete = self._paquetes.get(clave)
        if paquete is not None and (paquete.bytes + len(bruto) > self.bytes_por_paquete
                                    or paquete.eventos >= self.eventos_por_paquete):
            self._cerrar(clave, paquete)
            paquete = None
        if paquete is None:
            paquete = self._paquetes[clave] = _Paquete(clave_kafka(evento))
        parte = b"\x0a" + _varint(len(bruto)) + bruto
        paquete.partes.append(parte)
        paquete.bytes += len(parte)
        paquete.eventos += 1
        if instante and (paquete.instante is None or instante > paquete.instante):
            paquete.instante = instante

    def _cerrar(self, clave: tuple[int, int], paquete: _Paquete) -> None:
        particion, particion_origen = clave
        repartido = Repartido(particion, paquete.clave, b"".join(paquete.partes),
                              [(CABECERA_LOTE, b"1"), (CABECERA_ORIGEN, str(particion_origen).encode())],
                              paquete.instante)
        self._salida.append(repartido)
        self._cerrados.append(repartido)
        del self._paquetes[clave]

    def registros(self, cabeceras_extra: Sequence[tuple[str, bytes]] = ()) -> list[Repartido]:
        """Lo repartido hasta aquí (y vacía el reparto); `cabeceras_extra` van en cada paquete,
        también en los que se cerraron antes por llenos (las de trazas del lote)."""
        for clave, paquete in list(self._paquetes.items()):
            self._cerrar(clave, paquete)
        for repartido in self._cerrados:
            repartido.cabeceras.extend(cabeceras_extra)
        salida, self._salida, self._cerrados = self._salida, [], []
        return salida


def _cabeceras_escribibles(cabeceras: Sequence[tuple[str, bytes]]) -> Sequence[tuple[str, bytes]]:
    """Las cabeceras con cada clave que no era UTF-8 escrita con escapes (`\\xff`).

    El consumidor la leyó con `surrogateescape` (`servicios/terceros/aiokafka.py`) y el
    productor no puede escribirla así: fallaría el envío del lote entero, una y otra vez."""
    arregladas = None
    for posicion, (nombre, dato) in enumerate(cabeceras):
        if isinstance(nombre, str) and not nombre.isascii():
            try:
                nombre.encode()
                continue
            except UnicodeEncodeError:
                pass
            if arregladas is None:
                arregladas = list(cabeceras)
            arregladas[posicion] = (nombre.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"),
                                    dato)
    return cabeceras if arregladas is None else arregladas


def origen(cabeceras: Sequence[tuple[str, bytes]]) -> int | None:
    """La partición de gpr.eventos.v1 que anotó el reparto (None si no hay o no se entiende)."""
    anotada = None
    for nombre, dato in cabeceras:
        if nombre == CABECERA_ORIGEN:
            anotada = dato
    if anotada is None or not anotada.isdigit() or len(anotada) > 9:
        return None
    return int(anotada)


def repartir(clave: bytes | None, valor: bytes | None, cabeceras: Sequence[tuple[str, bytes]],
             particiones: int, particion_origen: int) -> list[Repartido]:
    """Lo que el reparto hace con un solo registro de la partición `particion_origen`."""
    reparto = Reparto(particiones)
    reparto.agregar(clave, valor, cabeceras, particion_origen)
    return reparto.registros()
