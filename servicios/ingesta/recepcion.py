"""Lo que la ingesta decide sobre una petición, sin E/S: autorización por agencia y
validación de cada evento, y los registros de Kafka de los rechazados (los de los aceptados,
en lotes por partición, los arma `servicios/comun/lotes.py`, que comparte con `gpr publicar`).

Los registros se arman aquí y los envía `publicador.py`; así el reparto en particiones y los
lotes se prueban sin broker.

Nada de lo que escribe el cliente vuelve entero en un error, una respuesta, una cabecera o
una línea de registro: `recortar` lo deja en unos cientos de bytes con su largo original (un
campo de 1 MiB devuelto en un error supera además el límite de metadatos de gRPC, 16 KiB, y
el cliente recibía un RESOURCE_EXHAUSTED incomprensible).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gpr.v1 import eventos_pb2 as pb
from gpr.v1 import ingesta_pb2
from servicios.comun.catalogo import Catalogo
from servicios.comun.eventos import BYTES_MAXIMOS_EVENTO, clave_kafka, validar
from servicios.comun.lotes import Registro
from servicios.comun.topicos import CABECERA_MOTIVO

# Cabecera con el detalle del rechazo, la misma que escribe el procesador.
CABECERA_DETALLE = "gpr-detalle"
# Quién rechazó: distingue en el tópico de rechazados lo que rechazó la ingesta (el emisor ya
# recibió el motivo en la respuesta) de lo que rechazó el procesador.
CABECERA_ORIGEN = "gpr-origen"
ORIGEN = b"ingesta"
# Un evento mayor que el máximo del contrato (`comun/eventos.py`) se rechaza antes de mirarlo
# más; GPR_INGESTA_EVENTO_MAXIMO puede bajarlo, no subirlo. Los identificadores largos los
# rechaza el validador común (`campo_demasiado_largo:<campo>`, el mismo motivo por Kafka);
# GPR_INGESTA_ID_MAXIMO acota lo que de ellos se repite en la respuesta (config.py).
BYTES_MAXIMOS_ID = 128
MOTIVO_DEMASIADO_GRANDE = "evento_demasiado_grande"
MOTIVO_PROTOBUF = "protobuf_invalido"
MOTIVO_ERROR_INTERNO = "error_interno"
# Bytes de datos del cliente que se repiten, como mucho, en un error o una línea de registro.
ECO_MAXIMO = 200
# Un motivo es nuestro, pero el de error_interno lleva el nombre de una clase: se acota igual.
MOTIVO_MAXIMO = 100

# Identificadores del evento, con el nombre que se da en el motivo de rechazo.
_IDENTIFICADORES = ("evento_id", "fuente", "agencia_id", "servicio_id", "region", "caso_id", "etapa_id")
_IDENTIFICADORES_DETALLE = (("reclamo", ("reclamo_id", "categoria", "etapa_relacionada")), ("costo", ("moneda",)))


def recortar(texto: str, maximo: int = ECO_MAXIMO) -> str:
    """`texto` si ocupa hasta `maximo` bytes UTF-8; si no, sus primeros `maximo` bytes (sin
    partir un carácter), «…» y el largo original: `abc…(1048576 bytes)`."""
    datos = texto.encode("utf-8", "replace")
    if len(datos) <= maximo:
        return texto
    return f"{datos[:maximo].decode('utf-8', 'ignore')}…({len(datos)} bytes)"


@dataclass
class MensajeInvalido:
    """Un mensaje de un flujo que no se pudo leer como `gpr.v1.Evento`: se rechaza él solo
    (`protobuf_invalido`), como el procesador rechaza un registro ilegible de Kafka."""

    crudo: bytes
    error: str
    evento_id: str = ""


def campo_demasiado_largo(evento: pb.Evento, maximo: int) -> str | None:
    """El primer identificador del evento que ocupa más de `maximo` bytes UTF-8, o None."""
    for campo in _IDENTIFICADORES:
        if len(getattr(evento, campo).encode()) > maximo:
            return campo
    for mensaje, campos in _IDENTIFICADORES_DETALLE:
        if evento.HasField(mensaje):
            detalle = getattr(evento, mensaje)
            for campo in campos:
                if len(getattr(detalle, campo).encode()) > maximo:
                    return f"{mensaje}.{campo}"
    for clave in evento.atributos:
        if len(clave.encode()) > maximo:
            return "atributos"
    return None


class EventoAjeno(Exception):
    """Un evento de otra agencia que la del token: se deniega la petición entera."""

    def __init__(self, indice: int, evento: pb.Evento, agencia_token: str, otros: int):
        self.indice = indice
        mas = f" (y {otros} evento(s) más de otras agencias)" if otros else ""
        super().__init__(
            f"eventos[{indice}].agencia_id: el evento {recortar(evento.evento_id)!r} es de la agencia "
            f"{recortar(evento.agencia_id)!r} y el token es de {agencia_token!r}{mas}; un token solo publica "
            "eventos de su propia agencia"
        )


def es_ajeno(evento: pb.Evento | MensajeInvalido, agencia_token: str) -> bool:
    """Un `agencia_id` vacío no es ajeno: es un evento inválido y lo rechaza el validador con
    `campo_requerido:agencia_id`, como en el procesador. Un mensaje ilegible tampoco."""
    agencia = getattr(evento, "agencia_id", "")
    return bool(agencia) and agencia != agencia_token


def comprobar_agencia(eventos: Sequence[pb.Evento], agencia_token: str, desde: int = 0) -> None:
    """Lanza `EventoAjeno` si algún evento nombra otra agencia; `desde` es la posición del
    primero en la petición (un trozo de un flujo)."""
    ajenos = [i for i, e in enumerate(eventos) if es_ajeno(e, agencia_token)]
    if ajenos:
        raise EventoAjeno(desde + ajenos[0], eventos[ajenos[0]], agencia_token, len(ajenos) - 1)


@dataclass
class Clasificacion:
    """Motivo de rechazo por posición (None = aceptado) y los eventos aceptados, en orden."""

    motivos: list[str | None]
    aceptados: list[pb.Evento]
    rechazados: list[tuple[pb.Evento | MensajeInvalido, str]]


def motivo_de(evento: pb.Evento | MensajeInvalido, catalogo: Catalogo, ahora_s: float,
              evento_maximo: int = BYTES_MAXIMOS_EVENTO, id_maximo: int = BYTES_MAXIMOS_ID) -> str | None:
    """Motivo de rechazo del evento, o None si se acepta.

    Antes del validador común, lo que solo la ingesta comprueba: que se pudo leer, su tamaño
    y el de sus identificadores. Un error inesperado al validar es el rechazo de ese evento
    (`error_interno:<clase>`), no de la petición.
    """
    if isinstance(evento, MensajeInvalido):
        return MOTIVO_PROTOBUF
    if evento.ByteSize() > evento_maximo:
        return MOTIVO_DEMASIADO_GRANDE
    try:
        return validar(evento, catalogo, ahora_s)
    except Exception as error:  # noqa: BLE001 (un evento no tumba la petición)
        return recortar(f"{MOTIVO_ERROR_INTERNO}:{type(error).__name__}", MOTIVO_MAXIMO)


def clasificar(eventos: Sequence[pb.Evento | MensajeInvalido], catalogo: Catalogo, ahora_s: float,
               evento_maximo: int = BYTES_MAXIMOS_EVENTO, id_maximo: int = BYTES_MAXIMOS_ID) -> Clasificacion:
    """Valida cada evento (`motivo_de`) y sella `recibido_en` en los aceptados.

    Los rechazados se dejan tal como llegaron: al tópico de rechazados va el original.
    """
    motivos: list[str | None] = []
    aceptados: list[pb.Evento] = []
    rechazados: list[tuple[pb.Evento | MensajeInvalido, str]] = []
    segundos, fraccion = divmod(ahora_s, 1)
    for evento in eventos:
        motivo = motivo_de(evento, catalogo, ahora_s, evento_maximo, id_maximo)
        motivos.append(motivo)
        if motivo is None:
            evento.recibido_en.seconds = int(segundos)
            evento.recibido_en.nanos = int(fraccion * 1e9)
            aceptados.append(evento)
        else:
            rechazados.append((evento, motivo))
    return Clasificacion(motivos, aceptados, rechazados)


def resultado(evento: pb.Evento | MensajeInvalido, motivo: str | None,
              id_maximo: int = BYTES_MAXIMOS_ID) -> ingesta_pb2.ResultadoEvento:
    """El resultado de un evento en la respuesta: su evento_id (recortado si excede el máximo de
    un identificador, y entonces el evento está rechazado) y su motivo."""
    return ingesta_pb2.ResultadoEvento(evento_id=recortar(evento.evento_id, id_maximo), aceptado=motivo is None,
                                       motivo=recortar(motivo or "", MOTIVO_MAXIMO))


def registros_rechazados(rechazados: Sequence[tuple[pb.Evento | MensajeInvalido, str]], topico: str,
                         evento_maximo: int = BYTES_MAXIMOS_EVENTO, id_maximo: int = BYTES_MAXIMOS_ID,
                         posiciones: Sequence[int] | None = None) -> list[Registro]:
    """Un registro por rechazado, con el evento original y las cabeceras del procesador.

    Un evento demasiado grande va sin valor (no cabría en Kafka) y el detalle dice su tamaño;
    un mensaje ilegible va con sus bytes tal como llegaron. La clave es la del caso, salvo si
    algún identificador excede el máximo (un registro no debe llevar una clave de 1 MiB): sin
    clave. `posiciones`: la de cada rechazado en la petición; el detalle de un mensaje ilegible
    la nombra (no tiene evento_id).
    """
    registros = []
    for i, (evento, motivo) in enumerate(rechazados):
        if isinstance(evento, MensajeInvalido):
            valor, clave = evento.crudo, None
            donde = f"eventos[{posiciones[i]}]" if posiciones is not None else "mensaje"
            detalle = f"{donde}: {motivo}: no es un gpr.v1.Evento ({recortar(evento.error)})"
        else:
            valor = evento.SerializeToString()
            clave = clave_kafka(evento) if campo_demasiado_largo(evento, id_maximo) is None else None
            # El mismo formato que el procesador.
            detalle = f"evento {recortar(evento.evento_id)!r}: {motivo}"
        if len(valor) > evento_maximo:
            detalle += f" ({len(valor)} bytes; el máximo es {evento_maximo})"
            valor = b""
        registros.append(Registro(topico, clave or None, valor, [
            (CABECERA_MOTIVO, motivo.encode()),
            (CABECERA_DETALLE, detalle.encode()),
            (CABECERA_ORIGEN, ORIGEN),
        ]))
    return registros
