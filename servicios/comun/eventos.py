"""Decodificación y validación de eventos: la misma para el procesador y para Ingesta.

Todo es puro (sin E/S): recibe bytes, el catálogo y la hora, y devuelve eventos o el motivo
de rechazo que irá en la cabecera `gpr-motivo` del tópico de rechazados.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.message import DecodeError

from gpr.v1 import eventos_pb2 as pb
from servicios.comun.catalogo import Catalogo
from servicios.comun.topicos import CABECERA_LOTE

# Un evento más adelantado que esto respecto del reloj de la plataforma se rechaza.
FUTURO_TOLERADO_S = 300

TIPOS_DE_CASO = frozenset({
    pb.SOLICITUD_RECIBIDA,
    pb.ETAPA_INICIADA,
    pb.ETAPA_COMPLETADA,
    pb.CASO_DEVUELTO,
    pb.SERVICIO_ENTREGADO,
    pb.CASO_CERRADO,
})
TIPOS_DE_ETAPA = frozenset({pb.ETAPA_INICIADA, pb.ETAPA_COMPLETADA})
_TIPOS_CONOCIDOS = frozenset(pb.TipoEvento.values())
_NO_ESPECIFICADO = pb.TIPO_EVENTO_NO_ESPECIFICADO
_TIPOS_CON_DETALLE = frozenset({pb.ENCUESTA_RESPONDIDA, pb.RECLAMO_REGISTRADO, pb.RECLAMO_RESUELTO,
                                pb.COSTO_REGISTRADO})


class RegistroInvalido(ValueError):
    """El valor de un registro de Kafka no es un Evento ni un LoteEventos decodificable."""

    motivo = "protobuf_invalido"


def es_lote(cabeceras: Iterable[tuple[str, bytes]] | None) -> bool:
    if not cabeceras:
        return False
    for k, v in cabeceras:
        if k == CABECERA_LOTE and v == b"1":
            return True
    return False


def decodificar(valor: bytes | None, cabeceras: Iterable[tuple[str, bytes]] | None = None) -> list[pb.Evento]:
    """Los eventos de un registro: uno, o los de un LoteEventos si lleva la cabecera de lote."""
    if not valor:
        raise RegistroInvalido("registro vacío")
    try:
        if es_lote(cabeceras):
            return list(pb.LoteEventos.FromString(valor).eventos)
        return [pb.Evento.FromString(valor)]
    except DecodeError as error:
        raise RegistroInvalido(f"no es un protobuf gpr.v1.Evento: {error}") from None


def validar(evento: pb.Evento, catalogo: Catalogo, ahora_s: float) -> str | None:
    """Motivo de rechazo del evento, o None si es aceptable. No juzga la tardanza (ver procesador)."""
    # Cada campo se lee una vez: leer un campo de un mensaje protobuf cuesta más que la
    # comparación, y esto corre por cada evento.
    tipo = evento.tipo
    if not evento.evento_id:
        return "campo_requerido:evento_id"
    if tipo == _NO_ESPECIFICADO:
        return "campo_requerido:tipo"
    if tipo not in _TIPOS_CONOCIDOS:
        return "tipo_incoherente"
    ocurrido = evento.ocurrido_en.seconds if evento.HasField("ocurrido_en") else 0
    if ocurrido <= 0:
        return "campo_requerido:ocurrido_en"
    agencia_id = evento.agencia_id
    if not agencia_id:
        return "campo_requerido:agencia_id"
    servicio_id = evento.servicio_id
    if not servicio_id:
        return "campo_requerido:servicio_id"
    if tipo in TIPOS_DE_CASO and not evento.caso_id:
        return "campo_requerido:caso_id"
    if tipo in TIPOS_DE_ETAPA and not evento.etapa_id:
        return "campo_requerido:etapa_id"
    agencia = catalogo.agencias.get(agencia_id)
    if agencia is None:
        return "agencia_desconocida"
    if (agencia_id, servicio_id) not in catalogo.servicios:
        return "servicio_desconocido"
    if ocurrido > ahora_s + FUTURO_TOLERADO_S:
        return "tiempo_futuro"
    if evento.intento < 0 or (evento.HasField("plazo_dias") and evento.plazo_dias <= 0):
        return "tipo_incoherente"
    if tipo in _TIPOS_CON_DETALLE:
        return _validar_detalle(evento, tipo, agencia)
    return None


def _validar_detalle(evento: pb.Evento, tipo: int, agencia) -> str | None:
    if tipo == pb.ENCUESTA_RESPONDIDA:
        s = evento.satisfaccion
        if not evento.HasField("satisfaccion") or s.escala_max < 2 or not 1 <= s.puntaje <= s.escala_max:
            return "tipo_incoherente"
    elif tipo in (pb.RECLAMO_REGISTRADO, pb.RECLAMO_RESUELTO):
        if not evento.HasField("reclamo") or not evento.reclamo.reclamo_id:
            return "tipo_incoherente"
    elif tipo == pb.COSTO_REGISTRADO:
        if not evento.HasField("costo") or evento.costo.monto < 0:
            return "tipo_incoherente"
        if evento.costo.moneda != agencia.moneda:
            return "moneda_incoherente"
    return None


def clave_kafka(evento: pb.Evento) -> bytes:
    """Clave del registro en gpr.eventos.v1: el caso (todo su ciclo en una partición)."""
    return (evento.caso_id or evento.evento_id).encode()
