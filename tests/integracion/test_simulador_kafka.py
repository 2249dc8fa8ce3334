"""`python -m servicios.simulador` contra el broker embebido: lo publicado se lee de vuelta
(aiokafka, sin grupo), decodifica como Evento válido y lleva el caso como clave."""

from __future__ import annotations

import asyncio
import re
import signal
import time

import pytest

from gpr.v1 import eventos_pb2 as pb
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.eventos import validar
from servicios.comun.topicos import EVENTOS

from conftest import CATALOGO

pytestmark = pytest.mark.integracion

PARTICIONES = 4


def leer_eventos(bootstrap: str, esperados: int, limite_s: float = 20.0, gracia_s: float = 1.0):
    """Registros de gpr.eventos.v1 desde el principio, hasta tener `esperados` (y `gracia_s`
    más, para ver si sobra alguno) o vencer el plazo. No se usa end_offsets: en Tansu
    devuelve el offset base del último lote, no el final del registro."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def leer():
        consumidor = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumidor.start()
        try:
            await consumidor.topics()
            particiones = [TopicPartition(EVENTOS, p) for p in sorted(consumidor.partitions_for_topic(EVENTOS))]
            consumidor.assign(particiones)
            await consumidor.seek_to_beginning(*particiones)
            registros = []
            fin = time.monotonic() + limite_s
            while time.monotonic() < fin:
                for lote in (await consumidor.getmany(timeout_ms=200)).values():
                    registros.extend(lote)
                if len(registros) >= esperados:
                    fin = min(fin, time.monotonic() + gracia_s)
            return registros
        finally:
            await consumidor.stop()

    return asyncio.run(leer())


def _comprobar(registros):
    catalogo = cargar_catalogo(CATALOGO)
    ahora = time.time()
    particion_de_caso = {}
    eventos = []
    for r in registros:
        evento = pb.Evento.FromString(r.value)
        assert validar(evento, catalogo, ahora) is None, evento
        assert evento.caso_id and r.key == evento.caso_id.encode()
        # Todo el ciclo de un caso en una partición: el procesador necesita su orden.
        assert particion_de_caso.setdefault(evento.caso_id, r.partition) == r.partition
        eventos.append(evento)
    assert len({e.evento_id for e in eventos}) == len(eventos)
    return eventos


def _env(bootstrap, **extra):
    return {"GPR_KAFKA_BOOTSTRAP": bootstrap, "GPR_CATALOGO": str(CATALOGO),
            "GPR_PARTICIONES": str(PARTICIONES), **extra}


def test_publica_un_numero_acotado_de_eventos(bootstrap, procesos):
    proceso = procesos.lanzar("servicios.simulador", _env(
        bootstrap, GPR_SIMULADOR_MAXIMO="500", GPR_SIMULADOR_TASA="2000", GPR_SIMULADOR_HISTORIA="1d",
    ))
    assert proceso.wait(30) == 0, procesos.registro("simulador")
    assert "terminado: 500 eventos publicados, 0 envíos fallidos" in procesos.registro("simulador")

    registros = leer_eventos(bootstrap, 500)
    assert len(registros) == 500
    eventos = _comprobar(registros)
    assert {r.partition for r in registros} == set(range(PARTICIONES))
    assert {e.tipo for e in eventos} >= {pb.SOLICITUD_RECIBIDA, pb.ETAPA_INICIADA, pb.ETAPA_COMPLETADA}
    # La historia empieza un día atrás y nada sale por delante del reloj de pared.
    instantes = [e.ocurrido_en.seconds for e in eventos]
    assert time.time() - 86400 - 60 <= min(instantes) and max(instantes) <= time.time()


def test_sigterm_vacia_el_productor_y_termina(bootstrap, procesos):
    proceso = procesos.lanzar("servicios.simulador", _env(bootstrap, GPR_SIMULADOR_TASA="300"))
    time.sleep(3)
    assert proceso.poll() is None, procesos.registro("simulador")
    proceso.send_signal(signal.SIGTERM)
    assert proceso.wait(15) == 0, procesos.registro("simulador")
    registro = procesos.registro("simulador")
    final = re.search(r"terminado: (\d+) eventos publicados, 0 envíos fallidos", registro)
    assert final, registro
    publicados = int(final.group(1))
    assert publicados > 100
    # Todo lo que el simulador dio por publicado está en el tópico, ni más ni menos.
    registros = leer_eventos(bootstrap, publicados)
    assert len(registros) == publicados
    _comprobar(registros)


def test_configuracion_invalida_sale_con_codigo_2(bootstrap, procesos):
    proceso = procesos.lanzar("servicios.simulador", _env(bootstrap, GPR_SIMULADOR_LENTOS="sunarp/no-existe:emision"))
    assert proceso.wait(15) == 2
    assert "GPR_SIMULADOR_LENTOS" in procesos.registro("simulador")
