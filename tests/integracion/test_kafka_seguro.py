"""Cada cliente Kafka del proyecto con TLS y con SASL, hasta donde lo permite el broker embebido
(docs/seguridad-kafka.md dice con precisión qué no se puede probar aquí y por qué).

- TLS: Tansu no cifra su oyente, así que va detrás de un frente TLS real (OpenSSL, del módulo
  `ssl`) que además exige el certificado del cliente (TLS mutuo). Por él pasan, de punta a
  punta, la CLI que publica, el procesador (faust y kafka-python), la consulta (aiokafka) que
  sirve lo calculado, la Ingesta y el simulador; los valores esperados se calcularon a mano.
- SASL: Tansu con `--authentication` negocia SCRAM pero no puede tener usuarios (crearlos exige
  estar autenticado y su almacén es de memoria): toda credencial es mala. Se prueba lo que un
  operador ve con una contraseña equivocada: un error claro, a tiempo, sin la contraseña.
- Y los cruces: cliente sin TLS contra el frente TLS, TLS contra un broker sin TLS, otra CA,
  TLS mutuo sin certificado de cliente.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import grpc
import pytest

from apoyo.consulta import ClienteConsulta
from apoyo.ingesta import CATALOGO, NOT_SERVING, TOKEN_RENIEC, autorizacion, esperar_salud, ingesta_en_proceso
from apoyo.ingesta import evento as evento_ingesta
from apoyo.kafka_seguro import KafkaConTLS, generar_certificados
from apoyo.procesador import lanzar_procesador
from gpr.v1 import eventos_pb2 as pb
from gpr.v1 import ingesta_pb2
from servicios.comun.broker import BrokerEmbebido
from servicios.comun.eventos import decodificar, validar
from servicios.comun.kafka_conexion import ConexionKafka, KafkaInalcanzable, leer
from servicios.comun.topicos import EVENTOS, crear_topicos

from conftest import RAIZ

pytestmark = pytest.mark.integracion

H = 3600
# Una base en el pasado, alineada a la hora: ningún evento queda en el futuro.
B = (int(time.time()) // H - 72) * H
CLAVE = "clave-de-prueba-que-no-debe-aparecer"
# Cota de las esperas de error: un cliente mal configurado falla antes de esto, nunca se cuelga.
LIMITE_ERROR_S = 60


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return generar_certificados(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def kafka_tls(certs, tmp_path):
    with KafkaConTLS(certs, tmp_path / "tansu.log", exigir_cliente=True) as kafka:
        yield kafka


def env_tls(kafka, certs) -> dict[str, str]:
    """Lo que compose y Kubernetes dan a cada servicio, aquí con TLS mutuo."""
    return {"GPR_KAFKA_BOOTSTRAP": kafka.bootstrap, "GPR_KAFKA_PROTOCOLO": "SSL", "GPR_KAFKA_TLS_CA": str(certs.ca),
            "GPR_KAFKA_TLS_CERT": str(certs.cliente_cert), "GPR_KAFKA_TLS_CLAVE": str(certs.cliente_clave)}


def env_sasl(bootstrap: str, tmp_path) -> dict[str, str]:
    archivo = tmp_path / "clave-kafka"
    archivo.write_text(CLAVE + "\n")
    return {"GPR_KAFKA_BOOTSTRAP": bootstrap, "GPR_KAFKA_PROTOCOLO": "SASL_PLAINTEXT",
            "GPR_KAFKA_SASL_MECANISMO": "SCRAM-SHA-512", "GPR_KAFKA_SASL_USUARIO": "gpr-procesador",
            "GPR_KAFKA_SASL_CLAVE_ARCHIVO": str(archivo)}


def leer_eventos(conexion: ConexionKafka, minimo: int, limite_s: float = 30.0) -> list[pb.Evento]:
    """Los eventos de gpr.eventos.v1 (un LoteEventos cuenta los suyos), por aiokafka."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def leer():
        consumidor = AIOKafkaConsumer(**conexion.para_aiokafka(), enable_auto_commit=False, group_id=None)
        await consumidor.start()
        try:
            await consumidor.topics()
            tps = [TopicPartition(EVENTOS, p) for p in sorted(consumidor.partitions_for_topic(EVENTOS) or ())]
            consumidor.assign(tps)
            await consumidor.seek_to_beginning(*tps)
            eventos = []
            fin = time.monotonic() + limite_s
            while time.monotonic() < fin and len(eventos) < minimo:
                for lote in (await consumidor.getmany(timeout_ms=200)).values():
                    for registro in lote:
                        eventos.extend(decodificar(registro.value, registro.headers))
            return eventos
        finally:
            await consumidor.stop()

    return asyncio.run(leer())


