"""Registros de Kafka para eventos ya validados: uno por evento, o `LoteEventos` por partición.

Una sola implementación para el publicador Kafka de esta biblioteca (y con él `gpr publicar` y
el simulador) y para la Ingesta gRPC (`servicios.comun.lotes` la reexporta): un registro con
muchos eventos reparte entre todos el costo por registro de faust y de Kafka. Sin E/S.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from kafka.partitioner.default import murmur2

from gpr.v1 import eventos_pb2 as pb
from gpr_cliente.contrato import CABECERA_LOTE, clave_kafka

# Tope del valor de un registro LoteEventos. El límite habitual de Kafka es 1 MiB por
# petición (max.request.size del cliente, message.max.bytes del broker): con la mitad queda
# margen para la envoltura del registro y para lotes de varias particiones en una petición.
BYTES_MAXIMOS_LOTE = 512 * 1024


@dataclass
class Registro:
    """Un registro de Kafka listo para enviar (partición None: la elige el particionador)."""

    topico: str
    clave: bytes | None
    valor: bytes
    cabeceras: list[tuple[str, bytes]] = field(default_factory=list)
    particion: int | None = None
    # Posiciones, en la secuencia de entrada, de los eventos que lleva: quien envía sabe así a
    # qué eventos afecta un envío fallido.
    posiciones: tuple[int, ...] = ()


def particion_por_defecto(clave: bytes, particiones: int) -> int:
    """La partición que elegiría el particionador por defecto de Kafka (murmur2 de la clave,
    el de Java, kafka-python y aiokafka): la misma que tendría el evento publicado solo."""
    return (murmur2(clave) & 0x7FFFFFFF) % particiones


def registros_aceptados(aceptados: Sequence[pb.Evento], topico: str, particiones: int | None) -> list[Registro]:
    """Los registros de los eventos aceptados.

    Sin `particiones`, un registro `Evento` por evento con la clave del caso. Con
    `particiones`, los eventos de cada partición en registros `LoteEventos` (cabecera
    `gpr-lote: 1`) con la partición explícita que el particionador por defecto daría a cada
    caso: todos los eventos de un caso siguen en una partición, en el orden recibido, como si
    se hubieran publicado uno a uno, así el procesador calcula lo mismo. La clave del lote es
    la de su primer evento (cae en la misma partición). Una partición con un solo evento va
    como `Evento` simple.
    """
    if not particiones:
        return [Registro(topico, clave_kafka(e), e.SerializeToString(), posiciones=(i,))
                for i, e in enumerate(aceptados)]
    por_particion: dict[int, list[tuple[int, pb.Evento]]] = {}
    for posicion, evento in enumerate(aceptados):
        por_particion.setdefault(particion_por_defecto(clave_kafka(evento), particiones), []).append(
            (posicion, evento))
    registros = []
    for particion, eventos in sorted(por_particion.items()):
        for trozo in _trozos_por_tamano(eventos):
            posiciones = tuple(posicion for posicion, _ in trozo)
            if len(trozo) == 1:
                evento = trozo[0][1]
                registros.append(Registro(topico, clave_kafka(evento), evento.SerializeToString(),
                                          particion=particion, posiciones=posiciones))
            else:
                registros.append(Registro(
                    topico, clave_kafka(trozo[0][1]), pb.LoteEventos(eventos=[e for _, e in trozo]).SerializeToString(),
                    [(CABECERA_LOTE, b"1")], particion, posiciones,
                ))
    return registros


def _trozos_por_tamano(eventos: list[tuple[int, pb.Evento]]) -> list[list[tuple[int, pb.Evento]]]:
    trozos: list[list[tuple[int, pb.Evento]]] = [[]]
    tamano = 0
    for posicion, evento in eventos:
        # Cada evento ocupa en el lote su tamaño más la etiqueta y la longitud del campo.
        bytes_evento = evento.ByteSize() + 6
        if trozos[-1] and tamano + bytes_evento > BYTES_MAXIMOS_LOTE:
            trozos.append([])
            tamano = 0
        trozos[-1].append((posicion, evento))
        tamano += bytes_evento
    return trozos
