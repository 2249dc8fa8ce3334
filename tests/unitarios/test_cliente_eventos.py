"""Los constructores de la biblioteca cliente (`gpr_cliente.eventos`): arman exactamente el
evento del contrato (comparado con uno escrito a mano) y rechazan, nombrando el campo, lo mismo
que rechaza el procesador: cada evento rechazado se pasa además por la etapa por caso del
procesador real, que debe rechazarlo con el mismo motivo. Los importes son exactos."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from google.protobuf import json_format

from apoyo.motor import MotorEnLotes
from conftest import AHORA, CATALOGO
from gpr.v1 import eventos_pb2 as pb
from gpr_cliente import Canal, Catalogo, EventoInvalido, Eventos, Resultado
from gpr_cliente.contrato import clave_kafka
from gpr_cliente.dinero import a_diezmilesimas
from gpr_cliente.eventos import importe_exacto
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.eventos import validar as validar_del_procesador
from servicios.procesador.dominio.etapa_casos import Registro

PLATAFORMA = cargar_catalogo(CATALOGO)
T = AHORA - 3600
CUANDO = datetime.fromtimestamp(T, timezone.utc)
SERV = "certificado-literal"  # sunarp, etapas mesa-de-partes y emision


def _ids():
    n = iter(range(1, 10_000))
    return lambda: f"e{next(n)}"


@pytest.fixture
def eventos():
    return Eventos(PLATAFORMA, "sunarp", "sistema-tramites", reloj=lambda: AHORA, nuevo_id=_ids())


def _esperado(tipo, **campos) -> pb.Evento:
    e = pb.Evento(evento_id="e1", version_esquema=1, tipo=tipo, fuente="sistema-tramites", agencia_id="sunarp",
                  servicio_id=SERV, **campos)
    e.ocurrido_en.seconds = T
    return e


def test_cada_constructor_arma_el_evento_del_contrato(eventos):
    casos = [
        (lambda: eventos.solicitud_recibida(SERV, "EXP-1", CUANDO, canal=Canal.WEB, plazo_dias=5),
         _esperado(pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, caso_id="EXP-1", canal=pb.CANAL_WEB, plazo_dias=5)),
        (lambda: eventos.etapa_iniciada(SERV, "EXP-1", "emision", CUANDO, intento=2),
         _esperado(pb.TIPO_EVENTO_ETAPA_INICIADA, caso_id="EXP-1", etapa_id="emision", intento=2)),
        (lambda: eventos.etapa_completada(SERV, "EXP-1", "mesa-de-partes", CUANDO),
         _esperado(pb.TIPO_EVENTO_ETAPA_COMPLETADA, caso_id="EXP-1", etapa_id="mesa-de-partes")),
        (lambda: eventos.caso_devuelto(SERV, "EXP-1", CUANDO, etapa_id="emision", intento=1),
         _esperado(pb.TIPO_EVENTO_CASO_DEVUELTO, caso_id="EXP-1", etapa_id="emision", intento=1)),
        (lambda: eventos.servicio_entregado(SERV, "EXP-1", CUANDO, canal=Canal.PRESENCIAL),
         _esperado(pb.TIPO_EVENTO_SERVICIO_ENTREGADO, caso_id="EXP-1", resultado=pb.RESULTADO_OTORGADO,
                   canal=pb.CANAL_PRESENCIAL)),
        (lambda: eventos.caso_cerrado(SERV, "EXP-1", CUANDO, Resultado.DENEGADO_NO_ELEGIBLE),
         _esperado(pb.TIPO_EVENTO_CASO_CERRADO, caso_id="EXP-1", resultado=pb.RESULTADO_DENEGADO_NO_ELEGIBLE)),
        (lambda: eventos.encuesta_respondida(SERV, CUANDO, 4, 5, caso_id="EXP-1", canal=Canal.APP),
         _esperado(pb.TIPO_EVENTO_ENCUESTA_RESPONDIDA, caso_id="EXP-1", canal=pb.CANAL_APP,
                   satisfaccion=pb.Satisfaccion(puntaje=4, escala_max=5))),
        (lambda: eventos.reclamo_registrado(SERV, "R-9", CUANDO, categoria="demora", etapa_relacionada="emision"),
         _esperado(pb.TIPO_EVENTO_RECLAMO_REGISTRADO,
                   reclamo=pb.Reclamo(reclamo_id="R-9", categoria="demora", etapa_relacionada="emision"))),
        (lambda: eventos.reclamo_resuelto(SERV, "R-9", CUANDO, caso_id="EXP-1"),
         _esperado(pb.TIPO_EVENTO_RECLAMO_RESUELTO, caso_id="EXP-1", reclamo=pb.Reclamo(reclamo_id="R-9"))),
        (lambda: eventos.costo_registrado(SERV, "12.50", CUANDO, caso_id="EXP-1"),
         _esperado(pb.TIPO_EVENTO_COSTO_REGISTRADO, caso_id="EXP-1",
                   costo=pb.Costo(unidades=12, nanos=500_000_000, moneda="PEN"))),
    ]
    tipos = set()
    for construir, esperado in casos:
        eventos.nuevo_id = lambda: "e1"
        evento = construir()
        assert evento == esperado, (evento, esperado)
        assert validar_del_procesador(evento, PLATAFORMA, AHORA) is None
        tipos.add(evento.tipo)
    # Un constructor por cada tipo del contrato.
    assert tipos == set(pb.TipoEvento.values()) - {pb.TIPO_EVENTO_NO_ESPECIFICADO}


def test_comunes_instantes_con_zona_y_segundos(eventos):
    lima = datetime(2026, 6, 17, 10, 0, 0, 250_000, tzinfo=ZoneInfo("America/Lima"))  # 15:00:00.25 UTC
    e = eventos.solicitud_recibida(SERV, "EXP-2", lima, evento_id="mi-id", region="Lima",
                                   atributos={"oficina": "central"})
    assert (e.ocurrido_en.seconds, e.ocurrido_en.nanos) == (1_781_708_400, 250_000_000)
    assert (e.evento_id, e.region, dict(e.atributos)) == ("mi-id", "Lima", {"oficina": "central"})
    e = eventos.solicitud_recibida(SERV, "EXP-2", T + 0.5)
    assert (e.ocurrido_en.seconds, e.ocurrido_en.nanos) == (T, 500_000_000)
    # Sin evento_id dado, uno nuevo por evento (el que se reusa al reintentar).
    assert eventos.solicitud_recibida(SERV, "EXP-2", T).evento_id != eventos.solicitud_recibida(SERV, "EXP-2", T).evento_id


def _procesador_rechaza(evento: pb.Evento) -> str:
    """El motivo con que la etapa por caso del procesador rechaza el evento."""
    motor = MotorEnLotes(PLATAFORMA, AHORA)
    salida = motor.procesar([Registro(0, 0, clave_kafka(evento), evento.SerializeToString())])
    assert salida.aceptados == 0 and len(salida.rechazos) == 1, salida
    return salida.rechazos[0].motivo


LARGO = "x" * 129
RECHAZOS = [
    # (constructor, campo, motivo del procesador)
    (lambda e: e.solicitud_recibida(SERV, "", CUANDO), "caso_id", "campo_requerido:caso_id"),
    (lambda e: e.solicitud_recibida(SERV, "EXP 1", CUANDO), "caso_id", "identificador_invalido:caso_id"),
    (lambda e: e.solicitud_recibida(SERV, LARGO, CUANDO), "caso_id", "campo_demasiado_largo:caso_id"),
    (lambda e: e.solicitud_recibida(SERV, "EXP-1", CUANDO, evento_id="con espacio"), "evento_id",
     "identificador_invalido:evento_id"),
    (lambda e: e.solicitud_recibida(SERV, "EXP-1", CUANDO, evento_id=""), "evento_id", "campo_requerido:evento_id"),
    (lambda e: e.solicitud_recibida("dni-duplicado", "EXP-1", CUANDO), "servicio_id", "servicio_desconocido"),
    (lambda e: e.solicitud_recibida("", "EXP-1", CUANDO), "servicio_id", "campo_requerido:servicio_id"),
    (lambda e: e.solicitud_recibida(SERV, "EXP-1", AHORA + 301), "ocurrido_en", "tiempo_futuro"),
    (lambda e: e.solicitud_recibida(SERV, "EXP-1", datetime(1999, 12, 31, tzinfo=timezone.utc)), "ocurrido_en",
     "valor_fuera_de_rango:ocurrido_en"),
    (lambda e: e.solicitud_recibida(SERV, "EXP-1", 0), "ocurrido_en", "campo_requerido:ocurrido_en"),
    (lambda e: e.solicitud_recibida(SERV, "EXP-1", CUANDO, plazo_dias=0), "plazo_dias", "tipo_incoherente"),
    (lambda e: e.solicitud_recibida(SERV, "EXP-1", CUANDO, plazo_dias=3651), "plazo_dias",
     "valor_fuera_de_rango:plazo_dias"),
    (lambda e: e.solicitud_recibida(SERV, "EXP-1", CUANDO, region="r" * 257), "region", "campo_demasiado_largo:region"),
    (lambda e: e.solicitud_recibida(SERV, "EXP-1", CUANDO, atributos={f"a{i}": "v" for i in range(33)}),
     "atributos", "campo_demasiado_largo:atributos"),
    (lambda e: e.solicitud_recibida(SERV, "EXP-1", CUANDO, atributos={f"{i:03}" + "k" * 253: "v" * 256 for i in range(32)}),
     "evento", "evento_demasiado_grande"),
    (lambda e: e.etapa_iniciada(SERV, "EXP-1", "firma", CUANDO), "etapa_id", "etapa_desconocida"),
    (lambda e: e.etapa_completada(SERV, "EXP-1", "", CUANDO), "etapa_id", "campo_requerido:etapa_id"),
    (lambda e: e.etapa_iniciada(SERV, "EXP-1", "emision", CUANDO, intento=-1), "intento", "tipo_incoherente"),
    (lambda e: e.etapa_iniciada(SERV, "EXP-1", "emision", CUANDO, intento=1001), "intento",
     "valor_fuera_de_rango:intento"),
    (lambda e: e.caso_devuelto(SERV, "", CUANDO), "caso_id", "campo_requerido:caso_id"),
    (lambda e: e.servicio_entregado(SERV, "", CUANDO), "caso_id", "campo_requerido:caso_id"),
    (lambda e: e.caso_cerrado(SERV, "", CUANDO, Resultado.DESISTIDO), "caso_id", "campo_requerido:caso_id"),
    (lambda e: e.encuesta_respondida(SERV, CUANDO, 6, 5), "satisfaccion", "tipo_incoherente"),
    (lambda e: e.encuesta_respondida(SERV, CUANDO, 0, 5), "satisfaccion", "tipo_incoherente"),
    (lambda e: e.encuesta_respondida(SERV, CUANDO, 1, 1), "satisfaccion", "tipo_incoherente"),
    (lambda e: e.encuesta_respondida(SERV, CUANDO, 50, 101), "satisfaccion", "valor_fuera_de_rango:satisfaccion"),
    (lambda e: e.reclamo_registrado(SERV, "", CUANDO), "reclamo.reclamo_id", "tipo_incoherente"),
    (lambda e: e.reclamo_resuelto(SERV, "R 1", CUANDO), "reclamo.reclamo_id", "identificador_invalido:reclamo.reclamo_id"),
    (lambda e: e.reclamo_registrado(SERV, "R-1", CUANDO, categoria="c" * 257), "reclamo.categoria",
     "campo_demasiado_largo:reclamo.categoria"),
    (lambda e: e.costo_registrado(SERV, "12.12345", CUANDO), "costo", "monto_invalido"),
    (lambda e: e.costo_registrado(SERV, "1000000000.0001", CUANDO), "costo", "monto_invalido"),
    (lambda e: e.costo_registrado(SERV, "12.50", CUANDO, moneda="USD"), "costo.moneda", "moneda_incoherente"),
]


@pytest.mark.parametrize("construir,campo,motivo", RECHAZOS)
def test_rechaza_lo_que_rechaza_el_procesador_nombrando_el_campo(eventos, construir, campo, motivo):
    with pytest.raises(EventoInvalido) as error:
        construir(eventos)
    assert (error.value.campo, error.value.motivo) == (campo, motivo)
    assert f"{campo}:" in str(error.value) and f"(motivo {motivo})" in str(error.value)
    # El procesador, con el mismo evento, da el mismo motivo.
    assert _procesador_rechaza(error.value.evento) == motivo


def test_la_fuente_y_la_agencia_se_comprueban_al_crear_la_fabrica():
    with pytest.raises(EventoInvalido) as error:
        Eventos(PLATAFORMA, "onpe", "sistema")
    assert (error.value.campo, error.value.motivo) == ("agencia_id", "agencia_desconocida")
    fabrica = Eventos(PLATAFORMA, "sunarp", "sistema con espacio", reloj=lambda: AHORA)
    with pytest.raises(EventoInvalido) as error:
        fabrica.solicitud_recibida(SERV, "EXP-1", CUANDO)
    assert (error.value.campo, error.value.motivo) == ("fuente", "identificador_invalido:fuente")


@pytest.mark.parametrize("construir,campo,mensaje", [
    (lambda e: e.solicitud_recibida(SERV, "EXP-1", datetime(2026, 6, 17, 10)), "ocurrido_en", "zona horaria"),
    (lambda e: e.etapa_iniciada(SERV, "EXP-1", "emision", CUANDO, intento=2 ** 31), "intento", "32 bits"),
    (lambda e: e.costo_registrado(SERV, "-0.01", CUANDO), "costo", "negativo"),
    (lambda e: e.costo_registrado(SERV, "doce", CUANDO), "costo", "no es un número decimal"),
    (lambda e: e.costo_registrado(SERV, "1" * 400, CUANDO), "costo", "más de 1000000000 unidades"),
])
def test_lo_que_ni_siquiera_se_puede_armar_tambien_nombra_el_campo(eventos, construir, campo, mensaje):
    with pytest.raises(EventoInvalido) as error:
        construir(eventos)
    assert error.value.campo == campo and mensaje in str(error.value)
    # El dato del emisor vuelve acotado en el mensaje, nunca entero.
    assert len(str(error.value)) < 300


@pytest.mark.parametrize("construir,parametro", [
    (lambda e: e.costo_registrado(SERV, 0.1, CUANDO), "importe"),
    (lambda e: e.solicitud_recibida(SERV, "EXP-1", CUANDO, canal="WEB"), "canal"),
    (lambda e: e.servicio_entregado(SERV, "EXP-1", CUANDO, resultado=99), "resultado"),
    (lambda e: e.encuesta_respondida(SERV, CUANDO, "4", 5), "satisfaccion.puntaje"),
    (lambda e: e.solicitud_recibida(SERV, 17, CUANDO), "caso_id"),
    (lambda e: e.solicitud_recibida(SERV, "EXP-1", "2026-06-17"), "ocurrido_en"),
])
def test_un_tipo_equivocado_es_un_typeerror_que_nombra_el_parametro(eventos, construir, parametro):
    with pytest.raises(TypeError, match=f"^{parametro}:"):
        construir(eventos)


def test_importes_exactos_al_centimo():
    # 0.10 + 0.20 + 0.30 en coma flotante no es 0.60; en el contrato, sí.
    assert 0.1 + 0.2 + 0.3 != 0.6
    importes = [importe_exacto(x) for x in ("0.10", Decimal("0.20"), "0.30")]
    assert importes == [(0, 100_000_000), (0, 200_000_000), (0, 300_000_000)]
    assert sum(a_diezmilesimas(u, n) for u, n in importes) == 6000  # 0,6000 en diezmilésimas
    assert importe_exacto("1234567.89") == (1_234_567, 890_000_000)
    assert importe_exacto("0.0001") == (0, 100_000)
    assert importe_exacto(12) == (12, 0)
    assert importe_exacto("999999999.9999") == (999_999_999, 999_900_000)
    # Un millón de costos de 0,01: exactamente 10 000,00.
    u, n = importe_exacto("0.01")
    assert 1_000_000 * a_diezmilesimas(u, n) == 10_000 * 10_000


def test_los_enumerados_son_los_del_contrato():
    for enumerado, proto, prefijo in ((Canal, pb.Canal, "CANAL_"), (Resultado, pb.Resultado, "RESULTADO_")):
        del_proto = {nombre.removeprefix(prefijo): valor for nombre, valor in proto.items()
                     if not nombre.endswith("NO_ESPECIFICADO")}
        assert {m.name: m.value for m in enumerado} == del_proto


def test_catalogo_de_una_agencia_valida_como_el_de_la_plataforma():
    propio = Catalogo.de_agencia("sunarp", {
        "inscripcion-propiedad": ["mesa-de-partes", "calificacion", "inscripcion"],
        "certificado-literal": ["mesa-de-partes", "emision"]}, moneda="PEN")
    con_el_propio = Eventos(propio, "sunarp", "sistema", reloj=lambda: AHORA)
    assert con_el_propio.etapa_iniciada("inscripcion-propiedad", "E1", "calificacion", CUANDO)
    assert con_el_propio.costo_registrado(SERV, "3.20", CUANDO).costo.moneda == "PEN"
    for construir, motivo in ((lambda e: e.etapa_iniciada(SERV, "E1", "calificacion", CUANDO), "etapa_desconocida"),
                              (lambda e: e.solicitud_recibida("otro", "E1", CUANDO), "servicio_desconocido")):
        with pytest.raises(EventoInvalido) as error:
            construir(con_el_propio)
        assert error.value.motivo == motivo == validar_del_procesador(error.value.evento, PLATAFORMA, AHORA)


@pytest.mark.parametrize("argumentos,parametro", [
    ({"agencia_id": "", "servicios": {"s": []}}, "agencia_id"),
    ({"agencia_id": "a", "servicios": {}}, "servicios"),
    ({"agencia_id": "a", "servicios": {"s": "etapa"}}, "servicios['s']"),
    ({"agencia_id": "a", "servicios": {"s": []}, "moneda": "soles"}, "moneda"),
])
def test_catalogo_de_agencia_invalido_nombra_el_parametro(argumentos, parametro):
    with pytest.raises(ValueError) as error:
        Catalogo.de_agencia(**argumentos)
    assert str(error.value).startswith(f"{parametro}:")


def test_comprobar_un_evento_leido_de_json(eventos):
    linea = ('{"eventoId": "j1", "tipo": "TIPO_EVENTO_SOLICITUD_RECIBIDA", "ocurridoEn": "2026-06-17T14:00:00Z", '
             '"fuente": "f", "agenciaId": "sunarp", "servicioId": "certificado-literal"}')
    evento = json_format.Parse(linea, pb.Evento())
    with pytest.raises(EventoInvalido) as error:
        eventos.comprobar(evento)
    assert (error.value.campo, error.value.motivo, error.value.evento_id) == ("caso_id", "campo_requerido:caso_id", "j1")
    evento.caso_id = "EXP-7"
    assert eventos.comprobar(evento) is evento


def test_la_hora_de_la_fabrica_decide_el_futuro():
    reloj = [AHORA]
    fabrica = Eventos(PLATAFORMA, "sunarp", "s", reloj=lambda: reloj[0])
    despues = datetime.fromtimestamp(AHORA, timezone.utc) + timedelta(minutes=10)
    with pytest.raises(EventoInvalido):
        fabrica.solicitud_recibida(SERV, "E1", despues)
    reloj[0] += 600
    assert fabrica.solicitud_recibida(SERV, "E1", despues).ocurrido_en.seconds == AHORA + 600
