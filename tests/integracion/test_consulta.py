"""Servicio de consulta contra el broker embebido real y por un canal gRPC real.

Se publican instantáneas de indicadores en gpr.indicadores.v1 (con actualizaciones de la
misma serie y lápidas en el último lote de cada partición) y se comprueba lo que responden
`Indicadores`, la salud, la reflexión y /metrics. Lo esperado se calcula en la prueba a
partir de la lista de instantáneas, sin usar el código del servicio.
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import threading
import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from google.protobuf.descriptor_pool import DescriptorPool
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from gpr.v1 import indicadores_pb2 as ipb
from gpr.v1 import indicadores_pb2_grpc as ipb_grpc
from servicios.comun.broker import puerto_libre
from servicios.comun.topicos import INDICADORES, crear_topicos
from servicios.consulta.config import ConfigConsulta
from servicios.consulta.servidor import ConsultaEnHilo

pytestmark = [pytest.mark.integracion, pytest.mark.timeout(60)]

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

AGENCIAS = ["reniec", "sunarp", "minsa"]
SERVICIOS = ["s-a", "s-b", "s-c", "s-d", "s-e"]
VENTANAS = ["1h", "24h", "7d", "30d", "mes:2026-01", "mes:2026-02", "mes:2026-03"]
SIMPLES = ["solicitudes", "cumplimiento_plazo", "tiempo_atencion_p90", "tasa_reproceso", "entregas"]
POR_ETAPA = ["tiempo_etapa_p50", "tiempo_etapa_p90"]
ETAPAS = ["recepcion", "revision", "emision"]


def _clave(a, s, i, v, e=""):
    # El contrato del tópico, escrito aquí a mano: agencia/servicio/indicador/ventana[/etapa].
    return "/".join([a, s, i, v] + ([e] if e else []))


def _indicador(a, s, i, v, e, valor, muestras, sin_datos=False):
    return ipb.Indicador(agencia_id=a, servicio_id=s, indicador=i, ventana=v, etapa_id=e,
                         valor=0.0 if sin_datos else valor, muestras=0 if sin_datos else muestras,
                         sin_datos=sin_datos)


def _escenario():
    """Tres lotes (iniciales, actualizaciones, lápidas) y el estado final esperado."""
    azar = random.Random(20260301)
    iniciales = []
    for a in AGENCIAS:
        for s in SERVICIOS:
            for v in VENTANAS:
                series = [(i, "") for i in SIMPLES] + [(i, e) for i in POR_ETAPA for e in ETAPAS]
                for i, e in series:
                    sin_datos = azar.random() < 0.1
                    valor = round(azar.uniform(0, 1), 6) if i in ("cumplimiento_plazo", "tasa_reproceso") \
                        else float(azar.randint(0, 90000))
                    iniciales.append((_clave(a, s, i, v, e), _indicador(a, s, i, v, e, valor, azar.randint(1, 500), sin_datos)))
    esperado = dict(iniciales)
    actualizaciones = [
        # La misma serie tres veces: gana la última.
        (_clave("reniec", "s-a", "cumplimiento_plazo", "24h"), _indicador("reniec", "s-a", "cumplimiento_plazo", "24h", "", 0.5, 10)),
        (_clave("reniec", "s-a", "cumplimiento_plazo", "24h"), _indicador("reniec", "s-a", "cumplimiento_plazo", "24h", "", 0.6, 11)),
        (_clave("reniec", "s-a", "cumplimiento_plazo", "24h"), _indicador("reniec", "s-a", "cumplimiento_plazo", "24h", "", 0.75, 12)),
        # Pasa a no tener datos.
        (_clave("sunarp", "s-b", "tasa_reproceso", "7d"), _indicador("sunarp", "s-b", "tasa_reproceso", "7d", "", 0, 0, sin_datos=True)),
        # Pasa a tener datos (muestras 0 con valor es válido para un conteo).
        (_clave("minsa", "s-c", "solicitudes", "1h"), _indicador("minsa", "s-c", "solicitudes", "1h", "", 0.0, 0)),
        (_clave("reniec", "s-a", "tiempo_etapa_p90", "24h", "revision"),
         _indicador("reniec", "s-a", "tiempo_etapa_p90", "24h", "revision", 7200.0, 42)),
    ]
    esperado.update(actualizaciones)
    lapidas = [
        _clave("reniec", "s-a", "solicitudes", "24h"),
        _clave("sunarp", "s-e", "tiempo_etapa_p50", "mes:2026-02", "emision"),
        _clave("minsa", "s-d", "entregas", "30d"),
    ]
    for clave in lapidas:
        del esperado[clave]
    return iniciales, actualizaciones, lapidas, esperado


INICIALES, ACTUALIZACIONES, LAPIDAS, ESPERADO = _escenario()


def _publicar_escenario(bootstrap):
    productor = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    # Un flush entre grupos: actualizaciones y lápidas quedan en el último lote de su partición,
    # justo lo que un "al día" medido con end_offsets() no vería en el broker embebido.
    for grupo in (INICIALES, ACTUALIZACIONES):
        for clave, indicador in grupo:
            productor.send(INDICADORES, indicador.SerializeToString(), key=clave.encode())
        productor.flush()
    for clave in LAPIDAS:
        productor.send(INDICADORES, None, key=clave.encode())
    productor.flush()
    productor.close()


def _esperar_salud(canal, estado=SERVING, limite_s=20.0):
    stub = health_pb2_grpc.HealthStub(canal)
    fin = time.monotonic() + limite_s
    ultimo = None
    while time.monotonic() < fin:
        try:
            ultimo = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status
            if ultimo == estado:
                return
        except grpc.RpcError as error:
            ultimo = error.code()
        time.sleep(0.05)
    raise AssertionError(f"la salud no llegó a {estado} (último: {ultimo})")


def _config(bootstrap, gracia_s=1):
    return ConfigConsulta(bootstrap=bootstrap, grpc_host="127.0.0.1", grpc_puerto=puerto_libre(),
                          metricas_puerto=puerto_libre(), metricas_host="127.0.0.1", gracia_s=gracia_s)


@pytest.fixture
def consulta(bootstrap):
    """Tópico con el escenario publicado y la consulta en proceso ya en SERVING."""
    crear_topicos(bootstrap, 2, [INDICADORES])
    _publicar_escenario(bootstrap)
    servicio = ConsultaEnHilo(_config(bootstrap)).iniciar()
    canal = grpc.insecure_channel(f"127.0.0.1:{servicio.puerto_grpc}")
    try:
        _esperar_salud(canal)
        yield servicio, canal
    finally:
        canal.close()
        servicio.detener()


def _tupla(i):
    return (i.agencia_id, i.servicio_id, i.indicador, i.ventana, i.etapa_id, i.sin_datos,
            None if i.sin_datos else i.valor, i.muestras)


def _ordenados(indicadores):
    return sorted(indicadores, key=lambda i: (i.agencia_id, i.servicio_id, i.indicador, i.ventana, i.etapa_id))


def _listar_todo(stub, **filtro):
    paginas, token = [], ""
    while True:
        respuesta = stub.ListarIndicadores(ipb.FiltroIndicadores(token_pagina=token, **filtro), timeout=5)
        paginas.append(list(respuesta.indicadores))
        token = respuesta.siguiente_pagina
        if not token:
            return paginas
        assert len(paginas) < 1000, "la paginación no termina"


def test_al_dia_incluye_el_ultimo_lote(consulta):
    """En cuanto la salud dice SERVING, la vista ya tiene las actualizaciones y lápidas finales."""
    _, canal = consulta
    stub = ipb_grpc.IndicadoresStub(canal)
    paginas = _listar_todo(stub, tamano_pagina=1000)
    obtenidos = [i for p in paginas for i in p]
    assert [_tupla(i) for i in obtenidos] == [_tupla(i) for i in _ordenados(ESPERADO.values())]


def test_obtener_indicador(consulta):
    _, canal = consulta
    stub = ipb_grpc.IndicadoresStub(canal)

    def obtener(a, s, i, v, e=""):
        return stub.ObtenerIndicador(ipb.SolicitudIndicador(agencia_id=a, servicio_id=s, indicador=i,
                                                            ventana=v, etapa_id=e), timeout=5)

    ultimo = obtener("reniec", "s-a", "cumplimiento_plazo", "24h")
    assert (ultimo.valor, ultimo.muestras, ultimo.sin_datos) == (0.75, 12, False)
    por_etapa = obtener("reniec", "s-a", "tiempo_etapa_p90", "24h", "revision")
    assert (por_etapa.valor, por_etapa.muestras, por_etapa.etapa_id) == (7200.0, 42, "revision")
    sin_datos = obtener("sunarp", "s-b", "tasa_reproceso", "7d")
    assert sin_datos.sin_datos and sin_datos.muestras == 0
    for clave, esperado in list(ESPERADO.items())[::97]:
        assert obtener(*clave.split("/")) == esperado

    no_existen = [
        ("reniec", "s-a", "solicitudes", "24h"),  # lápida
        ("sunarp", "s-e", "tiempo_etapa_p50", "mes:2026-02", "emision"),  # lápida
        ("onpe", "s-a", "solicitudes", "24h"),  # agencia sin series
        ("reniec", "s-a", "solicitudes", "mes:2025-12"),  # ventana válida sin datos
        ("reniec", "s-a", "tiempo_etapa_p50", "24h", "archivo"),  # etapa sin datos
    ]
    for pedido in no_existen:
        with pytest.raises(grpc.RpcError) as error:
            obtener(*pedido)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND, pedido


OBTENER_INVALIDOS = [
    ({"agencia_id": ""}, "agencia_id"),
    ({"servicio_id": ""}, "servicio_id"),
    ({"indicador": ""}, "indicador"),
    ({"indicador": "xyz"}, "indicador"),
    ({"ventana": ""}, "ventana"),
    ({"ventana": "2d"}, "ventana"),
    ({"ventana": "mes:2026-13"}, "ventana"),
    ({"indicador": "tiempo_etapa_p50"}, "etapa_id"),
    ({"etapa_id": "revision"}, "etapa_id"),
]
LISTAR_INVALIDOS = [
    ({"indicador": "xyz"}, "indicador"),
    ({"ventana": "semana"}, "ventana"),
    ({"tamano_pagina": -1}, "tamano_pagina"),
    ({"token_pagina": "no es un token"}, "token_pagina"),
    ({"token_pagina": "eyJ2IjoxfQ"}, "token_pagina"),  # JSON válido pero incompleto
]


def _campo_invalido(llamada, peticion):
    with pytest.raises(grpc.RpcError) as error:
        llamada(peticion, timeout=5)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, peticion
    return error.value.details()


def test_argumentos_invalidos_nombran_el_campo(consulta):
    _, canal = consulta
    stub = ipb_grpc.IndicadoresStub(canal)
    for campos, campo_error in OBTENER_INVALIDOS:
        pedido = {"agencia_id": "reniec", "servicio_id": "s-a", "indicador": "cumplimiento_plazo", "ventana": "24h"}
        detalle = _campo_invalido(stub.ObtenerIndicador, ipb.SolicitudIndicador(**{**pedido, **campos}))
        assert detalle.startswith(f"{campo_error}:"), (campos, detalle)
    detalle = _campo_invalido(stub.ObtenerIndicador, ipb.SolicitudIndicador(
        agencia_id="reniec", servicio_id="s-a", indicador="xyz", ventana="24h"))
    assert detalle == "indicador: 'xyz' no es un indicador conocido"
    # Varios campos mal a la vez: se nombran todos.
    detalle = _campo_invalido(stub.ObtenerIndicador, ipb.SolicitudIndicador(indicador="xyz", ventana="2d"))
    assert [parte.split(":")[0] for parte in detalle.split("; ")] == ["agencia_id", "servicio_id", "indicador", "ventana"]

    for filtro, campo_error in LISTAR_INVALIDOS:
        detalle = _campo_invalido(stub.ListarIndicadores, ipb.FiltroIndicadores(**filtro))
        assert detalle.startswith(f"{campo_error}:"), (filtro, detalle)
    # Un token válido usado con otro filtro tampoco sirve.
    token = stub.ListarIndicadores(ipb.FiltroIndicadores(agencia_id="reniec", tamano_pagina=3), timeout=5).siguiente_pagina
    assert token
    detalle = _campo_invalido(stub.ListarIndicadores,
                              ipb.FiltroIndicadores(agencia_id="sunarp", tamano_pagina=3, token_pagina=token))
    assert detalle.startswith("token_pagina:")


def test_listar_filtros_orden_y_paginas(consulta):
    _, canal = consulta
    stub = ipb_grpc.IndicadoresStub(canal)
    todos = _ordenados(ESPERADO.values())
    assert len(todos) > 1000

    # Tamaño por defecto 100 y máximo 1000.
    assert len(stub.ListarIndicadores(ipb.FiltroIndicadores(), timeout=5).indicadores) == 100
    grande = stub.ListarIndicadores(ipb.FiltroIndicadores(tamano_pagina=5000), timeout=5)
    assert len(grande.indicadores) == 1000 and grande.siguiente_pagina

    filtros = [
        {},
        {"agencia_id": "reniec"},
        {"agencia_id": "sunarp", "ventana": "7d"},
        {"servicio_id": "s-b", "indicador": "tiempo_etapa_p50"},
        {"indicador": "cumplimiento_plazo", "ventana": "mes:2026-03"},
        {"agencia_id": "onpe"},
        {"agencia_id": "reniec", "servicio_id": "s-a", "indicador": "solicitudes", "ventana": "24h"},  # lápida
    ]
    for filtro in filtros:
        esperados = [i for i in todos if all(getattr(i, campo) == valor for campo, valor in filtro.items())]
        paginas = _listar_todo(stub, tamano_pagina=37, **filtro)
        assert all(len(p) == 37 for p in paginas[:-1]), filtro
        assert len(paginas[-1]) <= 37
        assert [_tupla(i) for p in paginas for i in p] == [_tupla(i) for i in esperados], filtro

    # Una página justa: la última página llena no anuncia otra vacía.
    exactos = [i for i in todos if i.agencia_id == "minsa" and i.servicio_id == "s-c" and i.ventana == "1h"]
    paginas = _listar_todo(stub, agencia_id="minsa", servicio_id="s-c", ventana="1h", tamano_pagina=len(exactos))
    assert [len(p) for p in paginas] == [len(exactos)]


def test_reflexion(consulta):
    _, canal = consulta
    base = ProtoReflectionDescriptorDatabase(canal)
    servicios = set(base.get_services())
    assert {"gpr.v1.Indicadores", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= servicios
    descriptor = DescriptorPool(base).FindServiceByName("gpr.v1.Indicadores")
    assert {m.name for m in descriptor.methods} == {
        "ObtenerIndicador", "ListarIndicadores", "ObtenerHistorial", "ObtenerTablero", "ListarIncumplimientos",
        "SuscribirIndicadores"}
    assert descriptor.methods_by_name["ObtenerIndicador"].output_type.full_name == "gpr.v1.Indicador"


def test_metricas(consulta):
    servicio, _ = consulta
    texto = urllib.request.urlopen(f"http://127.0.0.1:{servicio.puerto_metricas}/metrics", timeout=5).read().decode()
    familias = {f.name: f for f in text_string_to_metric_families(texto)}

    def muestras_de(nombre):
        return {(m.labels["agencia"], m.labels["servicio"], m.labels["indicador"], m.labels["ventana"],
                 m.labels["etapa"]): m.value for m in familias[nombre].samples}

    def etiquetas(i):
        return (i.agencia_id, i.servicio_id, i.indicador, i.ventana, i.etapa_id)

    assert familias["gpr_indicador_valor"].type == "gauge"
    assert muestras_de("gpr_indicador_valor") == {etiquetas(i): i.valor for i in ESPERADO.values() if not i.sin_datos}
    assert muestras_de("gpr_indicador_muestras") == {etiquetas(i): i.muestras for i in ESPERADO.values()}
    # Texto literal de la exposición: serie actualizada presente, serie sin datos ausente.
    actualizada = [l for l in texto.splitlines() if l.startswith("gpr_indicador_valor{") and 'agencia="reniec"' in l
                   and 'servicio="s-a"' in l and 'indicador="cumplimiento_plazo"' in l and 'ventana="24h"' in l]
    assert len(actualizada) == 1 and actualizada[0].endswith(" 0.75") and 'etapa=""' in actualizada[0]
    lineas_sin_datos = [l for l in texto.splitlines() if 'agencia="sunarp"' in l and 'servicio="s-b"' in l
                        and 'indicador="tasa_reproceso"' in l and 'ventana="7d"' in l]
    assert len(lineas_sin_datos) == 1 and lineas_sin_datos[0].startswith("gpr_indicador_muestras{")
    assert lineas_sin_datos[0].endswith(" 0.0")
    assert familias["gpr_consulta_vista_al_dia"].samples[0].value == 1
    assert familias["gpr_consulta_series"].samples[0].value == len(ESPERADO)
    _promtool_check_metrics(texto)


def _metricas_grpc(servicio):
    """Por (método, código): terminadas; por método: empezadas y observaciones del histograma."""
    texto = urllib.request.urlopen(f"http://127.0.0.1:{servicio.puerto_metricas}/metrics", timeout=5).read().decode()
    familias = {f.name: f for f in text_string_to_metric_families(texto)}

    def metodo(m):
        return f"{m.labels['grpc_service']}/{m.labels['grpc_method']}"

    terminadas = {(metodo(m), m.labels["grpc_code"]): m.value for m in familias["grpc_server_handled"].samples
                  if m.name == "grpc_server_handled_total"}
    empezadas = {metodo(m): m.value for m in familias["grpc_server_started"].samples
                 if m.name == "grpc_server_started_total"}
    duraciones = {metodo(m): m.value for m in familias["grpc_server_handling_seconds"].samples
                  if m.name == "grpc_server_handling_seconds_count"}
    tipos = {metodo(m): m.labels["grpc_type"] for m in familias["grpc_server_started"].samples}
    return texto, terminadas, empezadas, duraciones, tipos


def test_metricas_grpc_por_metodo_y_codigo(consulta):
    """Cada llamada por el canal real cuenta una vez con el código que recibió el cliente."""
    servicio, canal = consulta
    stub = ipb_grpc.IndicadoresStub(canal)
    obtener, listar = "gpr.v1.Indicadores/ObtenerIndicador", "gpr.v1.Indicadores/ListarIndicadores"
    suscribir = "gpr.v1.Indicadores/SuscribirIndicadores"
    existe = ipb.SolicitudIndicador(agencia_id="reniec", servicio_id="s-a", indicador="cumplimiento_plazo", ventana="24h")
    for _ in range(3):
        stub.ObtenerIndicador(existe, timeout=5)
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as error:
            stub.ObtenerIndicador(ipb.SolicitudIndicador(agencia_id="onpe", servicio_id="s-a", indicador="solicitudes",
                                                         ventana="24h"), timeout=5)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
    for campos, _ in OBTENER_INVALIDOS[:4]:
        _campo_invalido(stub.ObtenerIndicador, ipb.SolicitudIndicador(**{**{
            "agencia_id": "reniec", "servicio_id": "s-a", "indicador": "cumplimiento_plazo", "ventana": "24h"}, **campos}))
    stub.ListarIndicadores(ipb.FiltroIndicadores(agencia_id="reniec"), timeout=5)
    _campo_invalido(stub.ListarIndicadores, ipb.FiltroIndicadores(ventana="semana"))

    # Un flujo abierto está empezado y no terminado; al cancelarlo el cliente, CANCELLED.
    flujo = stub.SuscribirIndicadores(ipb.FiltroIndicadores(agencia_id="reniec", ventana="24h"), timeout=30)
    next(flujo)
    _, terminadas, empezadas, _, tipos = _metricas_grpc(servicio)
    assert empezadas[suscribir] == 1 and not any(m == suscribir for m, _ in terminadas)
    assert tipos[suscribir] == "server_stream" and tipos[obtener] == "unary"
    flujo.cancel()
    fin = time.monotonic() + 10
    while (suscribir, "CANCELLED") not in (terminadas := _metricas_grpc(servicio)[1]):
        assert time.monotonic() < fin, "el flujo cancelado no se contó"
        time.sleep(0.05)

    texto, terminadas, empezadas, duraciones, _ = _metricas_grpc(servicio)
    propias = {clave: n for clave, n in terminadas.items() if clave[0].startswith("gpr.v1.")}
    assert propias == {(obtener, "OK"): 3, (obtener, "NOT_FOUND"): 2, (obtener, "INVALID_ARGUMENT"): 4,
                       (listar, "OK"): 1, (listar, "INVALID_ARGUMENT"): 1, (suscribir, "CANCELLED"): 1}
    assert (empezadas[obtener], empezadas[listar], empezadas[suscribir]) == (9, 2, 1)
    assert (duraciones[obtener], duraciones[listar], duraciones[suscribir]) == (9, 2, 1)
    # La espera a SERVING del accesorio consultó la salud por el mismo servidor.
    assert terminadas[("grpc.health.v1.Health/Check", "OK")] >= 1
    # Un método que el servidor no implementa no crea series.
    with pytest.raises(grpc.RpcError) as error:
        canal.unary_unary("/gpr.v1.Indicadores/Inventado")(b"", timeout=5)
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "Inventado" not in _metricas_grpc(servicio)[0]
    _promtool_check_metrics(texto)


def _promtool_check_metrics(texto):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("falta promtool en el PATH; instálelo con: sudo bash despliegue/instalar-herramientas.sh")
    revision = subprocess.run([promtool, "check", "metrics"], input=texto, text=True, capture_output=True)
    assert revision.returncode == 0, revision.stdout + revision.stderr


def test_salud_pasa_a_not_serving_al_detener(consulta):
    servicio, canal = consulta
    stub = health_pb2_grpc.HealthStub(canal)
    for nombre in ("", "gpr.v1.Indicadores"):
        assert stub.Check(health_pb2.HealthCheckRequest(service=nombre), timeout=2).status == SERVING
    observacion = stub.Watch(health_pb2.HealthCheckRequest(service="gpr.v1.Indicadores"), timeout=10)
    assert next(observacion).status == SERVING
    parada = threading.Thread(target=servicio.detener)
    parada.start()
    try:
        assert next(observacion).status == NOT_SERVING
    finally:
        parada.join(15)
        observacion.cancel()
    assert not parada.is_alive()


def test_espera_a_que_exista_el_topico(bootstrap):
    """Sin tópico la consulta no cae: NOT_SERVING y UNAVAILABLE hasta que el tópico aparece."""
    with ConsultaEnHilo(_config(bootstrap)) as servicio:
        canal = grpc.insecure_channel(f"127.0.0.1:{servicio.puerto_grpc}")
        stub = ipb_grpc.IndicadoresStub(canal)
        salud = health_pb2_grpc.HealthStub(canal)
        pedido = ipb.SolicitudIndicador(agencia_id="reniec", servicio_id="s-a", indicador="cumplimiento_plazo",
                                        ventana="24h")
        time.sleep(1.5)
        assert salud.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status == NOT_SERVING
        for llamada, peticion in ((stub.ObtenerIndicador, pedido), (stub.ListarIndicadores, ipb.FiltroIndicadores())):
            with pytest.raises(grpc.RpcError) as error:
                llamada(peticion, timeout=2)
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        # Un error del cliente se informa aunque la vista no esté lista.
        with pytest.raises(grpc.RpcError) as error:
            stub.ObtenerIndicador(ipb.SolicitudIndicador(agencia_id="reniec"), timeout=2)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        crear_topicos(bootstrap, 2, [INDICADORES])
        _esperar_salud(canal)
        # Tópico vacío: al día, y la serie simplemente no existe.
        with pytest.raises(grpc.RpcError) as error:
            stub.ObtenerIndicador(pedido, timeout=2)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND

        # Lo que llega después se ve en vivo.
        _publicar_escenario(bootstrap)
        fin = time.monotonic() + 15
        while time.monotonic() < fin:
            try:
                if stub.ObtenerIndicador(pedido, timeout=2).valor == 0.75:
                    break
            except grpc.RpcError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError("la actualización publicada tras el arranque no llegó a la vista")
        canal.close()


def test_proceso_termina_con_sigterm(bootstrap, procesos):
    crear_topicos(bootstrap, 2, [INDICADORES])
    _publicar_escenario(bootstrap)
    puerto_grpc, puerto_metricas = puerto_libre(), puerto_libre()
    proceso = procesos.lanzar("servicios.consulta", {
        "GPR_KAFKA_BOOTSTRAP": bootstrap, "GPR_GRPC_HOST": "127.0.0.1", "GPR_GRPC_PUERTO": str(puerto_grpc),
        "GPR_METRICAS_PUERTO": str(puerto_metricas), "GPR_METRICAS_HOST": "127.0.0.1", "GPR_GRPC_GRACIA": "2s",
    })
    with grpc.insecure_channel(f"127.0.0.1:{puerto_grpc}") as canal:
        _esperar_salud(canal, limite_s=30)
        valor = ipb_grpc.IndicadoresStub(canal).ObtenerIndicador(ipb.SolicitudIndicador(
            agencia_id="reniec", servicio_id="s-a", indicador="cumplimiento_plazo", ventana="24h"), timeout=5).valor
        assert valor == 0.75
    proceso.send_signal(signal.SIGTERM)
    assert proceso.wait(10) == 0
    registro = procesos.registro("consulta")
    assert "Traceback" not in registro, registro[-3000:]
    assert "consulta detenida" in registro


def test_proceso_sin_bootstrap_nombra_la_variable(procesos):
    proceso = procesos.lanzar("servicios.consulta", {"GPR_KAFKA_BOOTSTRAP": ""})
    assert proceso.wait(20) == 2
    assert "GPR_KAFKA_BOOTSTRAP" in procesos.registro("consulta")


# --- Métricas de metas, tasas de quema y plataforma -------------------------------------------

def _marca(segundos):
    from google.protobuf.timestamp_pb2 import Timestamp
    ts = Timestamp()
    ts.FromNanoseconds(int(segundos * 1e9))
    return ts


def _con_meta(indicador, operador, valor, muestra_minima, estado, severidad, equipo):
    indicador.meta.CopyFrom(ipb.EvaluacionMeta(operador=operador, valor=valor, muestra_minima=muestra_minima,
                                               estado=estado, severidad=severidad, equipo=equipo))
    return indicador


def _snap(a, s, i, v, valor=0.0, muestras=0, numerador=0.0, sin_datos=False, cuello="", actualizado=0, hasta=0.0):
    indicador = ipb.Indicador(agencia_id=a, servicio_id=s, indicador=i, ventana=v, valor=valor, muestras=muestras,
                              numerador=numerador, sin_datos=sin_datos, etapa_cuello_botella=cuello)
    if actualizado:
        indicador.actualizado_en.CopyFrom(_marca(actualizado))
    if hasta:
        indicador.hasta.CopyFrom(_marca(hasta))
    return indicador


T0 = 1_780_000_000
INSTANTANEAS_METAS = [
    # Con meta: incumple, cumple, sin datos (sin serie de cumplimiento) y otra ventana.
    _con_meta(_snap("reniec", "s-a", "cumplimiento_plazo", "24h", 0.8, 20, 16, cuello="revision", actualizado=1000,
                    hasta=T0), ">=", 0.9, 5, ipb.ESTADO_CUMPLIMIENTO_INCUMPLE, "critica", "atencion"),
    _con_meta(_snap("reniec", "s-a", "tasa_reproceso", "24h", 0.05, 20, 1, cuello="emision", actualizado=900,
                    hasta=T0 + 100), "<=", 0.1, 5, ipb.ESTADO_CUMPLIMIENTO_CUMPLE, "advertencia", "calidad"),
    _con_meta(_snap("reniec", "s-b", "cumplimiento_plazo", "24h", sin_datos=True, hasta=T0 - 1000),
              ">=", 0.9, 5, ipb.ESTADO_CUMPLIMIENTO_SIN_DATOS, "critica", "atencion"),
    _con_meta(_snap("reniec", "s-a", "cumplimiento_plazo", "7d", 0.95, 200, 190, cuello="impresion", actualizado=1000,
                    hasta=T0 + 50), ">=", 0.92, 20, ipb.ESTADO_CUMPLIMIENTO_CUMPLE, "advertencia", "atencion"),
    # Ventana total: la base de los contadores de las tasas de quema.
    _snap("reniec", "s-a", "cumplimiento_plazo", "total", 0.8, 50, 40, hasta=T0),
    _snap("reniec", "s-a", "tasa_error", "total", 0.05, 60, 3, hasta=T0),
    _snap("reniec", "s-a", "solicitudes", "total", 70, 70, 70, hasta=T0),
    _snap("sunarp", "s-c", "satisfaccion_top2", "total", 7 / 9, 9, 7, cuello="mesa", actualizado=5, hasta=T0 + 500.5),
    _snap("sunarp", "s-c", "adopcion_digital", "total", 0.5, 4, 2, hasta=T0 + 500.5),
    # Sin 'hasta': la agencia no tiene marca de tiempo.
    _snap("minsa", "s-d", "entregas", "24h", 3, 3, 3),
]
# Un evento tardío corrige el acumulado a la baja: el contador exportado no debe bajar.
CORRECCIONES = [_snap("reniec", "s-a", "cumplimiento_plazo", "total", 39 / 51, 51, 39, hasta=T0)]
LAPIDAS_METAS = ["sunarp/s-c/adopcion_digital/total"]
RECHAZOS = ([b"campo_requerido:agencia_id"] * 3 + [b"tardio"] * 2 + [None] + [b"protobuf_invalido"] * 4)
# Registros por partición de los tópicos del procesador y offsets confirmados por su grupo.
REGISTROS_PROCESADOR = {("gpr.eventos.v1", 0): (20, 5), ("gpr.eventos.v1", 1): (7,),
                        ("gpr.eventos.agencias.v1", 1): (6, 3), ("gpr.aportes.v1", 0): (4,)}
CONFIRMADOS = {("gpr.eventos.v1", 0): 10, ("gpr.eventos.agencias.v1", 1): 2, ("gpr.aportes.v1", 0): 4}


def _publicar_metas(bootstrap):
    productor = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    for grupo in (INSTANTANEAS_METAS, CORRECCIONES):
        for i in grupo:
            clave = "/".join([i.agencia_id, i.servicio_id, i.indicador, i.ventana])
            productor.send(INDICADORES, i.SerializeToString(), key=clave.encode())
        productor.flush()
    for clave in LAPIDAS_METAS:
        productor.send(INDICADORES, None, key=clave.encode())
    # Dos envíos: el último rechazo queda solo en su lote (lo que end_offsets() no vería).
    for motivos in (RECHAZOS[:-1], RECHAZOS[-1:]):
        for n, motivo in enumerate(motivos):
            cabeceras = [("gpr-motivo", motivo), ("gpr-detalle", b"x")] if motivo else []
            productor.send("gpr.eventos.rechazados.v1", b"bytes originales", key=b"k%d" % n, headers=cabeceras)
        productor.flush()
    for (topico, particion), lotes in REGISTROS_PROCESADOR.items():
        for cuantos in lotes:
            for n in range(cuantos):
                productor.send(topico, b"v", key=b"k%d" % n, partition=particion)
            productor.flush()
    productor.close()


def _confirmar(bootstrap, grupo, offsets):
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def confirmar():
        consumidor = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=grupo, enable_auto_commit=False)
        await consumidor.start()
        try:
            tps = {TopicPartition(t, p): o for (t, p), o in offsets.items()}
            consumidor.assign(list(tps))
            await consumidor.commit(tps)
        finally:
            await consumidor.stop()

    asyncio.run(confirmar())


def _raspar(puerto):
    texto = urllib.request.urlopen(f"http://127.0.0.1:{puerto}/metrics", timeout=5).read().decode()
    familias = {f.name: f for f in text_string_to_metric_families(texto)}
    return texto, familias


def _muestras(familias, nombre, *etiquetas):
    return {tuple(m.labels[e] for e in etiquetas): m.value for m in familias[nombre].samples
            if m.name == nombre or m.name == f"{nombre}_total"}


def _esperar_metricas(puerto, condicion, limite_s=20.0):
    fin = time.monotonic() + limite_s
    while True:
        texto, familias = _raspar(puerto)
        if condicion(familias):
            return texto, familias
        if time.monotonic() > fin:
            raise AssertionError("las métricas no llegaron a lo esperado:\n" + texto[-4000:])
        time.sleep(0.2)


RETRASO_ESPERADO = {("gpr.eventos.v1", "0"): 25 - 10, ("gpr.eventos.v1", "1"): 7,
                    ("gpr.eventos.agencias.v1", "0"): 0, ("gpr.eventos.agencias.v1", "1"): 9 - 2,
                    ("gpr.aportes.v1", "0"): 4 - 4, ("gpr.aportes.v1", "1"): 0}


def _completas(familias):
    return (_muestras(familias, "gpr_procesador_retraso_registros", "topico", "particion") == RETRASO_ESPERADO
            and bool(familias["gpr_eventos_rechazados"].samples)
            and familias["gpr_consulta_vista_al_dia"].samples[0].value == 1)


@pytest.fixture
def consulta_metas(bootstrap):
    crear_topicos(bootstrap, 2, [INDICADORES, "gpr.eventos.rechazados.v1", "gpr.eventos.v1", "gpr.eventos.agencias.v1",
                                 "gpr.aportes.v1"])
    _publicar_metas(bootstrap)
    _confirmar(bootstrap, "gpr-procesador", CONFIRMADOS)
    cfg = ConfigConsulta(bootstrap=bootstrap, grpc_host="127.0.0.1", grpc_puerto=0, metricas_puerto=puerto_libre(),
                         metricas_host="127.0.0.1", gracia_s=1, intervalo_retraso_s=1)
    servicio = ConsultaEnHilo(cfg).iniciar()
    try:
        yield servicio, cfg
    finally:
        servicio.detener()


def test_metricas_de_metas_quema_y_plataforma(bootstrap, consulta_metas):
    servicio, cfg = consulta_metas
    texto, familias = _esperar_metricas(servicio.puerto_metricas, _completas)
    etiquetas = ("agencia", "servicio", "indicador", "ventana", "etapa")

    assert _muestras(familias, "gpr_meta_valor", *etiquetas) == {
        ("reniec", "s-a", "cumplimiento_plazo", "24h", ""): 0.9,
        ("reniec", "s-a", "tasa_reproceso", "24h", ""): 0.1,
        ("reniec", "s-b", "cumplimiento_plazo", "24h", ""): 0.9,
        ("reniec", "s-a", "cumplimiento_plazo", "7d", ""): 0.92,
    }
    # La serie sin datos no se juzga: no tiene serie de cumplimiento.
    assert _muestras(familias, "gpr_meta_cumplimiento", *etiquetas, "severidad", "equipo") == {
        ("reniec", "s-a", "cumplimiento_plazo", "24h", "", "critica", "atencion"): 0,
        ("reniec", "s-a", "tasa_reproceso", "24h", "", "advertencia", "calidad"): 1,
        ("reniec", "s-a", "cumplimiento_plazo", "7d", "", "advertencia", "atencion"): 1,
    }
    # Solo proporciones de la ventana total; el máximo visto (40) aunque la corrección diga 39.
    assert familias["gpr_indicador_buenos"].type == "counter"
    assert _muestras(familias, "gpr_indicador_buenos", "agencia", "servicio", "indicador") == {
        ("reniec", "s-a", "cumplimiento_plazo"): 40, ("reniec", "s-a", "tasa_error"): 3,
        ("sunarp", "s-c", "satisfaccion_top2"): 7,
    }
    assert _muestras(familias, "gpr_indicador_casos", "agencia", "servicio", "indicador") == {
        ("reniec", "s-a", "cumplimiento_plazo"): 51, ("reniec", "s-a", "tasa_error"): 60,
        ("sunarp", "s-c", "satisfaccion_top2"): 9,
    }
    # La instantánea más reciente decide la etapa (revision, actualizada en 1000, sobre emision en 900).
    assert _muestras(familias, "gpr_servicio_cuello_botella_info", "agencia", "servicio", "ventana", "etapa") == {
        ("reniec", "s-a", "24h", "revision"): 1, ("reniec", "s-a", "7d", "impresion"): 1,
        ("sunarp", "s-c", "total", "mesa"): 1,
    }
    assert _muestras(familias, "gpr_eventos_ultimo_timestamp_seconds", "agencia") == {
        ("reniec",): T0 + 100, ("sunarp",): T0 + 500.5,
    }
    assert _muestras(familias, "gpr_eventos_rechazados", "motivo") == {
        ("campo_requerido",): 3, ("tardio",): 2, ("desconocido",): 1, ("protobuf_invalido",): 4,
    }
    # Bytes que no son un Evento: sin agencia ni fuente (test_consulta_abuso.py prueba las etiquetas).
    assert 'gpr_eventos_rechazados_total{agencia="desconocida",fuente="desconocida",motivo="tardio"} 2.0' in texto
    assert "gpr_indicador_buenos_total{" in texto and "gpr_indicador_casos_total{" in texto
    _promtool_check_metrics(texto)

    # En vivo: nuevos rechazos y un grupo que confirma lo pendiente.
    productor = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for _ in range(2):
        productor.send("gpr.eventos.rechazados.v1", b"x", headers=[("gpr-motivo", b"tardio")])
    productor.close()
    _confirmar(bootstrap, "gpr-procesador", {("gpr.eventos.v1", 0): 25, ("gpr.eventos.v1", 1): 7,
                                             ("gpr.eventos.agencias.v1", 1): 9})
    _esperar_metricas(servicio.puerto_metricas, lambda f: (
        _muestras(f, "gpr_eventos_rechazados", "motivo").get(("tardio",)) == 4
        and set(_muestras(f, "gpr_procesador_retraso_registros", "topico", "particion").values()) == {0}))

    # Otra consulta, desde cero: los totales salen de Kafka, no de la memoria del proceso.
    servicio.detener()
    with ConsultaEnHilo(cfg) as otra:
        _, familias = _esperar_metricas(otra.puerto_metricas, lambda f: bool(f["gpr_eventos_rechazados"].samples)
                                        and f["gpr_consulta_vista_al_dia"].samples[0].value == 1)
        assert _muestras(familias, "gpr_eventos_rechazados", "motivo") == {
            ("campo_requerido",): 3, ("tardio",): 4, ("desconocido",): 1, ("protobuf_invalido",): 4,
        }
        assert _muestras(familias, "gpr_indicador_buenos", "agencia", "servicio", "indicador")[
            ("reniec", "s-a", "cumplimiento_plazo")] == 40
