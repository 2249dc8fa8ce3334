"""Publicación incremental: recalcular solo las ventanas anotadas por la agregación publica
lo mismo que recalcularlo todo.

La referencia es `Agregacion.instantaneas(agencia)` sin selección (todas las ventanas de
todos los servicios), la que `test_motor.py` compara con la implementación de referencia
independiente. Después de cada pasada, cada serie que esa referencia da debe estar publicada
con su valor, muestras, rango, cuello de botella y estado de meta.
"""

from __future__ import annotations

import random

import pytest

from apoyo import escenario
from apoyo.publicacion import Banco
from conftest import AHORA, CATALOGO, RAIZ
from gpr.v1 import eventos_pb2 as pb
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.indicadores import clave_serie
from servicios.comun.metas import IndiceMetas, cargar_metas
from servicios.procesador.dominio import ventanas

D = 86400


@pytest.fixture(scope="module")
def catalogo():
    return cargar_catalogo(CATALOGO)


@pytest.fixture(scope="module")
def metas(catalogo):
    return IndiceMetas(cargar_metas(sorted((RAIZ / "despliegue" / "metas").glob("*.yaml")), catalogo))


def llegada_casi_en_orden(eventos, azar):
    """En orden de ocurrencia con retrasos de hasta dos días (algunos de hasta 30) y algún
    duplicado: la marca de agua avanza poco a poco (cruza meses) y llegan aportes tardíos a horas
    y meses ya publicados (y vencimientos a meses cerrados: una solicitud que llega tarde vence
    en un mes anterior al de la marca)."""
    con_retraso = [(e.ocurrido_en.seconds + azar.randint(0, 2 * D) * (azar.random() < 0.3)
                    + azar.randint(0, 30 * D) * (azar.random() < 0.05), i, e)
                   for i, e in enumerate(eventos)]
    con_retraso += [(t + azar.randint(0, D), -1, e) for t, _, e in azar.sample(con_retraso, len(con_retraso) // 20)]
    return [e for _, _, e in sorted(con_retraso, key=lambda x: (x[0], x[1]))]


@pytest.mark.parametrize("semilla", range(3))
def test_publicar_solo_lo_anotado_da_lo_mismo_que_recalcular_todo(catalogo, metas, semilla):
    azar = random.Random(semilla)
    inicio = AHORA - 75 * D + azar.randint(0, 3600)
    eventos = escenario.generar(catalogo, azar, casos_por_servicio=25, inicio=inicio, duracion=70 * D)
    llegada = llegada_casi_en_orden(eventos, azar)
    banco = Banco(catalogo, metas, refresco_rango_s=0.0)
    i = pasadas = 0
    while i < len(llegada):
        n = azar.randint(1, 40)
        banco.procesar(llegada[i:i + n])
        i += n
        if azar.random() < 0.5:
            banco.pasada()
            pasadas += 1
            assert not banco.diferencias(), banco.diferencias()[:5]
    banco.pasada()
    assert pasadas > 20
    assert not banco.diferencias(), banco.diferencias()[:5]


def test_con_refresco_de_rango_lo_publicado_alcanza_al_estado_al_dejar_de_recibir(catalogo, metas):
    """Con `GPR_REFRESCO_RANGO` las series a las que solo les cambió el rango esperan mientras
    la agencia recibe; quedan anotadas y, en la primera pasada sin eventos nuevos, se publican."""
    azar = random.Random(11)
    inicio = AHORA - 40 * D
    eventos = escenario.generar(catalogo, azar, casos_por_servicio=20, inicio=inicio, duracion=35 * D)
    banco = Banco(catalogo, metas, refresco_rango_s=10.0)
    llegada = llegada_casi_en_orden(eventos, azar)
    esperaron = 0
    for i in range(0, len(llegada), 60):
        banco.procesar(llegada[i:i + 60])
        banco.pasada(avance_s=0.5)
        esperaron += bool(banco.diferencias())
    # Con eventos llegando, alguna pasada dejó rangos sin publicar (si no, esto no prueba nada).
    assert esperaron > 0
    assert banco.publicacion.hay_pendientes.is_set()
    banco.pasada(avance_s=0.5)
    assert not banco.diferencias(), banco.diferencias()[:5]


def test_un_vencimiento_tardio_republica_el_mes_cerrado_en_que_vence(catalogo, metas):
    """Una solicitud que llega tarde, de un caso sin concluir, vence en el mes anterior al de la
    marca de agua sin aportar nada más a ese mes: solo los vencidos lo cambian."""
    servicio = next(s for s in catalogo.servicios.values() if s.agencia_id == "minsa" and s.plazo_dias == 20)
    zona = catalogo.agencias["minsa"].zona_horaria
    mes_actual = ventanas.mes_de(AHORA, zona)
    hace_cuatro, _, hace_dos, anterior = ventanas.meses_hasta(mes_actual, 5)[:4]
    inicio_actual = ventanas.limites_mes(mes_actual, zona)[0]
    recibido_tarde = ventanas.limites_mes(hace_dos, zona)[1] - 6 * D  # vence a mitad del mes anterior

    def solicitud(caso: str, instante: int) -> pb.Evento:
        e = pb.Evento(evento_id=f"e-{caso}", fuente="prueba", tipo=pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, agencia_id="minsa",
                      servicio_id=servicio.id, caso_id=caso)
        e.ocurrido_en.seconds = instante
        return e

    banco = Banco(catalogo, metas, refresco_rango_s=0.0)
    # El primer evento de la agencia, antes: el tardío no mueve su `primer_instante`.
    banco.procesar([solicitud("z", ventanas.limites_mes(hace_cuatro, zona)[0] + 3600),
                    solicitud("a", inicio_actual + 3600)])
    banco.pasada()
    banco.procesar([solicitud("b", recibido_tarde)])
    banco.pasada()
    vencidos = banco.publicado[clave_serie("minsa", servicio.id, "casos_vencidos", f"mes:{anterior}")]
    # Al cierre del mes anterior: «z» (vencido desde hace tres meses) y «b», que venció en él.
    assert (vencidos.valor, vencidos.muestras) == (2.0, 2)
    assert not banco.diferencias(), banco.diferencias()[:5]


def test_cada_instantanea_lleva_la_unidad_del_catalogo(catalogo, metas):
    """La unidad viaja en la API (`Indicador.unidad`): nadie la adivina por el nombre. Los
    importes, en la moneda de su agencia (PEN en el catálogo)."""
    azar = random.Random(3)
    eventos = escenario.generar(catalogo, azar, casos_por_servicio=10, inicio=AHORA - 10 * D, duracion=9 * D)
    banco = Banco(catalogo, metas, refresco_rango_s=0.0)
    banco.procesar(eventos)
    banco.pasada()
    esperadas = {"solicitudes": "conteo", "cumplimiento_plazo": "proporcion", "tiempo_atencion_p50": "segundos",
                 "tiempo_etapa_p90": "segundos", "reclamos_por_mil": "por_mil", "costo_por_tramite": "PEN",
                 "satisfaccion_indice": "indice", "casos_vencidos": "conteo"}
    vistas = {}
    for i in banco.publicado.values():
        vistas.setdefault(i.indicador, set()).add(i.unidad)
    assert {nombre: vistas.get(nombre) for nombre in esperadas} == {n: {u} for n, u in esperadas.items()}
    assert all(len(unidades) == 1 and "" not in unidades for unidades in vistas.values())
