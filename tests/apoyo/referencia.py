"""Implementación de referencia de los indicadores, escrita aparte y a propósito simple.

Recibe la lista completa de eventos aceptados (sin duplicados) y calcula cada indicador de
cada ventana directamente desde su definición (docs/indicadores.md, issue #3): sin cubos, sin
histogramas, sin aportes. Los percentiles son exactos (rango más cercano).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fractions import Fraction
from zoneinfo import ZoneInfo

from gpr.v1 import eventos_pb2 as pb

DIGITALES = {pb.CANAL_WEB, pb.CANAL_APP, pb.CANAL_DIGITAL_ASISTIDO}
FALLIDOS = {pb.RESULTADO_ERROR, pb.RESULTADO_DESISTIDO}
VENTANAS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}


@dataclass
class Caso:
    servicio: str
    recibido: int | None = None
    plazo_dias: int | None = None
    entrega: tuple[int, str] | None = None  # (instante, evento_id)
    canal: int = 0
    cierre: int | None = None
    conclusion: tuple[int, str] | None = None
    resultado: int = 0
    devuelto: bool = False
    reintento: bool = False
    inicios: dict = field(default_factory=dict)
    fines: dict = field(default_factory=dict)


def nearest_rank(valores, q):
    if not valores:
        return None
    orden = sorted(valores)
    return orden[max(1, math.ceil(q * len(orden))) - 1]


def mes_limites(mes, zona):
    a, m = int(mes[:4]), int(mes[5:])
    sig = (a + 1, 1) if m == 12 else (a, m + 1)
    inicio = datetime(a, m, 1, tzinfo=ZoneInfo(zona)).astimezone(timezone.utc).timestamp()
    fin = datetime(*sig, 1, tzinfo=ZoneInfo(zona)).astimezone(timezone.utc).timestamp()
    return int(inicio), int(fin)


def indicadores(eventos, catalogo, agencia):
    """{(servicio, indicador, ventana, etapa): (valor|None, muestras)} de una agencia."""
    propios = [e for e in eventos if e.agencia_id == agencia]
    if not propios:
        return {}
    zona = catalogo.agencias[agencia].zona_horaria
    marca = max(e.ocurrido_en.seconds for e in propios)
    hora_marca = marca // 3600
    ventanas = {}
    for nombre, dur in VENTANAS.items():
        ventanas[nombre] = ((hora_marca - dur // 3600 + 1) * 3600, marca)
    primero = min(e.ocurrido_en.seconds for e in propios)
    ventanas["total"] = (primero, marca)
    mes = datetime.fromtimestamp(primero, ZoneInfo(zona)).strftime("%Y-%m")
    ultimo_mes = datetime.fromtimestamp(marca, ZoneInfo(zona)).strftime("%Y-%m")
    while mes <= ultimo_mes:
        inicio, fin = mes_limites(mes, zona)
        ventanas[f"mes:{mes}"] = (inicio, min(fin - 1, marca))
        a, m = int(mes[:4]), int(mes[5:])
        mes = f"{a + (m == 12):04d}-{m % 12 + 1:02d}"

    resultado = {}
    for servicio in catalogo.servicios_de(agencia):
        del_servicio = [e for e in propios if e.servicio_id == servicio.id]
        casos: dict[str, Caso] = {}
        for e in del_servicio:
            if not e.caso_id:
                continue
            c = casos.setdefault(e.caso_id, Caso(servicio.id))
            t = e.ocurrido_en.seconds
            if e.tipo == pb.TIPO_EVENTO_SOLICITUD_RECIBIDA:
                c.recibido = t if c.recibido is None else min(c.recibido, t)
                if e.HasField("plazo_dias"):
                    c.plazo_dias = e.plazo_dias
            if e.tipo == pb.TIPO_EVENTO_SERVICIO_ENTREGADO and (c.entrega is None or (t, e.evento_id) < c.entrega):
                c.entrega = (t, e.evento_id)
                c.canal = e.canal
            if e.tipo == pb.TIPO_EVENTO_CASO_CERRADO:
                c.cierre = t if c.cierre is None else min(c.cierre, t)
            if e.tipo in (pb.TIPO_EVENTO_SERVICIO_ENTREGADO, pb.TIPO_EVENTO_CASO_CERRADO) and (c.conclusion is None or (t, e.evento_id) < c.conclusion):
                c.conclusion = (t, e.evento_id)
                c.resultado = e.resultado
            if e.tipo == pb.TIPO_EVENTO_CASO_DEVUELTO:
                c.devuelto = True
            if e.tipo in (pb.TIPO_EVENTO_ETAPA_INICIADA, pb.TIPO_EVENTO_ETAPA_COMPLETADA):
                intento = max(1, e.intento)
                if intento > 1:
                    c.reintento = True
                destino = c.inicios if e.tipo == pb.TIPO_EVENTO_ETAPA_INICIADA else c.fines
                k = (e.etapa_id, intento)
                destino[k] = t if k not in destino else min(destino[k], t)

        for ventana, (desde, hasta) in ventanas.items():
            def en(t):
                return t is not None and desde <= t <= hasta

            def poner(nombre, valor, muestras, etapa=""):
                resultado[(servicio.id, nombre, ventana, etapa)] = (valor, muestras)

            def prop(nombre, buenos, total, escala=1.0):
                poner(nombre, buenos / total * escala if total else None, total)

            poner("solicitudes", sum(1 for e in del_servicio if e.tipo == pb.TIPO_EVENTO_SOLICITUD_RECIBIDA and en(e.ocurrido_en.seconds)), None)
            entregados = [c for c in casos.values() if c.entrega and en(c.entrega[0])]
            poner("entregas", len(entregados), len(entregados))
            recibidos = [c for c in casos.values() if en(c.recibido)]
            prop("tasa_conclusion", sum(1 for c in recibidos if c.conclusion), len(recibidos))
            con_recepcion = [c for c in entregados if c.recibido is not None]
            plazo = lambda c: (c.plazo_dias or servicio.plazo_dias) * 86400
            prop("cumplimiento_plazo", sum(1 for c in con_recepcion if c.entrega[0] - c.recibido <= plazo(c)), len(con_recepcion))
            tiempos = [c.entrega[0] - c.recibido for c in con_recepcion]
            poner("tiempo_atencion_p50", nearest_rank(tiempos, 0.5), len(tiempos))
            poner("tiempo_atencion_p90", nearest_rank(tiempos, 0.9), len(tiempos))
            fin = hasta
            vencidos = sum(
                1 for c in casos.values()
                if c.recibido is not None and c.recibido <= fin
                and not (c.conclusion and c.conclusion[0] <= fin)
                and fin - c.recibido > plazo(c)
            )
            poner("casos_vencidos", vencidos, None)
            concluidos = [c for c in casos.values() if c.conclusion and en(c.conclusion[0])]
            prop("tasa_reproceso", sum(1 for c in concluidos if c.devuelto or c.reintento), len(concluidos))
            prop("tasa_error", sum(1 for c in concluidos if c.resultado in FALLIDOS), len(concluidos))
            encuestas = [e.satisfaccion for e in del_servicio if e.tipo == pb.TIPO_EVENTO_ENCUESTA_RESPONDIDA and en(e.ocurrido_en.seconds)]
            prop("satisfaccion_top2", sum(1 for s in encuestas if s.puntaje >= s.escala_max - 1), len(encuestas))
            prop("satisfaccion_indice", sum((s.puntaje - 1) / (s.escala_max - 1) for s in encuestas), len(encuestas))
            reclamos = sum(1 for e in del_servicio if e.tipo == pb.TIPO_EVENTO_RECLAMO_REGISTRADO and en(e.ocurrido_en.seconds))
            prop("reclamos_por_mil", reclamos, len(entregados), escala=1000.0)
            prop("adopcion_digital", sum(1 for c in entregados if c.canal in DIGITALES), len(entregados))
            # Importes exactos (Fraction) y una sola conversión a float al final.
            costo = sum((Fraction(e.costo.unidades) + Fraction(e.costo.nanos, 10**9) for e in del_servicio
                         if e.tipo == pb.TIPO_EVENTO_COSTO_REGISTRADO and en(e.ocurrido_en.seconds)), Fraction(0))
            poner("costo_por_tramite", float(costo / len(entregados)) if entregados else None, len(entregados))
            por_etapa = {}
            for c in casos.values():
                for k, t_fin in c.fines.items():
                    if k in c.inicios and en(t_fin):
                        por_etapa.setdefault(k[0], []).append(t_fin - c.inicios[k])
            for etapa in set(por_etapa) | set(servicio.etapas):
                valores = por_etapa.get(etapa, [])
                poner("tiempo_etapa_p50", nearest_rank(valores, 0.5), len(valores), etapa)
                poner("tiempo_etapa_p90", nearest_rank(valores, 0.9), len(valores), etapa)
            medianas = [(nearest_rank(v, 0.5), e) for e, v in por_etapa.items()]
            cuello = min(medianas, key=lambda x: (-x[0], x[1]))[1] if medianas else ""
            resultado[(servicio.id, "etapa_cuello_botella", ventana, "")] = (cuello, None)
            resultado[(servicio.id, "_rango", ventana, "")] = (desde, hasta)
    return resultado
