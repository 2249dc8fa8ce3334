"""La Ingesta ante fallas de Kafka y entradas hostiles (issue 17), contra el broker embebido
real y por canales gRPC reales.

- Sana sola tras perder el broker (reiniciado vacío, o con sus tópicos recreados sin que lo
  note): la salud dice NOT_SERVING mientras no puede escribir y SERVING cuando vuelve.
- Un flujo de cualquier largo se valida y publica por trozos: la memoria del proceso no crece
  con el largo (flujo de más de 1 GiB, medido en /proc del subproceso).
- Un flujo que falla a la mitad dice cuántos eventos quedaron resueltos (`gpr-procesados`).
- Bytes que no son el mensaje → INVALID_ARGUMENT, nunca UNKNOWN; lo que escribe el cliente
  vuelve recortado en errores, respuestas, cabeceras y registro.
- Con Kafka caído el registro escribe cada línea una vez por intervalo, no una por reintento.

Lo esperado se escribe a mano en cada prueba; las cotas de memoria salen de los límites
configurados (docs/ingesta.md), nunca de un tiempo.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kafka.admin import KafkaAdminClient

from apoyo.ingesta import (
    B,
    NOT_SERVING,
    PARTICIONES,
    RAIZ,
    SERVING,
    TOKEN_RENIEC,
    autorizacion,
    env_ingesta,
    error_de,
    esperar_salud,
    evento,
    eventos_de,
    ingesta_en_proceso,
    leer_topico,
    metricas,
)
from gpr.v1 import eventos_pb2 as pb
from gpr.v1 import ingesta_pb2, ingesta_pb2_grpc
from servicios.comun.broker import BrokerEmbebido, puerto_libre
from servicios.comun.topicos import CABECERA_MOTIVO, EVENTOS, RECHAZADOS, crear_topicos
from servicios.ingesta.credenciales import entrada_yaml

pytestmark = [pytest.mark.integracion, pytest.mark.timeout(120)]

MIB = 1024 * 1024
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
SERVICIO = "gpr.v1.Ingesta"


def _solicitud(*eventos):
    return ingesta_pb2.SolicitudPublicar(eventos=list(eventos))


def _ids(registros):
    return sorted(e.evento_id for _, e, _ in eventos_de(registros))


def _procesados(error: grpc.RpcError) -> str | None:
    return dict(error.trailing_metadata() or ()).get("gpr-procesados")


def _particiones(bootstrap) -> dict[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics([EVENTOS, RECHAZADOS])}
    finally:
        admin.close()


def _valor(muestras, nombre, **etiquetas):
    return muestras.get((nombre, tuple(sorted(etiquetas.items()))), 0)


# ── sanar tras perder Kafka ────────────────────────────────────────────────────────────────

def test_sana_tras_reiniciar_el_broker(tmp_path):
    """Broker detenido: NOT_SERVING y UNAVAILABLE inmediato. Vuelve vacío (solo memoria): la
    ingesta recrea sus tópicos con GPR_PARTICIONES y un productor nuevo, vuelve a SERVING y
    publica, sin reiniciarla. Antes: seguía SERVING y respondía UNAVAILABLE para siempre."""
    broker = BrokerEmbebido(registro=tmp_path / "tansu.log")
    broker.iniciar()
    try:
        with ingesta_en_proceso(broker.bootstrap, GPR_INGESTA_SONDEO="1s", GPR_INGESTA_REINTENTO_MAXIMO="1s") \
                as (servicio, canal, stub):
            md = autorizacion(TOKEN_RENIEC)
            assert stub.Publicar(_solicitud(evento("antes")), metadata=md, timeout=10).aceptados == 1

            broker.detener()
            esperar_salud(canal, NOT_SERVING, limite_s=30)
            esperar_salud(canal, NOT_SERVING, limite_s=5, servicio=SERVICIO)
            # La sonda de vida (Kubernetes) no sigue a Kafka: un corte no reinicia el pod.
            esperar_salud(canal, SERVING, limite_s=5, servicio="vida")
            codigo, detalle = error_de(stub.Publicar, _solicitud(evento("durante")), metadata=md)
            assert codigo == UNAVAILABLE and "reintente" in detalle

            inicio = time.monotonic()
            broker.iniciar()
            esperar_salud(canal, SERVING, limite_s=60)
            sanada_s = time.monotonic() - inicio
            esperar_salud(canal, SERVING, limite_s=5, servicio=SERVICIO)
            assert stub.Publicar(_solicitud(evento("despues", caso="c2")), metadata=md, timeout=10).aceptados == 1
            muestras = metricas(servicio.puerto_metricas)
            publicados = leer_topico(broker.bootstrap, EVENTOS, 1)
            particiones = _particiones(broker.bootstrap)
        print(f"\ningesta sana {sanada_s:.1f} s después de que el broker volvió")
        # El broker volvió vacío: solo está lo publicado después, en tópicos que creó la ingesta.
        assert _ids(publicados) == ["despues"]
        assert particiones == {EVENTOS: PARTICIONES, RECHAZADOS: PARTICIONES}
        assert _valor(muestras, "gpr_ingesta_productores_creados_total") == 2
        assert _valor(muestras, "gpr_ingesta_kafka_listo") == 1
        assert _valor(muestras, "gpr_ingesta_solicitudes_rechazadas_total", agencia="reniec",
                      motivo="kafka_no_disponible") == 1
    finally:
        broker.detener()


def test_sana_tras_un_error_fatal_del_productor(tmp_path):
    """El broker vuelve vacío y otro servicio recrea los tópicos antes de que la ingesta lo
    note (sondeo cada hora): el productor idempotente ya no existe para el broker
    (UnknownProducerIdError y luego error fatal). La primera petición que lo ve recibe
    UNAVAILABLE; la ingesta crea otro productor y las siguientes publican. Antes: UNAVAILABLE
    en cada intento hasta reiniciar la ingesta."""
    broker = BrokerEmbebido(registro=tmp_path / "tansu.log")
    broker.iniciar()
    try:
        with ingesta_en_proceso(broker.bootstrap, GPR_INGESTA_SONDEO="1h", GPR_INGESTA_REINTENTO_MAXIMO="1s") \
                as (servicio, canal, stub):
            md = autorizacion(TOKEN_RENIEC)
            assert stub.Publicar(_solicitud(evento("antes")), metadata=md, timeout=10).aceptados == 1
            broker.detener()
            broker.iniciar()
            crear_topicos(broker.bootstrap, PARTICIONES, [EVENTOS, RECHAZADOS])
            # Nada le avisó todavía: sin sondeo, solo una petición fallida lo descubre.
            salud = health_pb2_grpc.HealthStub(canal)
            assert salud.Check(health_pb2.HealthCheckRequest(), timeout=5).status == SERVING

            fallos, respuesta = [], None
            fin = time.monotonic() + 60
            while respuesta is None and time.monotonic() < fin:
                try:
                    respuesta = stub.Publicar(_solicitud(evento("despues", caso="c2")), metadata=md, timeout=10)
                except grpc.RpcError as error:
                    fallos.append(error.code())
                    time.sleep(0.2)
            assert respuesta is not None and respuesta.aceptados == 1, fallos
            muestras = metricas(servicio.puerto_metricas)
            publicados = leer_topico(broker.bootstrap, EVENTOS, 1)
        assert fallos and set(fallos) == {UNAVAILABLE}
        assert _valor(muestras, "gpr_ingesta_solicitudes_rechazadas_total", agencia="reniec",
                      motivo="kafka_no_disponible") == len(fallos)
        assert _valor(muestras, "gpr_ingesta_productores_creados_total") == 2
        assert _ids(publicados) == ["despues"]
    finally:
        broker.detener()


# ── bytes ilegibles y ecos ─────────────────────────────────────────────────────────────────

_VALIDA = _solicitud(evento("v1")).SerializeToString()
ILEGIBLES = {
    "bytes al azar": b"\xff\xff\xff\xff",
    "UTF-8 inválido en un texto": b"\x0a\x03\x0a\x01\xff",
    "mensaje truncado": _VALIDA[:-3],
    "longitud más allá del final": b"\x0a\xff\xff\xff\xff\x0f",
    "grupo sin cerrar": b"\x0b",
    "etiqueta 0": b"\x00\x01",
    "evento ilegible dentro de la solicitud": b"\x0a\x02\xff\xff",
    "150 grupos anidados": b"\x7b" * 150 + b"\x7c" * 150,
}


def test_bytes_ilegibles_dan_invalid_argument(bootstrap):
    """Una solicitud que no es un SolicitudPublicar: INVALID_ARGUMENT que lo dice (antes:
    UNKNOWN y una traza en el registro); nada se publica y se cuenta. En un flujo, un mensaje
    ilegible es un evento rechazado (`protobuf_invalido`, con sus bytes en el tópico de
    rechazados) y los demás siguen."""
    md = autorizacion(TOKEN_RENIEC)
    with ingesta_en_proceso(bootstrap) as (servicio, canal, _):
        crudo = canal.unary_unary(f"/{SERVICIO}/Publicar", request_serializer=None, response_deserializer=None)
        for nombre, datos in ILEGIBLES.items():
            codigo, detalle = error_de(crudo, datos, metadata=md)
            assert codigo == INVALID_ARGUMENT, nombre
            assert detalle.startswith(f"la solicitud ({len(datos)} bytes) no es un gpr.v1.SolicitudPublicar válido")
            assert len(detalle) < 400
        # Cero bytes es una solicitud vacía válida: OK sin eventos (respuesta vacía).
        assert crudo(b"", metadata=md, timeout=10) == b""

        flujo = canal.stream_unary(f"/{SERVICIO}/PublicarFlujo", request_serializer=None,
                                   response_deserializer=ingesta_pb2.RespuestaPublicar.FromString)
        mensajes = [evento("f1", caso="c1").SerializeToString(), b"\xff\xff", evento("f2", caso="c2").SerializeToString()]
        respuesta = flujo(iter(mensajes), metadata=md, timeout=10)
        assert [(r.evento_id, r.aceptado, r.motivo) for r in respuesta.resultados] == [
            ("f1", True, ""), ("", False, "protobuf_invalido"), ("f2", True, "")]
        assert (respuesta.aceptados, respuesta.rechazados) == (2, 1)
        publicados = leer_topico(bootstrap, EVENTOS, 2)
        muertos = leer_topico(bootstrap, RECHAZADOS, 1)
        muestras = metricas(servicio.puerto_metricas)
    assert _ids(publicados) == ["f1", "f2"]
    assert len(muertos) == 1 and muertos[0].value == b"\xff\xff" and muertos[0].key is None
    cabeceras = dict(muertos[0].headers)
    assert cabeceras[CABECERA_MOTIVO] == b"protobuf_invalido"
    assert cabeceras["gpr-detalle"].startswith(b"eventos[1]: protobuf_invalido: no es un gpr.v1.Evento")
    assert _valor(muestras, "gpr_ingesta_solicitudes_rechazadas_total", agencia="reniec",
                  motivo="protobuf_invalido") == len(ILEGIBLES)
    assert _valor(muestras, "gpr_ingesta_eventos_total", agencia="reniec", resultado="rechazado",
                  motivo="protobuf_invalido") == 1
    codigos = {dict(e)["grpc_code"]: v for (n, e), v in muestras.items()
               if n == "grpc_server_handled_total" and dict(e)["grpc_method"] == "Publicar"}
    assert codigos == {"INVALID_ARGUMENT": len(ILEGIBLES), "OK": 1}


def test_lo_que_escribe_el_cliente_vuelve_recortado(bootstrap, caplog):
    """Un campo de 1 MiB nunca vuelve entero: ni en un error (antes: el detalle de 1 MiB
    superaba el límite de metadatos de gRPC y el cliente recibía RESOURCE_EXHAUSTED «Stream
    removed»), ni en la respuesta, ni en el tópico de rechazados, ni en el registro."""
    caplog.set_level(logging.INFO)
    md = autorizacion(TOKEN_RENIEC)
    recortado = f"…({MIB} bytes)"
    with ingesta_en_proceso(bootstrap) as (servicio, _, stub):
        for ajeno in (evento("x" * MIB, agencia="sunarp", servicio="certificado-literal"),
                      evento("a1", agencia="s" * MIB)):
            codigo, detalle = error_de(stub.Publicar, _solicitud(ajeno), metadata=md)
            assert codigo == PERMISSION_DENIED
            assert detalle.startswith("eventos[0].agencia_id: el evento ") and recortado in detalle
            assert len(detalle.encode()) < 1000

        grande = evento("g" * MIB, caso="c1")
        largo = evento("l1", caso="c" * 1000)
        atributo = evento("l2", caso="c2", atributos={"k" * 500: "v"})
        bueno = evento("b1", caso="c3")
        respuesta = stub.Publicar(_solicitud(grande, largo, atributo, bueno), metadata=md, timeout=10)
        assert [(r.evento_id, r.aceptado, r.motivo) for r in respuesta.resultados] == [
            ("g" * 128 + recortado, False, "evento_demasiado_grande"),
            ("l1", False, "campo_demasiado_largo:caso_id"),
            ("l2", False, "campo_demasiado_largo:atributos"),
            ("b1", True, ""),
        ]
        muertos = leer_topico(bootstrap, RECHAZADOS, 3)
        publicados = leer_topico(bootstrap, EVENTOS, 1)
        muestras = metricas(servicio.puerto_metricas)
    assert _ids(publicados) == ["b1"]
    eventos = {(dict(e)["resultado"], dict(e)["motivo"]): v for (n, e), v in muestras.items()
               if n == "gpr_ingesta_eventos_total"}
    assert eventos == {("aceptado", ""): 1, ("rechazado", "evento_demasiado_grande"): 1,
                       ("rechazado", "campo_demasiado_largo"): 2}
    assert _valor(muestras, "gpr_ingesta_solicitudes_rechazadas_total", agencia="reniec", motivo="agencia_ajena") == 2
    por_motivo = {dict(r.headers)[CABECERA_MOTIVO]: r for r in muertos}
    assert set(por_motivo) == {b"evento_demasiado_grande", b"campo_demasiado_largo:caso_id",
                               b"campo_demasiado_largo:atributos"}
    demasiado = por_motivo[b"evento_demasiado_grande"]
    assert demasiado.value == b"" and demasiado.key is None
    assert dict(demasiado.headers)["gpr-detalle"].decode() == (
        f"evento {'g' * 200 + recortado!r}: evento_demasiado_grande ({grande.ByteSize()} bytes; el máximo es 16384)")
    # Un identificador largo en un evento de tamaño admitido: va el original, sin clave.
    assert por_motivo[b"campo_demasiado_largo:caso_id"].value == largo.SerializeToString()
    assert por_motivo[b"campo_demasiado_largo:caso_id"].key is None
    assert all(len(r.getMessage()) < 2000 for r in caplog.records)


def test_limites_de_tamano(bootstrap):
    """Un mensaje mayor que GPR_INGESTA_MENSAJE_MAXIMO lo corta gRPC (RESOURCE_EXHAUSTED); un
    token de 100 KB excede el límite de metadatos de gRPC (16 KiB) y también. En un flujo,
    los trozos ya confirmados quedan publicados, el trozo en curso puede publicarse o no (gRPC
    termina el flujo en el servidor como si el cliente lo hubiera cerrado) y nada de lo que
    venía después del mensaje demasiado grande se publica."""
    md = autorizacion(TOKEN_RENIEC)
    with ingesta_en_proceso(bootstrap, GPR_INGESTA_MENSAJE_MAXIMO="512KiB", GPR_INGESTA_TROZO_EVENTOS="2") \
            as (servicio, canal, stub):
        enorme = evento("e1", atributos={"r": "x" * (600 * 1024)})
        codigo, detalle = error_de(stub.Publicar, _solicitud(enorme), metadata=md)
        assert codigo == RESOURCE_EXHAUSTED and "larger than max" in detalle
        codigo, _ = error_de(stub.Publicar, _solicitud(evento("t1")),
                             metadata=[("authorization", "Bearer " + "x" * 100_000)])
        assert codigo == RESOURCE_EXHAUSTED

        flujo = [evento("s0", caso="c0"), evento("s1", caso="c1"), evento("s2", caso="c2"), enorme,
                 evento("s4", caso="c4")]
        codigo, _ = error_de(stub.PublicarFlujo, iter(flujo), metadata=md)
        assert codigo == RESOURCE_EXHAUSTED
        # La ingesta sigue atendiendo.
        assert stub.Publicar(_solicitud(evento("t2", caso="c9")), metadata=md, timeout=10).aceptados == 1
        publicados = leer_topico(bootstrap, EVENTOS, 3)
        muestras = metricas(servicio.puerto_metricas)
    assert set(_ids(publicados)) - {"s2"} == {"s0", "s1", "t2"}
    # La solicitud unaria demasiado grande y el token enorme no llegan a la ingesta (gRPC los
    # corta antes: solo el cliente los ve); la única Publicar atendida es t2.
    assert _valor(muestras, "grpc_server_started_total", grpc_service=SERVICIO, grpc_method="Publicar",
                  grpc_type="unary") == 1


def test_un_token_no_publica_por_otra_agencia_ni_en_sus_servicios(bootstrap):
    """Con el token de reniec: un evento que nombra a sunarp (también «SUNARP» o « sunarp»)
    deniega la petición entera; uno de reniec con un servicio de sunarp, o sin agencia, es un
    evento rechazado que no llega a gpr.eventos.v1. Nada cambia los números de sunarp."""
    md = autorizacion(TOKEN_RENIEC)
    with ingesta_en_proceso(bootstrap) as (_, _, stub):
        for agencia in ("sunarp", "SUNARP", " sunarp", "reniec "):
            codigo, detalle = error_de(stub.Publicar, _solicitud(
                evento("v1"), evento("a1", caso="c2", agencia=agencia, servicio="certificado-literal")), metadata=md)
            assert codigo == PERMISSION_DENIED and detalle.startswith("eventos[1].agencia_id:"), agencia
        respuesta = stub.Publicar(_solicitud(evento("s1", caso="c3", servicio="certificado-literal"),
                                             evento("s2", caso="c4", agencia="", servicio="certificado-literal"),
                                             evento("v2", caso="c5")), metadata=md, timeout=10)
        assert [(r.evento_id, r.motivo) for r in respuesta.resultados] == [
            ("s1", "servicio_desconocido"), ("s2", "campo_requerido:agencia_id"), ("v2", "")]
        publicados = leer_topico(bootstrap, EVENTOS, 1, extra_s=1.0)
    assert _ids(publicados) == ["v2"]
    assert all(e.agencia_id == "reniec" for _, e, _ in eventos_de(publicados))


# ── flujos: por trozos, con memoria acotada y semántica clara al fallar ───────────────────

def test_flujo_que_falla_a_mitad_dice_cuantos_quedaron_resueltos(bootstrap):
    """Trozos de 4 eventos. Un evento de otra agencia en la posición 6: PERMISSION_DENIED con
    gpr-procesados=4 (el primer trozo publicado; el segundo, con el ajeno, no). El cliente
    reenvía desde el 4 sin el ajeno. Un flujo de 12 con máximo 10: INVALID_ARGUMENT con
    gpr-procesados=8."""
    md = autorizacion(TOKEN_RENIEC)
    with ingesta_en_proceso(bootstrap, GPR_INGESTA_TROZO_EVENTOS="4", GPR_INGESTA_FLUJO_MAXIMO="10") \
            as (servicio, _, stub):
        eventos = [evento(f"m{i}", caso=f"c{i}") for i in range(10)]
        ajeno = evento("ajeno", caso="s1", agencia="sunarp", servicio="certificado-literal")
        with pytest.raises(grpc.RpcError) as error:
            stub.PublicarFlujo(iter(eventos[:6] + [ajeno] + eventos[6:]), metadata=md, timeout=10)
        assert error.value.code() == PERMISSION_DENIED
        assert error.value.details().startswith("eventos[6].agencia_id: el evento 'ajeno' es de la agencia 'sunarp'")
        assert _procesados(error.value) == "4"
        assert _ids(leer_topico(bootstrap, EVENTOS, 4, extra_s=1.0)) == [f"m{i}" for i in range(4)]

        respuesta = stub.PublicarFlujo(iter(eventos[4:]), metadata=md, timeout=10)
        assert [r.evento_id for r in respuesta.resultados] == [f"m{i}" for i in range(4, 10)]
        assert respuesta.aceptados == 6

        otros = [evento(f"n{i:02d}", caso=f"d{i}") for i in range(12)]
        with pytest.raises(grpc.RpcError) as error:
            stub.PublicarFlujo(iter(otros), metadata=md, timeout=10)
        assert error.value.code() == INVALID_ARGUMENT and error.value.details().startswith("eventos:")
        assert _procesados(error.value) == "8"
        publicados = leer_topico(bootstrap, EVENTOS, 18, extra_s=1.0)
        muestras = metricas(servicio.puerto_metricas)
    assert _ids(publicados) == sorted([f"m{i}" for i in range(10)] + [f"n{i:02d}" for i in range(8)])
    assert len(eventos_de(publicados)) == 18
    for motivo in ("agencia_ajena", "demasiados_eventos"):
        assert _valor(muestras, "gpr_ingesta_solicitudes_rechazadas_total", agencia="reniec", motivo=motivo) == 1
    assert _valor(muestras, "gpr_ingesta_eventos_total", agencia="reniec", resultado="aceptado", motivo="") == 18


def test_flujo_con_kafka_caido_a_mitad(tmp_path):
    """Trozos de 3. Tras el acuse del primer trozo el broker se detiene: UNAVAILABLE con
    gpr-procesados=3; el cliente sabe que los 3 primeros están en Kafka y debe reenviar desde
    el cuarto (lo del trozo fallido que sí se hubiera escrito se descarta por repetido)."""
    broker = BrokerEmbebido(registro=tmp_path / "tansu.log")
    broker.iniciar()
    md = autorizacion(TOKEN_RENIEC)
    try:
        with ingesta_en_proceso(broker.bootstrap, GPR_INGESTA_TROZO_EVENTOS="3") as (servicio, _, stub):
            eventos = [evento(f"k{i}", caso=f"c{i}") for i in range(6)]
            vistos = []

            def generador():
                yield from eventos[:3]
                vistos.extend(leer_topico(broker.bootstrap, EVENTOS, 3))
                broker.detener()
                yield from eventos[3:]

            with pytest.raises(grpc.RpcError) as error:
                stub.PublicarFlujo(generador(), metadata=md, timeout=30)
            muestras = metricas(servicio.puerto_metricas)
        assert _valor(muestras, "gpr_ingesta_solicitudes_rechazadas_total", agencia="reniec",
                      motivo="kafka_no_disponible") == 1
        assert error.value.code() == UNAVAILABLE
        assert _procesados(error.value) == "3"
        assert "los primeros 3 eventos del flujo ya quedaron resueltos" in error.value.details()
        assert _ids(vistos) == ["k0", "k1", "k2"]
    finally:
        broker.detener()


def _ocupar_el_turno(stub, md, soltar: threading.Event, eid: str, agotados: Counter):
    """Abre un flujo que envía un evento y espera a `soltar`; vuelve cuando otra llamada ya
    recibe RESOURCE_EXHAUSTED (hasta que el flujo ocupa su turno, la otra aún entra). Cuenta
    en `agotados` los RESOURCE_EXHAUSTED recibidos."""

    def generador():
        yield evento(eid, caso=f"c-{eid}")
        soltar.wait(30)

    futuro = stub.PublicarFlujo.future(generador(), metadata=md, timeout=40)
    fin = time.monotonic() + 20
    while time.monotonic() < fin:
        try:
            stub.Publicar(_solicitud(evento("p-entra", caso="c2")), metadata=md, timeout=10)
            time.sleep(0.05)
        except grpc.RpcError as error:
            assert error.code() == RESOURCE_EXHAUSTED, error
            assert "GPR_INGESTA_PETICIONES_MAXIMAS=1" in error.details()
            agotados["RESOURCE_EXHAUSTED"] += 1
            return futuro
    raise AssertionError("el flujo abierto nunca ocupó el turno")


def test_demasiadas_peticiones_a_la_vez_y_flujo_cancelado(bootstrap):
    """Con GPR_INGESTA_PETICIONES_MAXIMAS=1 y un flujo abierto, otra llamada recibe
    RESOURCE_EXHAUSTED y la salud sigue respondiendo; al terminar el flujo se atiende de nuevo.
    Un flujo que el cliente cancela a la mitad libera su turno y queda contado."""
    md = autorizacion(TOKEN_RENIEC)
    agotados = Counter()
    with ingesta_en_proceso(bootstrap, GPR_INGESTA_PETICIONES_MAXIMAS="1") as (servicio, canal, stub):
        soltar = threading.Event()
        futuro = _ocupar_el_turno(stub, md, soltar, "p1", agotados)
        esperar_salud(canal, SERVING, limite_s=5)
        soltar.set()
        assert futuro.result().aceptados == 1

        _ocupar_el_turno(stub, md, threading.Event(), "p3", agotados).cancel()
        respuesta, fin = None, time.monotonic() + 40
        while respuesta is None and time.monotonic() < fin:
            try:
                respuesta = stub.Publicar(_solicitud(evento("p4", caso="c4")), metadata=md, timeout=10)
            except grpc.RpcError as error:
                assert error.code() == RESOURCE_EXHAUSTED
                agotados["RESOURCE_EXHAUSTED"] += 1
                time.sleep(0.1)
        assert respuesta is not None and respuesta.aceptados == 1
        muestras = metricas(servicio.puerto_metricas)
        publicados = leer_topico(bootstrap, EVENTOS, 2)
    assert {"p1", "p4"} <= set(_ids(publicados))
    assert _valor(muestras, "gpr_ingesta_solicitudes_rechazadas_total", agencia="reniec",
                  motivo="demasiadas_peticiones") == agotados["RESOURCE_EXHAUSTED"]
    # Cada flujo terminó contado: el primero OK; el cancelado, como `cancelada` (o OK, si
    # gRPC terminó su iterador como un cierre normal antes de avisar la cancelación; entonces
    # su trozo pudo publicarse: «sin gpr-procesados, cualquier prefijo»).
    flujos_ok = _valor(muestras, "grpc_server_handled_total", grpc_code="OK", grpc_method="PublicarFlujo",
                       grpc_service=SERVICIO, grpc_type="client_stream")
    canceladas = _valor(muestras, "gpr_ingesta_solicitudes_rechazadas_total", agencia="reniec", motivo="cancelada")
    assert flujos_ok + canceladas == 2 and flujos_ok >= 1


def _estado(pid: int) -> dict[str, int]:
    """VmRSS y VmHWM (pico) del proceso, en bytes."""
    campos = {}
    for linea in Path(f"/proc/{pid}/status").read_text().splitlines():
        nombre, _, valor = linea.partition(":")
        if nombre in ("VmRSS", "VmHWM"):
            campos[nombre] = int(valor.split()[0]) * 1024
    return campos


def _reiniciar_pico(pid: int) -> bool:
    """Pone VmHWM en el RSS actual (Linux ≥ 4.0); False si el sistema no lo deja."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _lanzar_ingesta(procesos, tmp_path, bootstrap, **cambios):
    archivo = tmp_path / "credenciales.yaml"
    archivo.write_text("credenciales:\n" + entrada_yaml("reniec", TOKEN_RENIEC) + "\n")
    puerto = puerto_libre()
    env = env_ingesta(bootstrap, GPR_INGESTA_CREDENCIALES=str(archivo), GPR_GRPC_PUERTO=str(puerto),
                      GPR_CATALOGO=str(RAIZ / "despliegue" / "catalogo.yaml"), **cambios)
    proceso = procesos.lanzar("servicios.ingesta", env)
    return proceso, puerto, int(env["GPR_METRICAS_PUERTO"])


