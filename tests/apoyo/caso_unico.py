"""Un evento aplicado al estado guardado de su caso, de a uno: lo que la etapa por caso hace por
lotes sobre un `Caso` (sin pasar por el mensaje en cada evento ni armar el lote de cada uno).
Solo para las pruebas del núcleo, que miran evento a evento el lote que emite cada uno."""

from __future__ import annotations

from typing import NamedTuple

from gpr.v1 import eventos_pb2 as pb
from gpr.v1 import interno_pb2 as interno
from servicios.procesador.dominio.casos import Caso, armar_lote, cambios_de, identidad, lote_emitido, registrar


class ResultadoAplicacion(NamedTuple):
    """El estado guardado, el lote de aportes del evento y si era un repetido (entonces, el
    lote de la primera vez)."""

    estado: interno.EstadoCaso
    lote: interno.LoteAportes
    duplicado: bool


def aplicar_evento(estado: interno.EstadoCaso | None, evento: pb.Evento, plazo_servicio_dias: int,
                   particion: int, secuencia: int) -> ResultadoAplicacion:
    ident = identidad(evento)
    if estado is not None:
        previo = lote_emitido(estado, ident)
        if previo is not None:
            return ResultadoAplicacion(estado, previo, duplicado=True)
    caso = Caso.de_mensaje(estado) if estado is not None else Caso.nuevo(evento, plazo_servicio_dias)
    t = evento.ocurrido_en.seconds
    cambios = cambios_de(caso, evento, evento.tipo, t)
    registrar(caso, evento, ident, particion, secuencia)
    lote = armar_lote(caso, particion, secuencia, t, cambios)
    return ResultadoAplicacion(caso.a_mensaje(), lote, duplicado=False)
