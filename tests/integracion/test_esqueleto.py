"""De punta a punta: eventos por Kafka → procesador → gpr.indicadores.v1 → gRPC y /metrics.

Los valores esperados se calcularon a mano a partir de los eventos de abajo (ver los
comentarios de cada caso); la prueba no usa el código del procesador para calcularlos.
"""

from __future__ import annotations

import os

import asyncio
import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kafka import KafkaProducer

from gpr.v1 import eventos_pb2 as pb
from gpr.v1 import indicadores_pb2 as ipb
from gpr.v1 import indicadores_pb2_grpc as ipb_grpc
from servicios.comun.broker import puerto_libre
from servicios.comun.topicos import CABECERA_MOTIVO, CUMPLIMIENTO, EVENTOS, RECHAZADOS, crear_topicos

H = 3600
D = 86400
# Una base en el pasado, alineada a la hora: ningún evento queda en el futuro.
B = (int(time.time()) // H - 72) * H


def evento(eid, tipo, caso, t, agencia="reniec", servicio="dni-duplicado", plazo=None):
    e = pb.Evento(evento_id=eid, fuente="prueba", tipo=tipo, agencia_id=agencia,
                  servicio_id=servicio, caso_id=caso)
    e.ocurrido_en.seconds = t
    if plazo is not None:
        e.plazo_dias = plazo
    return e


R, E = pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, pb.TIPO_EVENTO_SERVICIO_ENTREGADO
# reniec/dni-duplicado, plazo del catálogo 7 días. Marca de agua de reniec: B+30h (c6), así
# que la ventana 24h abarca los cubos [B+7h, B+30h].
EVENTOS_BUENOS = [
    evento("r1", R, "c1", B + 1 * H),          # fuera de la ventana
    evento("e1", E, "c1", B + 5 * H),          # entrega fuera de la ventana
    evento("e2", E, "c2", B + 10 * H),         # llega antes que su recepción: en plazo (8 h)
    evento("r2", R, "c2", B + 2 * H),
    evento("r3", R, "c3", B - 5 * D),          # entrega a 5d20h ≤ 7d: en plazo
    evento("e3", E, "c3", B + 20 * H),
    evento("r4", R, "c4", B - 5 * D, plazo=3),  # plazo propio de 3 días: 5d21h, fuera de plazo
    evento("e4", E, "c4", B + 21 * H),
    evento("r5", R, "c5", B + 3 * H, plazo=1),  # justo en el plazo (24 h exactas): en plazo
    evento("e5", E, "c5", B + 27 * H),
    evento("r7", R, "c7", B + 8 * H),          # solicitud dentro de la ventana
    evento("r6", R, "c6", B + 30 * H),         # solicitud dentro; fija la marca de agua
    evento("e1", E, "c1", B + 5 * H),          # duplicado exacto de e1: no cambia nada
    # sunarp/certificado-literal, plazo 2 días: una entrega a 2d1h, fuera de plazo.
    evento("s1", R, "c8", B, agencia="sunarp", servicio="certificado-literal"),
    evento("s2", E, "c8", B + 49 * H, agencia="sunarp", servicio="certificado-literal"),
]

ESPERADO = {
    # (agencia, servicio, indicador): (valor, muestras, sin_datos, desde, hasta)
    ("reniec", "dni-duplicado", "solicitudes"): (2.0, 2, False, B + 7 * H, B + 30 * H),
    ("reniec", "dni-duplicado", "cumplimiento_plazo"): (0.75, 4, False, B + 7 * H, B + 30 * H),
    ("reniec", "dni-primera-vez", "solicitudes"): (0.0, 0, False, B + 7 * H, B + 30 * H),
    ("reniec", "dni-primera-vez", "cumplimiento_plazo"): (0.0, 0, True, B + 7 * H, B + 30 * H),
    ("sunarp", "certificado-literal", "cumplimiento_plazo"): (0.0, 1, False, B + 26 * H, B + 49 * H),
    ("sunarp", "certificado-literal", "solicitudes"): (0.0, 0, False, B + 26 * H, B + 49 * H),
}


def _publicar(bootstrap, registros):
    productor = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for clave, valor in registros:
        productor.send(EVENTOS, valor, key=clave)
    productor.flush()
    productor.close()


def _esperar_servicio(canal, limite_s=30):
    stub = health_pb2_grpc.HealthStub(canal)
    fin = time.monotonic() + limite_s
    while time.monotonic() < fin:
        try:
            r = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
            if r.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.2)
    raise AssertionError("el servicio de consulta no llegó a SERVING")


