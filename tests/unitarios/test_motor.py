"""El núcleo (etapa por caso + agregación sobre dicts) contra la implementación de referencia,
en escenarios con desorden y duplicados, y con lotes enormes o casos saturados. Los cortes se
prueban con la ruta real en `test_ruta.py`."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apoyo import escenario, referencia
from apoyo import motor as motor_apoyo
from apoyo.comparar import diferencias
from conftest import AHORA, CATALOGO
from gpr.v1 import eventos_pb2 as pb
from gpr.v1 import interno_pb2 as interno
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.topicos import CABECERA_LOTE
from servicios.procesador.dominio import ventanas
from servicios.procesador.dominio.agregacion import MESES_RETENIDOS
from servicios.procesador.dominio.etapa_casos import EtapaCasos, Registro, aplicar_escrituras, clave_caso

D = 86400


@pytest.fixture(scope="module")
def catalogo():
    return cargar_catalogo(CATALOGO)


def comprobar(motor, eventos, catalogo):
    motor_apoyo.comprobar(motor.agregacion, eventos, catalogo)


def test_escenario_revuelto_con_duplicados_igual_a_la_referencia(catalogo):
    azar = random.Random(7)
    eventos = escenario.generar(catalogo, azar, casos_por_servicio=120, inicio=AHORA - 40 * D, duracion=38 * D)
    motor = MotorEnLotes(catalogo)
    # Un evento por registro y un registro por lote: el orden de llegada, del todo revuelto.
    for offset, e in enumerate(escenario.desordenar(eventos, azar)):
        _, lotes = motor.procesar([Registro(0, offset, b"k", e.SerializeToString())])
        motor.agregacion.aplicar_lotes(lotes)
    comprobar(motor, eventos, catalogo)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 12), st.floats(0, 0.3))
def test_propiedad_orden_duplicados_y_ventanas(semilla, casos, duplicados):
    catalogo = cargar_catalogo(CATALOGO)
    azar = random.Random(semilla)
    inicio = AHORA - 70 * D + azar.randint(0, 3600)
    eventos = escenario.generar(catalogo, azar, casos_por_servicio=casos, inicio=inicio, duracion=azar.randint(D, 65 * D))
    registros = registros_de(escenario.desordenar(eventos, azar, duplicados), azar, max_por_registro=5)
    motor = MotorEnLotes(catalogo)
    i = 0
    while i < len(registros):
        n = azar.randint(1, 20)
        _, lotes = motor.procesar(registros[i:i + n])
        motor.agregacion.aplicar_lotes(lotes)
        i += n
    comprobar(motor, eventos, catalogo)


class MotorEnLotes(motor_apoyo.MotorEnLotes):
    def __init__(self, catalogo):
        super().__init__(catalogo, AHORA)

    def procesar(self, registros):
        """Procesa y devuelve (escrituras, lotes) sin aplicar los lotes."""
        salida = super().procesar(registros)
        assert not salida.rechazos, salida.rechazos[:3]
        return list(salida.escrituras.items()), salida.lotes


def registros_de(eventos, azar, max_por_registro=1):
    """Registros de la partición 0: eventos sueltos o `LoteEventos` con su cabecera."""
    registros, i = [], 0
    while i < len(eventos):
        n = azar.randint(1, max_por_registro)
        trozo = eventos[i:i + n]
        offset = len(registros)
        if n == 1 and azar.random() < 0.5:
            registros.append(Registro(0, offset, b"k", trozo[0].SerializeToString()))
        else:
            registros.append(Registro(0, offset, b"k", pb.LoteEventos(eventos=trozo).SerializeToString(),
                                      [(CABECERA_LOTE, b"1")]))
        i += n
    return registros


@pytest.mark.parametrize("semilla", range(3))
def test_por_lotes_da_lo_mismo_que_la_referencia(catalogo, semilla):
    azar = random.Random(100 + semilla)
    inicio = AHORA - 40 * D
    eventos = escenario.generar(catalogo, azar, casos_por_servicio=80, inicio=inicio, duracion=38 * D)
    registros = registros_de(escenario.desordenar(eventos, azar, 0.1), azar, max_por_registro=40)
    motor = MotorEnLotes(catalogo)
    i = 0
    while i < len(registros):
        n = azar.randint(1, 30)
        _, lotes = motor.procesar(registros[i:i + n])
        motor.agregacion.aplicar_lotes(lotes)
        i += n
    comprobar(motor, eventos, catalogo)


def test_un_lote_enorme_de_un_par_se_parte_en_agregados_que_caben_en_kafka(catalogo):
    """Un lote de registros con decenas de miles de eventos de un mismo par repartidos en miles
    de horas (una carga histórica) no arma un agregado mayor que un registro de Kafka (1 MiB
    por omisión): se parte en varios, con secuencias crecientes, y suman exactamente lo mismo."""
    servicio = next(s for s in catalogo.servicios.values() if s.agencia_id == "reniec")
    moneda = catalogo.agencias["reniec"].moneda
    # ~375 días desde el inicio del primero de los 13 meses que se publican: todos caben.
    zona = catalogo.agencias["reniec"].zona_horaria
    primer_mes = ventanas.meses_hasta(ventanas.mes_de(AHORA, zona), MESES_RETENIDOS)[0]
    inicio = ventanas.limites_mes(primer_mes, zona)[0]
    horas = 9000
    assert inicio + horas * 3600 < AHORA - D
    eventos = []
    for h in range(horas):
        t = inicio + h * 3600 + 17
        caso = f"caso-{h}"
        eventos += [
            pb.Evento(tipo=pb.TIPO_EVENTO_SOLICITUD_RECIBIDA),
            pb.Evento(tipo=pb.TIPO_EVENTO_ENCUESTA_RESPONDIDA, satisfaccion=pb.Satisfaccion(puntaje=1 + h % 5, escala_max=5)),
            pb.Evento(tipo=pb.TIPO_EVENTO_RECLAMO_REGISTRADO, reclamo=pb.Reclamo(reclamo_id=f"R{h}", categoria="demora")),
            pb.Evento(tipo=pb.TIPO_EVENTO_COSTO_REGISTRADO, costo=pb.Costo(unidades=10 + h % 7, moneda=moneda)),
        ]
        for n, e in enumerate(eventos[-4:]):
            e.evento_id, e.fuente, e.agencia_id, e.servicio_id, e.caso_id = f"{caso}-{n}", "carga", "reniec", servicio.id, caso
            e.ocurrido_en.seconds = t + n
    registros = [Registro(0, n, b"k", pb.LoteEventos(eventos=eventos[i:i + 500]).SerializeToString(),
                          [(CABECERA_LOTE, b"1")]) for n, i in enumerate(range(0, len(eventos), 500))]
    motor = MotorEnLotes(catalogo)
    _, lotes = motor.procesar(registros)
    # Por hora: solicitudes, casos por concluir, encuestas (3 medidas), reclamos y costo, y un
    # vencimiento al segundo: ~72 000 aportes distintos, ~2,5 MiB en un solo agregado.
    assert len(lotes) >= 4
    assert all(lote.ByteSize() < 1024 * 1024 for lote in lotes)
    secuencias = [lote.secuencia for lote in lotes]
    assert secuencias == sorted(set(secuencias))
    assert sum(v for lote in lotes for medida, v in zip(lote.medidas, lote.valores) if medida == "solicitudes") == horas
    motor.agregacion.aplicar_lotes(lotes)
    esperado = referencia.indicadores(eventos, catalogo, "reniec")
    observado, cuellos = motor.observado("reniec")
    assert not diferencias(observado, esperado, cuellos, eventos, catalogo, "reniec")
    assert observado[(servicio.id, "solicitudes", "total", "")] == (float(horas), horas)


def test_un_caso_con_demasiados_eventos_rechaza_los_nuevos_como_caso_saturado(catalogo):
    """Un emisor que repite el mismo caso_id no hace crecer su estado sin límite: pasado el
    tope, cada evento nuevo del caso va a rechazados con su motivo (los repetidos de eventos ya
    aceptados siguen siendo repetidos) y los indicadores cuentan solo los aceptados."""
    servicio = next(s for s in catalogo.servicios.values() if s.agencia_id == "reniec")
    t = AHORA - D
    eventos = []
    for i in range(8):
        e = pb.Evento(evento_id=f"r{i}", fuente="emisor", tipo=pb.TIPO_EVENTO_RECLAMO_REGISTRADO, agencia_id="reniec",
                      servicio_id=servicio.id, caso_id="siempre-el-mismo",
                      reclamo=pb.Reclamo(reclamo_id=f"R{i}", categoria="demora"))
        e.ocurrido_en.seconds = t + i
        eventos.append(e)
    motor = MotorEnLotes(catalogo)
    motor.etapa = EtapaCasos(catalogo, 1000 * D, lambda: AHORA, eventos_maximos_por_caso=5)
    primeros = [Registro(0, i, b"siempre-el-mismo", e.SerializeToString()) for i, e in enumerate(eventos[:3])]
    salida = motor.etapa.procesar(primeros, motor.casos)
    aplicar_escrituras(motor.casos, salida.escrituras)
    lotes = list(salida.lotes)
    # Los cinco restantes y un repetido de uno aceptado, en un lote con LoteEventos.
    resto = pb.LoteEventos(eventos=[*eventos[3:], eventos[0]])
    salida = motor.etapa.procesar([Registro(0, 3, b"siempre-el-mismo", resto.SerializeToString(),
                                            [(CABECERA_LOTE, b"1")])], motor.casos)
    aplicar_escrituras(motor.casos, salida.escrituras)
    lotes += salida.lotes
    assert (salida.aceptados, salida.duplicados) == (2, 1)
    assert [r.motivo for r in salida.rechazos] == ["caso_saturado"] * 3
    assert [pb.Evento.FromString(r.valor).evento_id for r in salida.rechazos] == ["r5", "r6", "r7"]
    assert "siempre-el-mismo" in salida.rechazos[0].detalle
    estado = interno.EstadoCaso.FromString(motor.casos[clave_caso(eventos[0])])
    assert len(estado.vistos) == 5
    reclamos = sum(v for lote in lotes for medida, v in zip(lote.medidas, lote.valores) if medida == "reclamos")
    assert reclamos == 5
