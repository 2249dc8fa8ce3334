"""API Indicadores más allá de obtener/listar, por un canal gRPC real: historial, tablero,
incumplimientos y suscripción en vivo (con un cliente lento que recibe RESOURCE_EXHAUSTED)."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from apoyo.kafka import publicar
from gpr.v1 import indicadores_pb2 as ipb
from gpr.v1 import indicadores_pb2_grpc as ipb_grpc
from servicios.comun.indicadores import clave_serie
from servicios.comun.topicos import INDICADORES, crear_topicos
from servicios.consulta import config as config_consulta
from servicios.consulta.servidor import ConsultaEnHilo

pytestmark = pytest.mark.integracion


def ind(agencia, servicio, indicador, valor, ventana="24h", estado=None, cuello="", etapa=""):
    i = ipb.Indicador(agencia_id=agencia, servicio_id=servicio, indicador=indicador, ventana=ventana,
                      valor=valor, muestras=10, etapa_cuello_botella=cuello, etapa_id=etapa)
    if estado is not None:
        i.meta.CopyFrom(ipb.EvaluacionMeta(operador=">=", valor=0.9, estado=estado, severidad="critica", equipo="e"))
    return i


def registro(i):
    return (clave_serie(i.agencia_id, i.servicio_id, i.indicador, i.ventana, i.etapa_id).encode(), i.SerializeToString())


@pytest.fixture
def consulta(bootstrap):
    crear_topicos(bootstrap, 2, [INDICADORES])
    cfg = config_consulta.leer({"GPR_KAFKA_BOOTSTRAP": bootstrap, "GPR_GRPC_HOST": "127.0.0.1", "GPR_GRPC_PUERTO": "0",
                                "GPR_METRICAS_PUERTO": "0", "GPR_HISTORIAL_MAXIMO": "3", "GPR_SUSCRIPCION_BUFER": "5"})
    with ConsultaEnHilo(cfg) as servicio:
        canal = grpc.insecure_channel(f"127.0.0.1:{servicio.puerto_grpc}")
        yield ipb_grpc.IndicadoresStub(canal)
        canal.close()


def esperar(funcion, limite_s=20):
    fin = time.monotonic() + limite_s
    while True:
        try:
            resultado = funcion()
            if resultado:
                return resultado
        except grpc.RpcError as error:
            if time.monotonic() > fin:
                raise
            if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND):
                raise
        if time.monotonic() > fin:
            raise AssertionError("no se cumplió a tiempo")
        time.sleep(0.2)


def test_historial_tablero_e_incumplimientos(bootstrap, consulta):
    plazos = [ind("reniec", "dni", "cumplimiento_plazo", v, estado=ipb.ESTADO_CUMPLIMIENTO_INCUMPLE if v < 0.9 else ipb.ESTADO_CUMPLIMIENTO_CUMPLE, cuello="impresion")
              for v in (0.95, 0.85, 0.80, 0.70)]
    otros = [ind("reniec", "dni", "solicitudes", 40, cuello="impresion"),
             ind("reniec", "pasaporte", "cumplimiento_plazo", 0.99, estado=ipb.ESTADO_CUMPLIMIENTO_CUMPLE, cuello="registro"),
             ind("reniec", "dni", "tiempo_etapa_p50", 3600, etapa="impresion", cuello="impresion"),
             ind("reniec", "dni", "cumplimiento_plazo", 0.5, ventana="7d", estado=ipb.ESTADO_CUMPLIMIENTO_INCUMPLE),
             ind("sunarp", "literal", "tasa_error", 0.3, estado=ipb.ESTADO_CUMPLIMIENTO_INCUMPLE)]
    publicar(bootstrap, [registro(i) for i in plazos + otros], topico=INDICADORES)

    pedido = ipb.SolicitudHistorial(agencia_id="reniec", servicio_id="dni", indicador="cumplimiento_plazo", ventana="24h")

    def valores():
        return [i.valor for i in consulta.ObtenerHistorial(pedido, timeout=2).instantaneas]

    historial = esperar(lambda: (v := valores())[-1:] == [0.70] and v)
    assert historial == [0.85, 0.80, 0.70]  # tope de 3 por serie, de la más antigua a la última
    pedido.maximo = 1
    assert [i.valor for i in consulta.ObtenerHistorial(pedido, timeout=2).instantaneas] == [0.70]

    tablero = consulta.ObtenerTablero(ipb.SolicitudTablero(agencia_id="reniec"), timeout=2)
    assert tablero.ventana == "24h" and tablero.incumplimientos == 1
    assert [(s.servicio_id, s.etapa_cuello_botella, [i.indicador for i in s.indicadores]) for s in tablero.servicios] == [
        ("dni", "impresion", ["cumplimiento_plazo", "solicitudes"]), ("pasaporte", "registro", ["cumplimiento_plazo"])]

    todos = consulta.ListarIncumplimientos(ipb.FiltroIncumplimientos(), timeout=2).indicadores
    assert [(i.agencia_id, i.indicador, i.ventana, i.valor) for i in todos] == [
        ("reniec", "cumplimiento_plazo", "24h", 0.70), ("reniec", "cumplimiento_plazo", "7d", 0.5),
        ("sunarp", "tasa_error", "24h", 0.3)]
    assert len(consulta.ListarIncumplimientos(ipb.FiltroIncumplimientos(agencia_id="sunarp"), timeout=2).indicadores) == 1

    for llamada, peticion, campo in (
        (consulta.ObtenerTablero, ipb.SolicitudTablero(), "agencia_id"),
        (consulta.ObtenerTablero, ipb.SolicitudTablero(agencia_id="reniec", ventana="2d"), "ventana"),
        (consulta.ObtenerHistorial, ipb.SolicitudHistorial(agencia_id="reniec", servicio_id="dni", indicador="x", ventana="24h"), "indicador"),
    ):
        with pytest.raises(grpc.RpcError) as error:
            llamada(peticion, timeout=2)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and campo in error.value.details()
    with pytest.raises(grpc.RpcError) as error:
        consulta.ObtenerTablero(ipb.SolicitudTablero(agencia_id="minsa"), timeout=2)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_suscripcion_en_vivo_y_cliente_lento(bootstrap, consulta):
    publicar(bootstrap, [registro(ind("reniec", "dni", "solicitudes", 1))], topico=INDICADORES)
    esperar(lambda: consulta.ObtenerTablero(ipb.SolicitudTablero(agencia_id="reniec"), timeout=2))

    recibidos = []
    flujo = consulta.SuscribirIndicadores(ipb.FiltroIndicadores(agencia_id="reniec", indicador="solicitudes"))

    def leer():
        for i in flujo:
            recibidos.append(i.valor)
            if len(recibidos) == 3:
                return

    lector = threading.Thread(target=leer)
    lector.start()
    time.sleep(0.5)
    publicar(bootstrap, [registro(ind("sunarp", "x", "solicitudes", 99)),  # otra agencia: filtrada
                         registro(ind("reniec", "dni", "solicitudes", 2)),
                         registro(ind("reniec", "dni", "solicitudes", 3))], topico=INDICADORES)
    lector.join(20)
    assert recibidos == [1, 2, 3]  # primero el estado actual, luego cada cambio
    flujo.cancel()

    lento = consulta.SuscribirIndicadores(ipb.FiltroIndicadores(indicador="solicitudes"))
    primero = next(lento)
    assert primero.indicador == "solicitudes"
    # El cliente no lee mientras llegan miles de cambios: su búfer (5) se llena en el servidor.
    publicar(bootstrap, [registro(ind("reniec", "dni", "solicitudes", float(n))) for n in range(5000)], topico=INDICADORES)
    with pytest.raises(grpc.RpcError) as error:
        for _ in lento:
            pass
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "búfer" in error.value.details()
