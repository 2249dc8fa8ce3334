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

from gpr.v1 import eventos_pb2 as pb
from gpr.v1 import interno_pb2 as interno
from servicios.procesador.dominio import medidas as m
from servicios.procesador.dominio.percentiles import clave as clave_percentil

SEGUNDOS_POR_DIA = 86400
CANALES_DIGITALES = frozenset({pb.WEB, pb.APP, pb.DIGITAL_ASISTIDO})
RESULTADOS_FALLIDOS = frozenset({pb.ERROR, pb.DESISTIDO})
_SEP = "\x1f"


class ResultadoAplicacion:
    """Lo que deja aplicar un evento. `cambios`: los mismos aportes del lote, (medida,
    instante) → valor, sin ceros (vacío si duplicado). Clase con `__slots__` y no dataclass
    congelada: se crea una por evento y el `__init__` congelado costaba un 5 % del trabajador."""

    __slots__ = ("estado", "lote", "duplicado", "cambios")

    def __init__(self, estado: interno.EstadoCaso, lote: interno.LoteAportes, duplicado: bool,
                 cambios: dict | None = None):
        self.estado = estado
        self.lote = lote
        self.duplicado = duplicado
        self.cambios = cambios if cambios is not None else {}


def poner_aportes(lote: interno.LoteAportes, aportes: dict) -> None:
    """Escribe en `lote` los aportes (medida, instante) → valor, ordenados."""
    claves = sorted(aportes)
    lote.medidas.extend([medida for medida, _ in claves])
    lote.instantes.extend([instante for _, instante in claves])
    lote.valores.extend([aportes[clave] for clave in claves])


def aportes_de(lote: interno.LoteAportes) -> list[tuple[str, int, float]]:
    """Los aportes de un lote como (medida, instante, valor), en columnas o en el formato
    anterior de un mensaje por aporte."""
    aportes = list(zip(lote.medidas, lote.instantes, lote.valores))
    if lote.aportes:
        aportes.extend((a.medida, a.instante, a.valor) for a in lote.aportes)
    return aportes


def identidad(evento: pb.Evento) -> str:
    """Identidad de un evento para el efecto exactamente-una-vez: (fuente, evento_id)."""
    return f"{evento.fuente}{_SEP}{evento.evento_id}"


def lote_si_visto(estado: interno.EstadoCaso | None, evento: pb.Evento,
                  ident: str | None = None) -> interno.LoteAportes | None:
    """El lote que emitió el evento si ya se aplicó a este estado; None si es nuevo.
    `ident`: `identidad(evento)`, si quien llama ya la tiene."""
    if estado is not None:
        ident = ident or identidad(evento)
        vistos = estado.vistos
        if ident in vistos:
            return estado.emitidos[list(vistos).index(ident)]
    return None


def _conclusion(estado: interno.EstadoCaso) -> int | None:
    instantes = [getattr(estado, c) for c in ("entregado_en", "cerrado_en") if estado.HasField(c)]
    return min(instantes) if instantes else None


def _sumar(aportes: dict, medida: str, instante: int, valor: float = 1) -> None:
    clave = (medida, instante)
    aportes[clave] = aportes.get(clave, 0) + valor


def _derivados_del_caso(estado: interno.EstadoCaso, aportes: dict) -> None:
    """Aportes derivados de recepción, entrega y conclusión (todo menos las etapas)."""
    recibido = estado.recibido_en if estado.HasField("recibido_en") else None
    entregado = estado.entregado_en if estado.HasField("entregado_en") else None
    concluido = _conclusion(estado)
    plazo_s = estado.plazo_dias * SEGUNDOS_POR_DIA

    if recibido is not None:
        _sumar(aportes, m.CONCLUSION_CASOS, recibido)
        if concluido is not None:
            _sumar(aportes, m.CONCLUSION_BUENOS, recibido)
        # Vencido en (recibido + plazo, concluido): la edad debe *superar* el plazo.
        vence = recibido + plazo_s + 1
        if concluido is None or concluido > vence - 1:
            _sumar(aportes, m.VENCIDOS, vence)
            if concluido is not None:
                _sumar(aportes, m.VENCIDOS, concluido, -1)
    if entregado is not None:
        _sumar(aportes, m.ENTREGAS, entregado)
        if estado.canal_entrega in CANALES_DIGITALES:
            _sumar(aportes, m.ENTREGAS_DIGITALES, entregado)
        if recibido is not None:
            atencion = entregado - recibido
            _sumar(aportes, m.PLAZO_CASOS, entregado)
            if atencion <= plazo_s:
                _sumar(aportes, m.PLAZO_BUENOS, entregado)
            _sumar(aportes, m.histograma(m.ATENCION, clave_percentil(atencion)), entregado)
    if concluido is not None:
        _sumar(aportes, m.CONCLUIDOS, concluido)
        if estado.devuelto or estado.reintento:
            _sumar(aportes, m.REPROCESO, concluido)
        if estado.resultado in RESULTADOS_FALLIDOS:
            _sumar(aportes, m.ERRORES, concluido)


