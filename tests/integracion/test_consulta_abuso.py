"""La consulta ante entradas hostiles, con el broker embebido real y un canal gRPC real:

- peticiones con bytes que no son protobuf, campos de 1 MB y tokens de página inventados:
  INVALID_ARGUMENT (nunca UNKNOWN) con un detalle corto que nombra el campo;
- instantáneas falsificadas o rotas en gpr.indicadores.v1 (también una con una clave de
  cabecera que no es UTF-8, que antes detenía la lectura para siempre): se descartan y se
  cuentan por motivo, y la vista sigue sirviendo lo válido, también lo que llega después;
- registros rechazados de los dos formatos en gpr.eventos.rechazados.v1: contados por
  agencia, fuente y motivo, con las etiquetas acotadas.

Lo esperado se escribe a mano a partir de lo publicado.
"""

from __future__ import annotations

import base64
import math
import shutil
import subprocess
import time
import urllib.request

import grpc
import pytest
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from apoyo.consulta import esperar_serving
from apoyo.kafka import publicar
from conftest import CATALOGO
from gpr.v1 import eventos_pb2 as pb
from gpr.v1 import indicadores_pb2 as ipb
from gpr.v1 import indicadores_pb2_grpc as ipb_grpc
from servicios.comun.broker import puerto_libre
from servicios.comun.indicadores import clave_serie
from servicios.comun.topicos import INDICADORES, RECHAZADOS, crear_topicos
from servicios.consulta import config as config_consulta
from servicios.consulta.servidor import ConsultaEnHilo

pytestmark = [pytest.mark.integracion, pytest.mark.timeout(120)]

MEGA = 1024 * 1024


def _ind(agencia="reniec", servicio="dni", indicador="solicitudes", ventana="24h", valor=1.0, **extra):
    return ipb.Indicador(agencia_id=agencia, servicio_id=servicio, indicador=indicador, ventana=ventana,
                         valor=valor, muestras=int(valor) if math.isfinite(valor) else 1, **extra)


def _registro(i, clave=None, cabeceras=None):
    clave = clave if clave is not None else clave_serie(i.agencia_id, i.servicio_id, i.indicador, i.ventana).encode()
    return (clave, i.SerializeToString(), cabeceras or [])


@pytest.fixture
def consulta(bootstrap):
    crear_topicos(bootstrap, 2, [INDICADORES, RECHAZADOS])
    publicar(bootstrap, [_registro(_ind(valor=5.0)), _registro(_ind("sunarp", "literal", valor=7.0))],
             topico=INDICADORES)
    cfg = config_consulta.leer({
        "GPR_KAFKA_BOOTSTRAP": bootstrap, "GPR_GRPC_HOST": "127.0.0.1", "GPR_GRPC_PUERTO": "0",
        "GPR_METRICAS_HOST": "127.0.0.1", "GPR_METRICAS_PUERTO": str(puerto_libre()), "GPR_GRPC_GRACIA": "1s",
        "GPR_CATALOGO": str(CATALOGO)})
    with ConsultaEnHilo(cfg) as servicio:
        canal = grpc.insecure_channel(f"127.0.0.1:{servicio.puerto_grpc}",
                                      options=[("grpc.max_send_message_length", 8 * MEGA)])
        esperar_serving(canal, 30, "la consulta")
        yield servicio, canal
        canal.close()


def _token(crudo: bytes) -> str:
    return base64.urlsafe_b64encode(crudo).rstrip(b"=").decode()