# Un flujo de más de 1 GiB: 12 000 eventos de ~8,4 KB (32 atributos de 250 caracteres, lo más
# que admite el contrato) que se aceptan y 1 200 de ~900 KB que se rechazan por tamaño (mayores
# que GPR_INGESTA_EVENTO_MAXIMO, menores que el mensaje máximo).
ACEPTADOS_GRANDES, RECHAZADOS_GRANDES = 12_000, 1_200
RELLENO_RECHAZADO = 900_000
TROZO_BYTES, MENSAJE_MAXIMO = 2 * MIB, 1 * MIB
# Cota del crecimiento del RSS durante el flujo (docs/ingesta.md, «Memoria»): el trozo en curso
# y el mensaje que lo cierra, en sus copias (bytes recibidos, eventos leídos, registros de
# Kafka, lote del productor), más los búferes de recepción de gRPC y el resto del proceso.
COPIAS = 4
HOLGURA = 64 * MIB
COTA_RSS = COPIAS * (TROZO_BYTES + MENSAJE_MAXIMO) + HOLGURA


def _flujo_grande(total_aceptados=ACEPTADOS_GRANDES, total_rechazados=RECHAZADOS_GRANDES):
    """Los mensajes del flujo, generados de a uno: el evento base serializado seguido de su
    atributo de relleno (dos mensajes protobuf concatenados son su unión)."""
    relleno_si = pb.Evento(atributos={f"r{k:02d}": "a" * 250 for k in range(32)}).SerializeToString()
    relleno_no = pb.Evento(atributos={"relleno": "r" * RELLENO_RECHAZADO}).SerializeToString()
    cada = (total_aceptados + total_rechazados) // total_rechazados
    for i in range(total_aceptados + total_rechazados):
        base = evento(f"big-{i:05d}", caso=f"c{i % 97}", t=B + i).SerializeToString()
        yield base + (relleno_no if i % cada == cada - 1 else relleno_si)


