"""La consulta ante un corte de Kafka, con el broker embebido real detenido y vuelto a lanzar
en el mismo puerto (guarda todo en memoria: vuelve vacío, como un clúster perdido).

Se comprueba, con la consulta como subproceso (`python -m servicios.consulta`):
- la salud gRPC pasa a NOT_SERVING mientras la vista no se puede mantener al día, y la API
  sigue respondiendo con lo último que leyó;
- el registro no crece con cada reintento: durante el corte, cada línea (sin la hora ni los
  números) aparece a lo más una vez;
- al volver el broker vacío y llenarse de nuevo el tópico, la vista se rehace con lo nuevo
  (sin las series viejas que ya no existen) y la salud vuelve a SERVING;
- el conteo de rechazados, leído por el mismo lector, también se rehace: cuenta lo que hay en
  el tópico nuevo, ni lo viejo encima ni lo viejo congelado.
"""

from __future__ import annotations

import os
import re
import time
import urllib.request
from collections import Counter

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from apoyo.kafka import publicar
from gpr.v1 import indicadores_pb2 as ipb
from gpr.v1 import indicadores_pb2_grpc as ipb_grpc
from servicios.comun.broker import BrokerEmbebido, puerto_libre
from servicios.comun.lotes import particion_por_defecto
from servicios.comun.indicadores import clave_serie
from servicios.comun.topicos import INDICADORES, RECHAZADOS, crear_topicos

pytestmark = [pytest.mark.integracion, pytest.mark.timeout(180)]

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
PARTICIONES = 2
# Cuánto dura el corte (una espera, no un umbral): el cliente de Kafka reintenta muchas veces.
CORTE_S = 8


@pytest.fixture
def broker(tmp_path):
    if os.environ.get("GPR_KAFKA_BOOTSTRAP"):
        pytest.skip("detiene y relanza el broker embebido; no aplica a un broker externo")
    broker = BrokerEmbebido(registro=tmp_path / "tansu.log")
    broker.iniciar()
    yield broker
    broker.detener()


def _ind(servicio, valor):
    return ipb.Indicador(agencia_id="reniec", servicio_id=servicio, indicador="solicitudes", ventana="24h",
                         valor=valor, muestras=int(valor))


def _registro(i):
    return (clave_serie(i.agencia_id, i.servicio_id, i.indicador, i.ventana).encode(), i.SerializeToString())


def _salud(canal):
    try:
        return health_pb2_grpc.HealthStub(canal).Check(health_pb2.HealthCheckRequest(), timeout=2).status
    except grpc.RpcError as error:
        return error.code()


def _esperar(condicion, limite_s, que):
    fin = time.monotonic() + limite_s
    while not condicion():
        assert time.monotonic() < fin, f"no se cumplió a tiempo: {que}"
        time.sleep(0.1)


def _al_dia(puerto_metricas):
    texto = urllib.request.urlopen(f"http://127.0.0.1:{puerto_metricas}/metrics", timeout=5).read().decode()
    familias = {f.name: f for f in text_string_to_metric_families(texto)}
    return familias["gpr_consulta_vista_al_dia"].samples[0].value


def _rechazados_por_motivo(puerto_metricas):
    texto = urllib.request.urlopen(f"http://127.0.0.1:{puerto_metricas}/metrics", timeout=5).read().decode()
    por_motivo = Counter()
    for familia in text_string_to_metric_families(texto):
        if familia.name == "gpr_eventos_rechazados":
            for muestra in familia.samples:
                por_motivo[muestra.labels["motivo"]] += muestra.value
    return dict(por_motivo)


def _rechazos(motivo, cuantos):
    return [(None, b"bytes originales", [("gpr-motivo", motivo)]) for _ in range(cuantos)]


