"""`python -m servicios.simulador` contra el broker embebido: lo publicado se lee de vuelta
(aiokafka, sin grupo), decodifica como Evento válido y lleva el caso como clave. Tras SIGTERM
(también en pleno arranque, o con el broker congelado) el proceso termina dentro de su plazo
y lo que da por publicado está en el tópico."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time

import pytest

from gpr.v1 import eventos_pb2 as pb
from servicios.comun.broker import BrokerEmbebido
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.eventos import validar
from servicios.comun.topicos import EVENTOS
from servicios.simulador.__main__ import PLAZO_SALIDA_S

from conftest import CATALOGO

pytestmark = pytest.mark.integracion

PARTICIONES = 4
# El simulador se obliga a salir PLAZO_SALIDA_S después de la señal pase lo que pase; el
# margen cubre una máquina de CI cargada. Pasado esto no es lentitud: está colgado.
LIMITE_SALIDA_S = PLAZO_SALIDA_S + 10
# Arrancar es importar, leer el catálogo y conectar: segundos, salvo con la CPU muy cargada.
LIMITE_ARRANQUE_S = 60.0
FINAL = re.compile(r"terminado: (\d+) eventos publicados, (\d+) envíos fallidos(?:, (\d+) sin confirmar)?")


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
        assert evento.caso_id and r.key == f"{evento.agencia_id}/{evento.caso_id}".encode()
        # Todo el ciclo de un caso en una partición: el procesador necesita su orden.
        assert particion_de_caso.setdefault(evento.caso_id, r.partition) == r.partition
        eventos.append(evento)
    assert len({e.evento_id for e in eventos}) == len(eventos)
    return eventos


def _env(bootstrap, **extra):
    return {"GPR_KAFKA_BOOTSTRAP": bootstrap, "GPR_CATALOGO": str(CATALOGO),
            "GPR_PARTICIONES": str(PARTICIONES), **extra}


def _esperar_registro(proceso, procesos, texto: str, limite_s: float = LIMITE_ARRANQUE_S) -> None:
    """Espera a que el simulador escriba `texto`: la señal debe caer en una fase conocida y no
    antes de que el proceso la atienda (durante los imports, SIGTERM aún lo mata sin más)."""
    fin = time.monotonic() + limite_s
    while texto not in procesos.registro("simulador"):
        if proceso.poll() is not None or time.monotonic() > fin:
            pytest.fail(f"el simulador no llegó a «{texto}» (código {proceso.poll()}):\n"
                        f"{procesos.registro('simulador')}")
        time.sleep(0.01)


def _esperar_salida(proceso, procesos, limite_s: float = LIMITE_SALIDA_S) -> int:
    """Código de salida; si no termina a tiempo, falla con su registro y la pila de sus hilos."""
    try:
        return proceso.wait(limite_s)
    except subprocess.TimeoutExpired:
        # El simulador vuelca la pila de cada hilo en su registro con SIGUSR1 (faulthandler).
        proceso.send_signal(signal.SIGUSR1)
        time.sleep(1)
        proceso.kill()
        proceso.wait()
        pytest.fail(f"el simulador no terminó en {limite_s:g} s (se mató):\n{procesos.registro('simulador')}")


def _final(registro: str) -> tuple[int, int, int]:
    """(publicados, fallidos, sin confirmar) de la línea final, que debe ser única."""
    finales = FINAL.findall(registro)
    assert len(finales) == 1, registro
    publicados, fallidos, sin_confirmar = finales[0]
    return int(publicados), int(fallidos), int(sin_confirmar or 0)


def test_publica_un_numero_acotado_de_eventos(bootstrap, procesos):
    proceso = procesos.lanzar("servicios.simulador", _env(
        bootstrap, GPR_SIMULADOR_MAXIMO="500", GPR_SIMULADOR_TASA="2000", GPR_SIMULADOR_HISTORIA="1d",
    ))
    assert _esperar_salida(proceso, procesos, LIMITE_ARRANQUE_S) == 0, procesos.registro("simulador")
    assert _final(procesos.registro("simulador")) == (500, 0, 0)

    registros = leer_eventos(bootstrap, 500)
    assert len(registros) == 500
    eventos = _comprobar(registros)
    assert {r.partition for r in registros} == set(range(PARTICIONES))
    assert {e.tipo for e in eventos} >= {pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, pb.TIPO_EVENTO_ETAPA_INICIADA, pb.TIPO_EVENTO_ETAPA_COMPLETADA}
    # La historia empieza un día atrás y nada sale por delante del reloj de pared.
    instantes = [e.ocurrido_en.seconds for e in eventos]
    assert time.time() - 86400 - 60 <= min(instantes) and max(instantes) <= time.time()


def test_sigterm_vacia_el_productor_y_termina(bootstrap, procesos):
    proceso = procesos.lanzar("servicios.simulador", _env(bootstrap, GPR_SIMULADOR_TASA="300"))
    _esperar_registro(proceso, procesos, "simulando desde")
    time.sleep(2)
    assert proceso.poll() is None, procesos.registro("simulador")
    proceso.send_signal(signal.SIGTERM)
    assert _esperar_salida(proceso, procesos) == 0, procesos.registro("simulador")
    registro = procesos.registro("simulador")
    publicados, fallidos, sin_confirmar = _final(registro)
    assert (fallidos, sin_confirmar) == (0, 0), registro
    assert publicados > 100, registro
    assert "vaciando el productor" in registro and "productor vacío en" in registro, registro
    # Todo lo que el simulador dio por publicado está en el tópico, ni más ni menos.
    registros = leer_eventos(bootstrap, publicados)
    assert len(registros) == publicados
    _comprobar(registros)


# Tras «creando los tópicos»: 0 s cae mientras se crean los tópicos; luego, según lo cargada
# que esté la máquina, durante la construcción del productor, la espera de metadatos del
# primer envío o los primeros envíos. En todos los casos debe salir con 0 y sin perder nada.
@pytest.mark.parametrize("retraso_s", [0.0, 0.1, 0.3, 1.0])
def test_sigterm_durante_el_arranque_termina_limpio(bootstrap, procesos, retraso_s):
    proceso = procesos.lanzar("servicios.simulador", _env(bootstrap, GPR_SIMULADOR_TASA="300"))
    _esperar_registro(proceso, procesos, "creando los tópicos que falten")
    time.sleep(retraso_s)
    proceso.send_signal(signal.SIGTERM)
    assert _esperar_salida(proceso, procesos) == 0, procesos.registro("simulador")
    registro = procesos.registro("simulador")
    assert "señal SIGTERM recibida" in registro, registro
    publicados, fallidos, sin_confirmar = _final(registro)
    assert (fallidos, sin_confirmar) == (0, 0), registro
    registros = leer_eventos(bootstrap, publicados)
    assert len(registros) == publicados, registro
    _comprobar(registros)


def test_sigterm_con_el_broker_congelado_termina_dentro_del_plazo(tmp_path, procesos):
    """Sin acuses posibles el cierre no espera para siempre: abandona lo pendiente, sale con 1
    y no lo cuenta como publicado."""
    with BrokerEmbebido(registro=tmp_path / "tansu.log") as broker:
        proceso = procesos.lanzar("servicios.simulador", _env(broker.bootstrap, GPR_SIMULADOR_TASA="300"))
        _esperar_registro(proceso, procesos, "simulando desde")
        time.sleep(1)
        os.kill(broker._proceso.pid, signal.SIGSTOP)
        try:
            time.sleep(0.5)
            proceso.send_signal(signal.SIGTERM)
            assert _esperar_salida(proceso, procesos) == 1, procesos.registro("simulador")
        finally:
            os.kill(broker._proceso.pid, signal.SIGCONT)
        registro = procesos.registro("simulador")
        assert "el broker no confirmó" in registro, registro
        publicados, _, sin_confirmar = _final(registro)
        assert sin_confirmar > 0, registro
        # Lo confirmado está; de lo abandonado, el broker pudo escribir una parte o nada (por
        # eso se espera solo lo confirmado, y un poco más por si llega el resto).
        registros = leer_eventos(broker.bootstrap, publicados, gracia_s=2.0)
        assert publicados <= len(registros) <= publicados + sin_confirmar, registro
        _comprobar(registros)


def test_sigterm_arrancando_contra_un_broker_congelado_sale_a_la_fuerza(tmp_path, procesos):
    """Crear los tópicos contra un broker que no responde no tiene plazo propio: ahí actúa la
    red de seguridad, que vuelca la pila de cada hilo y sale con 1 sin dar nada por publicado."""
    with BrokerEmbebido(registro=tmp_path / "tansu.log") as broker:
        os.kill(broker._proceso.pid, signal.SIGSTOP)
        try:
            proceso = procesos.lanzar("servicios.simulador", _env(broker.bootstrap))
            _esperar_registro(proceso, procesos, "creando los tópicos que falten")
            proceso.send_signal(signal.SIGTERM)
            assert _esperar_salida(proceso, procesos) == 1, procesos.registro("simulador")
        finally:
            os.kill(broker._proceso.pid, signal.SIGCONT)
    registro = procesos.registro("simulador")
    assert "Timeout (" in registro and "most recent call first" in registro, registro
    assert "crear_topicos" in registro, registro
    assert "terminado:" not in registro, registro


def test_configuracion_invalida_sale_con_codigo_2(bootstrap, procesos):
    proceso = procesos.lanzar("servicios.simulador", _env(bootstrap, GPR_SIMULADOR_LENTOS="sunarp/no-existe:emision"))
    assert _esperar_salida(proceso, procesos) == 2
    assert "GPR_SIMULADOR_LENTOS" in procesos.registro("simulador")