def _peticiones_hostiles(stub):
    """(qué, llamada, petición, campo que debe nombrar el error)."""
    uno = {"agencia_id": "reniec", "servicio_id": "dni", "indicador": "solicitudes", "ventana": "24h"}
    grande = "x" * MEGA
    return [
        ("token anidado", stub.ListarIndicadores, ipb.FiltroIndicadores(token_pagina=_token(b"[" * 200_000)), "token_pagina"),
        ("token de 1 MB", stub.ListarIndicadores, ipb.FiltroIndicadores(token_pagina="A" * MEGA), "token_pagina"),
        ("token inventado", stub.ListarIndicadores, ipb.FiltroIndicadores(token_pagina=_token(b'{"v":2}')), "token_pagina"),
        ("agencia de 1 MB", stub.ObtenerIndicador, ipb.SolicitudIndicador(**{**uno, "agencia_id": grande}), "agencia_id"),
        ("servicio de 1 MB", stub.ObtenerIndicador, ipb.SolicitudIndicador(**{**uno, "servicio_id": grande}), "servicio_id"),
        ("indicador de 1 MB", stub.ObtenerIndicador, ipb.SolicitudIndicador(**{**uno, "indicador": grande}), "indicador"),
        ("ventana de 1 MB", stub.ObtenerHistorial, ipb.SolicitudHistorial(**{**uno, "ventana": grande}), "ventana"),
        ("etapa de 1 MB", stub.ObtenerHistorial, ipb.SolicitudHistorial(**{**uno, "etapa_id": grande}), "etapa_id"),
        ("tablero de 1 MB", stub.ObtenerTablero, ipb.SolicitudTablero(agencia_id=grande), "agencia_id"),
        ("ventana del tablero de 1 MB", stub.ObtenerTablero, ipb.SolicitudTablero(agencia_id="reniec", ventana=grande),
         "ventana"),
        ("filtro de 1 MB", stub.ListarIndicadores, ipb.FiltroIndicadores(servicio_id=grande), "servicio_id"),
        ("incumplimientos de 1 MB", stub.ListarIncumplimientos, ipb.FiltroIncumplimientos(agencia_id=grande),
         "agencia_id"),
        ("suscripción de 1 MB", stub.SuscribirIndicadores, ipb.FiltroIndicadores(indicador=grande), "indicador"),
        ("máximo negativo", stub.ObtenerHistorial, ipb.SolicitudHistorial(**uno, maximo=-1), "maximo"),
        ("página negativa", stub.ListarIndicadores, ipb.FiltroIndicadores(tamano_pagina=-5), "tamano_pagina"),
    ]


def _fallo(llamada, peticion):
    with pytest.raises(grpc.RpcError) as error:
        respuesta = llamada(peticion, timeout=10)
        if hasattr(respuesta, "__next__"):
            next(respuesta)
    return error.value.code(), error.value.details()


def test_peticiones_hostiles_invalid_argument_con_detalle_corto(consulta):
    _, canal = consulta
    stub = ipb_grpc.IndicadoresStub(canal)
    for que, llamada, peticion, campo in _peticiones_hostiles(stub):
        codigo, detalle = _fallo(llamada, peticion)
        assert codigo == grpc.StatusCode.INVALID_ARGUMENT, (que, codigo, detalle[:200])
        assert detalle.startswith(f"{campo}:"), (que, detalle[:200])
        assert len(detalle) < 600, (que, len(detalle))
    # Una serie que no existe, con identificadores largos pero válidos: NOT_FOUND, recortado.
    largo = "s" * 256
    codigo, detalle = _fallo(stub.ObtenerIndicador, ipb.SolicitudIndicador(
        agencia_id="reniec", servicio_id=largo, indicador="solicitudes", ventana="24h"))
    assert codigo == grpc.StatusCode.NOT_FOUND and "… (" in detalle and len(detalle) < 400, detalle
    # Y la consulta sigue respondiendo.
    assert stub.ObtenerIndicador(ipb.SolicitudIndicador(agencia_id="reniec", servicio_id="dni",
                                                        indicador="solicitudes", ventana="24h"), timeout=5).valor == 5.0


@pytest.mark.parametrize("metodo", ["ObtenerIndicador", "ListarIndicadores", "ObtenerHistorial", "ObtenerTablero",
                                    "ListarIncumplimientos", "SuscribirIndicadores"])
def test_bytes_que_no_son_protobuf_invalid_argument(consulta, metodo):
    _, canal = consulta
    if metodo == "SuscribirIndicadores":
        llamada = canal.unary_stream(f"/gpr.v1.Indicadores/{metodo}")
    else:
        llamada = canal.unary_unary(f"/gpr.v1.Indicadores/{metodo}")
    for datos in (b"\xff\xff\xff", b"\x0a\x05\xff\xfe\xfd\xfc\xfb", b"\x0a\xff\xff\xff\xff\x0f"):
        codigo, detalle = _fallo(llamada, datos)
        assert codigo == grpc.StatusCode.INVALID_ARGUMENT, (metodo, datos, codigo, detalle)
        assert "bytes de protobuf mal formados" in detalle