def _lineas_normalizadas(texto):
    """Las líneas de registro (empiezan con la fecha) sin la hora y con cada número como #."""
    lineas = [l for l in texto.splitlines() if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ", l)]
    return [re.sub(r"\d+", "#", l.split(" ", 2)[2]) for l in lineas]


def test_corte_de_kafka_not_serving_registro_acotado_y_vista_rehecha(broker, procesos):
    crear_topicos(broker.bootstrap, PARTICIONES, [INDICADORES, RECHAZADOS])
    viejas = [_ind(f"viejo-{n}", float(n)) for n in range(1, 21)]
    # Lo nuevo tiene menos registros por partición que lo viejo: la posición leída queda
    # fuera del log nuevo (lo que delata un tópico que volvió más corto).
    por_particion = Counter(particion_por_defecto(_registro(i)[0], PARTICIONES) for i in viejas)
    assert min(por_particion.values()) >= 3, por_particion
    publicar(broker.bootstrap, [_registro(i) for i in viejas], topico=INDICADORES)
    # 3 en 2 particiones: una tiene al menos 2, más que el único rechazo que habrá después.
    publicar(broker.bootstrap, _rechazos(b"tardio", 3), topico=RECHAZADOS)

    puerto_grpc, puerto_metricas = puerto_libre(), puerto_libre()
    procesos.lanzar("servicios.consulta", {
        "GPR_KAFKA_BOOTSTRAP": broker.bootstrap, "GPR_GRPC_HOST": "127.0.0.1", "GPR_GRPC_PUERTO": str(puerto_grpc),
        "GPR_METRICAS_HOST": "127.0.0.1", "GPR_METRICAS_PUERTO": str(puerto_metricas), "GPR_GRPC_GRACIA": "1s",
        "GPR_CONSULTA_PLAZO_KAFKA": "2s",
    })
    canal = grpc.insecure_channel(f"127.0.0.1:{puerto_grpc}")
    stub = ipb_grpc.IndicadoresStub(canal)
    pedido = ipb.SolicitudIndicador(agencia_id="reniec", servicio_id="viejo-7", indicador="solicitudes", ventana="24h")
    try:
        _esperar(lambda: _salud(canal) == SERVING, 60, "SERVING al arrancar")
        assert stub.ObtenerIndicador(pedido, timeout=5).valor == 7.0
        assert _al_dia(puerto_metricas) == 1
        _esperar(lambda: _rechazados_por_motivo(puerto_metricas) == {"tardio": 3}, 30, "rechazos contados")

        antes_del_corte = len(procesos.registro("consulta"))
        broker.detener()
        _esperar(lambda: _salud(canal) == NOT_SERVING, 30, "NOT_SERVING sin Kafka")
        assert _al_dia(puerto_metricas) == 0
        # La sonda de vida de Kubernetes pregunta por «vida»: el proceso atiende, no hay que
        # reiniciarlo por un corte de Kafka.
        assert health_pb2_grpc.HealthStub(canal).Check(health_pb2.HealthCheckRequest(service="vida"),
                                                       timeout=2).status == SERVING
        # Sin Kafka, lo último que leyó sigue disponible.
        assert stub.ObtenerIndicador(pedido, timeout=5).valor == 7.0
        time.sleep(CORTE_S)
        durante = _lineas_normalizadas(procesos.registro("consulta")[antes_del_corte:])
        repetidas = {linea: n for linea, n in Counter(durante).items() if n > 1}
        assert durante, "durante el corte se esperaba al menos un aviso"
        assert not repetidas, f"líneas repetidas durante el corte ({len(durante)} en total): {repetidas}"
        assert _salud(canal) == NOT_SERVING

        # Vuelve vacío; el tópico se crea de nuevo y se llena con otras series.
        broker.iniciar()
        crear_topicos(broker.bootstrap, PARTICIONES, [INDICADORES, RECHAZADOS])
        publicar(broker.bootstrap, _rechazos(b"duplicado", 1), topico=RECHAZADOS)
        nuevas = [_ind("nuevo-1", 100.0), _ind("nuevo-2", 200.0)]
        publicar(broker.bootstrap, [_registro(i) for i in nuevas], topico=INDICADORES)
        _esperar(lambda: _salud(canal) == SERVING, 60, "SERVING con el broker de vuelta")
        lista = stub.ListarIndicadores(ipb.FiltroIndicadores(agencia_id="reniec"), timeout=5).indicadores
        assert [(i.servicio_id, i.valor) for i in lista] == [("nuevo-1", 100.0), ("nuevo-2", 200.0)]
        with pytest.raises(grpc.RpcError) as error:
            stub.ObtenerIndicador(pedido, timeout=5)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
        assert _al_dia(puerto_metricas) == 1
        _esperar(lambda: _rechazados_por_motivo(puerto_metricas) == {"duplicado": 1}, 30,
                 "rechazos contados de nuevo desde el tópico nuevo")
        registro = procesos.registro("consulta")
        assert "se reconstruye desde el principio" in registro
        # Cada cambio de la salud queda en el registro, aunque el filtro calle los repetidos.
        cambios = [l.split("salud: ")[1].split(" (")[0] for l in registro.splitlines() if "salud: " in l]
        assert cambios == ["SERVING", "NOT_SERVING", "SERVING"], cambios
    finally:
        canal.close()
    assert "Traceback" not in procesos.registro("consulta")[:antes_del_corte]
