"""Partes puras de la ingesta: configuración, credenciales y armado de registros, sin broker."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
import yaml

from gpr.v1 import eventos_pb2 as pb
from gpr.v1 import ingesta_pb2
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.config import ConfiguracionInvalida
from servicios.comun.eventos import decodificar
from servicios.comun.topicos import CABECERA_LOTE, CABECERA_MOTIVO
from servicios.comun.yaml_lineas import ArchivoInvalido
from servicios.ingesta import config, credenciales as cred
from servicios.comun.lotes import BYTES_MAXIMOS_LOTE, particion_por_defecto, registros_aceptados
from servicios.ingesta.recepcion import (
    BYTES_MAXIMOS_EVENTO,
    EventoAjeno,
    MensajeInvalido,
    campo_demasiado_largo,
    clasificar,
    comprobar_agencia,
    motivo_de,
    recortar,
    registros_rechazados,
    resultado,
)

from conftest import CATALOGO, RAIZ

AHORA = 2_000_000_000
EJEMPLO = RAIZ / "despliegue" / "ingesta" / "credenciales.ejemplo.yaml"


@pytest.fixture(scope="module")
def catalogo():
    return cargar_catalogo(CATALOGO)


def evento(eid, caso="c1", agencia="reniec", **campos):
    e = pb.Evento(evento_id=eid, fuente="f", tipo=pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, agencia_id=agencia,
                  servicio_id="dni-duplicado", caso_id=caso, **campos)
    e.ocurrido_en.seconds = AHORA - 60
    return e


# ── configuración ──────────────────────────────────────────────────────────────────────

BASE = {"GPR_KAFKA_BOOTSTRAP": "k:9092", "GPR_INGESTA_CREDENCIALES": "/c.yaml"}


def test_configuracion_por_defecto():
    cfg = config.leer(BASE)
    assert (cfg.grpc_puerto, cfg.metricas_puerto, cfg.lote_maximo, cfg.flujo_maximo, cfg.plazo_kafka_s,
            cfg.lotes, cfg.gracia_s, cfg.particiones) == (50052, 9466, 500, 10000, 10, True, 5, 4)
    assert (cfg.mensaje_maximo, cfg.evento_maximo, cfg.id_maximo, cfg.trozo_eventos, cfg.trozo_bytes,
            cfg.peticiones_maximas) == (4 * 1024 * 1024, 16 * 1024, 128, 500, 2 * 1024 * 1024, 8)
    assert (cfg.sondeo_s, cfg.reintento_maximo_s, cfg.registro_intervalo_s) == (5, 5, 30)
    assert cfg.tls_certificado is None and cfg.tls_clave is None


@pytest.mark.parametrize("crudo, esperado", [
    ("1048576", 1048576), ("512KiB", 512 * 1024), ("4MiB", 4 * 1024 * 1024), ("4 mib", 4 * 1024 * 1024),
    ("70000b", 70000),
])
def test_tamanos_en_bytes(crudo, esperado):
    assert config.leer({**BASE, "GPR_INGESTA_TROZO_BYTES": crudo}).trozo_bytes == esperado


@pytest.mark.parametrize("cambios, variable", [
    ({"GPR_KAFKA_BOOTSTRAP": ""}, "GPR_KAFKA_BOOTSTRAP"),
    ({"GPR_INGESTA_CREDENCIALES": ""}, "GPR_INGESTA_CREDENCIALES"),
    ({"GPR_INGESTA_LOTE_MAXIMO": "0"}, "GPR_INGESTA_LOTE_MAXIMO"),
    ({"GPR_INGESTA_LOTE_MAXIMO": "muchos"}, "GPR_INGESTA_LOTE_MAXIMO"),
    ({"GPR_INGESTA_FLUJO_MAXIMO": "-3"}, "GPR_INGESTA_FLUJO_MAXIMO"),
    ({"GPR_INGESTA_PLAZO_KAFKA": "0s"}, "GPR_INGESTA_PLAZO_KAFKA"),
    ({"GPR_INGESTA_PLAZO_KAFKA": "10"}, "GPR_INGESTA_PLAZO_KAFKA"),
    ({"GPR_INGESTA_LOTES": "quizas"}, "GPR_INGESTA_LOTES"),
    ({"GPR_INGESTA_MENSAJE_MAXIMO": "4GB"}, "GPR_INGESTA_MENSAJE_MAXIMO"),
    ({"GPR_INGESTA_MENSAJE_MAXIMO": "1KiB"}, "GPR_INGESTA_MENSAJE_MAXIMO"),
    ({"GPR_INGESTA_MENSAJE_MAXIMO": "100MiB"}, "GPR_INGESTA_MENSAJE_MAXIMO"),
    ({"GPR_INGESTA_EVENTO_MAXIMO": "1MiB"}, "GPR_INGESTA_EVENTO_MAXIMO"),
    ({"GPR_INGESTA_EVENTO_MAXIMO": "-1"}, "GPR_INGESTA_EVENTO_MAXIMO"),
    ({"GPR_INGESTA_ID_MAXIMO": "8"}, "GPR_INGESTA_ID_MAXIMO"),
    ({"GPR_INGESTA_TROZO_EVENTOS": "0"}, "GPR_INGESTA_TROZO_EVENTOS"),
    ({"GPR_INGESTA_TROZO_BYTES": "1KiB"}, "GPR_INGESTA_TROZO_BYTES"),
    ({"GPR_INGESTA_PETICIONES_MAXIMAS": "0"}, "GPR_INGESTA_PETICIONES_MAXIMAS"),
    ({"GPR_INGESTA_SONDEO": "0s"}, "GPR_INGESTA_SONDEO"),
    ({"GPR_INGESTA_REINTENTO_MAXIMO": "pronto"}, "GPR_INGESTA_REINTENTO_MAXIMO"),
    ({"GPR_REGISTRO_INTERVALO": "30"}, "GPR_REGISTRO_INTERVALO"),
    # Un evento admitido que no cabe en un mensaje gRPC.
    ({"GPR_INGESTA_MENSAJE_MAXIMO": "128KiB", "GPR_INGESTA_EVENTO_MAXIMO": "256KiB"}, "GPR_INGESTA_EVENTO_MAXIMO"),
    # Una respuesta de flujo que no cabría en los 4 MiB que recibe un cliente gRPC por omisión.
    ({"GPR_INGESTA_FLUJO_MAXIMO": "100000"}, "GPR_INGESTA_FLUJO_MAXIMO"),
    ({"GPR_GRPC_PUERTO": "70000"}, "GPR_GRPC_PUERTO"),
    ({"GPR_TLS_CERT": "/x.pem"}, "GPR_TLS_KEY"),
    ({"GPR_TLS_KEY": "/x.pem"}, "GPR_TLS_CERT"),
    ({"GPR_TLS_CERT": "/no/existe.pem", "GPR_TLS_KEY": "/no/existe.pem"}, "GPR_TLS_CERT"),
])
def test_configuracion_invalida_nombra_la_variable(cambios, variable):
    with pytest.raises(ConfiguracionInvalida, match=variable):
        config.leer({**BASE, **cambios})


def test_configuracion_tls_exige_bloques_pem(tmp_path):
    cert, clave = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    clave.write_text("no es una clave")
    with pytest.raises(ConfiguracionInvalida, match="GPR_TLS_KEY"):
        config.leer({**BASE, "GPR_TLS_CERT": str(cert), "GPR_TLS_KEY": str(clave)})
    clave.write_text("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n")
    cfg = config.leer({**BASE, "GPR_TLS_CERT": str(cert), "GPR_TLS_KEY": str(clave), "GPR_INGESTA_LOTES": "no"})
    assert cfg.tls_certificado.startswith(b"-----BEGIN CERTIFICATE") and not cfg.lotes


# ── credenciales ───────────────────────────────────────────────────────────────────────

def test_hash_y_token():
    # SHA-256 de "abc", el vector de prueba de FIPS 180-2.
    assert cred.hash_token("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    a, b = cred.nuevo_token(), cred.nuevo_token()
    assert a != b and a.startswith("gpr_") and len(a) >= 40


def test_cargar_credenciales(tmp_path, catalogo):
    t1, t2, t3 = cred.nuevo_token(), cred.nuevo_token(), cred.nuevo_token()
    archivo = tmp_path / "c.yaml"
    archivo.write_text("credenciales:\n" + "\n".join([
        cred.entrada_yaml("reniec", t1, 'sistema "trámites"'),
        cred.entrada_yaml("reniec", t2),
        cred.entrada_yaml("sunarp", t3),
    ]) + "\n")
    c = cred.cargar_credenciales(archivo, catalogo)
    assert len(c) == 3
    assert (c.agencia_de(t1), c.agencia_de(t2), c.agencia_de(t3)) == ("reniec", "reniec", "sunarp")
    assert c.agencia_de(cred.nuevo_token()) is None
    assert c.agencia_de(cred.hash_token(t1)) is None
    assert t1 not in archivo.read_text()


@pytest.mark.parametrize("contenido, esperado", [
    ("credenciales:\n  - {agencia: onpe, token_sha256: " + "a" * 64 + "}\n",
     ":2: campo 'credenciales[0].agencia': agencia desconocida 'onpe'"),
    ("credenciales:\n  - agencia: reniec\n    token_sha256: ABC\n",
     ":3: campo 'credenciales[0].token_sha256': tiene un formato inválido"),
    ("credenciales:\n  - {agencia: reniec, token_sha256: " + "a" * 64 + "}\n"
     "  - {agencia: sunarp, token_sha256: " + "a" * 64 + "}\n",
     ":3: campo 'credenciales[1].token_sha256': token repetido"),
    ("credenciales:\n  - {agencia: reniec, token: secreto}\n", "campo 'credenciales[0].token': no es un campo conocido"),
    ("credenciales: []\n", "campo 'credenciales'"),
    ("", "campo 'credenciales': es obligatorio"),
])
def test_credenciales_invalidas_nombran_linea_y_campo(tmp_path, catalogo, contenido, esperado):
    archivo = tmp_path / "c.yaml"
    archivo.write_text(contenido)
    with pytest.raises(ArchivoInvalido) as error:
        cred.cargar_credenciales(archivo, catalogo)
    assert esperado in str(error.value)
    assert str(error.value).startswith(str(archivo))


def test_archivo_de_ejemplo_solo_tiene_hashes_de_demostracion(catalogo):
    c = cred.cargar_credenciales(EJEMPLO, catalogo)
    assert cred.agencias_con_token_demo(c, catalogo) == ["minsa", "reniec", "sunarp"]
    assert c.agencia_de("gpr_demo_reniec_SOLO_DESARROLLO_LOCAL") == "reniec"
    datos = yaml.safe_load(EJEMPLO.read_text())
    assert all(set(e) == {"agencia", "token_sha256", "descripcion"} and e["descripcion"].startswith("DEMO")
               for e in datos["credenciales"])
    assert cred.agencias_con_token_demo(cred.Credenciales({cred.hash_token("x"): "reniec"}), catalogo) == []


def test_orden_nueva_muestra_el_token_una_vez_y_la_entrada():
    resultado = subprocess.run([sys.executable, "-m", "servicios.ingesta.credenciales", "nueva", "sunarp",
                                "--descripcion", "portal"], cwd=RAIZ, capture_output=True, text=True, timeout=30)
    assert resultado.returncode == 0, resultado.stderr
    tokens = [linea.strip() for linea in resultado.stdout.splitlines() if linea.strip().startswith("gpr_")]
    entradas = [linea for linea in resultado.stdout.splitlines() if linea.startswith("  - {agencia:")]
    assert len(tokens) == 1 and len(entradas) == 1
    entrada = yaml.safe_load("credenciales:\n" + entradas[0])["credenciales"][0]
    assert entrada == {"agencia": "sunarp", "token_sha256": cred.hash_token(tokens[0]), "descripcion": "portal"}

    desconocida = subprocess.run([sys.executable, "-m", "servicios.ingesta.credenciales", "nueva", "onpe"],
                                 cwd=RAIZ, capture_output=True, text=True, timeout=30)
    assert desconocida.returncode == 2 and "onpe" in desconocida.stderr and "gpr_" not in desconocida.stdout


# ── autorización, validación y registros ───────────────────────────────────────────────

def test_evento_de_otra_agencia_deniega_y_nombra_el_primero():
    eventos = [evento("a"), evento("b", agencia=""), evento("c", agencia="sunarp"), evento("d", agencia="minsa")]
    with pytest.raises(EventoAjeno) as error:
        comprobar_agencia(eventos, "reniec")
    assert str(error.value).startswith("eventos[2].agencia_id: el evento 'c' es de la agencia 'sunarp'")
    assert "y 1 evento(s) más" in str(error.value)
    comprobar_agencia(eventos[:2], "reniec")


def test_clasificar_sella_recibido_en_solo_en_los_aceptados(catalogo):
    grande = evento("g")
    grande.reclamo.categoria = "y" * (BYTES_MAXIMOS_EVENTO + 1)
    eventos = [evento("a"), evento("b", agencia="onpe"), grande]
    c = clasificar(eventos, catalogo, AHORA + 0.25)
    assert c.motivos == [None, "agencia_desconocida", "evento_demasiado_grande"]
    assert [e.evento_id for e in c.aceptados] == ["a"]
    assert (eventos[0].recibido_en.seconds, eventos[0].recibido_en.nanos) == (AHORA, 250_000_000)
    assert not eventos[1].HasField("recibido_en")
    rechazados = registros_rechazados(c.rechazados, "dlq")
    assert rechazados[0].valor == eventos[1].SerializeToString()
    assert dict(rechazados[0].cabeceras)[CABECERA_MOTIVO] == b"agencia_desconocida"
    assert rechazados[1].valor == b"" and b"bytes" in dict(rechazados[1].cabeceras)["gpr-detalle"]


def test_particion_por_defecto_coincide_con_el_cliente_java():
    # murmur2 de org.apache.kafka.common.utils.Utils (vectores de UtilsTest de Apache Kafka),
    # con toPositive y módulo, como el DefaultPartitioner de Java.
    for clave, murmur_java in ((b"21", -973932308), (b"foobar", -790332482), (b"abc", 479470107)):
        for n in (1, 2, 3, 4, 12):
            assert particion_por_defecto(clave, n) == (murmur_java & 0x7FFFFFFF) % n


def test_registros_aceptados_agrupa_por_particion_en_orden():
    eventos = [evento(f"e{i}", caso=f"c{i % 5}") for i in range(20)]
    registros = registros_aceptados(eventos, "t", 3)
    vistos = []
    for r in registros:
        contenidos = decodificar(r.valor, r.cabeceras)
        assert (len(contenidos) > 1) == ((CABECERA_LOTE, b"1") in r.cabeceras)
        assert [eventos[i].evento_id for i in r.posiciones] == [e.evento_id for e in contenidos]
        assert all(particion_por_defecto(f"reniec/{e.caso_id}".encode(), 3) == r.particion for e in contenidos)
        assert particion_por_defecto(r.clave, 3) == r.particion
        vistos.extend(contenidos)
    assert sorted(e.evento_id for e in vistos) == sorted(e.evento_id for e in eventos)
    for caso in {e.caso_id for e in eventos}:
        assert [e.evento_id for e in vistos if e.caso_id == caso] == [e.evento_id for e in eventos if e.caso_id == caso]

    sueltos = registros_aceptados(eventos, "t", None)
    assert [(r.clave, r.particion, r.cabeceras) for r in sueltos] == [(f"reniec/{e.caso_id}".encode(), None, [])
                                                                       for e in eventos]


def test_lote_grande_se_parte_por_tamano():
    # Eventos de ~255 KiB (registros_aceptados no valida: parte lo que recibe).
    relleno = "x" * (256 * 1024 - 1000)
    eventos = [evento(f"e{i}", caso="c1", atributos={"r": relleno}) for i in range(7)]
    registros = registros_aceptados(eventos, "t", 4)
    assert all(len(r.valor) <= BYTES_MAXIMOS_LOTE for r in registros)
    assert len(registros) == 4
    assert [e.evento_id for r in registros for e in decodificar(r.valor, r.cabeceras)] == [e.evento_id for e in eventos]


# ── ecos recortados y límites de cada evento ───────────────────────────────────────────────

def test_recortar_deja_a_lo_mas_el_maximo_de_bytes_y_dice_el_largo():
    assert recortar("abc", 3) == "abc"
    assert recortar("abcd", 3) == "abc…(4 bytes)"
    # «ñ» ocupa 2 bytes: 3 bytes no alcanzan para dos, y no se parte un carácter.
    assert recortar("ññ", 3) == "ñ…(4 bytes)"
    assert recortar("x" * 1_048_576) == "x" * 200 + "…(1048576 bytes)"
    # Cuatro bytes por carácter: 200 bytes son 50 caracteres.
    assert recortar("𝄞" * 100) == "𝄞" * 50 + "…(400 bytes)"


def test_campo_demasiado_largo_nombra_el_primero():
    assert campo_demasiado_largo(evento("a"), 128) is None
    assert campo_demasiado_largo(evento("a", caso="c" * 129), 128) == "caso_id"
    assert campo_demasiado_largo(evento("a", caso="c" * 128), 128) is None
    # Bytes UTF-8, no caracteres: 65 «ñ» son 130 bytes.
    assert campo_demasiado_largo(evento("a", region="ñ" * 65), 128) == "region"
    assert campo_demasiado_largo(evento("e" * 200, caso="c" * 200), 128) == "evento_id"
    assert campo_demasiado_largo(evento("a", reclamo=pb.Reclamo(reclamo_id="r", categoria="k" * 200)), 128) == \
        "reclamo.categoria"
    assert campo_demasiado_largo(evento("a", costo=pb.Costo(unidades=1, moneda="P" * 129)), 128) == "costo.moneda"
    assert campo_demasiado_largo(evento("a", atributos={"k" * 129: "v"}), 128) == "atributos"
    # Un valor de atributo largo no es un identificador (lo acota el tamaño del evento).
    assert campo_demasiado_largo(evento("a", atributos={"k": "v" * 10_000}), 128) is None


def test_motivo_de_comprueba_lectura_tamano_identificadores_y_luego_el_validador(catalogo):
    grande = evento("g", caso="c" * 1000, atributos={"x": "y" * 2000})
    assert motivo_de(MensajeInvalido(b"\xff", "corrupto"), catalogo, AHORA) == "protobuf_invalido"
    assert motivo_de(grande, catalogo, AHORA, evento_maximo=1024) == "evento_demasiado_grande"
    assert motivo_de(grande, catalogo, AHORA) == "campo_demasiado_largo:caso_id"
    # Un identificador largo de un evento que además no valida: primero el largo.
    assert motivo_de(evento("a", agencia="x" * 200), catalogo, AHORA) == "campo_demasiado_largo:agencia_id"
    assert motivo_de(evento("a", agencia="onpe"), catalogo, AHORA) == "agencia_desconocida"
    assert motivo_de(evento("a"), catalogo, AHORA) is None


def test_un_error_inesperado_al_validar_rechaza_solo_ese_evento(catalogo):
    """Un catálogo que falla al consultarlo (como lo haría un error de programación del
    validador): el evento se rechaza con error_interno y la clase, los demás siguen."""

    class Falla(dict):
        def get(self, clave, defecto=None):
            if clave == "sunarp":
                raise KeyError("dato del cliente que no debe ir en el motivo")
            return super().get(clave, defecto)

    roto = type(catalogo)(**{**vars(catalogo), "agencias": Falla(catalogo.agencias)})
    c = clasificar([evento("a"), evento("b", agencia="sunarp"), evento("c")], roto, AHORA)
    assert c.motivos == [None, "error_interno:KeyError", None]


def test_resultado_recorta_el_evento_id_y_cabe_en_su_cota():
    assert resultado(evento("a1"), None) == ingesta_pb2.ResultadoEvento(evento_id="a1", aceptado=True)
    largo = resultado(evento("x" * 1000), "campo_demasiado_largo:evento_id")
    assert largo.evento_id == "x" * 128 + "…(1000 bytes)" and not largo.aceptado
    # El peor caso: caracteres de 4 bytes y un motivo de error interno con una clase de nombre largo.
    peor = resultado(evento("𝄞" * 1_000_000), "error_interno:" + "E" * 500, 128)
    assert peor.ByteSize() <= config.resultado_maximo(128)


def test_registros_rechazados_de_mensajes_ilegibles_y_de_identificadores_largos():
    ilegible = MensajeInvalido(b"\xff\xff", "Wire format was corrupt")
    enorme = MensajeInvalido(b"\x00" * (BYTES_MAXIMOS_EVENTO + 1), "corrupto")
    largo = evento("l1", caso="c" * 500)
    registros = registros_rechazados([(ilegible, "protobuf_invalido"), (enorme, "protobuf_invalido"),
                                      (largo, "campo_demasiado_largo:caso_id")], "dlq", posiciones=[3, 7, 9])
    assert [(r.valor, r.clave) for r in registros] == [(b"\xff\xff", None), (b"", None),
                                                       (largo.SerializeToString(), None)]
    detalles = [dict(r.cabeceras)["gpr-detalle"].decode() for r in registros]
    assert detalles[0] == "eventos[3]: protobuf_invalido: no es un gpr.v1.Evento (Wire format was corrupt)"
    assert detalles[1].startswith("eventos[7]: ") and detalles[1].endswith(
        f"({BYTES_MAXIMOS_EVENTO + 1} bytes; el máximo es {BYTES_MAXIMOS_EVENTO})")
    assert detalles[2] == "evento 'l1': campo_demasiado_largo:caso_id"


def test_evento_ajeno_recorta_lo_que_repite_y_cuenta_desde_el_trozo():
    with pytest.raises(EventoAjeno) as error:
        comprobar_agencia([evento("a"), evento("x" * 100_000, agencia="s" * 100_000)], "reniec", desde=40)
    mensaje = str(error.value)
    assert mensaje.startswith("eventos[41].agencia_id: el evento 'xxx")
    assert "…(100000 bytes)" in mensaje and len(mensaje) < 700
    # Un mensaje ilegible no es de otra agencia (no se sabe de cuál es): lo rechaza la lectura.
    comprobar_agencia([MensajeInvalido(b"\xff", "corrupto")], "reniec")


def test_sin_trazas_de_red_solo_quita_las_de_kafka_python_por_errores_de_red():
    from servicios.ingesta.__main__ import SinTrazasDeRed

    def registro(nombre, error):
        return logging.LogRecord(nombre, logging.ERROR, __file__, 1, "%s: Error receiving network data", ("T",),
                                 (type(error), error, None))

    filtro = SinTrazasDeRed()
    red = registro("kafka.net.transport", ConnectionResetError(104, "Connection reset by peer"))
    assert filtro.filter(red) and red.exc_info is None
    assert red.getMessage() == "T: Error receiving network data (ConnectionResetError: [Errno 104] Connection reset by peer)"
    # Otro error de kafka-python, o uno de red de otro registrador, conservan su traza.
    for otro in (registro("kafka.producer", ValueError("x")), registro("servicios.ingesta", OSError("y"))):
        assert filtro.filter(otro) and otro.exc_info is not None