def test_flujo_de_mas_de_un_gigabyte_con_memoria_acotada(bootstrap, procesos, tmp_path):
    """La ingesta como subproceso (para leer su /proc): tras un flujo de calentamiento se mide
    su RSS; durante un flujo de > 1 GiB el pico (VmHWM) no pasa de ese RSS más
    `COTA_RSS` = 4 × (trozo + mensaje máximo) + 64 MiB. Antes el flujo entero quedaba en
    memoria (150 eventos de 3,5 MB: de 84 a 632 MB)."""
    proceso, puerto, _ = _lanzar_ingesta(
        procesos, tmp_path, bootstrap, GPR_INGESTA_TROZO_BYTES=str(TROZO_BYTES),
        GPR_INGESTA_MENSAJE_MAXIMO=str(MENSAJE_MAXIMO), GPR_INGESTA_FLUJO_MAXIMO="13500",
        GPR_INGESTA_PLAZO_KAFKA="60s")
    md = autorizacion(TOKEN_RENIEC)
    opciones = [("grpc.max_send_message_length", 2 * MENSAJE_MAXIMO)]
    with grpc.insecure_channel(f"127.0.0.1:{puerto}", options=opciones) as canal:
        esperar_salud(canal, limite_s=60)
        flujo = canal.stream_unary(f"/{SERVICIO}/PublicarFlujo", request_serializer=None,
                                   response_deserializer=ingesta_pb2.RespuestaPublicar.FromString)
        # Calentamiento: el mismo camino con unos pocos trozos (hilos, conexiones, cachés).
        calentamiento = flujo(_flujo_grande(40, 4), metadata=md, timeout=60)
        assert (calentamiento.aceptados, calentamiento.rechazados) == (40, 4)
        reiniciado = _reiniciar_pico(proceso.pid)
        antes = _estado(proceso.pid)

        enviados = 0

        def contar():
            nonlocal enviados
            for mensaje in _flujo_grande():
                enviados += len(mensaje)
                yield mensaje

        inicio = time.monotonic()
        respuesta = flujo(contar(), metadata=md, timeout=600)
        duracion = time.monotonic() - inicio
        despues = _estado(proceso.pid)
    crecimiento = despues["VmHWM"] - antes["VmRSS"]
    print(f"\nflujo de {enviados / MIB:.0f} MiB en {duracion:.0f} s; RSS antes {antes['VmRSS'] / MIB:.0f} MiB, "
          f"pico durante {despues['VmHWM'] / MIB:.0f} MiB (crecimiento {crecimiento / MIB:.0f} MiB; cota "
          f"{COTA_RSS / MIB:.0f} MiB; pico reiniciado: {reiniciado})")
    assert enviados > 1024 * MIB
    assert (respuesta.aceptados, respuesta.rechazados) == (ACEPTADOS_GRANDES, RECHAZADOS_GRANDES)
    assert {r.motivo for r in respuesta.resultados if not r.aceptado} == {"evento_demasiado_grande"}
    assert crecimiento <= COTA_RSS
    assert proceso.poll() is None


