"""GPR_KAFKA_*: cada combinación válida da los ajustes de cada biblioteca cliente, y cada error
de configuración falla al leerla con un mensaje que nombra la variable (docs/seguridad-kafka.md)."""

from __future__ import annotations

import ssl

import faust
import pytest

from apoyo.kafka_seguro import generar_certificados
from servicios.comun.config import ConfiguracionInvalida
from servicios.comun.kafka_conexion import ConexionKafka, leer
from servicios.consulta import config as config_consulta
from servicios.ingesta import config as config_ingesta
from servicios.procesador import config as config_procesador
from servicios.procesador.app import opciones_faust
from servicios.simulador import config as config_simulador

BASE = {"GPR_KAFKA_BOOTSTRAP": "kafka-1:9093,kafka-2:9093"}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return generar_certificados(tmp_path_factory.mktemp("certs"))


def test_sin_variables_de_seguridad_es_plaintext_como_en_make_run():
    conexion = leer(BASE)
    assert conexion == ConexionKafka("kafka-1:9093,kafka-2:9093")
    assert leer(BASE).para_kafka_python() == {"bootstrap_servers": "kafka-1:9093,kafka-2:9093",
                                              "security_protocol": "PLAINTEXT", "ssl_context": None}
    assert conexion.para_faust() == {"broker": "kafka://kafka-1:9093,kafka-2:9093"}


def test_sasl_ssl_con_scram_y_la_clave_de_un_archivo(tmp_path, certs):
    archivo = tmp_path / "clave"
    # Un secreto montado o escrito con echo: el fin de línea final no es parte de la clave.
    archivo.write_text(" s3cr3to con espacios \n")
    conexion = leer({**BASE, "GPR_KAFKA_PROTOCOLO": "sasl_ssl", "GPR_KAFKA_TLS_CA": str(certs.ca),
                     "GPR_KAFKA_SASL_MECANISMO": "scram-sha-256", "GPR_KAFKA_SASL_USUARIO": "gpr-procesador",
                     "GPR_KAFKA_SASL_CLAVE_ARCHIVO": str(archivo)})
    ajustes = conexion.para_kafka_python()
    contexto = ajustes.pop("ssl_context")
    assert ajustes == {"bootstrap_servers": "kafka-1:9093,kafka-2:9093", "security_protocol": "SASL_SSL",
                       "sasl_mechanism": "SCRAM-SHA-256", "sasl_plain_username": "gpr-procesador",
                       "sasl_plain_password": " s3cr3to con espacios "}
    assert isinstance(contexto, ssl.SSLContext)
    assert contexto.verify_mode == ssl.CERT_REQUIRED and contexto.check_hostname
    aio = conexion.para_aiokafka()
    assert aio["security_protocol"] == "SASL_SSL" and aio["sasl_plain_password"] == " s3cr3to con espacios "
    credenciales = conexion.para_faust()["broker_credentials"]
    assert isinstance(credenciales, faust.SASLCredentials)
    assert (credenciales.protocol.value, credenciales.mechanism.value, credenciales.username,
            credenciales.password) == ("SASL_SSL", "SCRAM-SHA-256", "gpr-procesador", " s3cr3to con espacios ")
    # La contraseña nunca sale en el repr ni en la descripción que va a los registros.
    assert "s3cr3to" not in repr(conexion) and "s3cr3to" not in conexion.describir()
    assert conexion.describir() == "kafka-1:9093,kafka-2:9093 (SASL_SSL, SCRAM-SHA-256, usuario gpr-procesador)"


def test_ssl_con_certificado_de_cliente_y_sasl_plaintext_por_omision_scram_512(certs):
    mtls = leer({**BASE, "GPR_KAFKA_PROTOCOLO": "SSL", "GPR_KAFKA_TLS_CA": str(certs.ca),
                 "GPR_KAFKA_TLS_CERT": str(certs.cliente_cert), "GPR_KAFKA_TLS_CLAVE": str(certs.cliente_clave)})
    assert isinstance(mtls.para_faust()["broker_credentials"], faust.SSLCredentials)
    assert mtls.para_aiokafka()["security_protocol"] == "SSL"
    sasl = leer({**BASE, "GPR_KAFKA_PROTOCOLO": "SASL_PLAINTEXT", "GPR_KAFKA_SASL_USUARIO": "u",
                 "GPR_KAFKA_SASL_CLAVE": "c"})
    assert (sasl.sasl_mecanismo, sasl.para_aiokafka()["ssl_context"]) == ("SCRAM-SHA-512", None)
    assert sasl.para_faust()["broker_credentials"].protocol.value == "SASL_PLAINTEXT"


