"""Un productor idempotente de kafka-python que quedó trabado tras un lote vencido se reemplaza
solo: en la Ingesta y en `gpr_cliente.PublicadorKafka`, contra el broker embebido real.

Cómo se traba (kafka-python 3.0.12, leído en su código y reproducido aquí): con el broker
congelado (SIGSTOP) una petición de produce vence (`request_timeout_ms`), el lote se reintenta
y luego vence su `delivery_timeout_ms` (KafkaTimeoutError). Por ser un lote ya enviado, el
productor olvida su producer id (`reset_producer_id`) pero su estado sigue READY, y
`init_producer_id` solo pide uno nuevo desde UNINITIALIZED: el hilo emisor espera para siempre
un producer id que nadie pide, ya no vence lotes, y todo envío posterior queda sin acuse. El
broker no interviene (no llega a recibir un InitProducerId).

Lo esperado se calcula aparte: los eventos de cada prueba, escritos a mano; la etapa por caso
del procesador (`MotorEnLotes`) sobre lo que quedó en el tópico debe contar cada evento una
vez aunque un envío que "venció" haya llegado igual y el reintento lo repita.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kafka.producer.sender import Sender

from apoyo.ingesta import (
    B,
    CATALOGO as CATALOGO_INGESTA,
    NOT_SERVING,
    PARTICIONES,
    SERVING,
    TOKEN_RENIEC,
    autorizacion,
    esperar_salud,
    evento,
    eventos_de,
    ingesta_en_proceso,
    leer_topico,
    metricas,
)
from apoyo.motor import MotorEnLotes, procesar_como_el_procesador
from gpr.v1 import ingesta_pb2
from gpr_cliente import PublicadorKafka
from gpr_cliente.kafka import es_reintentable
from servicios.comun.broker import BrokerEmbebido
from servicios.comun.topicos import EVENTOS, RECHAZADOS, crear_topicos

pytestmark = [pytest.mark.integracion, pytest.mark.timeout(120)]

H = 3600
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


def _congelar(broker):
    os.kill(broker._proceso.pid, signal.SIGSTOP)


def _descongelar(broker):
    os.kill(broker._proceso.pid, signal.SIGCONT)


def _solicitudes(n: int, prefijo: str):
    """n solicitudes de dni-duplicado, una por caso, en horas distintas de la misma ventana."""
    return [evento(f"{prefijo}{i}", caso=f"{prefijo}-c{i}", t=B + (i + 1) * H) for i in range(n)]


def _contar_con_el_procesador(registros, ahora):
    """(aceptados, duplicados, (valor, muestras) de solicitudes 24h de reniec/dni-duplicado)
    según el reparto, la etapa por caso y la agregación del procesador."""
    motor = MotorEnLotes(CATALOGO_INGESTA, ahora)
    aceptados, duplicados, rechazos = procesar_como_el_procesador(motor, registros, PARTICIONES)
    assert not rechazos, rechazos
    valores, _ = motor.observado("reniec")
    return aceptados, duplicados, valores.get(("dni-duplicado", "solicitudes", "24h", ""))


def _hilos_de_productor() -> set[threading.Thread]:
    """Los hilos de red de los productores de kafka-python vivos en este proceso."""
    return {h for h in threading.enumerate() if isinstance(h, Sender)}


def _esperar_que_terminen(hilos: set[threading.Thread], limite_s: float = 20.0) -> set[threading.Thread]:
    """Los que siguen vivos tras esperar a lo más `limite_s`."""
    fin = time.monotonic() + limite_s
    for hilo in hilos:
        hilo.join(max(0.0, fin - time.monotonic()))
    return {h for h in hilos if h.is_alive()}


class _Vigia:
    """Sigue la salud de la ingesta con `Health.Watch` (cada cambio, sin sondear): lo que vio."""

    def __init__(self, canal):
        self.estados: list[int] = []
        self._llamada = health_pb2_grpc.HealthStub(canal).Watch(health_pb2.HealthCheckRequest(service=""))
        self._hilo = threading.Thread(target=self._leer, daemon=True)
        self._hilo.start()

    def _leer(self):
        with contextlib.suppress(grpc.RpcError):
            for respuesta in self._llamada:
                self.estados.append(respuesta.status)

    def cerrar(self):
        self._llamada.cancel()
        self._hilo.join(5)


# ── la Ingesta ─────────────────────────────────────────────────────────────────────────────

def test_ingesta_reemplaza_el_productor_trabado_y_cuenta_cada_evento_una_vez(tmp_path):
    """Broker congelado mientras llegan peticiones: vencen (UNAVAILABLE con un mensaje claro) y
    el productor queda trabado. Se descongela en cuanto fallan, así el sondeo de metadatos ve
    un broker sano. La ingesta debe notar que su productor no escribe (NOT_SERVING), crear otro
    (SERVING) y aceptar los reintentos de los mismos eventos. Antes: seguía SERVING y respondía
    «Kafka no confirmó los registros en 2 s» a toda petición, para siempre.

    GPR_INGESTA_SONDEO=1h: sana por lo que ve una petición, no por el sondeo periódico."""
    eventos = _solicitudes(4, "t")
    previos = _hilos_de_productor()
    with BrokerEmbebido(registro=tmp_path / "tansu.log") as broker:
        with ingesta_en_proceso(broker.bootstrap, GPR_INGESTA_SONDEO="1h", GPR_INGESTA_REINTENTO_MAXIMO="1s") \
                as (servicio, canal, stub):
            md = autorizacion(TOKEN_RENIEC)
            antes = evento("t-antes", caso="t-c-antes", t=B)
            assert stub.Publicar(ingesta_pb2.SolicitudPublicar(eventos=[antes]), metadata=md, timeout=10).aceptados == 1
            vigia = _Vigia(canal)
            try:
                esperar_salud(canal, SERVING, limite_s=5)

                def publicar(e):
                    try:
                        stub.Publicar(ingesta_pb2.SolicitudPublicar(eventos=[e]), metadata=md, timeout=20)
                        return None
                    except grpc.RpcError as error:
                        return error.code(), error.details()

                def publicar_tras(i):
                    # Escalonadas: cuando vence el primer lote, los de las otras siguen en vuelo o en
                    # cola (el productor trabado no los vencerá nunca: hay que cerrarlo a la fuerza).
                    time.sleep(0.4 * i)
                    return publicar(eventos[i])

                _congelar(broker)
                try:
                    # Peticiones a la vez, con el broker congelado: ninguna puede confirmarse.
                    with ThreadPoolExecutor(len(eventos)) as hilos:
                        durante = list(hilos.map(publicar_tras, range(len(eventos))))
                finally:
                    _descongelar(broker)
                    descongelado = time.monotonic()
                assert all(r is not None and r[0] == UNAVAILABLE for r in durante), durante
                assert all("reintente" in r[1] and "Kafka" in r[1] for r in durante), durante

                # Reintentos del mismo lote (mismos evento_id) hasta que la ingesta acepte, con
                # un límite generoso: con el productor trabado no aceptaría nunca.
                pendientes, fallos = list(eventos), []
                fin = time.monotonic() + 60
                while pendientes and time.monotonic() < fin:
                    r = publicar(pendientes[0])
                    if r is None:
                        pendientes.pop(0)
                    else:
                        fallos.append(r)
                        time.sleep(0.3)
                assert not pendientes, fallos[-3:]
                sanada_s = time.monotonic() - descongelado
                esperar_salud(canal, SERVING, limite_s=10)
                muestras = metricas(servicio.puerto_metricas)
            finally:
                vigia.cerrar()
            registros = leer_topico(broker.bootstrap, EVENTOS, 1 + len(eventos))
            rechazados = leer_topico(broker.bootstrap, RECHAZADOS, 0, extra_s=0.2)
    print(f"\ningesta: {len(eventos)} eventos aceptados {sanada_s:.1f} s después de descongelar el broker, "
          f"{len(fallos)} reintentos UNAVAILABLE; salud vista: {vigia.estados}")

    # La salud pasó por NOT_SERVING (productor descartado) y volvió a SERVING (uno nuevo).
    assert NOT_SERVING in vigia.estados, vigia.estados
    assert vigia.estados[-1] == SERVING, vigia.estados
    assert vigia.estados.index(NOT_SERVING) < len(vigia.estados) - 1
    assert muestras[("gpr_ingesta_productores_creados_total", ())] >= 2
    assert muestras[("gpr_ingesta_kafka_listo", ())] == 1
    # El productor trabado se cerró del todo (su hilo de red terminó), también el último.
    assert not _esperar_que_terminen(_hilos_de_productor() - previos)

    # En el tópico: cada evento al menos una vez (los que llegaron pese al vencimiento, dos).
    ids = [e.evento_id for _, e, _ in eventos_de(registros)]
    esperados = {"t-antes"} | {e.evento_id for e in eventos}
    assert set(ids) == esperados, ids
    assert not rechazados
    # El procesador cuenta cada uno una vez: 5 solicitudes de 5 casos distintos, todas en
    # las horas B..B+4h (una misma ventana de 24 h); lo repetido va a duplicados.
    aceptados, duplicados, solicitudes = _contar_con_el_procesador(registros, ahora=B + 10 * H)
    print(f"en el tópico: {len(ids)} eventos, {duplicados} repetidos (llegaron pese a vencer)")
    assert (aceptados, duplicados) == (5, len(ids) - 5)
    assert solicitudes == (5.0, 5)


# ── gpr_cliente.PublicadorKafka ────────────────────────────────────────────────────────────

def _publicador(bootstrap):
    # Plazos cortos para que el lote venza pronto; request_timeout < delivery_timeout, así el
    # lote se reintenta antes de vencer (es lo que traba al productor).
    return PublicadorKafka(bootstrap, request_timeout_ms=700, delivery_timeout_ms=1500, max_block_ms=2000,
                           reconnect_backoff_max_ms=500)


def _eventos_cliente(n: int, prefijo: str):
    return _solicitudes(n, prefijo)


def test_publicador_kafka_reemplaza_el_productor_tras_un_lote_vencido(tmp_path):
    """Con el broker congelado, los envíos vencen: cada `Envio` termina (ninguno queda colgado)
    con un error reintentable; al descongelar, el publicador usa un productor nuevo y los
    mismos eventos se publican. Antes: los envíos que no vencieron quedaban sin acuse para
    siempre y todo envío posterior también."""
    eventos = _eventos_cliente(6, "k")
    previos = _hilos_de_productor()
    with BrokerEmbebido(registro=tmp_path / "tansu.log") as broker:
        crear_topicos(broker.bootstrap, PARTICIONES, [EVENTOS])
        publicador = _publicador(broker.bootstrap)
        try:
            assert publicador.publicar([evento("k-antes", caso="k-c-antes", t=B)]).todo_aceptado
            _congelar(broker)
            try:
                envios = []
                # En tandas, para que haya lotes en vuelo y otros en cola cuando venza el primero.
                for i in range(0, len(eventos), 2):
                    envios += publicador.enviar(eventos[i:i + 2])
                    time.sleep(0.3)
                fin = time.monotonic() + 30
                while not all(e.hecho for e in envios) and time.monotonic() < fin:
                    time.sleep(0.1)
            finally:
                _descongelar(broker)
            assert all(e.hecho for e in envios), [(e.hecho, e.error) for e in envios]
            assert publicador.pendientes == 0
            assert all(e.error is not None and es_reintentable(e.error) for e in envios), [e.error for e in envios]
            print("\nerrores de los envíos con el broker congelado:", sorted({type(e.error).__name__ for e in envios}))

            # Los mismos eventos (mismos evento_id), con reintentos: se publican con el broker de vuelta.
            resumen = publicador.publicar(eventos, reintentos=5, espera_reintento_s=0.2, plazo_s=60)
            assert resumen.todo_aceptado, resumen
        finally:
            publicador.cerrar()
        registros = leer_topico(broker.bootstrap, EVENTOS, 1 + len(eventos))

    ids = [e.evento_id for _, e, _ in eventos_de(registros)]
    assert set(ids) == {"k-antes"} | {e.evento_id for e in eventos}, ids
    aceptados, duplicados, solicitudes = _contar_con_el_procesador(registros, ahora=B + 10 * H)
    print(f"en el tópico: {len(ids)} eventos, {duplicados} repetidos (llegaron pese a vencer)")
    assert (aceptados, duplicados) == (7, len(ids) - 7)
    assert solicitudes == (7.0, 7)
    # Ni el productor descartado ni el último dejan su hilo de red vivo.
    assert not _esperar_que_terminen(_hilos_de_productor() - previos)


def test_publicar_con_reintentos_sana_cuando_el_broker_vuelve(tmp_path, caplog):
    """`publicar` con el broker congelado: la primera ronda vence; antes de reintentar, el
    broker vuelve; la ronda siguiente sale por un productor nuevo y todo queda aceptado, cada
    evento contado una vez por el procesador. Antes: la ronda quedaba sin acuse hasta el plazo.
    Dos congelamientos: dos productores reemplazados y una sola línea de registro (una por
    intervalo, no una por reemplazo)."""
    caplog.set_level(logging.WARNING, logger="gpr_cliente.kafka")
    eventos = _eventos_cliente(6, "p")
    otros = _eventos_cliente(3, "q")
    with BrokerEmbebido(registro=tmp_path / "tansu.log") as broker:
        crear_topicos(broker.bootstrap, PARTICIONES, [EVENTOS])
        publicador = _publicador(broker.bootstrap)
        rondas = []

        def al_reintentar(ronda, cuantos, error):
            rondas.append((ronda, cuantos, type(error).__name__))
            _descongelar(broker)

        def publicar_congelado(lote):
            """Publica `lote` con el broker congelado; el primer reintento lo descongela."""
            _congelar(broker)
            try:
                return publicador.publicar(lote, reintentos=5, espera_reintento_s=0.2, plazo_s=60,
                                           al_reintentar=al_reintentar)
            finally:
                _descongelar(broker)

        try:
            assert publicador.publicar([evento("p-antes", caso="p-c-antes", t=B)]).todo_aceptado
            resumen = publicar_congelado(eventos)
            assert resumen.todo_aceptado, resumen
            assert rondas and rondas[0][0] == 1, rondas
            # Lo que se publica después sale por el productor nuevo, sin reintentos.
            assert publicador.publicar([evento("p-despues", caso="p-c-despues", t=B + 8 * H)],
                                       reintentos=0, plazo_s=30).todo_aceptado
            assert publicador.reemplazos == 1

            # Otra vez: otro reemplazo, ninguna línea de registro más dentro del intervalo.
            rondas.clear()
            resumen = publicar_congelado(otros)
            assert resumen.todo_aceptado, resumen
            assert rondas, "la segunda ronda congelada debía fallar y reintentarse"
            assert publicador.reemplazos == 2
        finally:
            publicador.cerrar()
        registros = leer_topico(broker.bootstrap, EVENTOS, 2 + len(eventos) + len(otros))

    avisos = [r for r in caplog.records if r.name == "gpr_cliente.kafka" and "reemplazado" in r.getMessage()]
    assert len(avisos) == 1, [r.getMessage() for r in avisos]
    ids = [e.evento_id for _, e, _ in eventos_de(registros)]
    assert set(ids) == {"p-antes", "p-despues"} | {e.evento_id for e in eventos + otros}, ids
    aceptados, duplicados, solicitudes = _contar_con_el_procesador(registros, ahora=B + 10 * H)
    print(f"en el tópico: {len(ids)} eventos, {duplicados} repetidos (llegaron pese a vencer)")
    assert (aceptados, duplicados) == (11, len(ids) - 11)
    assert solicitudes == (11.0, 11)