# ── registro durante una caída ─────────────────────────────────────────────────────────────

_FECHA = re.compile(r"^\S+ \S+ ")


def _forma(linea: str) -> str:
    """La línea sin fecha y sin números: las repeticiones de una misma plantilla se igualan."""
    return re.sub(r"\d+", "#", _FECHA.sub("", linea))


def test_con_kafka_caido_registra_una_vez_por_intervalo_y_sana(procesos, tmp_path):
    """La ingesta como proceso (`python -m servicios.ingesta`, con su configuración de registro)
    mientras el broker está caído: reintenta conectar muchas veces (las cuenta
    gpr_ingesta_conexiones_fallidas_total) y recibe peticiones que fallan, pero cada forma de
    línea aparece en su registro a lo más una vez por GPR_REGISTRO_INTERVALO. Vuelto el
    broker, SERVING y publica.
    Antes: ~10 KB/s de líneas de error repetidas."""
    intervalo_s = 30
    broker = BrokerEmbebido(registro=tmp_path / "tansu.log")
    broker.iniciar()
    try:
        proceso, puerto, puerto_metricas = _lanzar_ingesta(
            procesos, tmp_path, broker.bootstrap, GPR_INGESTA_SONDEO="1s", GPR_INGESTA_REINTENTO_MAXIMO="1s",
            GPR_INGESTA_PLAZO_KAFKA="1s", GPR_REGISTRO_INTERVALO=f"{intervalo_s}s")
        md = autorizacion(TOKEN_RENIEC)
        with grpc.insecure_channel(f"127.0.0.1:{puerto}") as canal:
            esperar_salud(canal, limite_s=60)
            stub = ingesta_pb2_grpc.IngestaStub(canal)
            assert stub.Publicar(_solicitud(evento("a1")), metadata=md, timeout=10).aceptados == 1
            antes = len(procesos.registro("ingesta"))
            inicio = time.monotonic()
            broker.detener()
            esperar_salud(canal, NOT_SERVING, limite_s=30)
            # Varios intentos de reconexión (cada uno hasta el plazo de 1 s, más la espera
            # creciente hasta 1 s), y peticiones que fallan mientras tanto.
            fin = time.monotonic() + 60
            while _intentos_fallidos(puerto_metricas) < 6 and time.monotonic() < fin:
                assert error_de(stub.Publicar, _solicitud(evento("a2")), metadata=md)[0] == UNAVAILABLE
                time.sleep(0.3)
            intentos = _intentos_fallidos(puerto_metricas)
            duracion = time.monotonic() - inicio
            caida = procesos.registro("ingesta")[antes:]
            broker.iniciar()
            esperar_salud(canal, SERVING, limite_s=60)
            assert stub.Publicar(_solicitud(evento("a3")), metadata=md, timeout=10).aceptados == 1
    finally:
        broker.detener()
    lineas = [linea for linea in caida.splitlines() if linea.strip()]
    formas = Counter(_forma(linea) for linea in lineas)
    print(f"\n{intentos} intentos de reconexión en {duracion:.0f} s: {len(lineas)} líneas de registro, "
          f"{len(caida)} bytes")
    assert intentos >= 6
    cota = 1 + int(duracion // intervalo_s)
    assert max(formas.values()) <= cota, formas.most_common(3)
    assert "Traceback" not in caida


def _intentos_fallidos(puerto_metricas) -> float:
    return _valor(metricas(puerto_metricas), "gpr_ingesta_conexiones_fallidas_total")
