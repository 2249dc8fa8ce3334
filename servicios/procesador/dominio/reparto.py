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

El registro sigue como llegó (clave, valor, cabeceras), con una cabecera más: su partición de
origen (`gpr-origen`), porque la tardanza se juzga por partición de origen (ver
`etapa_casos.clave_marca`). La etapa por caso lo decodifica,
valida y rechaza como siempre, y un rechazo lleva los bytes que mandó el emisor. Solo un
`LoteEventos` con eventos de varias agencias se parte en un lote por partición. Lo que no se
puede decodificar va a una partición fija (la de su clave) y allí se rechaza con su motivo.

Sin E/S.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from gpr.v1 import eventos_pb2 as pb
from servicios.comun.eventos import clave_kafka, decodificar
from servicios.comun.topicos import CABECERA_ORIGEN


def particion_de_agencia(agencia_id: str, particiones: int) -> int:
    """La partición de una agencia en los tópicos internos (gpr.eventos.agencias.v1 y
    gpr.aportes.v1): la deduplicación y la marca de agua de la agencia son locales a un
    trabajador."""
    return zlib.crc32(agencia_id.encode()) % particiones


class Repartido:
    """Un registro para gpr.eventos.agencias.v1."""

    __slots__ = ("particion", "clave", "valor", "cabeceras")

    def __init__(self, particion: int, clave: bytes | None, valor: bytes | None,
                 cabeceras: Sequence[tuple[str, bytes]]):
        self.particion = particion
        self.clave = clave
        self.valor = valor
        self.cabeceras = cabeceras

    def __repr__(self) -> str:
        return f"Repartido({self.particion}, {self.clave!r}, {len(self.valor or b'')} bytes)"


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
    """Los registros en que se reparte uno de la partición `particion_origen` de
    gpr.eventos.v1 (casi siempre él mismo, con la cabecera de origen añadida).

    Nunca lanza: ante cualquier error (no solo al decodificar) el registro va tal cual a la
    partición de su clave, y la etapa por caso lo rechaza con su motivo; un registro que
    hiciera fallar el lote del reparto lo haría fallar cada vez que se releyera."""
    marca_origen = (CABECERA_ORIGEN, str(particion_origen).encode())
    # Sin más cabeceras que la de origen si ni siquiera se pueden copiar.
    escribibles = [marca_origen]
    try:
        escribibles = [*_cabeceras_escribibles(cabeceras), marca_origen]
        return _por_agencia(clave, valor, escribibles, particiones, decodificar(valor, escribibles))
    except Exception:
        return [Repartido(zlib.crc32(clave or b"") % particiones, clave, valor, escribibles)]


def _por_agencia(clave: bytes | None, valor: bytes | None, cabeceras: list[tuple[str, bytes]],
                 particiones: int, eventos: list[pb.Evento]) -> list[Repartido]:
    if not eventos:
        return [Repartido(zlib.crc32(clave or b"") % particiones, clave, valor, cabeceras)]
    por_particion: dict[int, list[pb.Evento]] = {}
    for evento in eventos:
        por_particion.setdefault(particion_de_agencia(evento.agencia_id, particiones), []).append(evento)
    if len(por_particion) == 1:
        return [Repartido(next(iter(por_particion)), clave, valor, cabeceras)]
    # Un lote con eventos de varias agencias: un lote por partición, en el orden de sus
    # eventos, con la clave de su primer evento y las cabeceras del original (la de lote y
    # las de trazas).
    return [Repartido(particion, clave_kafka(grupo[0]), pb.LoteEventos(eventos=grupo).SerializeToString(),
                      cabeceras)
            for particion, grupo in por_particion.items()]
