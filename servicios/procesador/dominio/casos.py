"""Estado por caso y los aportes que cada evento hace a los cubos horarios.

Los aportes que dependen de varios eventos del caso (cumplimiento del plazo, tiempo de
atención, conclusión, reproceso, vencimiento…) se derivan del estado completo: al aplicar un
evento se emite la diferencia entre los aportes derivados después y antes. Así el resultado
no depende del orden de llegada (una entrega puede llegar antes que su recepción) y, si un
evento tardío cambia la primera entrega, el aporte anterior se retira con signo negativo.
Los eventos que no dependen del caso (solicitud, encuesta, reclamo, costo) aportan directo.

Un evento ya visto (misma fuente y evento_id) no cambia el estado y devuelve el mismo lote de
aportes que emitió la primera vez, con su secuencia original: la etapa siguiente lo descarta
si ya lo aplicó y lo aplica si se perdió antes de un corte.

Los instantes son segundos enteros desde la época (se ignora la fracción de segundo).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from gpr.v1 import eventos_pb2 as pb
from gpr.v1 import interno_pb2 as interno
from servicios.procesador.dominio import medidas as m
from servicios.procesador.dominio.percentiles import clave as clave_percentil

SEGUNDOS_POR_DIA = 86400
CANALES_DIGITALES = frozenset({pb.WEB, pb.APP, pb.DIGITAL_ASISTIDO})
RESULTADOS_FALLIDOS = frozenset({pb.ERROR, pb.DESISTIDO})
_SEP = "\x1f"


@dataclass(frozen=True)
class ResultadoAplicacion:
    estado: interno.EstadoCaso
    lote: interno.LoteAportes
    duplicado: bool


def identidad(evento: pb.Evento) -> str:
    """Identidad de un evento para el efecto exactamente-una-vez: (fuente, evento_id)."""
    return f"{evento.fuente}{_SEP}{evento.evento_id}"


def lote_si_visto(estado: interno.EstadoCaso | None, evento: pb.Evento) -> interno.LoteAportes | None:
    """El lote que emitió el evento si ya se aplicó a este estado; None si es nuevo."""
    if estado is not None:
        clave_evento = identidad(evento)
        for i, visto in enumerate(estado.vistos):
            if visto == clave_evento:
                return estado.emitidos[i]
    return None


def _conclusion(estado: interno.EstadoCaso) -> int | None:
    instantes = [getattr(estado, c) for c in ("entregado_en", "cerrado_en") if estado.HasField(c)]
    return min(instantes) if instantes else None


def aportes_derivados(estado: interno.EstadoCaso) -> Counter:
    """Aportes que son función del estado completo del caso, clave (medida, instante)."""
    aportes: Counter = Counter()
    recibido = estado.recibido_en if estado.HasField("recibido_en") else None
    entregado = estado.entregado_en if estado.HasField("entregado_en") else None
    concluido = _conclusion(estado)
    plazo_s = estado.plazo_dias * SEGUNDOS_POR_DIA

    if recibido is not None:
        aportes[(m.CONCLUSION_CASOS, recibido)] += 1
        if concluido is not None:
            aportes[(m.CONCLUSION_BUENOS, recibido)] += 1
        # Vencido en (recibido + plazo, concluido): la edad debe *superar* el plazo.
        vence = recibido + plazo_s + 1
        if concluido is None or concluido > vence - 1:
            aportes[(m.VENCIDOS, vence)] += 1
            if concluido is not None:
                aportes[(m.VENCIDOS, concluido)] -= 1
    if entregado is not None:
        aportes[(m.ENTREGAS, entregado)] += 1
        if estado.canal_entrega in CANALES_DIGITALES:
            aportes[(m.ENTREGAS_DIGITALES, entregado)] += 1
        if recibido is not None:
            atencion = entregado - recibido
            aportes[(m.PLAZO_CASOS, entregado)] += 1
            if atencion <= plazo_s:
                aportes[(m.PLAZO_BUENOS, entregado)] += 1
            aportes[(m.histograma(m.ATENCION, clave_percentil(atencion)), entregado)] += 1
    if concluido is not None:
        aportes[(m.CONCLUIDOS, concluido)] += 1
        if estado.devuelto or estado.reintento:
            aportes[(m.REPROCESO, concluido)] += 1
        if estado.resultado in RESULTADOS_FALLIDOS:
            aportes[(m.ERRORES, concluido)] += 1
    for etapa_intento, fin in estado.etapa_fin.items():
        inicio = estado.etapa_inicio.get(etapa_intento)
        if inicio is not None:
            etapa = etapa_intento.split(_SEP, 1)[0]
            aportes[(m.histograma(m.etapa(etapa), clave_percentil(fin - inicio)), fin)] += 1
    return aportes


def _aportes_directos(evento: pb.Evento) -> Counter:
    t = evento.ocurrido_en.seconds
    aportes: Counter = Counter()
    if evento.tipo == pb.SOLICITUD_RECIBIDA:
        aportes[(m.SOLICITUDES, t)] += 1
    elif evento.tipo == pb.ENCUESTA_RESPONDIDA:
        s = evento.satisfaccion
        aportes[(m.ENCUESTAS, t)] += 1
        if s.puntaje >= s.escala_max - 1:
            aportes[(m.ENCUESTAS_TOP2, t)] += 1
        aportes[(m.SATISFACCION_SUMA, t)] += (s.puntaje - 1) / (s.escala_max - 1)
    elif evento.tipo == pb.RECLAMO_REGISTRADO:
        aportes[(m.RECLAMOS, t)] += 1
    elif evento.tipo == pb.COSTO_REGISTRADO:
        aportes[(m.COSTO_TOTAL, t)] += evento.costo.monto
    return aportes


def _antes(t: int, desempate: str, t_actual: int | None, desempate_actual: str) -> bool:
    return t_actual is None or (t, desempate) < (t_actual, desempate_actual)


def _actualizar_estado(estado: interno.EstadoCaso, evento: pb.Evento) -> None:
    t = evento.ocurrido_en.seconds
    tipo = evento.tipo
    desempate = evento.evento_id
    if tipo == pb.SOLICITUD_RECIBIDA:
        if not estado.HasField("recibido_en") or t < estado.recibido_en:
            estado.recibido_en = t
        if evento.HasField("plazo_dias"):
            estado.plazo_dias = evento.plazo_dias
            estado.plazo_explicito = True
    elif tipo == pb.SERVICIO_ENTREGADO:
        actual = estado.entregado_en if estado.HasField("entregado_en") else None
        if _antes(t, desempate, actual, estado.desempate_entrega):
            estado.entregado_en = t
            estado.canal_entrega = evento.canal
            estado.desempate_entrega = desempate
    elif tipo == pb.CASO_CERRADO:
        if not estado.HasField("cerrado_en") or t < estado.cerrado_en:
            estado.cerrado_en = t
    elif tipo == pb.CASO_DEVUELTO:
        estado.devuelto = True
    elif tipo in (pb.ETAPA_INICIADA, pb.ETAPA_COMPLETADA):
        intento = max(evento.intento, 1)
        if intento > 1:
            estado.reintento = True
        clave = f"{evento.etapa_id}{_SEP}{intento}"
        mapa = estado.etapa_inicio if tipo == pb.ETAPA_INICIADA else estado.etapa_fin
        if clave not in mapa or t < mapa[clave]:
            mapa[clave] = t
    if tipo in (pb.SERVICIO_ENTREGADO, pb.CASO_CERRADO):
        actual = estado.concluido_con if estado.desempate_conclusion else None
        if _antes(t, desempate, actual, estado.desempate_conclusion):
            estado.concluido_con = t
            estado.desempate_conclusion = desempate
            estado.resultado = evento.resultado


def aplicar_evento(
    estado: interno.EstadoCaso | None,
    evento: pb.Evento,
    plazo_servicio_dias: int,
    particion: int,
    secuencia: int,
) -> ResultadoAplicacion:
    """Aplica un evento validado al estado de su caso (o al de su clave si no tiene caso)."""
    previo = lote_si_visto(estado, evento)
    if previo is not None:
        return ResultadoAplicacion(estado, previo, duplicado=True)

    nuevo = interno.EstadoCaso()
    if estado is not None:
        nuevo.CopyFrom(estado)
    else:
        nuevo.agencia_id = evento.agencia_id
        nuevo.servicio_id = evento.servicio_id
        nuevo.plazo_dias = plazo_servicio_dias

    antes = aportes_derivados(nuevo)
    _actualizar_estado(nuevo, evento)
    cambios = _aportes_directos(evento)
    cambios.update(aportes_derivados(nuevo))
    cambios.subtract(antes)

    lote = interno.LoteAportes(
        particion_origen=particion, secuencia=secuencia, ocurrido_en=evento.ocurrido_en.seconds,
        agencia_id=nuevo.agencia_id, servicio_id=nuevo.servicio_id,
    )
    for (medida, instante), valor in sorted(cambios.items()):
        if valor:
            lote.aportes.add(instante=instante, medida=medida, valor=valor)
    nuevo.vistos.append(identidad(evento))
    nuevo.emitidos.append(lote)
    return ResultadoAplicacion(nuevo, lote, duplicado=False)
