"""El motor completo en memoria (etapa por caso + agregación sobre dicts) contra la
implementación de referencia, en escenarios con desorden, duplicados y cortes."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apoyo import escenario, referencia
from apoyo.comparar import diferencias
from conftest import CATALOGO
from gpr.v1 import interno_pb2 as interno
from servicios.comun.catalogo import cargar_catalogo
from servicios.procesador.dominio.agregacion import Agregacion
from servicios.procesador.dominio.casos import aplicar_evento

D = 86400


@pytest.fixture(scope="module")
def catalogo():
    return cargar_catalogo(CATALOGO)


class Motor:
    """Las dos etapas del procesador sobre dicts, como las corre faust sobre sus tablas."""

    def __init__(self, catalogo):
        self.catalogo = catalogo
        self.casos, self.cubos, self.lineas, self.agencias = {}, {}, {}, {}
        self.agregacion = Agregacion(self.cubos, self.lineas, self.agencias, catalogo, 7 * D)

    def procesar(self, evento, offset, perder_lote=False):
        clave = (evento.caso_id or evento.evento_id).encode()
        previo = self.casos.get(clave)
        r = aplicar_evento(interno.EstadoCaso.FromString(previo) if previo else None, evento,
                           self.catalogo.servicio(evento.agencia_id, evento.servicio_id).plazo_dias, 0, offset << 20)
        if not r.duplicado:
            self.casos[clave] = r.estado.SerializeToString()
        if not perder_lote:
            self.agregacion.aplicar_lote(interno.LoteAportes.FromString(r.lote.SerializeToString()))

    def observado(self, agencia):
        valores, cuellos = {}, {}
        for inst in self.agregacion.instantaneas(agencia):
            v = inst.valor
            valores[(inst.servicio_id, v.indicador, inst.ventana, v.etapa_id)] = (v.valor, v.muestras)
            cuellos[(inst.servicio_id, inst.ventana)] = inst.cuello_botella
            valores[(inst.servicio_id, "_rango", inst.ventana, "")] = (inst.desde_s, inst.hasta_s)
        return valores, cuellos


def comprobar(motor, eventos, catalogo):
    for agencia in catalogo.agencias:
        esperado = referencia.indicadores(eventos, catalogo, agencia)
        observado, cuellos = motor.observado(agencia)
        errores = diferencias(observado, esperado, cuellos, eventos, catalogo, agencia)
        rangos = {k: v for k, v in esperado.items() if k[1] == "_rango"}
        assert {k: observado.get(k) for k in rangos} == rangos
        assert not errores, f"{agencia}: {len(errores)} diferencias, p. ej. {errores[:5]}"


def test_escenario_revuelto_con_duplicados_igual_a_la_referencia(catalogo):
    azar = random.Random(7)
    inicio = (int(time.time()) // 3600) * 3600 - 40 * D
    eventos = escenario.generar(catalogo, azar, casos_por_servicio=120, inicio=inicio, duracion=38 * D)
    motor = Motor(catalogo)
    for offset, e in enumerate(escenario.desordenar(eventos, azar)):
        motor.procesar(e, offset)
    comprobar(motor, eventos, catalogo)


@pytest.mark.parametrize("semilla", range(4))
def test_cortes_con_estado_y_envios_perdidos_no_pierden_ni_duplican(catalogo, semilla):
    """Modelo de un corte en Kafka: desde el último offset confirmado `c`, el changelog de
    `casos` guardó hasta `s` y los lotes enviados llegaron hasta `j` (prefijos, c ≤ s, j ≤ k);
    el trabajador reinicia leyendo desde `c`."""
    azar = random.Random(semilla)
    inicio = (int(time.time()) // 3600) * 3600 - 10 * D
    eventos = escenario.generar(catalogo, azar, casos_por_servicio=40, inicio=inicio, duracion=9 * D)
    llegada = escenario.desordenar(eventos, azar)
    motor = Motor(catalogo)
    desde = 0
    for _ in range(3):
        k = azar.randint(desde, len(llegada) - 1)
        c = azar.randint(desde, k)
        s, j = azar.randint(c, k), azar.randint(c, k)
        guardado = None
        for offset in range(desde, k + 1):
            motor.procesar(llegada[offset], offset, perder_lote=offset >= j)
            if offset == s:
                guardado = dict(motor.casos)
        motor.casos.clear()
        motor.casos.update(guardado)
        desde = c
    for offset in range(desde, len(llegada)):
        motor.procesar(llegada[offset], offset)
    comprobar(motor, eventos, catalogo)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 12), st.floats(0, 0.3))
def test_propiedad_orden_duplicados_y_ventanas(semilla, casos, duplicados):
    catalogo = cargar_catalogo(CATALOGO)
    azar = random.Random(semilla)
    inicio = (int(time.time()) // 3600) * 3600 - 70 * D + azar.randint(0, 3600)
    eventos = escenario.generar(catalogo, azar, casos_por_servicio=casos, inicio=inicio, duracion=azar.randint(D, 65 * D))
    motor = Motor(catalogo)
    for offset, e in enumerate(escenario.desordenar(eventos, azar, duplicados)):
        motor.procesar(e, offset)
    comprobar(motor, eventos, catalogo)
