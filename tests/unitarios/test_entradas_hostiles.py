"""La etapa por caso ante entradas de agencias descuidadas u hostiles (sin Kafka).

Cada prueba compara con lo que se espera calculado aparte: la implementación de referencia
con solo los eventos que deben contar, o cuentas a mano.
"""

from __future__ import annotations

import random

import pytest

from apoyo import escenario
from apoyo.motor import MotorEnLotes, comprobar
from conftest import AHORA, CATALOGO
from gpr.v1 import eventos_pb2 as pb
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.topicos import CABECERA_LOTE
from servicios.procesador.dominio import casos as dominio_casos
from servicios.procesador.dominio.etapa_casos import Registro, clave_caso
from servicios.procesador.dominio.medidas import separar_histogramas

D = 86400


@pytest.fixture(scope="module")
def catalogo():
    return cargar_catalogo(CATALOGO)


def _registros(eventos, en_lotes_de: int = 0):
    """Registros de la partición 0: un evento por registro, o LoteEventos de `en_lotes_de`."""
    if not en_lotes_de:
        return [Registro(0, i, b"k", e.SerializeToString()) for i, e in enumerate(eventos)]
    return [Registro(0, n, b"k", pb.LoteEventos(eventos=eventos[i:i + en_lotes_de]).SerializeToString(),
                     [(CABECERA_LOTE, b"1")]) for n, i in enumerate(range(0, len(eventos), en_lotes_de))]


def _evento(evento_id, tipo=pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, agencia="reniec", servicio="dni-duplicado", caso="EXP-1",
            t=AHORA - D, **campos):
    e = pb.Evento(evento_id=evento_id, fuente="sistema", tipo=tipo, agencia_id=agencia, servicio_id=servicio,
                  caso_id=caso, **campos)
    e.ocurrido_en.seconds = t
    return e


@pytest.mark.parametrize("en_lotes_de", [0, 25])
def test_dos_agencias_con_los_mismos_numeros_de_caso_tienen_cada_una_sus_numeros(catalogo, en_lotes_de):
    """Cada agencia numera sus casos EXP-000001… y sus eventos «EXP-000001-0»…, de la misma
    fuente: los casos y los evento_id coinciden entre agencias. Cada una obtiene exactamente
    lo que da la referencia con solo sus eventos."""
    azar = random.Random(3)
    eventos = escenario.generar(catalogo, azar, casos_por_servicio=60, inicio=AHORA - 30 * D, duracion=28 * D,
                                numeracion_compartida=True)
    casos_por_agencia = {a: {e.caso_id for e in eventos if e.agencia_id == a and e.caso_id} for a in catalogo.agencias}
    assert casos_por_agencia["reniec"] & casos_por_agencia["sunarp"] & casos_por_agencia["minsa"]
    motor = MotorEnLotes(catalogo, AHORA)
    llegada = escenario.desordenar(eventos, azar, 0.05)
    registros = _registros(llegada, en_lotes_de)
    aceptados = 0
    for i in range(0, len(registros), 40):
        salida = motor.procesar_y_agregar(registros[i:i + 40])
        assert not salida.rechazos, salida.rechazos[:3]
        aceptados += salida.aceptados
    assert aceptados == len(eventos)
    comprobar(motor.agregacion, eventos, catalogo)


def test_el_token_de_una_agencia_no_mueve_los_numeros_de_otra(catalogo):
    """sunarp reutiliza el número de caso y los evento_id de una entrega de reniec: nada de
    reniec cambia (ni sus entregas ni su costo) y sunarp cuenta su propio evento."""
    motor = MotorEnLotes(catalogo, AHORA)
    reniec = [_evento("r1", t=AHORA - 3 * D), _evento("r2", pb.TIPO_EVENTO_SERVICIO_ENTREGADO, t=AHORA - 2 * D, canal=pb.CANAL_WEB),
              _evento("r3", pb.TIPO_EVENTO_COSTO_REGISTRADO, caso="", t=AHORA - 2 * D,
                      costo=pb.Costo(unidades=20, moneda="PEN"))]
    motor.procesar_y_agregar(_registros(reniec))
    antes, _ = motor.observado("reniec")
    # Lo mismo con agencia sunarp y su servicio: mismos caso_id y evento_id, otra agencia.
    intruso = [_evento("r2", pb.TIPO_EVENTO_SERVICIO_ENTREGADO, agencia="sunarp", servicio="certificado-literal",
                       t=AHORA - D, canal=pb.CANAL_WEB),
               _evento("r3", pb.TIPO_EVENTO_COSTO_REGISTRADO, agencia="sunarp", servicio="certificado-literal", caso="",
                       t=AHORA - D, costo=pb.Costo(unidades=999, moneda="PEN"))]
    salida = motor.procesar_y_agregar([Registro(0, 10 + i, b"k", e.SerializeToString()) for i, e in enumerate(intruso)])
    assert (salida.aceptados, salida.duplicados, salida.rechazos) == (2, 0, [])
    despues, _ = motor.observado("reniec")
    assert despues == antes
    assert despues[("dni-duplicado", "entregas", "total", "")] == (1.0, 1)
    assert despues[("dni-duplicado", "costo_por_tramite", "total", "")] == (20.0, 1)
    sunarp, _ = motor.observado("sunarp")
    assert sunarp[("certificado-literal", "entregas", "total", "")] == (1.0, 1)
    assert sunarp[("certificado-literal", "costo_por_tramite", "total", "")] == (999.0, 1)
    assert clave_caso(reniec[0]) != clave_caso(intruso[0])


