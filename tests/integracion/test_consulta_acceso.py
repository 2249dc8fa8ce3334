"""Control de acceso de `Indicadores` por un canal gRPC real con TLS: el certificado lo crea
el mismo guion que usa docker compose (despliegue/consulta/generar-tls.sh, con openssl) y
los tokens van en un archivo como el de producción (solo sus hashes).

Lo esperado (qué series ve cada token) se calcula en la prueba a partir de lo publicado.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time

import yaml

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from apoyo.kafka import publicar
from conftest import CATALOGO, RAIZ
from gpr.v1 import indicadores_pb2 as ipb
from gpr.v1 import indicadores_pb2_grpc as ipb_grpc
from servicios.comun.broker import puerto_libre
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.indicadores import clave_serie
from servicios.comun.topicos import INDICADORES, crear_topicos
from servicios.consulta import config as config_consulta
from servicios.consulta.acceso import cargar_tokens, entrada_yaml, nuevo_token
from servicios.consulta.servidor import ConsultaEnHilo

pytestmark = [pytest.mark.integracion, pytest.mark.timeout(120),
              pytest.mark.skipif(shutil.which("openssl") is None, reason="sin openssl para crear el certificado")]

GENERAR_TLS = RAIZ / "despliegue" / "consulta" / "generar-tls.sh"
SERVING = health_pb2.HealthCheckResponse.SERVING

TOKEN_PORTAL, TOKEN_RENIEC, TOKEN_DOS = nuevo_token(), nuevo_token(), nuevo_token()
ALCANCES = {TOKEN_PORTAL: ["*"], TOKEN_RENIEC: ["reniec"], TOKEN_DOS: ["minsa", "sunarp"]}
VISIBLES = {TOKEN_PORTAL: {"reniec", "sunarp", "minsa"}, TOKEN_RENIEC: {"reniec"}, TOKEN_DOS: {"minsa", "sunarp"}}


def _ind(agencia, servicio, indicador, valor, ventana="24h", incumple=False):
    i = ipb.Indicador(agencia_id=agencia, servicio_id=servicio, indicador=indicador, ventana=ventana, valor=valor,
                      muestras=10)
    if incumple:
        i.meta.CopyFrom(ipb.EvaluacionMeta(operador=">=", valor=0.9, estado=ipb.ESTADO_CUMPLIMIENTO_INCUMPLE, severidad="critica"))
    return i


SERIES = [_ind(a, s, i, v, ventana=w, incumple=(i == "cumplimiento_plazo" and v < 0.9))
          for a, servicios in (("minsa", ["cita"]), ("reniec", ["dni", "pasaporte"]), ("sunarp", ["literal"]))
          for s in servicios
          for i, v in (("cumplimiento_plazo", 0.8 if a != "minsa" else 0.95), ("solicitudes", 40.0))
          for w in ("24h", "7d")]


def _registro(i):
    return (clave_serie(i.agencia_id, i.servicio_id, i.indicador, i.ventana).encode(), i.SerializeToString())


def _tupla(i):
    return (i.agencia_id, i.servicio_id, i.indicador, i.ventana, i.valor)


def _tls(directorio):
    subprocess.run(["sh", str(GENERAR_TLS), str(directorio), "DNS:localhost,IP:127.0.0.1"], check=True,
                   capture_output=True)
    return directorio / "ca.crt", directorio / "tls.crt", directorio / "tls.key"


@pytest.fixture
def consulta(bootstrap, tmp_path):
    ca, cert, clave = _tls(tmp_path / "tls")
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("tokens:\n" + "\n".join(entrada_yaml(t, a, "prueba") for t, a in ALCANCES.items()) + "\n")
    crear_topicos(bootstrap, 2, [INDICADORES])
    publicar(bootstrap, [_registro(i) for i in SERIES], topico=INDICADORES)
    puerto_salud = puerto_libre()
    cfg = config_consulta.leer({
        "GPR_KAFKA_BOOTSTRAP": bootstrap, "GPR_GRPC_HOST": "127.0.0.1", "GPR_GRPC_PUERTO": "0",
        "GPR_METRICAS_PUERTO": "0", "GPR_GRPC_GRACIA": "1s", "GPR_CATALOGO": str(CATALOGO),
        "GPR_CONSULTA_TLS_CERT": str(cert), "GPR_CONSULTA_TLS_KEY": str(clave),
        "GPR_CONSULTA_TOKENS": str(tokens), "GPR_CONSULTA_SALUD_PUERTO": str(puerto_salud)})
    with ConsultaEnHilo(cfg) as servicio:
        canal = grpc.secure_channel(f"localhost:{servicio.puerto_grpc}", grpc.ssl_channel_credentials(ca.read_bytes()))
        _esperar_serving(canal)
        yield servicio, canal, ca, puerto_salud
        canal.close()


def _esperar_serving(canal, limite_s=30):
    salud = health_pb2_grpc.HealthStub(canal)
    fin = time.monotonic() + limite_s
    while True:
        try:
            if salud.Check(health_pb2.HealthCheckRequest(), timeout=2).status == SERVING:
                return
        except grpc.RpcError:
            pass
        assert time.monotonic() < fin, "la consulta no llegó a SERVING"
        time.sleep(0.1)


def _con(token):
    return [("authorization", f"Bearer {token}")]


def _codigo(llamada, peticion, **opciones):
    with pytest.raises(grpc.RpcError) as error:
        respuesta = llamada(peticion, timeout=5, **opciones)
        if hasattr(respuesta, "__next__"):
            next(respuesta)
    return error.value.code(), error.value.details()


def _metodos(stub):
    """Cada método de Indicadores con una petición válida para reniec."""
    return {
        "ObtenerIndicador": (stub.ObtenerIndicador, ipb.SolicitudIndicador(
            agencia_id="reniec", servicio_id="dni", indicador="solicitudes", ventana="24h")),
        "ListarIndicadores": (stub.ListarIndicadores, ipb.FiltroIndicadores()),
        "ObtenerHistorial": (stub.ObtenerHistorial, ipb.SolicitudHistorial(
            agencia_id="reniec", servicio_id="dni", indicador="solicitudes", ventana="24h")),
        "ObtenerTablero": (stub.ObtenerTablero, ipb.SolicitudTablero(agencia_id="reniec")),
        "ListarIncumplimientos": (stub.ListarIncumplimientos, ipb.FiltroIncumplimientos()),
        "SuscribirIndicadores": (stub.SuscribirIndicadores, ipb.FiltroIndicadores()),
    }


def test_sin_token_valido_unauthenticated_en_cada_metodo(consulta):
    _, canal, _, _ = consulta
    stub = ipb_grpc.IndicadoresStub(canal)
    metodos = _metodos(stub)
    assert set(metodos) == set(ipb.DESCRIPTOR.services_by_name["Indicadores"].methods_by_name)
    malos = [None, [("authorization", "Bearer ")], [("authorization", f"Basic {TOKEN_PORTAL}")],
             [("authorization", "Bearer gpr_lectura_inventado")], [("authorization", "Bearer " + "x" * 4000)],
             [("authorization", TOKEN_PORTAL)]]
    for nombre, (llamada, peticion) in metodos.items():
        for metadatos in malos:
            codigo, detalle = _codigo(llamada, peticion, metadata=metadatos)
            assert codigo == grpc.StatusCode.UNAUTHENTICATED, (nombre, metadatos and metadatos[0][1][:30], detalle)
            assert detalle.startswith("authorization:") and TOKEN_PORTAL not in detalle and "xxxx" not in detalle
        # Con un token válido, el mismo pedido funciona.
        respuesta = llamada(peticion, timeout=5, metadata=_con(TOKEN_PORTAL))
        if nombre == "SuscribirIndicadores":
            assert next(respuesta).agencia_id
            respuesta.cancel()


def test_salud_y_reflexion_abiertas_y_salud_en_claro(consulta):
    _, canal, _, puerto_salud = consulta
    assert health_pb2_grpc.HealthStub(canal).Check(health_pb2.HealthCheckRequest(), timeout=5).status == SERVING
    assert "gpr.v1.Indicadores" in set(ProtoReflectionDescriptorDatabase(canal).get_services())
    # El puerto en claro (para las sondas de Kubernetes) solo tiene la salud.
    with grpc.insecure_channel(f"127.0.0.1:{puerto_salud}") as claro:
        salud = health_pb2_grpc.HealthStub(claro)
        for nombre in ("", "gpr.v1.Indicadores"):
            assert salud.Check(health_pb2.HealthCheckRequest(service=nombre), timeout=5).status == SERVING
        codigo, _ = _codigo(ipb_grpc.IndicadoresStub(claro).ListarIndicadores, ipb.FiltroIndicadores(),
                            metadata=_con(TOKEN_PORTAL))
        assert codigo == grpc.StatusCode.UNIMPLEMENTED


def test_solo_tls_con_la_ca_correcta(consulta, tmp_path):
    servicio, _, _, _ = consulta
    # En claro contra el puerto TLS: no hay conversación posible.
    with grpc.insecure_channel(f"127.0.0.1:{servicio.puerto_grpc}") as claro:
        codigo, _ = _codigo(ipb_grpc.IndicadoresStub(claro).ListarIndicadores, ipb.FiltroIndicadores(),
                            metadata=_con(TOKEN_PORTAL))
        assert codigo == grpc.StatusCode.UNAVAILABLE
    # Con la CA de otro: el cliente no confía en el servidor.
    otra_ca, _, _ = _tls(tmp_path / "otra")
    with grpc.secure_channel(f"localhost:{servicio.puerto_grpc}",
                             grpc.ssl_channel_credentials(otra_ca.read_bytes())) as ajeno:
        codigo, _ = _codigo(ipb_grpc.IndicadoresStub(ajeno).ListarIndicadores, ipb.FiltroIndicadores(),
                            metadata=_con(TOKEN_PORTAL))
        assert codigo == grpc.StatusCode.UNAVAILABLE


def _listar_todo(stub, token, **filtro):
    vistos, siguiente = [], ""
    while True:
        pagina = stub.ListarIndicadores(ipb.FiltroIndicadores(tamano_pagina=3, token_pagina=siguiente, **filtro),
                                        timeout=5, metadata=_con(token))
        vistos += pagina.indicadores
        siguiente = pagina.siguiente_pagina
        if not siguiente:
            return vistos


@pytest.mark.parametrize("token", [TOKEN_PORTAL, TOKEN_RENIEC, TOKEN_DOS], ids=["portal", "reniec", "minsa+sunarp"])
def test_cada_token_lista_solo_sus_agencias(consulta, token):
    _, canal, _, _ = consulta
    stub = ipb_grpc.IndicadoresStub(canal)
    visibles = VISIBLES[token]
    esperadas = sorted(_tupla(i) for i in SERIES if i.agencia_id in visibles)
    assert [_tupla(i) for i in _listar_todo(stub, token)] == esperadas
    incumplen = stub.ListarIncumplimientos(ipb.FiltroIncumplimientos(), timeout=5, metadata=_con(token)).indicadores
    assert sorted(_tupla(i) for i in incumplen) == sorted(
        _tupla(i) for i in SERIES if i.agencia_id in visibles and i.meta.estado == ipb.ESTADO_CUMPLIMIENTO_INCUMPLE)
    for agencia in ("reniec", "sunarp", "minsa"):
        pedidos = [
            (stub.ObtenerIndicador, ipb.SolicitudIndicador(agencia_id=agencia, servicio_id="x", indicador="solicitudes",
                                                           ventana="24h")),
            (stub.ListarIndicadores, ipb.FiltroIndicadores(agencia_id=agencia)),
            (stub.ObtenerHistorial, ipb.SolicitudHistorial(agencia_id=agencia, servicio_id="x", indicador="solicitudes",
                                                           ventana="24h")),
            (stub.ObtenerTablero, ipb.SolicitudTablero(agencia_id=agencia)),
            (stub.ListarIncumplimientos, ipb.FiltroIncumplimientos(agencia_id=agencia)),
            (stub.SuscribirIndicadores, ipb.FiltroIndicadores(agencia_id=agencia)),
        ]
        for llamada, peticion in pedidos:
            if agencia in visibles:
                continue
            codigo, detalle = _codigo(llamada, peticion, metadata=_con(token))
            assert codigo == grpc.StatusCode.PERMISSION_DENIED, (agencia, llamada, detalle)
            assert detalle == f"agencia_id: este token no puede leer la agencia {agencia!r}"
        if agencia in visibles:
            assert [_tupla(i) for i in _listar_todo(stub, token, agencia_id=agencia)] == sorted(
                _tupla(i) for i in SERIES if i.agencia_id == agencia)
            tablero = stub.ObtenerTablero(ipb.SolicitudTablero(agencia_id=agencia), timeout=5, metadata=_con(token))
            assert tablero.agencia_id == agencia


def test_la_suscripcion_sin_filtro_entrega_solo_el_alcance(bootstrap, consulta):
    _, canal, _, _ = consulta
    stub = ipb_grpc.IndicadoresStub(canal)
    flujo = stub.SuscribirIndicadores(ipb.FiltroIndicadores(ventana="24h"), timeout=30, metadata=_con(TOKEN_RENIEC))
    iniciales = [i for i in SERIES if i.agencia_id == "reniec" and i.ventana == "24h"]
    recibidos = []
    listo = threading.Event()

    def leer():
        for i in flujo:
            recibidos.append(_tupla(i))
            if len(recibidos) == len(iniciales) + 1:
                listo.set()
                return

    lector = threading.Thread(target=leer, daemon=True)
    lector.start()
    # Cambios de otras agencias primero: no deben llegar; luego uno de reniec, que sí.
    publicar(bootstrap, [_registro(_ind("sunarp", "literal", "solicitudes", 99.0)),
                         _registro(_ind("minsa", "cita", "solicitudes", 98.0))], topico=INDICADORES)
    publicar(bootstrap, [_registro(_ind("reniec", "dni", "solicitudes", 41.0))], topico=INDICADORES)
    assert listo.wait(20), recibidos
    flujo.cancel()
    assert sorted(recibidos[:-1]) == sorted(_tupla(i) for i in iniciales)
    assert recibidos[-1] == ("reniec", "dni", "solicitudes", "24h", 41.0)


def test_recargar_tokens_revoca_sin_reiniciar(consulta, tmp_path):
    servicio, canal, _, _ = consulta
    stub = ipb_grpc.IndicadoresStub(canal)
    assert stub.ListarIndicadores(ipb.FiltroIndicadores(), timeout=5, metadata=_con(TOKEN_RENIEC)).indicadores
    nuevo = tmp_path / "sin-reniec.yaml"
    nuevo.write_text("tokens:\n" + entrada_yaml(TOKEN_PORTAL, ["*"]) + "\n")
    servicio.servicio.recargar_tokens(cargar_tokens(nuevo, cargar_catalogo(CATALOGO)))
    codigo, _ = _codigo(stub.ListarIndicadores, ipb.FiltroIndicadores(), metadata=_con(TOKEN_RENIEC))
    assert codigo == grpc.StatusCode.UNAUTHENTICATED
    assert stub.ListarIndicadores(ipb.FiltroIndicadores(), timeout=5, metadata=_con(TOKEN_PORTAL)).indicadores


def test_proceso_con_tls_tokens_y_salud_en_claro(bootstrap, procesos, tmp_path):
    """`python -m servicios.consulta` con las variables de compose/Kubernetes."""
    ca, cert, clave = _tls(tmp_path / "tls")
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("tokens:\n" + entrada_yaml(TOKEN_RENIEC, ["reniec"]) + "\n")
    crear_topicos(bootstrap, 2, [INDICADORES])
    publicar(bootstrap, [_registro(i) for i in SERIES], topico=INDICADORES)
    puerto, puerto_salud = puerto_libre(), puerto_libre()
    procesos.lanzar("servicios.consulta", {
        "GPR_KAFKA_BOOTSTRAP": bootstrap, "GPR_GRPC_HOST": "127.0.0.1", "GPR_GRPC_PUERTO": str(puerto),
        "GPR_METRICAS_PUERTO": "0", "GPR_CONSULTA_TLS_CERT": str(cert), "GPR_CONSULTA_TLS_KEY": str(clave),
        "GPR_CONSULTA_TOKENS": str(tokens), "GPR_CONSULTA_SALUD_PUERTO": str(puerto_salud)})
    with grpc.insecure_channel(f"127.0.0.1:{puerto_salud}") as claro:
        _esperar_serving(claro)
    with grpc.secure_channel(f"localhost:{puerto}", grpc.ssl_channel_credentials(ca.read_bytes())) as canal:
        lista = ipb_grpc.IndicadoresStub(canal).ListarIndicadores(ipb.FiltroIndicadores(), timeout=5,
                                                                  metadata=_con(TOKEN_RENIEC)).indicadores
        assert {i.agencia_id for i in lista} == {"reniec"}
    registro = procesos.registro("consulta")
    assert "con TLS" in registro and "tokens de lectura: 1" in registro
    assert TOKEN_RENIEC not in registro


@pytest.mark.parametrize("entorno,esperado", [
    ({"GPR_CONSULTA_TLS_CERT": "/no/existe.pem", "GPR_CONSULTA_TLS_KEY": "/no/existe.pem"}, "GPR_CONSULTA_TLS_CERT"),
    ({"GPR_CONSULTA_TLS_CERT": str(CATALOGO)}, "falta GPR_CONSULTA_TLS_KEY"),
    ({"GPR_CONSULTA_TOKENS": "/no/existe.yaml"}, "/no/existe.yaml"),
], ids=["cert-inexistente", "sin-clave", "tokens-inexistentes"])
def test_proceso_con_configuracion_de_acceso_mala_no_arranca(procesos, entorno, esperado):
    proceso = procesos.lanzar("servicios.consulta", {"GPR_KAFKA_BOOTSTRAP": "127.0.0.1:1", **entorno})
    assert proceso.wait(30) == 2
    assert esperado in procesos.registro("consulta")


def test_el_chequeo_de_salud_de_compose_habla_tls_con_el_certificado_de_compose(bootstrap, tmp_path):
    """Lo que docker compose corre, tal cual salvo rutas y puerto: el guion con los nombres
    del servicio consulta-tls y el healthcheck del servicio consulta."""
    compose = yaml.safe_load((RAIZ / "docker-compose.yml").read_text(encoding="utf-8"))["services"]
    directorio, nombres, _dueno = compose["consulta-tls"]["command"]
    assert directorio == "/tls"
    subprocess.run(["sh", str(GENERAR_TLS), str(tmp_path / "tls"), nombres], check=True, capture_output=True)
    entorno = compose["consulta"]["environment"]
    montado = "/etc/gpr/consulta-tls"
    assert entorno["GPR_CONSULTA_TLS_CERT"] == f"{montado}/tls.crt" and entorno["GPR_CONSULTA_TLS_KEY"] == f"{montado}/tls.key"
    assert f"consulta-tls:{montado}:ro" in compose["consulta"]["volumes"]
    chequeo = compose["consulta"]["healthcheck"]["test"]
    assert chequeo[:3] == ["CMD", "python", "-c"]
    crear_topicos(bootstrap, 2, [INDICADORES])
    cfg = config_consulta.leer({
        "GPR_KAFKA_BOOTSTRAP": bootstrap, "GPR_GRPC_HOST": "127.0.0.1", "GPR_GRPC_PUERTO": "0",
        "GPR_METRICAS_PUERTO": "0", "GPR_GRPC_GRACIA": "1s", "GPR_CATALOGO": str(CATALOGO),
        "GPR_CONSULTA_TLS_CERT": str(tmp_path / "tls" / "tls.crt"), "GPR_CONSULTA_TLS_KEY": str(tmp_path / "tls" / "tls.key"),
        "GPR_CONSULTA_TOKENS": str(RAIZ / "despliegue" / "consulta" / "tokens.ejemplo.yaml")})
    with ConsultaEnHilo(cfg) as servicio:
        codigo = chequeo[3].replace(f"{montado}/ca.crt", str(tmp_path / "tls" / "ca.crt")).replace(
            "localhost:50051", f"localhost:{servicio.puerto_grpc}")
        fin = time.monotonic() + 30
        while (resultado := subprocess.run([sys.executable, "-c", codigo], capture_output=True, text=True,
                                           timeout=30)).returncode != 0:
            assert time.monotonic() < fin, resultado.stderr[-2000:]
            time.sleep(0.5)


def test_la_cli_consulta_con_tls_y_token_y_ve_solo_su_alcance(consulta):
    """`gpr indicadores` contra la consulta protegida: con la CA y un token de una agencia ve solo
    esa agencia; sin token, UNAUTHENTICATED (código 1, en stderr)."""
    servicio, _, ca, _ = consulta
    destino = f"localhost:{servicio.puerto_grpc}"

    def gpr(*argumentos):
        return subprocess.run([sys.executable, "-m", "servicios.cli", "indicadores", "--consulta", destino,
                               "--ventana", "", "--tls-ca", str(ca), *argumentos], cwd=RAIZ, capture_output=True,
                              text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})

    r = gpr("--token", TOKEN_RENIEC)
    assert r.returncode == 0, r.stdout + r.stderr
    esperadas = sum(1 for i in SERIES if i.agencia_id == "reniec")
    assert f"Indicadores ({esperadas})" in r.stdout and "sunarp" not in r.stdout and "minsa" not in r.stdout
    r = gpr()
    assert r.returncode == 1 and "UNAUTHENTICATED" in r.stderr, r.stdout + r.stderr
