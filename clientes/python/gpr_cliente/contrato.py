"""Lo que un registro de `gpr.eventos.v1` debe cumplir fuera del `Evento`: el tópico, la clave y
la cabecera de lote. Lo usan la biblioteca cliente y los servicios de la plataforma (una sola
definición; `servicios.comun.topicos` y `servicios.comun.eventos` importan de aquí)."""

from __future__ import annotations

from gpr.v1 import eventos_pb2 as pb

# Tópico de entrada de los eventos.
TOPICO_EVENTOS = "gpr.eventos.v1"
# Cabecera que marca un registro cuyo valor es un LoteEventos y no un Evento.
CABECERA_LOTE = "gpr-lote"
# Separador de la clave de Kafka "<agencia_id>/<caso_id>": no aparece en un agencia_id.
SEPARADOR_CLAVE = "/"


def clave_kafka(evento: pb.Evento) -> bytes:
    """Clave del registro en gpr.eventos.v1: "<agencia_id>/<caso_id>" (todo el ciclo de un caso
    en una partición, y los casos de dos agencias con el mismo número por separado); sin caso,
    "<agencia_id>/<evento_id>"."""
    return f"{evento.agencia_id}{SEPARADOR_CLAVE}{evento.caso_id or evento.evento_id}".encode()