class _ClaveCruda(str):
    """Clave de cabecera que kafka-python escribe tal cual: bytes que no son UTF-8."""

    def encode(self, *_argumentos, **_opciones):
        return b"\xff\xfe"


def _metricas(puerto):
    texto = urllib.request.urlopen(f"http://127.0.0.1:{puerto}/metrics", timeout=5).read().decode()
    return texto, {f.name: f for f in text_string_to_metric_families(texto)}


def _muestras(familias, nombre, *etiquetas):
    return {tuple(m.labels[e] for e in etiquetas): m.value for m in familias[nombre].samples
            if m.name == f"{nombre}_total"}


def _esperar(condicion, limite_s=30):
    fin = time.monotonic() + limite_s
    while True:
        resultado = condicion()
        if resultado:
            return resultado
        assert time.monotonic() < fin, "no se cumplió a tiempo"
        time.sleep(0.2)


def test_instantaneas_falsificadas_no_envenenan_la_vista(bootstrap, consulta):
    servicio, canal = consulta
    stub = ipb_grpc.IndicadoresStub(canal)
    clave_reniec = b"reniec/dni/solicitudes/24h"
    falsos = [
        (clave_reniec, b"\xff\xff\xff\xff", []),                                      # protobuf_invalido
        (clave_reniec, _ind("sunarp", valor=999.0).SerializeToString(), []),           # clave_no_coincide
        (clave_reniec, _ind(valor=math.nan).SerializeToString(), []),                  # valor_no_finito
        (clave_reniec, _ind(valor=math.inf).SerializeToString(), []),                  # valor_no_finito
        (b"reniec/dni/inventado/24h", _ind(indicador="inventado").SerializeToString(), []),  # campo_invalido
        (None, _ind(valor=3.0).SerializeToString(), []),                               # sin_clave
        (b"\xff\xfe", _ind(valor=3.0).SerializeToString(), []),                        # sin_clave
    ]
    productor = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for clave, valor, cabeceras in falsos:
        productor.send(INDICADORES, valor, key=clave, headers=cabeceras, partition=0)
    # Una instantánea válida con una clave de cabecera que no es UTF-8: aiokafka no podía leer
    # su lote (ni lo que venía detrás en la partición); ahora se lee y se aplica.
    productor.send(INDICADORES, _ind("minsa", "cita", valor=11.0).SerializeToString(), key=b"minsa/cita/solicitudes/24h",
                   headers=[(_ClaveCruda("x"), b"v")], partition=0)
    productor.flush()
    # Lo que llega después, en la misma partición, también.
    productor.send(INDICADORES, _ind(valor=6.0).SerializeToString(), key=clave_reniec, partition=0)
    productor.flush()
    productor.close()

    def pedir(agencia, servicio_id):
        return stub.ObtenerIndicador(ipb.SolicitudIndicador(agencia_id=agencia, servicio_id=servicio_id,
                                                            indicador="solicitudes", ventana="24h"), timeout=5).valor

    _esperar(lambda: pedir("reniec", "dni") == 6.0)
    assert pedir("minsa", "cita") == 11.0 and pedir("sunarp", "literal") == 7.0
    historial = stub.ObtenerHistorial(ipb.SolicitudHistorial(agencia_id="reniec", servicio_id="dni",
                                                             indicador="solicitudes", ventana="24h"), timeout=5)
    assert [i.valor for i in historial.instantaneas] == [5.0, 6.0]
    lista = stub.ListarIndicadores(ipb.FiltroIndicadores(), timeout=5).indicadores
    assert sorted((i.agencia_id, i.valor) for i in lista) == [("minsa", 11.0), ("reniec", 6.0), ("sunarp", 7.0)]
    texto, familias = _metricas(servicio.puerto_metricas)
    assert _muestras(familias, "gpr_consulta_registros_descartados", "motivo") == {
        ("sin_clave",): 2, ("protobuf_invalido",): 1, ("clave_no_coincide",): 1, ("campo_invalido",): 1,
        ("valor_no_finito",): 2}
    assert familias["gpr_consulta_vista_al_dia"].samples[0].value == 1
    _promtool(texto)


def _promtool(texto):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("falta promtool en el PATH; instálelo con: sudo bash despliegue/instalar-herramientas.sh")
    revision = subprocess.run([promtool, "check", "metrics"], input=texto, text=True, capture_output=True)
    assert revision.returncode == 0, revision.stdout + revision.stderr


