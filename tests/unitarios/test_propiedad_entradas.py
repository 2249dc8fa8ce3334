"""Propiedad: ningún registro, por raro que sea, detiene el procesamiento, y cada evento
cuenta o va a rechazados.

Registros arbitrarios (bytes cualesquiera, cabeceras cualesquiera, eventos con cualquier
texto unicode en cada cadena y cualquier número en cada campo numérico, sueltos o en
LoteEventos) pasan por todo el camino del procesador sin Kafka: reparto por agencia, etapa por
caso, agregación e instantáneas con la evaluación de metas de la publicación. Ninguna excepción escapa; cada
evento queda aceptado, repetido o rechazado (o su registro entero, rechazado) y lo publicado
es finito.
"""

from __future__ import annotations

import asyncio
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apoyo.motor import MotorEnLotes
from conftest import AHORA, CATALOGO, RAIZ
from gpr.v1 import eventos_pb2 as pb
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.metas import IndiceMetas, cargar_metas
from servicios.comun.topicos import CABECERA_LOTE
from servicios.procesador import config as config_procesador
from servicios.procesador.publicacion import Publicacion
from servicios.procesador.dominio.etapa_casos import Registro
from servicios.procesador.dominio.reparto import origen, repartir
from servicios.procesador.metricas import MetricasProcesador

CAT = cargar_catalogo(CATALOGO)
METAS = IndiceMetas(cargar_metas(sorted((RAIZ / "despliegue" / "metas").glob("*.yaml")), CAT))
D = 86400
INT32 = st.integers(-2**31, 2**31 - 1)
INT64 = st.integers(-2**63, 2**63 - 1)
# Texto cualquiera, y a menudo uno que el catálogo conoce, para llegar hondo en el camino.
TEXTO = st.text(max_size=40)
AGENCIAS = st.one_of(st.sampled_from(sorted(CAT.agencias)), TEXTO)
SERVICIOS = st.one_of(st.sampled_from(sorted({s for _, s in CAT.servicios})), TEXTO)
ETAPAS = st.one_of(st.sampled_from(sorted({e for s in CAT.servicios.values() for e in s.etapas})), TEXTO)
INSTANTES = st.one_of(st.integers(AHORA - 40 * D, AHORA + 600), INT64)
CASOS = st.one_of(st.sampled_from(["EXP-1", "EXP-2", "EXP-3"]), TEXTO)


def _a_veces(draw, valor, salvaje):
    """`valor` casi siempre; una vez de cada ocho, uno salvaje."""
    return draw(salvaje) if draw(st.integers(0, 7)) == 0 else valor


@st.composite
def eventos(draw):
    """Un evento coherente con el catálogo en el que, campo a campo, a veces va un valor salvaje
    (así se llega hondo en el camino: casos, etapas, cubos, meses, percentiles, metas)."""
    agencia, servicio = draw(st.sampled_from(sorted(CAT.servicios)))
    etapas = CAT.servicios[(agencia, servicio)].etapas
    tipo = draw(st.sampled_from([t for t in pb.TipoEvento.values() if t]))
    e = pb.Evento(
        evento_id=_a_veces(draw, draw(st.sampled_from(["e1", "e2", "e3", "e4", "e5", "e6"])), TEXTO),
        tipo=_a_veces(draw, tipo, INT32),
        fuente=_a_veces(draw, "f", TEXTO),
        agencia_id=_a_veces(draw, agencia, AGENCIAS),
        servicio_id=_a_veces(draw, servicio, SERVICIOS),
        caso_id=_a_veces(draw, draw(st.sampled_from(["EXP-1", "EXP-2", "EXP-3"])), CASOS),
        etapa_id=_a_veces(draw, draw(st.sampled_from(etapas)) if tipo in (pb.TIPO_EVENTO_ETAPA_INICIADA, pb.TIPO_EVENTO_ETAPA_COMPLETADA)
                          else "", ETAPAS),
        region=_a_veces(draw, "", TEXTO),
        canal=_a_veces(draw, draw(st.sampled_from(list(pb.Canal.values()))), INT32),
        resultado=_a_veces(draw, draw(st.sampled_from(list(pb.Resultado.values()))), INT32),
        intento=_a_veces(draw, draw(st.integers(0, 3)), INT32),
        atributos=_a_veces(draw, {}, st.dictionaries(TEXTO, TEXTO, max_size=3)),
    )
    e.ocurrido_en.seconds = _a_veces(draw, draw(st.integers(AHORA - 40 * D, AHORA)), INSTANTES)
    e.ocurrido_en.nanos = draw(st.integers(0, 999_999_999))
    if draw(st.integers(0, 4)) == 0:
        e.plazo_dias = _a_veces(draw, draw(st.integers(1, 30)), INT32)
    if tipo == pb.TIPO_EVENTO_ENCUESTA_RESPONDIDA or draw(st.integers(0, 7)) == 0:
        e.satisfaccion.puntaje = _a_veces(draw, draw(st.integers(1, 5)), INT32)
        e.satisfaccion.escala_max = _a_veces(draw, 5, INT32)
    if tipo in (pb.TIPO_EVENTO_RECLAMO_REGISTRADO, pb.TIPO_EVENTO_RECLAMO_RESUELTO) or draw(st.integers(0, 7)) == 0:
        e.reclamo.reclamo_id = _a_veces(draw, draw(st.sampled_from(["R1", "R2"])), TEXTO)
        e.reclamo.categoria = _a_veces(draw, "demora", TEXTO)
    if tipo == pb.TIPO_EVENTO_COSTO_REGISTRADO or draw(st.integers(0, 7)) == 0:
        e.costo.unidades = _a_veces(draw, draw(st.integers(0, 500)), INT64)
        e.costo.nanos = _a_veces(draw, draw(st.integers(0, 99)) * 10_000_000, INT32)
        e.costo.moneda = _a_veces(draw, CAT.agencias[agencia].moneda, TEXTO)
    return e


