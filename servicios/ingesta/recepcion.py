"""Lo que la ingesta decide sobre una petición, sin E/S: autorización por agencia,
validación de cada evento y agrupación en registros de Kafka.

Los registros se arman aquí y los envía `publicador.py`; así el reparto en particiones y los
lotes se prueban sin broker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from kafka.partitioner.default import murmur2

from gpr.v1 import eventos_pb2 as pb
from servicios.comun.catalogo import Catalogo
from servicios.comun.eventos import clave_kafka, validar
from servicios.comun.topicos import CABECERA_LOTE, CABECERA_MOTIVO

# Cabecera con el detalle del rechazo, la misma que escribe el procesador.
CABECERA_DETALLE = "gpr-detalle"
# Quién rechazó: distingue en el tópico de rechazados lo que rechazó la ingesta (el emisor ya
# recibió el motivo en la respuesta) de lo que rechazó el procesador.
CABECERA_ORIGEN = "gpr-origen"
ORIGEN = b"ingesta"
# Tope del valor de un registro LoteEventos. El límite habitual de Kafka es 1 MiB por
# petición (max.request.size del cliente, message.max.bytes del broker): con la mitad queda
# margen para la envoltura del registro y para lotes de varias particiones en una petición.
BYTES_MAXIMOS_LOTE = 512 * 1024
# Un evento típico ocupa unos cientos de bytes; uno mayor que esto (p. ej. `atributos`
# desmesurados) no cabría en un registro de Kafka junto a otros y se rechaza.
BYTES_MAXIMOS_EVENTO = 256 * 1024
MOTIVO_DEMASIADO_GRANDE = "evento_demasiado_grande"


class EventoAjeno(Exception):
    """Un evento de otra agencia que la del token: se deniega la petición entera."""

    def __init__(self, indice: int, evento: pb.Evento, agencia_token: str, otros: int):
        self.indice = indice
        mas = f" (y {otros} evento(s) más de otras agencias)" if otros else ""
        super().__init__(
            f"eventos[{indice}].agencia_id: el evento {evento.evento_id!r} es de la agencia "
            f"{evento.agencia_id!r} y el token es de {agencia_token!r}{mas}; un token solo publica "
            "eventos de su propia agencia y no se publicó ningún evento de esta petición"
        )


def comprobar_agencia(eventos: Sequence[pb.Evento], agencia_token: str) -> None:
    """Lanza `EventoAjeno` si algún evento nombra otra agencia.

    Un `agencia_id` vacío no es ajeno: es un evento inválido y lo rechaza el validador con
    `campo_requerido:agencia_id`, como en el procesador.
    """
    ajenos = [i for i, e in enumerate(eventos) if e.agencia_id and e.agencia_id != agencia_token]
    if ajenos:
        raise EventoAjeno(ajenos[0], eventos[ajenos[0]], agencia_token, len(ajenos) - 1)


@dataclass
class Registro:
    """Un registro de Kafka listo para enviar (partición None: la elige el particionador)."""

    topico: str
    clave: bytes | None
    valor: bytes
    cabeceras: list[tuple[str, bytes]] = field(default_factory=list)
    particion: int | None = None
    eventos: int = 1


@dataclass
class Clasificacion:
    """Motivo de rechazo por posición (None = aceptado) y los eventos aceptados, en orden."""

    motivos: list[str | None]
    aceptados: list[pb.Evento]
    rechazados: list[tuple[pb.Evento, str]]


def clasificar(eventos: Sequence[pb.Evento], catalogo: Catalogo, ahora_s: float) -> Clasificacion:
    """Valida cada evento con el validador del procesador y sella `recibido_en` en los aceptados.

    Los rechazados se dejan tal como llegaron: al tópico de rechazados va el original. Además
    del validador común, la ingesta rechaza un evento de más de `BYTES_MAXIMOS_EVENTO`.
    """
    motivos: list[str | None] = []
    aceptados: list[pb.Evento] = []
    rechazados: list[tuple[pb.Evento, str]] = []
    segundos, fraccion = divmod(ahora_s, 1)
    for evento in eventos:
        motivo = validar(evento, catalogo, ahora_s)
        if motivo is None and evento.ByteSize() > BYTES_MAXIMOS_EVENTO:
            motivo = MOTIVO_DEMASIADO_GRANDE
        motivos.append(motivo)
        if motivo is None:
            evento.recibido_en.seconds = int(segundos)
            evento.recibido_en.nanos = int(fraccion * 1e9)
            aceptados.append(evento)
        else:
            rechazados.append((evento, motivo))
    return Clasificacion(motivos, aceptados, rechazados)


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
        return [Registro(topico, clave_kafka(e), e.SerializeToString()) for e in aceptados]
    por_particion: dict[int, list[pb.Evento]] = {}
    for evento in aceptados:
        por_particion.setdefault(particion_por_defecto(clave_kafka(evento), particiones), []).append(evento)
    registros = []
    for particion, eventos in sorted(por_particion.items()):
        for trozo in _trozos_por_tamano(eventos):
            if len(trozo) == 1:
                registros.append(Registro(topico, clave_kafka(trozo[0]), trozo[0].SerializeToString(),
                                          particion=particion))
            else:
                registros.append(Registro(
                    topico, clave_kafka(trozo[0]), pb.LoteEventos(eventos=trozo).SerializeToString(),
                    [(CABECERA_LOTE, b"1")], particion, len(trozo),
                ))
    return registros


def _trozos_por_tamano(eventos: list[pb.Evento]) -> list[list[pb.Evento]]:
    trozos: list[list[pb.Evento]] = [[]]
    tamano = 0
    for evento in eventos:
        # Cada evento ocupa en el lote su tamaño más la etiqueta y la longitud del campo.
        bytes_evento = evento.ByteSize() + 6
        if trozos[-1] and tamano + bytes_evento > BYTES_MAXIMOS_LOTE:
            trozos.append([])
            tamano = 0
        trozos[-1].append(evento)
        tamano += bytes_evento
    return trozos


def registros_rechazados(rechazados: Sequence[tuple[pb.Evento, str]], topico: str) -> list[Registro]:
    """Un registro por rechazado, con el evento original y las cabeceras del procesador.

    Un evento demasiado grande va sin valor (no cabría en Kafka); el detalle dice su tamaño.
    """
    registros = []
    for evento, motivo in rechazados:
        valor = evento.SerializeToString()
        detalle = f"evento {evento.evento_id!r}: {motivo}"
        if motivo == MOTIVO_DEMASIADO_GRANDE:
            detalle += f" ({len(valor)} bytes; el máximo es {BYTES_MAXIMOS_EVENTO})"
            valor = b""
        registros.append(Registro(topico, clave_kafka(evento) or None, valor, [
            (CABECERA_MOTIVO, motivo.encode()),
            (CABECERA_DETALLE, detalle.encode()),
            (CABECERA_ORIGEN, ORIGEN),
        ]))
    return registros