def _derivado_de_etapa(estado: interno.EstadoCaso, etapa_intento: str, aportes: dict) -> None:
    """Aporte de una (etapa, intento): su permanencia, si se conocen inicio y fin."""
    fin = estado.etapa_fin.get(etapa_intento)
    inicio = estado.etapa_inicio.get(etapa_intento)
    if fin is not None and inicio is not None:
        etapa = etapa_intento.split(_SEP, 1)[0]
        _sumar(aportes, m.histograma(m.etapa(etapa), clave_percentil(fin - inicio)), fin)


def aportes_derivados(estado: interno.EstadoCaso) -> Counter:
    """Aportes que son función del estado completo del caso, clave (medida, instante)."""
    aportes: dict = {}
    _derivados_del_caso(estado, aportes)
    for etapa_intento in estado.etapa_fin:
        _derivado_de_etapa(estado, etapa_intento, aportes)
    return Counter(aportes)


def _aportes_directos(evento: pb.Evento, aportes: dict) -> None:
    t = evento.ocurrido_en.seconds
    tipo = evento.tipo
    if tipo == pb.SOLICITUD_RECIBIDA:
        _sumar(aportes, m.SOLICITUDES, t)
    elif tipo == pb.ENCUESTA_RESPONDIDA:
        s = evento.satisfaccion
        _sumar(aportes, m.ENCUESTAS, t)
        if s.puntaje >= s.escala_max - 1:
            _sumar(aportes, m.ENCUESTAS_TOP2, t)
        _sumar(aportes, m.SATISFACCION_SUMA, t, (s.puntaje - 1) / (s.escala_max - 1))
    elif tipo == pb.RECLAMO_REGISTRADO:
        _sumar(aportes, m.RECLAMOS, t)
    elif tipo == pb.COSTO_REGISTRADO:
        _sumar(aportes, m.COSTO_TOTAL, t, evento.costo.monto)


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


# Tipos que solo aportan directo: no cambian nada del caso de lo que dependen los derivados.
_SOLO_DIRECTOS = frozenset({pb.ENCUESTA_RESPONDIDA, pb.RECLAMO_REGISTRADO, pb.COSTO_REGISTRADO})
_DE_ETAPA = frozenset({pb.ETAPA_INICIADA, pb.ETAPA_COMPLETADA})


def _restar(aportes: dict, previos: dict) -> None:
    for clave, valor in previos.items():
        aportes[clave] = aportes.get(clave, 0) - valor


def aplicar_evento(
    estado: interno.EstadoCaso | None,
    evento: pb.Evento,
    plazo_servicio_dias: int,
    particion: int,
    secuencia: int,
    ya_comprobado: bool = False,
    ident: str | None = None,
) -> ResultadoAplicacion:
    """Aplica un evento validado al estado de su caso (o al de su clave si no tiene caso).

    `ya_comprobado`: quien llama ya sabe que el evento no está en `estado.vistos`.
    `ident`: `identidad(evento)`, si quien llama ya la tiene.

    Modifica `estado` (y lo devuelve en el resultado): copiarlo en cada evento costaba tanto
    como aplicarlo, y quien llama siempre lo acaba de leer del almacén. Solo se recalculan los
    derivados que el tipo de evento puede cambiar: los de una etapa dependen únicamente de
    su inicio y su fin, y una encuesta, un reclamo o un costo no tocan el caso.
    """
    if ident is None:
        ident = identidad(evento)
    if not ya_comprobado:
        previo = lote_si_visto(estado, evento, ident)
        if previo is not None:
            return ResultadoAplicacion(estado, previo, duplicado=True)

    if estado is None:
        estado = interno.EstadoCaso(agencia_id=evento.agencia_id, servicio_id=evento.servicio_id,
                                    plazo_dias=plazo_servicio_dias)

    cambios: dict = {}
    tipo = evento.tipo
    if tipo in _DE_ETAPA:
        etapa_intento = f"{evento.etapa_id}{_SEP}{max(evento.intento, 1)}"
        antes: dict = {}
        _derivado_de_etapa(estado, etapa_intento, antes)
        reintento_antes = estado.reintento
        if evento.intento > 1 and not reintento_antes:
            _derivados_del_caso(estado, antes)
        _actualizar_estado(estado, evento)
        _derivado_de_etapa(estado, etapa_intento, cambios)
        if estado.reintento != reintento_antes:
            _derivados_del_caso(estado, cambios)
        _restar(cambios, antes)
    elif tipo in _SOLO_DIRECTOS:
        _actualizar_estado(estado, evento)
        _aportes_directos(evento, cambios)
    else:
        antes = {}
        _derivados_del_caso(estado, antes)
        _actualizar_estado(estado, evento)
        _aportes_directos(evento, cambios)
        _derivados_del_caso(estado, cambios)
        _restar(cambios, antes)

    cambios = {clave: valor for clave, valor in cambios.items() if valor}
    lote = estado.emitidos.add(
        particion_origen=particion, secuencia=secuencia, ocurrido_en=evento.ocurrido_en.seconds,
        agencia_id=estado.agencia_id, servicio_id=estado.servicio_id,
    )
    poner_aportes(lote, cambios)
    estado.vistos.append(ident)
    return ResultadoAplicacion(estado, lote, duplicado=False, cambios=cambios)
