"""La orden `gpr` contra servicios reales: publicar por Kafka y por la Ingesta con TLS, y
consultar (también en vivo con `vigilar`) por gRPC."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time

import grpc
import pytest
from aiokafka.partitioner import DefaultPartitioner

from apoyo.consulta import ClienteConsulta, esperar_serving
from apoyo.kafka import leer_todo, publicar
from conftest import CATALOGO, RAIZ
from servicios.comun.eventos import clave_kafka
from gpr.v1 import eventos_pb2 as pb
from gpr.v1 import indicadores_pb2 as ipb
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.eventos import decodificar
from servicios.comun.indicadores import clave_serie
from servicios.comun.topicos import CABECERA_LOTE, EVENTOS, INDICADORES, crear_topicos
from servicios.ingesta import config as config_ingesta
from servicios.ingesta.credenciales import Credenciales, hash_token, nuevo_token
from servicios.ingesta.servidor import IngestaEnHilo

pytestmark = pytest.mark.integracion


def gpr(*argumentos, env=None):
    return subprocess.run([sys.executable, "-m", "servicios.cli", *argumentos], cwd=RAIZ, capture_output=True,
                          text=True, timeout=120, env=env)


def test_publicar_por_kafka_valida_publica_y_resume(bootstrap, tmp_path):
    crear_topicos(bootstrap, 2)
    ahora = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    lineas = [
        {"eventoId": "a1", "fuente": "cli", "tipo": "TIPO_EVENTO_SOLICITUD_RECIBIDA", "ocurridoEn": ahora,
         "agenciaId": "reniec", "servicioId": "dni-duplicado", "casoId": "k1"},
        {"evento_id": "a2", "fuente": "cli", "tipo": "TIPO_EVENTO_SERVICIO_ENTREGADO", "ocurrido_en": ahora,
         "agencia_id": "reniec", "servicio_id": "dni-duplicado", "caso_id": "k1", "canal": "CANAL_WEB"},
        {"eventoId": "a3", "fuente": "cli", "tipo": "TIPO_EVENTO_SOLICITUD_RECIBIDA", "ocurridoEn": ahora,
         "agenciaId": "onpe", "servicioId": "x", "casoId": "k2"},
    ]
    archivo = tmp_path / "eventos.jsonl"
    archivo.write_text("\n".join(json.dumps(l) for l in lineas[:2]) + "\n{no es json\n" + json.dumps(lineas[2]) + "\n")
    r = gpr("publicar", str(archivo), "--kafka", bootstrap)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "2 aceptados, 2 rechazados de 4" in r.stdout
    assert "json_invalido" in r.stdout and "agencia_desconocida" in r.stdout
    # Los dos aceptados son del caso k1 de reniec: un solo registro LoteEventos, en la partición
    # que el particionador por defecto de aiokafka da a la clave "reniec/k1" (la de un envío suelto).
    publicados = leer_todo(bootstrap, EVENTOS, lambda rs: len(rs) >= 1, 20)
    assert len(publicados) == 1
    registro = publicados[0]
    assert registro.key == b"reniec/k1" and (CABECERA_LOTE, b"1") in list(registro.headers)
    assert registro.partition == DefaultPartitioner()(b"reniec/k1", [0, 1], [0, 1])
    assert [e.evento_id for e in decodificar(registro.value, list(registro.headers))] == ["a1", "a2"]


def test_publicar_por_kafka_en_lotes_por_particion(bootstrap, tmp_path):
    """Cada registro lleva los eventos de una partición, la que un envío suelto daría a su caso,
    y cada caso conserva el orden del archivo."""
    crear_topicos(bootstrap, 4)
    ahora = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    tipos = ["TIPO_EVENTO_SOLICITUD_RECIBIDA", "TIPO_EVENTO_CASO_DEVUELTO", "TIPO_EVENTO_SERVICIO_ENTREGADO"]
    lineas = [{"eventoId": f"{caso}-{i}", "fuente": "cli", "tipo": tipo, "ocurridoEn": ahora, "agenciaId": "reniec",
               "servicioId": "dni-duplicado", "casoId": caso, "canal": "CANAL_WEB"}
              for i, tipo in enumerate(tipos) for caso in (f"caso-{n}" for n in range(8))]
    archivo = tmp_path / "eventos.jsonl"
    archivo.write_text("".join(json.dumps(linea) + "\n" for linea in lineas))
    r = gpr("publicar", str(archivo), "--kafka", bootstrap)
    assert r.returncode == 0, r.stdout + r.stderr
    publicados = leer_todo(bootstrap, EVENTOS, lambda rs: sum(len(decodificar(x.value, list(x.headers))) for x in rs) >= 24, 20)
    particionador = DefaultPartitioner()
    por_caso: dict[str, list[str]] = {}
    for registro in publicados:
        eventos = decodificar(registro.value, list(registro.headers))
        assert len(eventos) > 1 and (CABECERA_LOTE, b"1") in list(registro.headers)
        for evento in eventos:
            assert registro.partition == particionador(clave_kafka(evento), [0, 1, 2, 3], [0, 1, 2, 3])
            por_caso.setdefault(evento.caso_id, []).append(evento.evento_id)
    assert len({r.partition for r in publicados}) > 1
    assert por_caso == {f"caso-{n}": [f"caso-{n}-{i}" for i in range(3)] for n in range(8)}


def test_publicar_por_kafka_sin_lotes_un_registro_por_evento(bootstrap, tmp_path):
    crear_topicos(bootstrap, 2)
    ahora = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    archivo = tmp_path / "eventos.jsonl"
    archivo.write_text("".join(json.dumps(
        {"eventoId": f"b{i}", "fuente": "cli", "tipo": "TIPO_EVENTO_SOLICITUD_RECIBIDA", "ocurridoEn": ahora,
         "agenciaId": "reniec", "servicioId": "dni-duplicado", "casoId": f"c{i}"}) + "\n" for i in range(3)))
    r = gpr("publicar", str(archivo), "--kafka", bootstrap, "--sin-lotes")
    assert r.returncode == 0, r.stdout + r.stderr
    publicados = leer_todo(bootstrap, EVENTOS, lambda rs: len(rs) >= 3, 20)
    assert sorted((x.key, pb.Evento.FromString(x.value).evento_id) for x in publicados) == [
        (b"reniec/c0", "b0"), (b"reniec/c1", "b1"), (b"reniec/c2", "b2")]
    assert all(not x.headers for x in publicados)


def test_publicar_sin_broker_sale_con_3(tmp_path):
    archivo = tmp_path / "e.jsonl"
    archivo.write_text(json.dumps({"eventoId": "a1", "tipo": "TIPO_EVENTO_SOLICITUD_RECIBIDA", "ocurridoEn": "2026-01-01T00:00:00Z",
                                   "agenciaId": "reniec", "servicioId": "dni-duplicado", "casoId": "k"}) + "\n")
    r = gpr("publicar", str(archivo), "--kafka", "127.0.0.1:1")
    assert r.returncode == 3, r.stdout + r.stderr


def test_indicadores_sin_consulta_sale_con_3():
    r = gpr("indicadores", "--consulta", "127.0.0.1:1")
    assert r.returncode == 3 and "UNAVAILABLE" in r.stderr, r.stdout + r.stderr


def _openssl(*argumentos):
    subprocess.run(["openssl", *argumentos], check=True, capture_output=True)


def _ca_y_servidor(directorio):
    """Una CA privada y un certificado de servidor para 127.0.0.1 firmado por ella."""
    ca, ca_clave = directorio / "ca.pem", directorio / "ca-clave.pem"
    cert, clave, pedido = directorio / "servidor.pem", directorio / "servidor-clave.pem", directorio / "servidor.csr"
    curva = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *curva, "-keyout", str(ca_clave), "-out", str(ca), "-days", "1",
             "-subj", "/CN=CA privada de prueba GpR")
    _openssl("req", "-new", *curva, "-keyout", str(clave), "-out", str(pedido), "-subj", "/CN=localhost")
    extensiones = directorio / "san.cnf"
    extensiones.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", str(pedido), "-CA", str(ca), "-CAkey", str(ca_clave), "-CAcreateserial",
             "-out", str(cert), "-days", "1", "-extfile", str(extensiones))
    return ca, cert, clave


@pytest.mark.skipif(shutil.which("openssl") is None, reason="sin el programa openssl para crear los certificados")
def test_publicar_por_grpc_con_tls_y_ca_privada(bootstrap, tmp_path):
    ca, cert, clave = _ca_y_servidor(tmp_path)
    (tmp_path / "otra").mkdir()
    otra_ca, _, _ = _ca_y_servidor(tmp_path / "otra")
    token = nuevo_token()
    cfg = config_ingesta.leer({
        "GPR_KAFKA_BOOTSTRAP": bootstrap, "GPR_INGESTA_CREDENCIALES": "credenciales-en-memoria",
        "GPR_GRPC_HOST": "127.0.0.1", "GPR_GRPC_PUERTO": "0", "GPR_METRICAS_PUERTO": "0", "GPR_GRPC_GRACIA": "1s",
        "GPR_TLS_CERT": str(cert), "GPR_TLS_KEY": str(clave)})
    ahora = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    archivo = tmp_path / "eventos.jsonl"
    archivo.write_text("\n".join(json.dumps(
        {"eventoId": f"t{n}", "fuente": "cli", "tipo": "TIPO_EVENTO_SOLICITUD_RECIBIDA", "ocurridoEn": ahora,
         "agenciaId": "reniec", "servicioId": servicio, "casoId": f"k{n}"})
        for n, servicio in enumerate(["dni-duplicado", "dni-duplicado", "no-existe"])) + "\n")
    with IngestaEnHilo(cfg, cargar_catalogo(CATALOGO), Credenciales({hash_token(token): "reniec"})) as ingesta:
        destino = f"127.0.0.1:{ingesta.puerto_grpc}"
        with grpc.secure_channel(destino, grpc.ssl_channel_credentials(ca.read_bytes())) as canal:
            esperar_serving(canal, 30, "la ingesta")

        r = gpr("publicar", str(archivo), "--grpc", destino, "--tls-ca", str(ca), "--token", token)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "2 aceptados, 1 rechazados de 3" in r.stdout and "servicio_desconocido" in r.stdout
        # La CA también llega por GPR_TLS_CA, y el token por GPR_TOKEN.
        entorno = {**os.environ, "GPR_TLS_CA": str(ca), "GPR_TOKEN": token}
        r = gpr("publicar", str(archivo), "--grpc", destino, env=entorno)
        assert r.returncode == 1 and "2 aceptados, 1 rechazados de 3" in r.stdout, r.stdout + r.stderr

        # Sin TLS, o confiando en otra CA, no hay conexión: código 3 (servicio no disponible).
        for extra in ([], ["--tls-ca", str(otra_ca)]):
            r = gpr("publicar", str(archivo), "--grpc", destino, "--token", token, *extra)
            assert r.returncode == 3 and "UNAVAILABLE" in r.stderr, (extra, r.stdout + r.stderr)
    # La Ingesta agrupa los aceptados de una petición en registros LoteEventos.
    def eventos(registros):
        return sorted(e.evento_id for r in registros for e in decodificar(r.value, r.headers))

    publicados = leer_todo(bootstrap, EVENTOS, lambda rs: len(eventos(rs)) >= 4, 20)
    assert eventos(publicados) == ["t0", "t0", "t1", "t1"]


def test_publicar_tls_ca_invalida_es_error_de_uso(tmp_path):
    archivo = tmp_path / "e.jsonl"
    archivo.write_text("\n")
    no_pem = tmp_path / "ca.txt"
    no_pem.write_text("esto no es un certificado\n")
    # El mensaje sale entero en una línea de stderr, sea cual sea el largo de la ruta o el ancho
    # que diga COLUMNS: fuera de una terminal nada se parte a mitad de frase.
    for columnas in ("40", "80", "300"):
        r = gpr("publicar", str(archivo), "--grpc", "127.0.0.1:1", "--tls-ca", str(no_pem),
                env={**os.environ, "COLUMNS": columnas})
        assert r.returncode == 2, r.stdout + r.stderr
        assert f"--tls-ca {no_pem}: no contiene un certificado PEM (-----BEGIN CERTIFICATE-----)" \
            in r.stderr.splitlines(), r.stdout + r.stderr
    r = gpr("publicar", str(archivo), "--grpc", "127.0.0.1:1", "--tls-ca", str(tmp_path / "no-existe.pem"))
    assert r.returncode == 2, r.stdout + r.stderr
    # Por Kafka la CA no se usa: solo un aviso (GPR_TLS_CA puede venir del entorno).
    # (Sin --kafka ni GPR_KAFKA_BOOTSTRAP termina enseguida con "falta el broker", código 2.)
    r = gpr("publicar", str(archivo), "--tls-ca", str(no_pem),
            env={k: v for k, v in os.environ.items() if k != "GPR_KAFKA_BOOTSTRAP"})
    assert r.returncode == 2 and "solo se usan con --grpc" in r.stderr and "falta el broker" in r.stderr, \
        r.stdout + r.stderr


# Lo que el procesador pone en `Indicador.unidad` para estos indicadores (catálogo de indicadores).
_UNIDADES = {"solicitudes": "conteo", "cumplimiento_plazo": "proporcion"}


def _indicador(agencia, servicio, indicador, valor, estado=None):
    i = ipb.Indicador(agencia_id=agencia, servicio_id=servicio, indicador=indicador, ventana="24h", valor=valor,
                      muestras=10, unidad=_UNIDADES[indicador])
    if estado is not None:
        i.meta.CopyFrom(ipb.EvaluacionMeta(operador=">=", valor=0.9, estado=estado, severidad="critica", equipo="e"))
    return (clave_serie(agencia, servicio, indicador, "24h", "").encode(), i.SerializeToString())


def test_vigilar_muestra_estado_y_cambios_y_termina_solo(bootstrap):
    crear_topicos(bootstrap, 2, [INDICADORES])
    publicar(bootstrap, [_indicador("reniec", "dni-duplicado", "solicitudes", 40),
                         _indicador("reniec", "dni-duplicado", "cumplimiento_plazo", 0.95, ipb.ESTADO_CUMPLIMIENTO_CUMPLE),
                         _indicador("sunarp", "certificado-literal", "solicitudes", 7)], topico=INDICADORES)
    cliente = ClienteConsulta(bootstrap)
    try:
        cliente.esperar_al_dia()
        direccion = f"127.0.0.1:{cliente.consulta.puerto_grpc}"
        proceso = subprocess.Popen(
            [sys.executable, "-m", "servicios.cli", "vigilar", "--agencia", "reniec", "--maximo", "4",
             "--consulta", direccion],
            cwd=RAIZ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"})
        lineas: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lineas.put(l) for l in proceso.stdout], daemon=True).start()
        try:
            # Primero el estado actual de las dos series de reniec (la de sunarp no pasa el filtro).
            # Sin la hora del principio, y ordenadas: series de particiones distintas llegan en cualquier orden.
            iniciales = sorted(lineas.get(timeout=30).split(" ", 1)[1] for _ in range(2))
            assert "cumplimiento_plazo 24h valor=95.0%" in iniciales[0] and "cumple" in iniciales[0]
            assert "solicitudes 24h valor=40 muestras=10" in iniciales[1]
            # Luego los cambios publicados mientras vigila.
            publicar(bootstrap, [_indicador("sunarp", "certificado-literal", "solicitudes", 8),
                                 _indicador("reniec", "dni-duplicado", "cumplimiento_plazo", 0.85, ipb.ESTADO_CUMPLIMIENTO_INCUMPLE),
                                 _indicador("reniec", "pasaporte", "solicitudes", 12)], topico=INDICADORES)
            cambios = sorted(lineas.get(timeout=30).split(" ", 1)[1] for _ in range(2))
            assert proceso.wait(30) == 0, proceso.stderr.read()
        finally:
            if proceso.poll() is None:
                proceso.kill()
                proceso.wait()
        assert cambios == ["reniec dni-duplicado cumplimiento_plazo 24h valor=85.0% muestras=10 meta=>= 90.0% incumple\n",
                           "reniec pasaporte solicitudes 24h valor=12 muestras=10\n"]
        assert lineas.empty() and "sunarp" not in "".join(iniciales + cambios)

        # Con --duracion termina sola al vencer el plazo, también con código 0.
        inicio = time.monotonic()
        r = gpr("vigilar", "--agencia", "onpe", "--duracion", "1s", "--consulta", direccion)
        assert r.returncode == 0 and r.stdout == "", r.stdout + r.stderr
        assert 1 <= time.monotonic() - inicio < 60
        # Un filtro inválido es un error de la consulta: código 1.
        r = gpr("vigilar", "--indicador", "xyz", "--duracion", "5s", "--consulta", direccion)
        assert r.returncode == 1 and "INVALID_ARGUMENT" in r.stderr, r.stdout + r.stderr
    finally:
        cliente.cerrar()


def test_publicar_por_kafka_un_evento_demasiado_grande_se_rechaza_y_el_resto_pasa(bootstrap, tmp_path):
    """Un evento con un atributo de 1,2 MB no llega a Kafka: el validador del contrato lo
    rechaza (antes lo rechazaba kafka-python por pasar de 1 MiB) y los demás se publican, sin
    traza y con código 1."""
    crear_topicos(bootstrap, 2)
    ahora = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    base = {"fuente": "cli", "tipo": "TIPO_EVENTO_SOLICITUD_RECIBIDA", "ocurridoEn": ahora, "agenciaId": "reniec",
            "servicioId": "dni-duplicado"}
    lineas = [{**base, "eventoId": "normal", "casoId": "k1"},
              {**base, "eventoId": "enorme", "casoId": "k1", "atributos": {"nota": "x" * 1_200_000}}]
    archivo = tmp_path / "eventos.jsonl"
    archivo.write_text("".join(json.dumps(linea) + "\n" for linea in lineas))
    r = gpr("publicar", str(archivo), "--kafka", bootstrap)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "1 aceptados, 1 rechazados de 2" in r.stdout, r.stdout + r.stderr
    assert "Por motivo: campo_demasiado_largo 1" in r.stdout.splitlines()
    publicados = leer_todo(bootstrap, EVENTOS, lambda rs: len(rs) >= 1, 20)
    assert [e.evento_id for x in publicados for e in decodificar(x.value, list(x.headers))] == ["normal"]