def _leer_rechazados(bootstrap, cuantos, limite_s=30):
    return _leer(bootstrap, RECHAZADOS, cuantos, limite_s)


def _leer(bootstrap, topico, cuantos, limite_s=30):
    from aiokafka import AIOKafkaConsumer

    async def leer():
        consumidor = AIOKafkaConsumer(topico, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        await consumidor.start()
        try:
            vistos = []
            fin = time.monotonic() + limite_s
            while len(vistos) < cuantos and time.monotonic() < fin:
                for mensajes in (await consumidor.getmany(timeout_ms=500)).values():
                    vistos.extend(mensajes)
            return vistos
        finally:
            await consumidor.stop()

    return asyncio.run(leer())


@pytest.mark.integracion
def test_eventos_a_indicadores_por_grpc(bootstrap, procesos, tmp_path):
    crear_topicos(bootstrap, 2)
    puerto_grpc, puerto_metricas = puerto_libre(), puerto_libre()
    comun = {"GPR_KAFKA_BOOTSTRAP": bootstrap, "GPR_PARTICIONES": "2"}
    metas = tmp_path / "metas"
    metas.mkdir()
    (metas / "prueba.yaml").write_text(
        "metas:\n"
        "  - {agencia: reniec, servicio: dni-duplicado, indicador: cumplimiento_plazo, ventana: 24h,\n"
        "     operador: '>=', valor: 0.9, muestra_minima: 4, severidad: critica, equipo: e, descripcion: d}\n"
        "  - {agencia: sunarp, servicio: '*', indicador: cumplimiento_plazo, ventana: 24h,\n"
        "     operador: '>=', valor: 0.9, muestra_minima: 2, severidad: critica, equipo: e, descripcion: d}\n"
    )
    procesos.lanzar("servicios.procesador", {**comun, "GPR_DIRECTORIO_DATOS": str(tmp_path / "datos"),
                                             "GPR_METRICAS_PUERTO": "0", "GPR_METAS": str(metas)})
    procesos.lanzar("servicios.consulta", {**comun, "GPR_GRPC_PUERTO": str(puerto_grpc), "GPR_GRPC_HOST": "127.0.0.1",
                                           "GPR_METRICAS_PUERTO": str(puerto_metricas)})

    malformado = b"\xff\xff\xff\xff no es protobuf"
    desconocido = evento("x1", R, "c9", B + 4 * H, agencia="agencia-inexistente")
    _publicar(bootstrap, [(e.caso_id.encode(), e.SerializeToString()) for e in EVENTOS_BUENOS]
              + [(b"c-malo", malformado), (b"c9", desconocido.SerializeToString())])

    canal = grpc.insecure_channel(f"127.0.0.1:{puerto_grpc}")
    _esperar_servicio(canal)
    stub = ipb_grpc.IndicadoresStub(canal)

    def obtener(agencia, servicio, indicador):
        return stub.ObtenerIndicador(ipb.SolicitudIndicador(
            agencia_id=agencia, servicio_id=servicio, indicador=indicador, ventana="24h"), timeout=2)

    def observado(i):
        return (round(i.valor, 9), i.muestras, i.sin_datos, i.desde.seconds, i.hasta.seconds)

    pendientes = dict(ESPERADO)
    ultimo = {}
    fin = time.monotonic() + 60
    while pendientes and time.monotonic() < fin:
        for clave, esperado in list(pendientes.items()):
            try:
                ultimo[clave] = observado(obtener(*clave))
            except grpc.RpcError as error:
                ultimo[clave] = error.code()
                continue
            if ultimo[clave] == esperado:
                del pendientes[clave]
        time.sleep(0.3)
    assert not pendientes, (
        f"indicadores distintos de lo calculado a mano: "
        f"{ {k: (ESPERADO[k], ultimo.get(k)) for k in pendientes} }\n{procesos.registro('procesador')[-3000:]}"
    )

    # Un evento 8 días anterior a la marca de agua de reniec (B+30h) supera la tardanza de 7 días.
    # Va con la clave del caso c6, la del evento en B+30h: misma partición, cuya marca de agua
    # es la que juzga la tardanza.
    tardio = evento("t1", R, "c6", B + 30 * H - 8 * D)
    _publicar(bootstrap, [(b"c6", tardio.SerializeToString())])
    rechazados = _leer_rechazados(bootstrap, 3)
    por_motivo = {dict(m.headers)[CABECERA_MOTIVO].decode(): m.value for m in rechazados}
    assert por_motivo == {
        "protobuf_invalido": malformado,
        "agencia_desconocida": desconocido.SerializeToString(),
        "tardio": tardio.SerializeToString(),
    }
    # El tardío no cambió nada.
    assert observado(obtener("reniec", "dni-duplicado", "solicitudes")) == ESPERADO[("reniec", "dni-duplicado", "solicitudes")]

    with pytest.raises(grpc.RpcError) as error:
        obtener("minsa", "cita-especialidad", "solicitudes")
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as error:
        obtener("reniec", "dni-duplicado", "no-existe")
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "indicador" in error.value.details()

    metricas = urllib.request.urlopen(f"http://127.0.0.1:{puerto_metricas}/metrics", timeout=5).read().decode()
    lineas = [l for l in metricas.splitlines() if l.startswith("gpr_indicador_valor{")]
    objetivo = [l for l in lineas if 'agencia="reniec"' in l and 'servicio="dni-duplicado"' in l
                and 'indicador="cumplimiento_plazo"' in l and 'ventana="24h"' in l]
    assert len(objetivo) == 1 and float(objetivo[0].rsplit(" ", 1)[1]) == 0.75
    # La unidad del catálogo llega desde el procesador hasta la etiqueta de /metrics.
    assert 'unidad="proporcion"' in objetivo[0], objetivo[0]
    # Sin datos no es 0: la serie no se exporta como valor.
    assert not [l for l in lineas if 'servicio="dni-primera-vez"' in l and 'indicador="cumplimiento_plazo"' in l]

    # Metas: 0,75 con 4 muestras contra ≥ 0,9 (mínimo 4) incumple; sunarp, 1 muestra de 2: sin datos.
    plazo = obtener("reniec", "dni-duplicado", "cumplimiento_plazo")
    assert (plazo.meta.valor, plazo.meta.estado) == (0.9, ipb.ESTADO_CUMPLIMIENTO_INCUMPLE)
    assert obtener("sunarp", "certificado-literal", "cumplimiento_plazo").meta.estado == ipb.ESTADO_CUMPLIMIENTO_SIN_DATOS
    assert not obtener("reniec", "dni-duplicado", "solicitudes").HasField("meta")
    cambios = [ipb.CambioCumplimiento.FromString(r.value) for r in _leer(bootstrap, CUMPLIMIENTO, 10**6, limite_s=5)]
    assert {(c.indicador.agencia_id, c.indicador.servicio_id, c.estado) for c in cambios} >= {
        ("reniec", "dni-duplicado", ipb.ESTADO_CUMPLIMIENTO_INCUMPLE), ("sunarp", "certificado-literal", ipb.ESTADO_CUMPLIMIENTO_SIN_DATOS)}

    for nombre in ("procesador", "consulta"):
        assert "Traceback" not in procesos.registro(nombre), procesos.registro(nombre)[-3000:]
    # Con el broker embebido (el de las pruebas, salvo GPR_KAFKA_BOOTSTRAP), y solo con él, se
    # instalan sus correcciones.
    embebido = "GPR_KAFKA_BOOTSTRAP" not in os.environ
    assert ("broker embebido (Tansu)" in procesos.registro("procesador")) == embebido