def test_un_evento_de_otro_servicio_en_un_caso_se_rechaza(catalogo):
    motor = MotorEnLotes(catalogo, AHORA)
    primero = _evento("a1", caso="EXP-7")
    otro = _evento("a2", pb.TIPO_EVENTO_SERVICIO_ENTREGADO, servicio="dni-primera-vez", caso="EXP-7", canal=pb.CANAL_WEB)
    salida = motor.procesar_y_agregar(_registros([primero, otro]))
    assert salida.aceptados == 1
    assert [(r.motivo, r.agencia) for r in salida.rechazos] == [("caso_de_otro_servicio", "reniec")]
    assert "dni-duplicado" in salida.rechazos[0].detalle and "dni-primera-vez" in salida.rechazos[0].detalle
    valores, _ = motor.observado("reniec")
    assert valores[("dni-primera-vez", "entregas", "total", "")] == (0.0, 0)


def test_un_lote_vacio_va_a_rechazados(catalogo):
    motor = MotorEnLotes(catalogo, AHORA)
    vacio = Registro(0, 0, b"k", pb.LoteEventos().SerializeToString(), [(CABECERA_LOTE, b"1")])
    # Un LoteEventos sin eventos serializa a cero bytes: «registro vacío». Con solo un campo
    # desconocido (el 2, entero 1) decodifica como un lote sin eventos.
    solo_desconocido = b"\x10\x01"
    assert not pb.LoteEventos.FromString(solo_desconocido).eventos
    salida = motor.procesar([vacio, Registro(0, 1, b"k", solo_desconocido, [(CABECERA_LOTE, b"1")])])
    assert [(r.motivo, r.lote) for r in salida.rechazos] == [("protobuf_invalido", True), ("lote_vacio", True)]
    assert salida.rechazos[1].valor == solo_desconocido


def test_una_etapa_con_almohadilla_no_parte_las_claves():
    """Defensa en profundidad: aunque una etapa con `#` llegara a los cubos, su histograma no se
    confunde (se parte por el último `#`; la clave logarítmica nunca lo lleva)."""
    simples, histogramas = separar_histogramas({"etapa:a#b#12": 3.0, "entregas": 2.0})
    assert simples == {"entregas": 2.0} and histogramas == {"etapa:a#b": {"12": 3.0}}