def _linea(eid, tipo, caso, t, agencia="reniec", servicio="dni-duplicado", plazo=None):
    linea = {"eventoId": eid, "fuente": "tls", "tipo": tipo, "agenciaId": agencia, "servicioId": servicio,
             "casoId": caso, "ocurridoEn": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))}
    if plazo is not None:
        linea["plazoDias"] = plazo
    return linea


R, E = "TIPO_EVENTO_SOLICITUD_RECIBIDA", "TIPO_EVENTO_SERVICIO_ENTREGADO"
# reniec/dni-duplicado (plazo del catálogo: 7 días). Marca de agua de reniec: B+30h (c6), así
# que la ventana 24h abarca los cubos [B+7h, B+30h].
LINEAS = [
    _linea("t1", R, "c1", B + 1 * H), _linea("t2", E, "c1", B + 5 * H),  # entrega fuera de la ventana
    _linea("t3", R, "c2", B + 2 * H), _linea("t4", E, "c2", B + 10 * H),  # 8 h: en plazo
    _linea("t5", R, "c4", B + 4 * H, plazo=1), _linea("t6", E, "c4", B + 29 * H),  # 25 h > 1 día: fuera
    _linea("t7", R, "c5", B + 3 * H, plazo=1), _linea("t8", E, "c5", B + 27 * H),  # 24 h justas: en plazo
    _linea("t9", R, "c6", B + 30 * H),  # la única solicitud dentro de la ventana
    # sunarp/certificado-literal (plazo 2 días): una entrega a 2d1h, fuera de plazo; marca de agua
    # B+49h, ventana [B+26h, B+49h], así que su solicitud (B) queda fuera.
    _linea("s1", R, "c8", B, "sunarp", "certificado-literal"),
    _linea("s2", E, "c8", B + 49 * H, "sunarp", "certificado-literal"),
]
ESPERADO = {
    # (agencia, servicio, indicador) en la ventana 24h: (valor, muestras, desde, hasta)
    ("reniec", "dni-duplicado", "cumplimiento_plazo"): (round(2 / 3, 9), 3, B + 7 * H, B + 30 * H),
    ("reniec", "dni-duplicado", "solicitudes"): (1.0, 1, B + 7 * H, B + 30 * H),
    ("sunarp", "certificado-literal", "cumplimiento_plazo"): (0.0, 1, B + 26 * H, B + 49 * H),
    ("sunarp", "certificado-literal", "solicitudes"): (0.0, 0, B + 26 * H, B + 49 * H),
}


def gpr(*argumentos, env):
    return subprocess.run([sys.executable, "-m", "servicios.cli", *argumentos], cwd=RAIZ, capture_output=True,
                          text=True, timeout=180, env=env)


def test_de_punta_a_punta_con_tls_mutuo_cli_procesador_y_consulta(kafka_tls, certs, procesos, tmp_path):
    """La CLI publica, el procesador calcula y la consulta sirve, todo por TLS mutuo; los
    indicadores servidos igualan a los calculados a mano."""
    env = env_tls(kafka_tls, certs)
    lanzar_procesador(procesos, kafka_tls.bootstrap, tmp_path, almacen="memoria", **env)
    archivo = tmp_path / "eventos.jsonl"
    archivo.write_text("".join(json.dumps(l) + "\n" for l in LINEAS))
    r = gpr("publicar", str(archivo), env={**os.environ, **env})
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(LINEAS)} aceptados" in r.stdout

    consulta = ClienteConsulta(kafka_tls.bootstrap, env)
    observado = {}
    try:
        # SERVING: la vista leyó gpr.indicadores.v1 por TLS hasta su marca de agua.
        consulta.esperar_al_dia(120)
        fin = time.monotonic() + 180
        while time.monotonic() < fin:
            observado = {}
            for agencia in ("reniec", "sunarp"):
                for i in consulta.listar(agencia):
                    clave = (i.agencia_id, i.servicio_id, i.indicador)
                    if clave in ESPERADO and i.ventana == "24h" and not i.etapa_id:
                        observado[clave] = (round(i.valor, 9), i.muestras, i.desde.seconds, i.hasta.seconds)
            if observado == ESPERADO:
                break
            time.sleep(0.5)
    finally:
        consulta.cerrar()
    assert observado == ESPERADO, procesos.registro("procesador")[-3000:]


