"""Ayudas de las pruebas de la Ingesta gRPC: eventos, credenciales, la ingesta en proceso o
como subproceso, su salud y la lectura de los tópicos del broker real."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from gpr.v1 import eventos_pb2 as pb
from gpr.v1 import ingesta_pb2_grpc
from servicios.comun.broker import puerto_libre
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.eventos import decodificar
from servicios.comun.topicos import CABECERA_LOTE
from servicios.ingesta import config
from servicios.ingesta.credenciales import Credenciales, hash_token, nuevo_token
from servicios.ingesta.servidor import IngestaEnHilo

RAIZ = Path(__file__).resolve().parents[2]
CATALOGO = cargar_catalogo(RAIZ / "despliegue" / "catalogo.yaml")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
PARTICIONES = 4
LOTE_MAXIMO = 20
FLUJO_MAXIMO = 30

TOKEN_RENIEC = nuevo_token()
TOKEN_SUNARP = nuevo_token()
CREDENCIALES = Credenciales({hash_token(TOKEN_RENIEC): "reniec", hash_token(TOKEN_SUNARP): "sunarp"})

H = 3600
D = 86400
AHORA = int(time.time())
# Una base en el pasado, alineada a la hora: ningún evento queda en el futuro (la ingesta
# rechaza lo que ocurre más de 5 minutos después de su reloj, que es el real).
B = (AHORA // H - 72) * H
R, E = pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, pb.TIPO_EVENTO_SERVICIO_ENTREGADO


def evento(eid, tipo=R, caso="c1", t=B, agencia="reniec", servicio="dni-duplicado", plazo=None, **campos):
    e = pb.Evento(evento_id=eid, fuente="prueba", tipo=tipo, agencia_id=agencia, servicio_id=servicio, caso_id=caso,
                  **campos)
    if t is not None:
        e.ocurrido_en.seconds = t
    if plazo is not None:
        e.plazo_dias = plazo
    return e


def autorizacion(token):
    return [("authorization", f"Bearer {token}")]


def env_ingesta(bootstrap, **cambios):
    env = {
        "GPR_KAFKA_BOOTSTRAP": bootstrap,
        # En proceso las credenciales se pasan ya cargadas: el archivo no se lee.
        "GPR_INGESTA_CREDENCIALES": "credenciales-en-memoria",
        "GPR_PARTICIONES": str(PARTICIONES),
        "GPR_INGESTA_LOTE_MAXIMO": str(LOTE_MAXIMO),
        "GPR_INGESTA_FLUJO_MAXIMO": str(FLUJO_MAXIMO),
        "GPR_INGESTA_PLAZO_KAFKA": "2s",
        "GPR_GRPC_HOST": "127.0.0.1",
        "GPR_GRPC_PUERTO": "0",
        "GPR_METRICAS_HOST": "127.0.0.1",
        "GPR_METRICAS_PUERTO": str(puerto_libre()),
        "GPR_GRPC_GRACIA": "1s",
    }
    env.update(cambios)
    return env


def esperar_salud(canal, estado=SERVING, limite_s=20.0, servicio=""):
    stub = health_pb2_grpc.HealthStub(canal)
    fin = time.monotonic() + limite_s
    ultimo = None
    while time.monotonic() < fin:
        try:
            ultimo = stub.Check(health_pb2.HealthCheckRequest(service=servicio), timeout=1).status
            if ultimo == estado:
                return
        except grpc.RpcError as error:
            ultimo = error.code()
        time.sleep(0.05)
    raise AssertionError(f"la salud no llegó a {estado} en {limite_s:.0f} s (último: {ultimo})")


@contextlib.contextmanager
def ingesta_en_proceso(bootstrap, credenciales=CREDENCIALES, esperar=True, trazas=None, **cambios):
    """La ingesta en proceso, un canal y su stub; espera a SERVING salvo `esperar=False`.
    `trazas`: las de la prueba (sin ellas, las de la configuración: OTEL_* en `cambios`)."""
    cfg = config.leer(env_ingesta(bootstrap, **cambios))
    with IngestaEnHilo(cfg, CATALOGO, credenciales, trazas) as servicio:
        canal = grpc.insecure_channel(f"127.0.0.1:{servicio.puerto_grpc}")
        try:
            if esperar:
                esperar_salud(canal)
            yield servicio, canal, ingesta_pb2_grpc.IngestaStub(canal)
        finally:
            canal.close()


def error_de(llamada, *args, **kwargs):
    """(código, detalle) del error gRPC de la llamada (falla la prueba si no hay error)."""
    with pytest.raises(grpc.RpcError) as error:
        llamada(*args, timeout=kwargs.pop("timeout", 10), **kwargs)
    return error.value.code(), error.value.details()


def leer_topico(bootstrap, topico, minimo, limite_s=10.0, extra_s=0.5, particiones=PARTICIONES):
    """Todos los registros del tópico: se asignan sus particiones, se lee desde el principio
    hasta tener al menos `minimo` eventos (un LoteEventos cuenta los suyos) y se sigue
    `extra_s` más para ver si sobra alguno. Sin `end_offsets` (docs/decisiones.md)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def leer():
        consumidor = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
        await consumidor.start()
        try:
            tps = [TopicPartition(topico, p) for p in range(particiones)]
            consumidor.assign(tps)
            await consumidor.seek_to_beginning(*tps)
            registros, eventos = [], 0
            fin = time.monotonic() + limite_s
            while time.monotonic() < fin and eventos < minimo:
                for lote in (await consumidor.getmany(timeout_ms=200)).values():
                    registros.extend(lote)
                    eventos += sum(_cuantos(r) for r in lote)
            fin = time.monotonic() + extra_s
            while time.monotonic() < fin:
                for lote in (await consumidor.getmany(timeout_ms=100)).values():
                    registros.extend(lote)
            return registros
        finally:
            await consumidor.stop()

    return asyncio.run(leer())


def _cuantos(registro):
    try:
        return len(decodificar(registro.value, registro.headers))
    except ValueError:
        return 1


def eventos_de(registros):
    """(partición, evento, es_lote) de cada evento de los registros, en orden de lectura."""
    return [(r.partition, e, any(k == CABECERA_LOTE for k, _ in r.headers or ()))
            for r in registros for e in decodificar(r.value, r.headers)]


def metricas(puerto) -> dict[tuple[str, tuple], float]:
    """{(muestra, etiquetas ordenadas): valor} del /metrics de un servicio."""
    texto = urllib.request.urlopen(f"http://127.0.0.1:{puerto}/metrics", timeout=5).read().decode()
    return {(m.name, tuple(sorted(m.labels.items()))): m.value
            for f in text_string_to_metric_families(texto) for m in f.samples}