def test_etapas_y_montos_hostiles_se_rechazan_y_el_resto_cuenta(catalogo):
    """Lo que tumbaba al procesador (una etapa con `#`) o corrompía su costo (NaN, infinito,
    importes que desbordan) se rechaza con su motivo; los eventos buenos del mismo lote
    cuentan, y el costo por trámite es el exacto."""
    motor = MotorEnLotes(catalogo, AHORA)
    t = AHORA - D
    buenos = [_evento("s1", caso="EXP-1", t=t), _evento("d1", pb.TIPO_EVENTO_SERVICIO_ENTREGADO, caso="EXP-1", t=t + 60, canal=pb.CANAL_WEB),
              _evento("c1", pb.TIPO_EVENTO_COSTO_REGISTRADO, caso="", t=t + 70, costo=pb.Costo(nanos=100_000_000, moneda="PEN")),
              _evento("c2", pb.TIPO_EVENTO_COSTO_REGISTRADO, caso="", t=t + 80, costo=pb.Costo(nanos=200_000_000, moneda="PEN"))]
    malos = [
        (_evento("m1", pb.TIPO_EVENTO_ETAPA_INICIADA, caso="EXP-1", t=t + 10, etapa_id="impresion#x"), "etapa_desconocida"),
        (_evento("m2", pb.TIPO_EVENTO_ETAPA_INICIADA, caso="EXP-1", t=t + 10, etapa_id="emision"), "etapa_desconocida"),
        (_evento("m3", pb.TIPO_EVENTO_COSTO_REGISTRADO, caso="", t=t, costo=pb.Costo(unidades=-1, moneda="PEN")), "monto_invalido"),
        (_evento("m4", pb.TIPO_EVENTO_COSTO_REGISTRADO, caso="", t=t, costo=pb.Costo(unidades=2**63 - 1, moneda="PEN")),
         "monto_invalido"),
        (_evento("m5", pb.TIPO_EVENTO_COSTO_REGISTRADO, caso="", t=t, costo=pb.Costo(nanos=1, moneda="PEN")), "monto_invalido"),
        (_evento("m6#", caso="EXP-2", t=t), "identificador_invalido:evento_id"),
        (_evento("m7", caso="EXP 2", t=t), "identificador_invalido:caso_id"),
        (_evento("m8", caso="EXP-3", t=t, plazo_dias=2_000_000_000), "valor_fuera_de_rango:plazo_dias"),
        (_evento("m9", caso="EXP-4", t=5), "valor_fuera_de_rango:ocurrido_en"),
    ]
    llegada = [buenos[0], *(e for e, _ in malos[:5]), *buenos[1:], *(e for e, _ in malos[5:])]
    salida = motor.procesar_y_agregar(_registros(llegada, en_lotes_de=4))
    assert salida.aceptados == len(buenos)
    assert sorted((pb.Evento.FromString(r.valor).evento_id, r.motivo) for r in salida.rechazos) == \
        sorted((e.evento_id, motivo) for e, motivo in malos)
    valores, _ = motor.observado("reniec")
    # 0,10 + 0,20 en una entrega: 0,30 justo (en coma flotante, 0,30000000000000004).
    assert valores[("dni-duplicado", "costo_por_tramite", "total", "")] == (0.3, 1)
    comprobar(motor.agregacion, buenos, catalogo)


def test_un_error_inesperado_con_un_evento_no_detiene_el_lote(catalogo, monkeypatch):
    """Un error nuestro que solo un evento dispara (aquí simulado en el núcleo del caso): ese
    evento va a rechazados como `error_interno:<clase>`; los demás del mismo registro
    LoteEventos y de los demás registros cuentan como si no estuviera."""
    azar = random.Random(5)
    eventos = escenario.generar(catalogo, azar, casos_por_servicio=15, inicio=AHORA - 20 * D, duracion=18 * D)
    veneno = {eventos[7].evento_id, eventos[8].evento_id, eventos[40].evento_id}
    original = dominio_casos.cambios_de

    def cambios_de(caso, evento, tipo, t):
        if evento.evento_id in veneno:
            raise KeyError(f"fallo de prueba con {evento.evento_id}")
        return original(caso, evento, tipo, t)

    monkeypatch.setattr("servicios.procesador.dominio.etapa_casos.cambios_de", cambios_de)
    motor = MotorEnLotes(catalogo, AHORA)
    registros = _registros(eventos, en_lotes_de=6)
    salida = motor.procesar_y_agregar(registros)
    assert sorted(pb.Evento.FromString(r.valor).evento_id for r in salida.rechazos) == sorted(veneno)
    assert {r.motivo for r in salida.rechazos} == {"error_interno:KeyError"}
    assert all("fallo de prueba" in r.detalle for r in salida.rechazos)
    assert salida.aceptados == len(eventos) - len(veneno)
    comprobar(motor.agregacion, [e for e in eventos if e.evento_id not in veneno], catalogo)


def test_un_estado_corrupto_afecta_solo_a_los_eventos_de_su_caso(catalogo):
    """El estado guardado de un caso está corrupto (no decodifica): sus eventos van a
    rechazados como error interno, registro a registro, y los demás casos siguen."""
    motor = MotorEnLotes(catalogo, AHORA)
    t = AHORA - D
    roto = _evento("x1", caso="EXP-ROTO", t=t)
    motor.casos[clave_caso(roto)] = b"\xff\xff\xff basura"
    eventos = [_evento("a1", caso="EXP-A", t=t), roto, _evento("a2", pb.TIPO_EVENTO_SERVICIO_ENTREGADO, caso="EXP-A", t=t + 5,
                                                              canal=pb.CANAL_WEB),
               _evento("x2", pb.TIPO_EVENTO_SERVICIO_ENTREGADO, caso="EXP-ROTO", t=t + 6, canal=pb.CANAL_WEB)]
    salida = motor.procesar_y_agregar(_registros(eventos))
    assert [(pb.Evento.FromString(r.valor).evento_id, r.motivo) for r in salida.rechazos] == \
        [("x1", "error_interno:DecodeError"), ("x2", "error_interno:DecodeError")]
    valores, _ = motor.observado("reniec")
    assert valores[("dni-duplicado", "entregas", "total", "")] == (1.0, 1)
    assert valores[("dni-duplicado", "solicitudes", "total", "")] == (1.0, 1)
