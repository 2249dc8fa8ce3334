"""Escenarios de eventos para las pruebas: casos con todas sus variantes (desorden, entregas
repetidas, plazos propios, reintentos, devoluciones, cierres, encuestas, reclamos, costos)."""

from __future__ import annotations

import random
import uuid

from gpr.v1 import eventos_pb2 as pb

H, D = 3600, 86400
CANALES = [pb.CANAL_PRESENCIAL, pb.CANAL_WEB, pb.CANAL_APP, pb.CANAL_TELEFONO, pb.CANAL_CORREO, pb.CANAL_DIGITAL_ASISTIDO]
RESULTADOS = [pb.RESULTADO_OTORGADO] * 6 + [pb.RESULTADO_DENEGADO_NO_ELEGIBLE, pb.RESULTADO_DENEGADO_INCOMPLETO, pb.RESULTADO_DESISTIDO, pb.RESULTADO_ERROR]


def _evento(azar, tipo, agencia, servicio, t, caso="", **campos):
    e = pb.Evento(evento_id=str(uuid.UUID(int=azar.getrandbits(128))), fuente="escenario", tipo=tipo,
                  agencia_id=agencia, servicio_id=servicio, caso_id=caso, **campos)
    e.ocurrido_en.seconds = t
    return e


def costo(centimos: int, moneda: str) -> pb.Costo:
    """Un importe exacto de `centimos` céntimos (p. ej. 10, 20 y 30: 0,10 + 0,20 + 0,30 no da
    0,60 en coma flotante)."""
    return pb.Costo(unidades=centimos // 100, nanos=(centimos % 100) * 10_000_000, moneda=moneda)


def generar(catalogo, azar: random.Random, casos_por_servicio: int, inicio: int, duracion: int,
            numeracion_compartida: bool = False):
    """Eventos aceptables (sin duplicados), en orden de ocurrencia, entre inicio e inicio+duracion.

    `numeracion_compartida`: cada agencia numera sus casos EXP-000001, EXP-000002… y sus eventos
    «<caso>-<n>», como lo haría cada una por su cuenta: dos agencias tienen los mismos números
    de caso y los mismos evento_id (de la misma fuente)."""
    eventos = []
    fin = inicio + duracion
    numeros: dict[str, int] = {}
    for (agencia, servicio_id), servicio in sorted(catalogo.servicios.items()):
        moneda = catalogo.agencias[agencia].moneda
        lento = azar.choice(servicio.etapas) if servicio.etapas else None
        for n in range(casos_por_servicio):
            if numeracion_compartida:
                numeros[agencia] = numeros.get(agencia, 0) + 1
                caso = f"EXP-{numeros[agencia]:06d}"
            else:
                caso = f"{agencia}-{servicio_id}-{n}-{azar.getrandbits(32):08x}"
            t = azar.randint(inicio, fin)
            propios = []
            kw = {}
            if azar.random() < 0.1:
                kw["plazo_dias"] = azar.randint(1, 5)
            if azar.random() < 0.97:  # a veces nunca se conoce la recepción
                propios.append(_evento(azar, pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, agencia, servicio_id, t, caso,
                                       canal=azar.choice(CANALES), **kw))
            for etapa in servicio.etapas:
                intentos = 2 if azar.random() < 0.08 else 1
                for intento in range(1, intentos + 1):
                    t += azar.randint(60, 3 * D if etapa == lento else 12 * H)
                    propios.append(_evento(azar, pb.TIPO_EVENTO_ETAPA_INICIADA, agencia, servicio_id, t, caso, etapa_id=etapa, intento=intento))
                    t += azar.randint(30, 4 * D if etapa == lento else 18 * H)
                    if azar.random() < 0.95:
                        propios.append(_evento(azar, pb.TIPO_EVENTO_ETAPA_COMPLETADA, agencia, servicio_id, t, caso, etapa_id=etapa, intento=intento))
            if azar.random() < 0.06:
                propios.append(_evento(azar, pb.TIPO_EVENTO_CASO_DEVUELTO, agencia, servicio_id, t + 5, caso))
            r = azar.random()
            t += azar.randint(60, 2 * D)
            if r < 0.8:
                propios.append(_evento(azar, pb.TIPO_EVENTO_SERVICIO_ENTREGADO, agencia, servicio_id, t, caso,
                                       canal=azar.choice(CANALES), resultado=azar.choice(RESULTADOS)))
                if azar.random() < 0.05:  # una segunda entrega (la primera es la que cuenta)
                    propios.append(_evento(azar, pb.TIPO_EVENTO_SERVICIO_ENTREGADO, agencia, servicio_id, t + azar.randint(-H, D), caso,
                                           canal=azar.choice(CANALES), resultado=azar.choice(RESULTADOS)))
                if azar.random() < 0.3:
                    propios.append(_evento(azar, pb.TIPO_EVENTO_CASO_CERRADO, agencia, servicio_id, t + azar.randint(0, D), caso))
            elif r < 0.9:
                propios.append(_evento(azar, pb.TIPO_EVENTO_CASO_CERRADO, agencia, servicio_id, t, caso, resultado=azar.choice(RESULTADOS)))
            if azar.random() < 0.4:
                escala = azar.choice([5, 5, 7, 10])
                propios.append(_evento(azar, pb.TIPO_EVENTO_ENCUESTA_RESPONDIDA, agencia, servicio_id, t + azar.randint(0, D), caso,
                                       satisfaccion=pb.Satisfaccion(puntaje=azar.randint(1, escala), escala_max=escala)))
            if azar.random() < 0.1:
                propios.append(_evento(azar, pb.TIPO_EVENTO_RECLAMO_REGISTRADO, agencia, servicio_id, t + azar.randint(0, D), caso,
                                       reclamo=pb.Reclamo(reclamo_id=f"R{azar.getrandbits(32)}", categoria="demora",
                                                          etapa_relacionada=lento or "")))
            if azar.random() < 0.5:
                propios.append(_evento(azar, pb.TIPO_EVENTO_COSTO_REGISTRADO, agencia, servicio_id, t,
                                       costo=costo(azar.randint(100, 20000), moneda)))
            if numeracion_compartida:
                for i, e in enumerate(propios):
                    e.evento_id = f"{caso}-{i}"
            eventos.extend(e for e in propios if e.ocurrido_en.seconds <= fin)
    eventos.sort(key=lambda e: e.ocurrido_en.seconds)
    return eventos


def desordenar(eventos, azar: random.Random, fraccion_duplicados: float = 0.05):
    """Los mismos eventos con duplicados exactos y en un orden de llegada revuelto."""
    llegada = list(eventos) + [azar.choice(eventos) for _ in range(int(len(eventos) * fraccion_duplicados))]
    azar.shuffle(llegada)
    return llegada