@pytest.mark.parametrize("cambios, nombrada", [
    ({"GPR_KAFKA_PROTOCOLO": "TLS"}, "GPR_KAFKA_PROTOCOLO='TLS'"),
    ({"GPR_KAFKA_TLS_CA": "/ca.pem"}, "GPR_KAFKA_TLS_CA está definida pero GPR_KAFKA_PROTOCOLO=PLAINTEXT"),
    ({"GPR_KAFKA_SASL_USUARIO": "u"}, "GPR_KAFKA_SASL_USUARIO está definida pero GPR_KAFKA_PROTOCOLO=PLAINTEXT"),
    ({"GPR_KAFKA_PROTOCOLO": "SASL_SSL", "GPR_KAFKA_SASL_CLAVE": "c"}, "falta GPR_KAFKA_SASL_USUARIO"),
    ({"GPR_KAFKA_PROTOCOLO": "SASL_SSL", "GPR_KAFKA_SASL_USUARIO": "u"}, "GPR_KAFKA_SASL_CLAVE_ARCHIVO"),
    ({"GPR_KAFKA_PROTOCOLO": "SASL_SSL", "GPR_KAFKA_SASL_USUARIO": "u", "GPR_KAFKA_SASL_CLAVE": "c",
      "GPR_KAFKA_SASL_MECANISMO": "GSSAPI"}, "GPR_KAFKA_SASL_MECANISMO='GSSAPI'"),
    ({"GPR_KAFKA_PROTOCOLO": "SASL_PLAINTEXT", "GPR_KAFKA_SASL_USUARIO": "u", "GPR_KAFKA_SASL_CLAVE": "c",
      "GPR_KAFKA_SASL_MECANISMO": "PLAIN"}, "en claro"),
    ({"GPR_KAFKA_PROTOCOLO": "SASL_SSL", "GPR_KAFKA_SASL_USUARIO": "u", "GPR_KAFKA_SASL_CLAVE": "c",
      "GPR_KAFKA_SASL_CLAVE_ARCHIVO": "/x"}, "use solo una"),
    ({"GPR_KAFKA_PROTOCOLO": "SASL_SSL", "GPR_KAFKA_SASL_USUARIO": "u",
      "GPR_KAFKA_SASL_CLAVE_ARCHIVO": "/no/existe"}, "GPR_KAFKA_SASL_CLAVE_ARCHIVO=/no/existe: no se puede leer"),
    ({"GPR_KAFKA_PROTOCOLO": "SSL", "GPR_KAFKA_TLS_CA": "/no/existe.pem"}, "GPR_KAFKA_TLS_CA=/no/existe.pem"),
    ({"GPR_KAFKA_PROTOCOLO": "SSL", "GPR_KAFKA_TLS_CERT": "/c.pem"}, "falta GPR_KAFKA_TLS_CLAVE"),
    ({"GPR_KAFKA_PROTOCOLO": "SSL", "GPR_KAFKA_TLS_CLAVE": "/k.pem"}, "falta GPR_KAFKA_TLS_CERT"),
])
def test_errores_de_configuracion_nombran_la_variable(cambios, nombrada):
    with pytest.raises(ConfiguracionInvalida) as error:
        leer({**BASE, **cambios})
    assert nombrada in str(error.value)


def test_archivos_equivocados_fallan_al_leer_y_no_al_conectar(tmp_path, certs):
    vacio, dos_lineas, no_pem = tmp_path / "vacio", tmp_path / "dos", tmp_path / "no.pem"
    vacio.write_text("\n")
    dos_lineas.write_text("clave\notra\n")
    no_pem.write_text("no es un PEM")
    sasl = {**BASE, "GPR_KAFKA_PROTOCOLO": "SASL_SSL", "GPR_KAFKA_SASL_USUARIO": "u"}
    casos = [
        ({**sasl, "GPR_KAFKA_SASL_CLAVE_ARCHIVO": str(vacio)}, "está vacío"),
        ({**sasl, "GPR_KAFKA_SASL_CLAVE_ARCHIVO": str(dos_lineas)}, "más de una línea"),
        ({**BASE, "GPR_KAFKA_PROTOCOLO": "SSL", "GPR_KAFKA_TLS_CA": str(no_pem)}, "no contiene un bloque PEM"),
        # Un certificado con la clave de otro: el par no sirve.
        ({**BASE, "GPR_KAFKA_PROTOCOLO": "SSL", "GPR_KAFKA_TLS_CERT": str(certs.cliente_cert),
          "GPR_KAFKA_TLS_CLAVE": str(certs.broker_clave)}, "no forman un par válido"),
    ]
    for env, texto in casos:
        with pytest.raises(ConfiguracionInvalida) as error:
            leer(env)
        assert texto in str(error.value), env


def test_cada_servicio_lee_la_misma_conexion_y_faust_la_recibe(tmp_path, certs):
    env = {**BASE, "GPR_KAFKA_PROTOCOLO": "SASL_SSL", "GPR_KAFKA_TLS_CA": str(certs.ca),
           "GPR_KAFKA_SASL_USUARIO": "gpr-x", "GPR_KAFKA_SASL_CLAVE": "c",
           "GPR_INGESTA_CREDENCIALES": "/no/se/lee"}
    esperada = leer(env)
    for modulo in (config_procesador, config_consulta, config_ingesta, config_simulador):
        assert modulo.leer(env).kafka == esperada, modulo.__name__
    opciones = opciones_faust(config_procesador.leer(env))
    assert opciones["broker"] == "kafka://kafka-1:9093,kafka-2:9093"
    assert opciones["broker_credentials"].protocol.value == "SASL_SSL"
    # Y un error en GPR_KAFKA_* detiene a cualquiera de ellos al leer su configuración.
    for modulo in (config_procesador, config_consulta, config_ingesta, config_simulador):
        with pytest.raises(ConfiguracionInvalida, match="GPR_KAFKA_PROTOCOLO"):
            modulo.leer({**env, "GPR_KAFKA_PROTOCOLO": "SASL"})
