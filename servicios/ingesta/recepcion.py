"""Lo que la ingesta decide sobre una petición, sin E/S: autorización por agencia y
validación de cada evento, y los registros de Kafka de los rechazados (los de los aceptados,
en lotes por partición, los arma `servicios/comun/lotes.py`, que comparte con `gpr publicar`).

Los registros se arman aquí y los envía `publicador.py`; así el reparto en particiones y los
lotes se prueban sin broker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gpr.v1 import eventos_pb2 as pb
from servicios.comun.catalogo import Catalogo
from servicios.comun.eventos import clave_kafka, validar
from servicios.comun.lotes import Registro
from servicios.comun.topicos import CABECERA_MOTIVO

# Cabecera con el detalle del rechazo, la misma que escribe el procesador.
CABECERA_DETALLE = "gpr-detalle"
# Quién rechazó: distingue en el tópico de rechazados lo que rechazó la ingesta (el emisor ya
# recibió el motivo en la respuesta) de lo que rechazó el procesador.
CABECERA_ORIGEN = "gpr-origen"
ORIGEN = b"ingesta"
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
