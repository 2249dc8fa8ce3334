"""Estado por caso y los aportes que cada evento hace a los cubos horarios.

Los aportes que dependen de varios eventos del caso (p. ej. el cumplimiento del plazo, que
necesita la recepción y la entrega) se derivan del estado completo: al aplicar un evento se
emite la diferencia entre los aportes derivados después y antes. Así el resultado no depende
del orden de llegada (una entrega puede llegar antes que su recepción) y un cambio de la
primera entrega retira el aporte anterior con signo negativo.

Un evento ya visto (misma fuente y evento_id) no cambia el estado y devuelve el mismo lote de
aportes que emitió la primera vez, con su secuencia original: la etapa siguiente lo descarta
si ya lo aplicó y lo aplica si se perdió antes de un reinicio.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from gpr.v1 import eventos_pb2 as pb
from gpr.v1 import interno_pb2 as interno

SEGUNDOS_POR_DIA = 86400


@dataclass(frozen=True)
class ResultadoAplicacion:
    estado: interno.EstadoCaso
    lote: interno.LoteAportes
    duplicado: bool


def identidad(evento: pb.Evento) -> str:
    """Identidad de un evento para el efecto exactamente-una-vez: (fuente, evento_id)."""
    return f"{evento.fuente}\x1f{evento.evento_id}"


def microsegundos(ts) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def _aportes_derivados(estado: interno.EstadoCaso) -> Counter:
    """Aportes que son función del estado completo del caso, clave (medida, instante en s)."""
    aportes: Counter = Counter()
    if estado.HasField("recibido_en") and estado.HasField("entregado_en"):
        instante = estado.entregado_en // 1_000_000
        aportes[("plazo_casos", instante)] += 1
        if estado.entregado_en - estado.recibido_en <= estado.plazo_dias * SEGUNDOS_POR_DIA * 1_000_000:
            aportes[("plazo_buenos", instante)] += 1
    return aportes


def _primero(estado: interno.EstadoCaso, campo: str, instante: int) -> None:
    if not estado.HasField(campo) or instante < getattr(estado, campo):
        setattr(estado, campo, instante)


def aplicar_evento(
    estado: interno.EstadoCaso | None,
    evento: pb.Evento,
    plazo_servicio_dias: int,
    particion: int,
    secuencia: int,
) -> ResultadoAplicacion:
    """Aplica un evento validado al estado de su caso (o al de su clave si no tiene caso)."""
    clave_evento = identidad(evento)
    if estado is not None:
        for i, visto in enumerate(estado.vistos):
            if visto == clave_evento:
                return ResultadoAplicacion(estado, estado.emitidos[i], duplicado=True)

    nuevo = interno.EstadoCaso()
    if estado is not None:
        nuevo.CopyFrom(estado)
    else:
        nuevo.agencia_id = evento.agencia_id
        nuevo.servicio_id = evento.servicio_id
        nuevo.plazo_dias = plazo_servicio_dias

    antes = _aportes_derivados(nuevo)
    cuando = microsegundos(evento.ocurrido_en)
    directos: Counter = Counter()
    if evento.tipo == pb.SOLICITUD_RECIBIDA:
        directos[("solicitudes", evento.ocurrido_en.seconds)] += 1
        _primero(nuevo, "recibido_en", cuando)
        if evento.HasField("plazo_dias"):
            nuevo.plazo_dias = evento.plazo_dias
            nuevo.plazo_explicito = True
    elif evento.tipo == pb.SERVICIO_ENTREGADO:
        _primero(nuevo, "entregado_en", cuando)
    despues = _aportes_derivados(nuevo)

    cambios = directos
    cambios.update(despues)
    cambios.subtract(antes)
    lote = interno.LoteAportes(
        particion_origen=particion, secuencia=secuencia, ocurrido_en=evento.ocurrido_en.seconds,
        agencia_id=nuevo.agencia_id, servicio_id=nuevo.servicio_id,
    )
    for (medida, instante), valor in sorted(cambios.items()):
        if valor:
            lote.aportes.add(instante=instante, medida=medida, valor=valor)
    nuevo.vistos.append(clave_evento)
    nuevo.emitidos.append(lote)
    return ResultadoAplicacion(nuevo, lote, duplicado=False)