def test_la_ingesta_y_el_simulador_publican_con_tls_mutuo(kafka_tls, certs, tmp_path):
    env = env_tls(kafka_tls, certs)
    conexion = leer(env)
    crear_topicos(conexion, 4)
    eventos = [evento_ingesta(f"i{n}", caso=f"k{n}") for n in range(5)]
    with ingesta_en_proceso(kafka_tls.bootstrap, **env) as (_, _canal, stub):
        respuesta = stub.Publicar(ingesta_pb2.SolicitudPublicar(eventos=eventos), metadata=autorizacion(TOKEN_RENIEC),
                                  timeout=30)
    assert respuesta.aceptados == 5, respuesta
    assert sorted(e.evento_id for e in leer_eventos(conexion, 5)) == [f"i{n}" for n in range(5)]

    r = subprocess.run([sys.executable, "-m", "servicios.simulador"], cwd=RAIZ, capture_output=True, text=True,
                       timeout=180, env={**os.environ, **env, "GPR_SIMULADOR_MAXIMO": "40",
                                         "GPR_SIMULADOR_TASA": "1000", "GPR_SIMULADOR_HISTORIA": "1h"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "terminado: 40 eventos publicados, 0 envíos fallidos" in r.stderr
    publicados = leer_eventos(conexion, 45)
    # Los 5 de la Ingesta y los 40 del simulador, todos válidos para el contrato.
    assert len({(e.fuente, e.evento_id) for e in publicados}) == 45
    assert [validar(e, CATALOGO, time.time() + 60) for e in publicados] == [None] * 45


def test_sin_tls_contra_el_frente_tls_y_tls_contra_un_broker_sin_tls_fallan_a_tiempo(kafka_tls, certs, tmp_path):
    casos = {
        # Un cliente sin TLS contra el oyente TLS.
        "sin TLS": ConexionKafka(kafka_tls.bootstrap),
        # TLS mutuo exigido y el cliente sin certificado.
        "sin certificado": ConexionKafka(kafka_tls.bootstrap, "SSL", tls_ca=str(certs.ca)),
        # El broker firmado por una CA que el cliente no reconoce.
        "otra CA": ConexionKafka(kafka_tls.bootstrap, "SSL", tls_ca=str(generar_certificados(tmp_path, "otra").ca),
                                 tls_cert=str(certs.cliente_cert), tls_clave=str(certs.cliente_clave)),
    }
    with BrokerEmbebido(registro=tmp_path / "plano.log") as plano:
        # TLS contra un oyente que no lo habla y no cierra (sin la comprobación del saludo,
        # kafka-python 3.0 queda colgado para siempre aquí).
        casos["TLS contra broker sin TLS"] = ConexionKafka(plano.bootstrap, "SSL", tls_ca=str(certs.ca))
        for nombre, conexion in casos.items():
            inicio = time.monotonic()
            with pytest.raises(KafkaInalcanzable) as error:
                crear_topicos(conexion, 1, limite_s=5)
            assert time.monotonic() - inicio < LIMITE_ERROR_S, nombre
            assert conexion.describir() in str(error.value), nombre
    # La causa concreta llega al operador cuando el saludo TLS es lo que falla.
    with pytest.raises(KafkaInalcanzable, match="CERTIFICATE_VERIFY_FAILED"):
        crear_topicos(casos["otra CA"], 1, limite_s=2)


def test_sasl_con_credenciales_rechazadas_da_un_error_claro_en_cada_servicio(tmp_path, procesos):
    """Contra Tansu con --authentication (ninguna credencial vale allí): el procesador termina
    con un error que dice dónde, cómo y con qué usuario; la Ingesta sigue viva pero NOT_SERVING
    y responde UNAVAILABLE; la CLI sale con código 3. Nadie escribe la contraseña."""

    with BrokerEmbebido(registro=tmp_path / "tansu.log", autenticacion=True) as broker:
        env = env_sasl(broker.bootstrap, tmp_path)
        procesador = lanzar_procesador(procesos, broker.bootstrap, tmp_path, almacen="memoria", **env)
        with ingesta_en_proceso(broker.bootstrap, esperar=False, **env) as (_, canal, stub):
            esperar_salud(canal, NOT_SERVING, limite_s=10)
            with pytest.raises(grpc.RpcError) as error:
                stub.Publicar(ingesta_pb2.SolicitudPublicar(eventos=[evento_ingesta("x")]),
                              metadata=autorizacion(TOKEN_RENIEC), timeout=30)
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE

        archivo = tmp_path / "uno.jsonl"
        archivo.write_text(json.dumps(LINEAS[0]) + "\n")
        inicio = time.monotonic()
        r = gpr("publicar", str(archivo), env={**os.environ, **env})
        assert r.returncode == 3, r.stdout + r.stderr
        assert time.monotonic() - inicio < LIMITE_ERROR_S
        salida = " ".join((r.stdout + r.stderr).split())
        assert "SASL_PLAINTEXT, SCRAM-SHA-512, usuario gpr-procesador" in salida and CLAVE not in salida

        assert procesador.wait(LIMITE_ERROR_S + 30) == 3
        registro = procesos.registro("procesador")
        assert f"{broker.bootstrap} (SASL_PLAINTEXT, SCRAM-SHA-512, usuario gpr-procesador)" in registro
        assert "revise el usuario gpr-procesador" in registro and CLAVE not in registro