CABECERAS = st.lists(st.tuples(st.one_of(st.just(CABECERA_LOTE), TEXTO), st.one_of(st.just(b"1"), st.binary(max_size=8))),
                     max_size=3)


@st.composite
def registros(draw):
    """(valor, cabeceras) de un registro: un evento, un LoteEventos, o bytes cualesquiera."""
    forma = draw(st.sampled_from(["evento", "lote", "bytes"]))
    if forma == "evento":
        return draw(eventos()).SerializeToString(), draw(CABECERAS)
    if forma == "lote":
        lote = pb.LoteEventos(eventos=draw(st.lists(eventos(), max_size=4)))
        return lote.SerializeToString(), [(CABECERA_LOTE, b"1"), *draw(CABECERAS)]
    return draw(st.binary(max_size=64)), draw(CABECERAS)


def _eventos_del_registro(valor: bytes, cabeceras) -> int:
    """Cuántos eventos trae un registro, leído con protobuf directamente (1 si no decodifica)."""
    try:
        if any(k == CABECERA_LOTE and v == b"1" for k, v in cabeceras):
            return max(1, len(pb.LoteEventos.FromString(valor).eventos)) if valor else 1
        pb.Evento.FromString(valor)
        return 1
    except Exception:  # noqa: BLE001 — cualquier fallo de decodificación: el registro es uno
        return 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.lists(registros(), min_size=1, max_size=8), min_size=1, max_size=4))
def test_ningun_registro_detiene_el_camino_y_cada_evento_cuenta_o_se_rechaza(lotes):
    motor = MotorEnLotes(CAT, AHORA, tardanza_maxima_s=7 * D)
    cfg = config_procesador.leer({"GPR_KAFKA_BOOTSTRAP": "k:9092"})
    publicacion = Publicacion(cfg, METAS, MetricasProcesador(), motor.agregacion, lambda: float(AHORA))
    publicado = {}

    async def enviar(topico, clave, valor):
        publicado[(topico, clave)] = valor

    offset = 0
    for lote in lotes:
        # Como el procesador: el reparto (que no lanza nunca) y la etapa por caso en cada
        # partición de destino.
        por_particion: dict[int, list[Registro]] = {}
        for valor, cabeceras in lote:
            for r in repartir(b"k", valor, cabeceras, 4, 0):
                por_particion.setdefault(r.particion, []).append(
                    Registro(r.particion, offset, r.clave, r.valor, r.cabeceras, origen(r.cabeceras)))
                offset += 1
        for regs in por_particion.values():
            salida = motor.procesar(regs)
            motor.agregacion.aplicar_lotes(salida.lotes)
            asyncio.run(publicacion.publicar(lambda: False, enviar))

            # Cada evento: aceptado, repetido o rechazado; un rechazo con los bytes del registro
            # entero (no decodifica, lote vacío o error interno del registro) cuenta por todos.
            esperados = sum(_eventos_del_registro(r.valor, r.cabeceras) for r in regs)
            por_valor = {r.valor: _eventos_del_registro(r.valor, r.cabeceras) for r in regs}
            rechazados = sum(por_valor.get(x.valor, 1) if x.valor in por_valor else 1 for x in salida.rechazos)
            assert salida.aceptados + salida.duplicados + rechazados == esperados, salida.rechazos
            assert set(salida.aceptados_por_agencia) <= set(CAT.agencias)
            assert all(x.agencia in ("", *CAT.agencias) for x in salida.rechazos)
            assert all(len(x.detalle) < 1000 for x in salida.rechazos)
    for agencia in CAT.agencias:
        for inst in motor.agregacion.instantaneas(agencia):
            assert inst.valor.valor is None or math.isfinite(inst.valor.valor), inst