def _evento(agencia, fuente, n):
    return pb.Evento(evento_id=f"e{n}", fuente=fuente, agencia_id=agencia, servicio_id="s", caso_id=f"c{n}")


def test_rechazados_por_agencia_fuente_y_motivo(bootstrap, consulta):
    servicio, _ = consulta
    motivo = lambda m: [("gpr-motivo", m), ("gpr-detalle", b"x")]  # noqa: E731
    lote = [("gpr-lote", b"1")]
    registros = [
        # Un Evento por registro (cualquier cliente de Kafka).
        (b"k", _evento("reniec", "tramites", 1).SerializeToString(), motivo(b"tardio")),
        (b"k", _evento("reniec", "tramites", 2).SerializeToString(), motivo(b"tardio")),
        (b"k", _evento("sunarp", "portal", 3).SerializeToString(), motivo(b"campo_requerido:caso_id")),
        # Un LoteEventos (nuestros productores): cada evento cuenta con su agencia y fuente.
        (b"k", pb.LoteEventos(eventos=[_evento("minsa", "app", 4), _evento("minsa", "app", 5),
                                       _evento("reniec", "portal", 6)]).SerializeToString(),
         motivo(b"error_interno:KeyError") + lote),
        # La cabecera gpr-agencia manda sobre el contenido.
        (b"k", _evento("reniec", "tramites", 7).SerializeToString(), motivo(b"tardio") + [("gpr-agencia", b"sunarp")]),
        # Ilegible, de una agencia inventada, o sin motivo.
        (b"k", b"\xff\xff", motivo(b"protobuf_invalido")),
        (b"k", _evento("inventada", "x", 8).SerializeToString(), motivo(b"agencia_desconocida")),
        (b"k", _evento("reniec", "", 9).SerializeToString(), []),
    ]
    # Doce fuentes distintas de reniec: las 10 primeras con nombre, luego «otra».
    registros += [(b"k", _evento("reniec", f"sistema-{n:02d}", 100 + n).SerializeToString(), motivo(b"duplicado"))
                  for n in range(12)]
    publicar(bootstrap, registros, topico=RECHAZADOS)
    # reniec ya tiene dos fuentes con nombre (tramites, portal): de las doce sistema-NN caben
    # ocho (el tope es 10 por agencia) y las otras cuatro cuentan como «otra».
    esperado = {
        ("reniec", "tramites", "tardio"): 2, ("sunarp", "portal", "campo_requerido"): 1,
        ("minsa", "app", "error_interno"): 2, ("reniec", "portal", "error_interno"): 1,
        ("sunarp", "tramites", "tardio"): 1, ("desconocida", "desconocida", "protobuf_invalido"): 1,
        ("desconocida", "x", "agencia_desconocida"): 1, ("reniec", "desconocida", "desconocido"): 1,
        **{("reniec", f"sistema-{n:02d}", "duplicado"): 1 for n in range(8)},
        ("reniec", "otra", "duplicado"): 4,
    }

    def contados():
        _, familias = _metricas(servicio.puerto_metricas)
        return _muestras(familias, "gpr_eventos_rechazados", "agencia", "fuente", "motivo")

    _esperar(lambda: contados() == esperado or None)
    texto, _ = _metricas(servicio.puerto_metricas)
    assert 'gpr_eventos_rechazados_total{agencia="minsa",fuente="app",motivo="error_interno"} 2.0' in texto
    _promtool(texto)


def test_bytes_mal_formados_en_la_salud_y_watch_sigue_funcionando(consulta):
    """El interceptor envuelve también la salud: Watch es una corrutina que escribe con
    context.write, no un generador."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    _, canal = consulta
    for metodo, llamada in (("Check", canal.unary_unary), ("Watch", canal.unary_stream)):
        codigo, detalle = _fallo(llamada(f"/grpc.health.v1.Health/{metodo}"), b"\xff\xff\xff")
        assert codigo == grpc.StatusCode.INVALID_ARGUMENT and "grpc.health.v1.HealthCheckRequest" in detalle, detalle
    observacion = health_pb2_grpc.HealthStub(canal).Watch(health_pb2.HealthCheckRequest(), timeout=10)
    assert next(observacion).status == health_pb2.HealthCheckResponse.SERVING
    observacion.cancel()
