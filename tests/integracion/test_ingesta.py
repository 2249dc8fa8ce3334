"""Ingesta gRPC contra el broker embebido real y por canales gRPC reales.

Lo esperado se escribe a mano en cada prueba (qué eventos se aceptan, con qué motivo se
rechazan los demás, cuántos registros hay en cada tópico, qué indicadores salen); lo que hay
en Kafka se lee con aiokafka desde el principio de cada partición, contando registros, sin
fiarse de `end_offsets` (docs/decisiones.md).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from apoyo.ingesta import (
    AHORA,
    B,
    E,
    FLUJO_MAXIMO,
    H,
    LOTE_MAXIMO,
    NOT_SERVING,
    PARTICIONES,
    RAIZ,
    SERVING,
    TOKEN_RENIEC,
    TOKEN_SUNARP,
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
from gpr.v1 import indicadores_pb2 as ipb
from gpr.v1 import indicadores_pb2_grpc as ipb_grpc
from gpr.v1 import ingesta_pb2, ingesta_pb2_grpc
from servicios.comun.broker import BrokerEmbebido, puerto_libre
from servicios.comun.eventos import clave_kafka, decodificar
from servicios.comun.topicos import CABECERA_LOTE, CABECERA_MOTIVO, EVENTOS, RECHAZADOS, crear_topicos
from servicios.consulta import config as config_consulta
from servicios.consulta.servidor import ConsultaEnHilo
from servicios.ingesta.credenciales import entrada_yaml, nuevo_token

pytestmark = [pytest.mark.integracion, pytest.mark.timeout(60)]


def _particion_de_un_cliente_kafka(bootstrap, claves):
    """La partición que da un productor de Kafka cualquiera a cada clave (bytes): se envía un
    registro de prueba a un tópico con las mismas particiones y se mira dónde cayó."""
    crear_topicos(bootstrap, PARTICIONES, ["prueba.particiones"])
    productor = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        return {c: productor.send("prueba.particiones", b"x", key=c).get(10).partition for c in claves}
    finally:
        productor.close()


def _lote_de_prueba():
    """Eventos de reniec mezclados con inválidos, y el motivo esperado de cada uno."""
    futuro = evento("f1", caso="c9", t=AHORA + 3600)
    sin_fecha = evento("n1", caso="c9", t=None)
    return [
        (evento("a1", caso="c1", t=B + 1 * H), None),
        (evento("a2", caso="c2", t=B + 2 * H), None),
        (evento("a3", E, caso="c1", t=B + 3 * H), None),
        (evento("x1", caso="c3", servicio="no-existe"), "servicio_desconocido"),
        (evento("a4", caso="c3", t=B + 4 * H, servicio="dni-primera-vez"), None),
        (sin_fecha, "campo_requerido:ocurrido_en"),
        (evento("x2", caso="c4", agencia=""), "campo_requerido:agencia_id"),
        (evento("x3", pb.TIPO_EVENTO_ETAPA_INICIADA, caso="c1", t=B + 4 * H), "campo_requerido:etapa_id"),
        (futuro, "tiempo_futuro"),
        (evento("a6", caso="c2", t=B + 5 * H), None),
        (evento("a7", caso="c5", t=B + 6 * H), None),
    ]


def _comprobar_respuesta(respuesta, lote):
    assert [(r.evento_id, r.aceptado, r.motivo) for r in respuesta.resultados] == [
        (e.evento_id, m is None, m or "") for e, m in lote]
    assert respuesta.aceptados == sum(1 for _, m in lote if m is None)
    assert respuesta.rechazados == sum(1 for _, m in lote if m is not None)


@pytest.mark.parametrize("lotes", ["1", "0"], ids=["lotes", "un-registro-por-evento"])
def test_publica_aceptados_y_rechazados(bootstrap, lotes):
    lote = _lote_de_prueba()
    aceptados = [e for e, m in lote if m is None]
    rechazados = [(e, m) for e, m in lote if m is not None]
    with ingesta_en_proceso(bootstrap, GPR_INGESTA_LOTES=lotes) as (_, _, stub):
        antes = time.time()
        respuesta = stub.Publicar(ingesta_pb2.SolicitudPublicar(eventos=[e for e, _ in lote]),
                                  metadata=autorizacion(TOKEN_RENIEC), timeout=10)
        despues = time.time()
        # Se lee con la ingesta aún en marcha: al detenerse vacía su productor, y eso
        # ocultaría un registro que aún no estuviera en Kafka al responder.
        registros = leer_topico(bootstrap, EVENTOS, len(aceptados), limite_s=2)
        muertos = leer_topico(bootstrap, RECHAZADOS, len(rechazados), limite_s=2)
    _comprobar_respuesta(respuesta, lote)

    publicados = eventos_de(registros)
    assert sorted(e.evento_id for _, e, _ in publicados) == sorted(e.evento_id for e in aceptados)
    for _, e, _ in publicados:
        assert antes - 1 <= e.recibido_en.seconds + e.recibido_en.nanos / 1e9 <= despues + 1
        original = next(a for a in aceptados if a.evento_id == e.evento_id)
        sin_recibido = pb.Evento()
        sin_recibido.CopyFrom(e)
        sin_recibido.ClearField("recibido_en")
        assert sin_recibido == original

    # Cada caso en la partición que le daría cualquier cliente de Kafka a la clave del contrato
    # (clave_kafka: el caso de la agencia), en el orden enviado.
    esperada = _particion_de_un_cliente_kafka(bootstrap, {clave_kafka(e) for e in aceptados})
    assert {e.evento_id: p for p, e, _ in publicados} == {e.evento_id: esperada[clave_kafka(e)] for e in aceptados}
    for caso in {e.caso_id for e in aceptados}:
        assert [e.evento_id for _, e, _ in publicados if e.caso_id == caso] == \
            [e.evento_id for e in aceptados if e.caso_id == caso]
    if lotes == "1":
        # c1 y c2 suman 5 eventos en como mucho 4 particiones: al menos un LoteEventos.
        assert any(es_lote for _, _, es_lote in publicados)
        assert len(registros) < len(aceptados)
        for r in registros:
            if len(decodificar(r.value, r.headers)) > 1:
                assert (CABECERA_LOTE, b"1") in r.headers
    else:
        assert len(registros) == len(aceptados)
        assert all(not es_lote for _, _, es_lote in publicados)
        assert {r.key for r in registros} == {clave_kafka(e) for e in aceptados}

    # Los rechazados, con el evento original y su motivo, en el tópico de rechazados.
    assert len(muertos) == len(rechazados)
    por_id = {pb.Evento.FromString(r.value).evento_id: r for r in muertos}
    for e, motivo in rechazados:
        cabeceras = dict(por_id[e.evento_id].headers)
        assert por_id[e.evento_id].value == e.SerializeToString()
        assert cabeceras[CABECERA_MOTIVO] == motivo.encode()
        assert cabeceras["gpr-detalle"] == f"evento {e.evento_id!r}: {motivo}".encode()
        assert cabeceras["gpr-origen"] == b"ingesta"


def test_publicar_flujo(bootstrap):
    lote = _lote_de_prueba()
    with ingesta_en_proceso(bootstrap) as (_, _, stub):
        respuesta = stub.PublicarFlujo(iter([e for e, _ in lote]), metadata=autorizacion(TOKEN_RENIEC), timeout=10)
        _comprobar_respuesta(respuesta, lote)
        # Un flujo vacío no publica nada y no es un error.
        vacio = stub.PublicarFlujo(iter([]), metadata=autorizacion(TOKEN_RENIEC), timeout=10)
        assert (len(vacio.resultados), vacio.aceptados, vacio.rechazados) == (0, 0, 0)
    aceptados = sorted(e.evento_id for e, m in lote if m is None)
    assert sorted(e.evento_id for _, e, _ in eventos_de(leer_topico(bootstrap, EVENTOS, len(aceptados)))) == aceptados
    assert len(leer_topico(bootstrap, RECHAZADOS, 5)) == sum(1 for _, m in lote if m is not None)


def test_autenticacion_y_agencia(bootstrap):
    validos = [evento("v1", caso="c1", t=B), evento("v2", caso="c2", t=B)]
    pedido = ingesta_pb2.SolicitudPublicar(eventos=validos)
    with ingesta_en_proceso(bootstrap) as (servicio, canal, stub):
        codigo, detalle = error_de(stub.Publicar, pedido)
        assert codigo == grpc.StatusCode.UNAUTHENTICATED and detalle.startswith("authorization:")
        for malo in ([("authorization", "Bearer " + nuevo_token())], [("authorization", f"Basic {TOKEN_RENIEC}")],
                     [("authorization", "Bearer ")], [("authorization", TOKEN_RENIEC)]):
            codigo, detalle = error_de(stub.Publicar, pedido, metadata=malo)
            assert codigo == grpc.StatusCode.UNAUTHENTICATED, malo
            assert detalle.startswith("authorization:") and TOKEN_RENIEC not in detalle
        codigo, _ = error_de(stub.PublicarFlujo, iter(validos))
        assert codigo == grpc.StatusCode.UNAUTHENTICATED

        # Token de sunarp con eventos de reniec: se deniega la petición entera, nada se publica.
        mezcla = [evento("s1", caso="c7", agencia="sunarp", servicio="certificado-literal"), *validos]
        codigo, detalle = error_de(stub.Publicar, ingesta_pb2.SolicitudPublicar(eventos=mezcla),
                                 metadata=autorizacion(TOKEN_SUNARP))
        assert codigo == grpc.StatusCode.PERMISSION_DENIED
        assert detalle.startswith("eventos[1].agencia_id:") and "'v1'" in detalle and "reniec" in detalle
        codigo, detalle = error_de(stub.PublicarFlujo, iter(mezcla), metadata=autorizacion(TOKEN_SUNARP))
        assert codigo == grpc.StatusCode.PERMISSION_DENIED and detalle.startswith("eventos[1].agencia_id:")

        # El token válido de la agencia publica; es lo único que llega a Kafka.
        respuesta = stub.Publicar(pedido, metadata=autorizacion(TOKEN_RENIEC), timeout=10)
        assert (respuesta.aceptados, respuesta.rechazados) == (2, 0)
        rechazadas = {(dict(e)["agencia"], dict(e)["motivo"]): v for (n, e), v in metricas(servicio.puerto_metricas).items()
                      if n == "gpr_ingesta_solicitudes_rechazadas_total"}
    assert sorted(e.evento_id for _, e, _ in eventos_de(leer_topico(bootstrap, EVENTOS, 2))) == ["v1", "v2"]
    assert leer_topico(bootstrap, RECHAZADOS, 0) == []
    # Sin token: la primera llamada, «Basic», «Bearer » vacío, el token sin esquema y el flujo.
    assert rechazadas == {("", "sin_token"): 5, ("", "token_desconocido"): 1, ("sunarp", "agencia_ajena"): 2}


def test_limites_de_eventos_por_llamada(bootstrap):
    def lote(n):
        return [evento(f"l{i}", caso=f"c{i}", t=B) for i in range(n)]

    with ingesta_en_proceso(bootstrap) as (_, _, stub):
        codigo, detalle = error_de(stub.Publicar, ingesta_pb2.SolicitudPublicar(eventos=lote(LOTE_MAXIMO + 1)),
                                 metadata=autorizacion(TOKEN_RENIEC))
        assert codigo == grpc.StatusCode.INVALID_ARGUMENT
        assert detalle.startswith("eventos:") and str(LOTE_MAXIMO) in detalle
        codigo, detalle = error_de(stub.PublicarFlujo, iter(lote(FLUJO_MAXIMO + 1)), metadata=autorizacion(TOKEN_RENIEC))
        assert codigo == grpc.StatusCode.INVALID_ARGUMENT
        assert detalle.startswith("eventos:") and str(FLUJO_MAXIMO) in detalle
        # Justo en el máximo sí.
        assert stub.Publicar(ingesta_pb2.SolicitudPublicar(eventos=lote(LOTE_MAXIMO)),
                             metadata=autorizacion(TOKEN_RENIEC), timeout=10).aceptados == LOTE_MAXIMO
    assert len(eventos_de(leer_topico(bootstrap, EVENTOS, LOTE_MAXIMO))) == LOTE_MAXIMO


def test_kafka_caido_responde_unavailable(tmp_path):
    """Con el broker detenido, UNAVAILABLE dentro del plazo de Kafka (2 s) más un margen; nunca OK."""
    broker = BrokerEmbebido(registro=tmp_path / "tansu.log")
    broker.iniciar()
    try:
        with ingesta_en_proceso(broker.bootstrap) as (_, _, stub):
            pedido = ingesta_pb2.SolicitudPublicar(eventos=[evento("k1", caso="c1"), evento("k2", caso="c2")])
            assert stub.Publicar(pedido, metadata=autorizacion(TOKEN_RENIEC), timeout=10).aceptados == 2
            broker.detener()
            for llamada, argumento in ((stub.Publicar, pedido), (stub.PublicarFlujo, iter(pedido.eventos))):
                inicio = time.monotonic()
                codigo, detalle = error_de(llamada, argumento, metadata=autorizacion(TOKEN_RENIEC))
                assert codigo == grpc.StatusCode.UNAVAILABLE, detalle
                assert time.monotonic() - inicio < 5
                assert "reintente" in detalle
    finally:
        broker.detener()


def test_salud_sin_kafka_y_al_detener(tmp_path):
    """NOT_SERVING (y UNAVAILABLE) mientras no hay broker; SERVING al conectarse; NOT_SERVING al parar."""
    puerto = puerto_libre()
    broker = BrokerEmbebido(puerto=puerto, registro=tmp_path / "tansu.log")
    try:
        with ingesta_en_proceso(broker.bootstrap, esperar=False) as (servicio, canal, stub):
            salud = health_pb2_grpc.HealthStub(canal)
            time.sleep(0.5)
            for nombre in ("", "gpr.v1.Ingesta"):
                assert salud.Check(health_pb2.HealthCheckRequest(service=nombre), timeout=2).status == NOT_SERVING
            codigo, _ = error_de(stub.Publicar, ingesta_pb2.SolicitudPublicar(eventos=[evento("h1")]),
                               metadata=autorizacion(TOKEN_RENIEC))
            assert codigo == grpc.StatusCode.UNAVAILABLE

            broker.iniciar()
            esperar_salud(canal, servicio="gpr.v1.Ingesta")
            esperar_salud(canal)
            assert stub.Publicar(ingesta_pb2.SolicitudPublicar(eventos=[evento("h1")]),
                                 metadata=autorizacion(TOKEN_RENIEC), timeout=10).aceptados == 1

            observacion = salud.Watch(health_pb2.HealthCheckRequest(service="gpr.v1.Ingesta"), timeout=10)
            assert next(observacion).status == SERVING
            servicio.detener()
            assert next(observacion).status == NOT_SERVING
            observacion.cancel()
    finally:
        broker.detener()


def test_reflexion(bootstrap):
    with ingesta_en_proceso(bootstrap) as (_, canal, _):
        base = ProtoReflectionDescriptorDatabase(canal)
        assert {"gpr.v1.Ingesta", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= \
            set(base.get_services())
        descriptor = DescriptorPool(base).FindServiceByName("gpr.v1.Ingesta")
        assert {m.name for m in descriptor.methods} == {"Publicar", "PublicarFlujo"}
        assert descriptor.methods_by_name["PublicarFlujo"].client_streaming
        assert descriptor.methods_by_name["Publicar"].output_type.full_name == "gpr.v1.RespuestaPublicar"


def test_metricas(bootstrap):
    with ingesta_en_proceso(bootstrap) as (servicio, _, stub):
        lote = _lote_de_prueba()
        stub.Publicar(ingesta_pb2.SolicitudPublicar(eventos=[e for e, _ in lote]),
                      metadata=autorizacion(TOKEN_RENIEC), timeout=10)
        stub.Publicar(ingesta_pb2.SolicitudPublicar(eventos=[evento("s1", caso="c1", agencia="sunarp",
                                                                    servicio="certificado-literal")]),
                      metadata=autorizacion(TOKEN_SUNARP), timeout=10)
        stub.PublicarFlujo(iter([evento("s2", caso="c2", agencia="sunarp", servicio="certificado-literal")]),
                           metadata=autorizacion(TOKEN_SUNARP), timeout=10)
        for _ in range(3):
            error_de(stub.Publicar, ingesta_pb2.SolicitudPublicar())
        error_de(stub.Publicar, ingesta_pb2.SolicitudPublicar(eventos=[evento("z")] * (LOTE_MAXIMO + 1)),
               metadata=autorizacion(TOKEN_RENIEC))
        texto = urllib.request.urlopen(f"http://127.0.0.1:{servicio.puerto_metricas}/metrics", timeout=5).read().decode()
    familias = {f.name: f for f in text_string_to_metric_families(texto)}

    def metodo(m):
        return f"{m.labels['grpc_service']}/{m.labels['grpc_method']}"

    peticiones = {(metodo(m), m.labels["grpc_code"]): m.value
                  for m in familias["grpc_server_handled"].samples if m.name == "grpc_server_handled_total"}
    publicar, flujo = "gpr.v1.Ingesta/Publicar", "gpr.v1.Ingesta/PublicarFlujo"
    assert peticiones[(publicar, "OK")] == 2
    assert peticiones[(publicar, "UNAUTHENTICATED")] == 3
    assert peticiones[(publicar, "INVALID_ARGUMENT")] == 1
    assert peticiones[(flujo, "OK")] == 1
    # Las consultas de salud de la espera a SERVING también se cuentan.
    assert peticiones[("grpc.health.v1.Health/Check", "OK")] >= 1
    tipos = {metodo(m): m.labels["grpc_type"] for m in familias["grpc_server_handled"].samples}
    assert tipos[publicar] == "unary" and tipos[flujo] == "client_stream"
    conteos = {metodo(m): m.value for m in familias["grpc_server_handling_seconds"].samples
               if m.name == "grpc_server_handling_seconds_count"}
    assert conteos[publicar] == 6 and conteos[flujo] == 1
    empezadas = {metodo(m): m.value for m in familias["grpc_server_started"].samples
                 if m.name == "grpc_server_started_total"}
    assert empezadas[publicar] == 6 and empezadas[flujo] == 1

    eventos = {(m.labels["agencia"], m.labels["resultado"], m.labels["motivo"]): m.value
               for m in familias["gpr_ingesta_eventos"].samples if m.name.endswith("_total")}
    assert eventos == {
        ("reniec", "aceptado", ""): 6,
        ("reniec", "rechazado", "servicio_desconocido"): 1,
        ("reniec", "rechazado", "campo_requerido"): 3,
        ("reniec", "rechazado", "tiempo_futuro"): 1,
        ("sunarp", "aceptado", ""): 2,
    }
    assert familias["gpr_ingesta_kafka_listo"].samples[0].value == 1
    rechazadas = {(m.labels["agencia"], m.labels["motivo"]): m.value
                  for m in familias["gpr_ingesta_solicitudes_rechazadas"].samples if m.name.endswith("_total")}
    assert rechazadas == {("", "sin_token"): 3, ("reniec", "demasiados_eventos"): 1}
    if shutil.which("promtool"):
        revision = subprocess.run(["promtool", "check", "metrics"], input=texto, text=True, capture_output=True)
        assert revision.returncode == 0, revision.stdout + revision.stderr


def _certificado(directorio: Path) -> tuple[Path, Path]:
    cert, clave = directorio / "cert.pem", directorio / "clave.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(clave), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, clave


@pytest.mark.skipif(shutil.which("openssl") is None, reason="sin el programa openssl para crear un certificado de prueba")
def test_tls(bootstrap, tmp_path):
    cert, clave = _certificado(tmp_path)
    with ingesta_en_proceso(bootstrap, esperar=False, GPR_TLS_CERT=str(cert), GPR_TLS_KEY=str(clave)) as (servicio, _, _):
        credenciales = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{servicio.puerto_grpc}", credenciales) as canal:
            esperar_salud(canal)
            respuesta = ingesta_pb2_grpc.IngestaStub(canal).Publicar(
                ingesta_pb2.SolicitudPublicar(eventos=[evento("t1")]), metadata=autorizacion(TOKEN_RENIEC), timeout=10)
            assert respuesta.aceptados == 1
        # Sin TLS el servidor no responde.
        with grpc.insecure_channel(f"127.0.0.1:{servicio.puerto_grpc}") as canal:
            codigo, _ = error_de(health_pb2_grpc.HealthStub(canal).Check, health_pb2.HealthCheckRequest())
            assert codigo == grpc.StatusCode.UNAVAILABLE


def test_proceso_recarga_credenciales_y_termina_con_sigterm(bootstrap, procesos, tmp_path):
    token_nuevo = nuevo_token()
    archivo = tmp_path / "credenciales.yaml"
    archivo.write_text("credenciales:\n" + entrada_yaml("reniec", TOKEN_RENIEC, "sistema de trámites") + "\n")
    puerto = puerto_libre()
    env = env_ingesta(bootstrap, GPR_INGESTA_CREDENCIALES=str(archivo), GPR_GRPC_PUERTO=str(puerto),
               GPR_CATALOGO=str(RAIZ / "despliegue" / "catalogo.yaml"))
    proceso = procesos.lanzar("servicios.ingesta", env)
    pedido = ingesta_pb2.SolicitudPublicar(eventos=[evento("p1")])
    with grpc.insecure_channel(f"127.0.0.1:{puerto}") as canal:
        esperar_salud(canal, limite_s=30)
        stub = ingesta_pb2_grpc.IngestaStub(canal)
        assert stub.Publicar(pedido, metadata=autorizacion(TOKEN_RENIEC), timeout=10).aceptados == 1
        assert error_de(stub.Publicar, pedido, metadata=autorizacion(token_nuevo))[0] == grpc.StatusCode.UNAUTHENTICATED

        # Rotación: se agrega el token nuevo, se quita el viejo, y SIGHUP.
        archivo.write_text("credenciales:\n" + entrada_yaml("reniec", token_nuevo) + "\n")
        proceso.send_signal(signal.SIGHUP)
        fin = time.monotonic() + 10
        while True:
            try:
                stub.Publicar(pedido, metadata=autorizacion(token_nuevo), timeout=10)
                break
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.UNAUTHENTICATED and time.monotonic() < fin
                time.sleep(0.1)
        assert error_de(stub.Publicar, pedido, metadata=autorizacion(TOKEN_RENIEC))[0] == grpc.StatusCode.UNAUTHENTICATED

        # Un archivo roto no se aplica: sigue valiendo el token vigente.
        archivo.write_text("credenciales:\n  - {agencia: onpe, token_sha256: 'xyz'}\n")
        proceso.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert stub.Publicar(pedido, metadata=autorizacion(token_nuevo), timeout=10).aceptados == 1

        proceso.send_signal(signal.SIGTERM)
        assert proceso.wait(15) == 0
    registro = procesos.registro("ingesta")
    assert "no se recargaron las credenciales" in registro and "credenciales[0].token_sha256" in registro
    assert "Traceback" not in registro
    for token in (TOKEN_RENIEC, token_nuevo):
        assert token not in registro


def test_configuracion_invalida_sale_con_2(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "GPR_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    resultado = subprocess.run([sys.executable, "-m", "servicios.ingesta"], env=env, cwd=RAIZ,
                               capture_output=True, text=True, timeout=30)
    assert resultado.returncode == 2 and "GPR_INGESTA_CREDENCIALES" in resultado.stderr


def _metricas_procesador(puerto):
    texto = urllib.request.urlopen(f"http://127.0.0.1:{puerto}/metrics", timeout=5).read().decode()
    # Cada muestra sumada sobre sus etiquetas (p. ej. los aceptados, por agencia).
    sumas: dict[str, float] = {}
    for familia in text_string_to_metric_families(texto):
        for muestra in familia.samples:
            sumas[muestra.name] = sumas.get(muestra.name, 0) + muestra.value
    return sumas


def test_de_punta_a_punta_con_el_procesador(bootstrap, procesos, tmp_path):
    """Eventos por la Ingesta (en LoteEventos, con repetidos) → procesador → indicadores por gRPC.

    reniec/dni-duplicado, plazo 7 días. La marca de agua de reniec es B+30h (r8), así que la
    ventana 24h abarca los cubos [B+7h, B+30h]:
      solicitudes: r2 (8h), r4 (12h), r8 (30h), r6 (25h), r7 (29h) = 5; r1 (1h) y r3 (2h) quedan
      fuera; los repetidos de r2 (mismo lote) y r4 (otra llamada) no cuentan.
      cumplimiento_plazo: entregas en la ventana e2 (12 h, en plazo) y e3 (25 h con plazo
      propio de 1 día, fuera) = 1/2.
    reniec/dni-primera-vez: r5 (15h) = 1 solicitud. sunarp/certificado-literal: s1 = 1 (su
    propia marca de agua).

    El flujo (trozos de 2) falla primero a la mitad: r6 y r7 se publican en el primer trozo y
    un evento de sunarp detiene el flujo (PERMISSION_DENIED, gpr-procesados=2). El cliente
    reintenta como lo haría sin mirar ese metadato, con el flujo entero corregido: r6 y r7
    llegan dos veces y el procesador los cuenta una (4 repetidos en total, no 2).
    """
    particiones = "2"
    puerto_metricas = puerto_libre()
    procesos.lanzar("servicios.procesador", {
        "GPR_KAFKA_BOOTSTRAP": bootstrap, "GPR_ALMACEN": "memoria", "GPR_DIRECTORIO_DATOS": str(tmp_path / "datos"),
        "GPR_METRICAS_PUERTO": str(puerto_metricas), "GPR_PARTICIONES": particiones,
        "GPR_INTERVALO_PUBLICACION": "0.2",
    })
    lote1 = [
        evento("r1", caso="c1", t=B + 1 * H),
        evento("r2", caso="c2", t=B + 8 * H),
        evento("e2", E, caso="c2", t=B + 20 * H),
        evento("r3", caso="c3", t=B + 2 * H, plazo=1),
        evento("e3", E, caso="c3", t=B + 27 * H),
        evento("r4", caso="c4", t=B + 12 * H),
        evento("r2", caso="c2", t=B + 8 * H),
        evento("r8", caso="c8", t=B + 30 * H),
    ]
    lote2 = [
        evento("r4", caso="c4", t=B + 12 * H),
        evento("r5", caso="c5", t=B + 15 * H, servicio="dni-primera-vez"),
        evento("x1", caso="c9", t=B + 15 * H, servicio="no-existe"),
    ]
    flujo = [evento("r6", caso="c6", t=B + 25 * H), evento("r7", caso="c7", t=B + 29 * H)]
    ajeno = evento("s9", caso="s-c9", t=B + 5 * H, agencia="sunarp", servicio="certificado-literal")
    sunarp = [evento("s1", caso="s-c1", t=B + 5 * H, agencia="sunarp", servicio="certificado-literal")]
    with ingesta_en_proceso(bootstrap, GPR_PARTICIONES=particiones, GPR_INGESTA_TROZO_EVENTOS="2") as (_, _, stub):
        respuestas = [
            stub.Publicar(ingesta_pb2.SolicitudPublicar(eventos=lote1), metadata=autorizacion(TOKEN_RENIEC), timeout=10),
            stub.Publicar(ingesta_pb2.SolicitudPublicar(eventos=lote2), metadata=autorizacion(TOKEN_RENIEC), timeout=10),
        ]
        with pytest.raises(grpc.RpcError) as fallo:
            stub.PublicarFlujo(iter(flujo + [ajeno]), metadata=autorizacion(TOKEN_RENIEC), timeout=10)
        assert fallo.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert dict(fallo.value.trailing_metadata())["gpr-procesados"] == "2"
        respuestas += [
            stub.PublicarFlujo(iter(flujo), metadata=autorizacion(TOKEN_RENIEC), timeout=10),
            stub.Publicar(ingesta_pb2.SolicitudPublicar(eventos=sunarp), metadata=autorizacion(TOKEN_SUNARP), timeout=10),
        ]
    assert [(r.aceptados, r.rechazados) for r in respuestas] == [(8, 0), (2, 1), (2, 0), (1, 0)]

    # El procesador vio cada evento aceptado una vez: 11 distintos y 4 repetidos (r2, r4, y
    # r6 y r7 del flujo reintentado).
    fin = time.monotonic() + 45
    contadores = {}
    while time.monotonic() < fin:
        with contextlib.suppress(OSError):
            contadores = _metricas_procesador(puerto_metricas)
            if contadores.get("gpr_procesador_eventos_aceptados_total", 0) + \
                    contadores.get("gpr_procesador_eventos_duplicados_total", 0) >= 15:
                break
        time.sleep(0.2)
    assert (contadores.get("gpr_procesador_eventos_aceptados_total"),
            contadores.get("gpr_procesador_eventos_duplicados_total")) == (11, 4), procesos.registro("procesador")[-3000:]

    esperado = {
        ("reniec", "dni-duplicado", "solicitudes"): (5.0, 5),
        ("reniec", "dni-duplicado", "cumplimiento_plazo"): (0.5, 2),
        ("reniec", "dni-primera-vez", "solicitudes"): (1.0, 1),
        ("sunarp", "certificado-literal", "solicitudes"): (1.0, 1),
    }
    cfg = config_consulta.leer({"GPR_KAFKA_BOOTSTRAP": bootstrap, "GPR_GRPC_HOST": "127.0.0.1",
                                "GPR_GRPC_PUERTO": "0", "GPR_METRICAS_PUERTO": "0"})
    with ConsultaEnHilo(cfg) as consulta, grpc.insecure_channel(f"127.0.0.1:{consulta.puerto_grpc}") as canal:
        esperar_salud(canal, limite_s=30)
        indicadores = ipb_grpc.IndicadoresStub(canal)
        observado = {}
        # Todo está procesado: se espera a que la última instantánea de cada serie llegue a la
        # vista, y luego a dos intervalos de publicación más, por si siguiera cambiando.
        for intento in range(2):
            fin = time.monotonic() + 20
            while time.monotonic() < fin:
                for clave in esperado:
                    with contextlib.suppress(grpc.RpcError):
                        i = indicadores.ObtenerIndicador(ipb.SolicitudIndicador(
                            agencia_id=clave[0], servicio_id=clave[1], indicador=clave[2], ventana="24h"), timeout=2)
                        observado[clave] = (round(i.valor, 9), i.muestras)
                if observado == esperado:
                    break
                time.sleep(0.2)
            time.sleep(0.5)
    assert observado == esperado, procesos.registro("procesador")[-3000:]
    assert "Traceback" not in procesos.registro("procesador")
    # Lo publicado salió de pasadas de publicación, y cada una quedó medida.
    metricas = _metricas_procesador(puerto_metricas)
    assert metricas["gpr_procesador_publicacion_segundos_count"] >= 1
    assert metricas["gpr_procesador_publicacion_segundos_sum"] > 0
