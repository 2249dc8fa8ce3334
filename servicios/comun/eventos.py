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


class RegistroInvalido(ValueError):
    """El valor de un registro de Kafka no es un Evento ni un LoteEventos decodificable."""

    motivo = "protobuf_invalido"


def es_lote(cabeceras: Iterable[tuple[str, bytes]] | None) -> bool:
    return any(k == CABECERA_LOTE and v == b"1" for k, v in cabeceras or ())


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
    if not evento.evento_id:
        return "campo_requerido:evento_id"
    if evento.tipo == pb.TIPO_EVENTO_NO_ESPECIFICADO:
        return "campo_requerido:tipo"
    if evento.tipo not in _TIPOS_CONOCIDOS:
        return "tipo_incoherente"
    if not evento.HasField("ocurrido_en") or evento.ocurrido_en.seconds <= 0:
        return "campo_requerido:ocurrido_en"
    if not evento.agencia_id:
        return "campo_requerido:agencia_id"
    if not evento.servicio_id:
        return "campo_requerido:servicio_id"
    if evento.tipo in TIPOS_DE_CASO and not evento.caso_id:
        return "campo_requerido:caso_id"
    if evento.tipo in TIPOS_DE_ETAPA and not evento.etapa_id:
        return "campo_requerido:etapa_id"
    agencia = catalogo.agencias.get(evento.agencia_id)
    if agencia is None:
        return "agencia_desconocida"
    if catalogo.servicio(evento.agencia_id, evento.servicio_id) is None:
        return "servicio_desconocido"
    if evento.ocurrido_en.seconds > ahora_s + FUTURO_TOLERADO_S:
        return "tiempo_futuro"
    if evento.intento < 0 or (evento.HasField("plazo_dias") and evento.plazo_dias <= 0):
        return "tipo_incoherente"
    if evento.tipo == pb.ENCUESTA_RESPONDIDA:
        s = evento.satisfaccion
        if not evento.HasField("satisfaccion") or s.escala_max < 2 or not 1 <= s.puntaje <= s.escala_max:
            return "tipo_incoherente"
    if evento.tipo in (pb.RECLAMO_REGISTRADO, pb.RECLAMO_RESUELTO):
        if not evento.HasField("reclamo") or not evento.reclamo.reclamo_id:
            return "tipo_incoherente"
    if evento.tipo == pb.COSTO_REGISTRADO:
        if not evento.HasField("costo") or evento.costo.monto < 0:
            return "tipo_incoherente"
        if evento.costo.moneda != agencia.moneda:
            return "moneda_incoherente"
    return None


def clave_kafka(evento: pb.Evento) -> bytes:
    """Clave del registro en gpr.eventos.v1: el caso (todo su ciclo en una partición)."""
    return (evento.caso_id or evento.evento_id).encode()
