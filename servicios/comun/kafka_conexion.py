"""Cómo conecta cada cliente Kafka del proyecto: broker, TLS y SASL, leídos una vez del entorno.

Un solo lugar para las variables `GPR_KAFKA_*` y una función por biblioteca cliente, para que
el procesador (faust y kafka-python), la consulta (aiokafka), la Ingesta, el simulador y la
CLI (kafka-python) conecten igual. Ver docs/seguridad-kafka.md.

| Variable | Defecto | Qué es |
|---|---|---|
| `GPR_KAFKA_BOOTSTRAP` | (obligatoria) | `host:puerto[,host:puerto…]` |
| `GPR_KAFKA_PROTOCOLO` | `PLAINTEXT` | `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` o `SASL_SSL` |
| `GPR_KAFKA_TLS_CA` | las CA del sistema | PEM con la CA que firmó el certificado del broker |
| `GPR_KAFKA_TLS_CERT` / `GPR_KAFKA_TLS_CLAVE` | (ninguno) | certificado y clave PEM del cliente (TLS mutuo) |
| `GPR_KAFKA_SASL_MECANISMO` | `SCRAM-SHA-512` | `SCRAM-SHA-512`, `SCRAM-SHA-256` o `PLAIN` (solo con TLS) |
| `GPR_KAFKA_SASL_USUARIO` | (obligatoria con SASL) | principal del servicio (ver la tabla de ACL) |
| `GPR_KAFKA_SASL_CLAVE` o `GPR_KAFKA_SASL_CLAVE_ARCHIVO` | (una de las dos con SASL) | la contraseña, o un archivo que la contiene (un secreto montado) |

Los archivos se leen y el contexto TLS se arma al leer la configuración: un camino o una
clave equivocados fallan al arrancar con un error que nombra la variable, no en la primera
conexión. El nombre del broker se verifica siempre contra su certificado.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gpr_cliente import saludo_tls
from servicios.comun.config import ConfiguracionInvalida, texto, texto_opcional

PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL = "PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"
PROTOCOLOS = (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)
SCRAM_SHA_256, SCRAM_SHA_512, PLAIN = "SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"
MECANISMOS = (SCRAM_SHA_512, SCRAM_SHA_256, PLAIN)

# Las variables de seguridad (no el bootstrap): `gpr local` las vacía para los servicios que
# lanza contra el broker embebido, que no habla TLS ni tiene usuarios.
VARIABLES_SEGURIDAD = (
    "GPR_KAFKA_PROTOCOLO", "GPR_KAFKA_TLS_CA", "GPR_KAFKA_TLS_CERT", "GPR_KAFKA_TLS_CLAVE",
    "GPR_KAFKA_SASL_MECANISMO", "GPR_KAFKA_SASL_USUARIO", "GPR_KAFKA_SASL_CLAVE", "GPR_KAFKA_SASL_CLAVE_ARCHIVO",
)


@dataclass(frozen=True)
class ConexionKafka:
    """Dirección y seguridad de la conexión a Kafka. `PLAINTEXT` sin más: la pila local."""

    bootstrap: str
    protocolo: str = PLAINTEXT
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_clave: str | None = None
    sasl_mecanismo: str | None = None
    sasl_usuario: str | None = None
    # Fuera del repr: una configuración impresa en un registro no debe llevar la contraseña.
    sasl_clave: str | None = field(default=None, repr=False)

    @classmethod
    def de(cls, valor: "str | ConexionKafka") -> "ConexionKafka":
        """Acepta una `ConexionKafka` o solo el bootstrap (sin seguridad, como en las pruebas)."""
        return valor if isinstance(valor, ConexionKafka) else cls(valor)

    @property
    def usa_tls(self) -> bool:
        return self.protocolo in (SSL, SASL_SSL)

    @property
    def usa_sasl(self) -> bool:
        return self.protocolo in (SASL_PLAINTEXT, SASL_SSL)

    def describir(self) -> str:
        """Para registros y errores: dónde y cómo, nunca la contraseña."""
        partes = [self.protocolo]
        if self.usa_sasl:
            partes.append(f"{self.sasl_mecanismo}, usuario {self.sasl_usuario}")
        if self.tls_cert:
            partes.append("certificado de cliente")
        return f"{self.bootstrap} ({', '.join(partes)})"

    def contexto_tls(self) -> ssl.SSLContext | None:
        """Un contexto nuevo (verifica la CA y el nombre del broker), o None sin TLS."""
        if not self.usa_tls:
            return None
        contexto = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.tls_ca)
        contexto.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.tls_cert:
            contexto.load_cert_chain(self.tls_cert, self.tls_clave)
        return contexto

    def _sasl(self) -> dict:
        if not self.usa_sasl:
            return {}
        return {"sasl_mechanism": self.sasl_mecanismo, "sasl_plain_username": self.sasl_usuario,
                "sasl_plain_password": self.sasl_clave}

    def para_kafka_python(self) -> dict:
        """kwargs de `KafkaProducer` / `KafkaAdminClient` (kafka-python)."""
        return {"bootstrap_servers": self.bootstrap, "security_protocol": self.protocolo,
                "ssl_context": self.contexto_tls(), **self._sasl()}

    def para_aiokafka(self) -> dict:
        """kwargs de `AIOKafkaConsumer` / `AIOKafkaProducer` / `AIOKafkaAdminClient`."""
        return {"bootstrap_servers": self.bootstrap, "security_protocol": self.protocolo,
                "ssl_context": self.contexto_tls(), **self._sasl()}

    def para_faust(self) -> dict:
        """Opciones de `faust.App`: `broker` y `broker_credentials` (que faust pasa a su
        consumidor, su productor y su cliente de administración)."""
        import faust

        opciones: dict = {"broker": f"kafka://{self.bootstrap}"}
        contexto = self.contexto_tls()
        if self.usa_sasl:
            opciones["broker_credentials"] = faust.SASLCredentials(
                username=self.sasl_usuario, password=self.sasl_clave, mechanism=self.sasl_mecanismo,
                ssl_context=contexto)
        elif contexto is not None:
            opciones["broker_credentials"] = faust.SSLCredentials(contexto)
        return opciones


def leer(env: Mapping[str, str], bootstrap: str | None = None) -> ConexionKafka:
    """La conexión según `GPR_KAFKA_*`; `bootstrap` reemplaza a `GPR_KAFKA_BOOTSTRAP` (la CLI
    lo recibe también como opción)."""
    bootstrap = bootstrap or texto(env, "GPR_KAFKA_BOOTSTRAP")
    protocolo = texto(env, "GPR_KAFKA_PROTOCOLO", PLAINTEXT).upper()
    if protocolo not in PROTOCOLOS:
        raise ConfiguracionInvalida(f"GPR_KAFKA_PROTOCOLO={protocolo!r} debe ser uno de {', '.join(PROTOCOLOS)}")
    conexion = ConexionKafka(bootstrap, protocolo, **_tls(env, protocolo), **_sasl(env, protocolo))
    _probar_tls(conexion)
    return conexion


def _tls(env: Mapping[str, str], protocolo: str) -> dict:
    ca = texto_opcional(env, "GPR_KAFKA_TLS_CA")
    cert = texto_opcional(env, "GPR_KAFKA_TLS_CERT")
    clave = texto_opcional(env, "GPR_KAFKA_TLS_CLAVE")
    definidas = [n for n, v in (("GPR_KAFKA_TLS_CA", ca), ("GPR_KAFKA_TLS_CERT", cert),
                                ("GPR_KAFKA_TLS_CLAVE", clave)) if v]
    if protocolo not in (SSL, SASL_SSL):
        if definidas:
            # Quien pone una CA cree que la conexión va cifrada: mejor decírselo que conectar en claro.
            raise ConfiguracionInvalida(f"{definidas[0]} está definida pero GPR_KAFKA_PROTOCOLO={protocolo} no usa "
                                        "TLS (use SSL o SASL_SSL)")
        return {}
    if bool(cert) != bool(clave):
        falta, hay = ("GPR_KAFKA_TLS_CLAVE", "GPR_KAFKA_TLS_CERT") if cert else ("GPR_KAFKA_TLS_CERT", "GPR_KAFKA_TLS_CLAVE")
        raise ConfiguracionInvalida(f"{hay} está definida pero falta {falta} (el certificado de cliente necesita ambas)")
    for nombre, ruta, bloque in (("GPR_KAFKA_TLS_CA", ca, "CERTIFICATE"), ("GPR_KAFKA_TLS_CERT", cert, "CERTIFICATE"),
                                 ("GPR_KAFKA_TLS_CLAVE", clave, "PRIVATE KEY")):
        if ruta:
            _comprobar_pem(nombre, ruta, bloque)
    return {"tls_ca": ca, "tls_cert": cert, "tls_clave": clave}


def _comprobar_pem(nombre: str, ruta: str, bloque: str) -> None:
    try:
        contenido = Path(ruta).read_bytes()
    except OSError as error:
        raise ConfiguracionInvalida(f"{nombre}={ruta}: no se puede leer ({error.strerror})") from None
    # "PRIVATE KEY" cubre también "RSA PRIVATE KEY" y "EC PRIVATE KEY".
    if f"{bloque}-----".encode() not in contenido:
        raise ConfiguracionInvalida(f"{nombre}={ruta}: no contiene un bloque PEM '{bloque}'")


def _probar_tls(conexion: ConexionKafka) -> None:
    """Arma el contexto TLS una vez: un PEM dañado o una clave que no es la del certificado
    fallan aquí, con la variable, y no en cada intento de conexión."""
    if not conexion.usa_tls:
        return
    try:
        ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=conexion.tls_ca)
    except (ssl.SSLError, OSError) as error:
        raise ConfiguracionInvalida(f"GPR_KAFKA_TLS_CA={conexion.tls_ca}: no es una CA válida ({error})") from None
    if conexion.tls_cert:
        try:
            ssl.create_default_context().load_cert_chain(conexion.tls_cert, conexion.tls_clave)
        except (ssl.SSLError, OSError) as error:
            raise ConfiguracionInvalida(
                f"GPR_KAFKA_TLS_CERT={conexion.tls_cert} y GPR_KAFKA_TLS_CLAVE={conexion.tls_clave} no forman un "
                f"par válido ({error})") from None


def _sasl(env: Mapping[str, str], protocolo: str) -> dict:
    mecanismo = texto_opcional(env, "GPR_KAFKA_SASL_MECANISMO")
    usuario = texto_opcional(env, "GPR_KAFKA_SASL_USUARIO")
    # La contraseña sin strip(): puede empezar o terminar en espacios.
    clave = env.get("GPR_KAFKA_SASL_CLAVE") or None
    archivo = texto_opcional(env, "GPR_KAFKA_SASL_CLAVE_ARCHIVO")
    if protocolo not in (SASL_PLAINTEXT, SASL_SSL):
        definidas = [n for n, v in (("GPR_KAFKA_SASL_MECANISMO", mecanismo), ("GPR_KAFKA_SASL_USUARIO", usuario),
                                    ("GPR_KAFKA_SASL_CLAVE", clave), ("GPR_KAFKA_SASL_CLAVE_ARCHIVO", archivo)) if v]
        if definidas:
            raise ConfiguracionInvalida(f"{definidas[0]} está definida pero GPR_KAFKA_PROTOCOLO={protocolo} no usa "
                                        "SASL (use SASL_SSL o SASL_PLAINTEXT)")
        return {}
    mecanismo = (mecanismo or SCRAM_SHA_512).upper()
    if mecanismo not in MECANISMOS:
        raise ConfiguracionInvalida(f"GPR_KAFKA_SASL_MECANISMO={mecanismo!r} debe ser uno de {', '.join(MECANISMOS)}")
    if mecanismo == PLAIN and protocolo == SASL_PLAINTEXT:
        raise ConfiguracionInvalida("GPR_KAFKA_SASL_MECANISMO=PLAIN con GPR_KAFKA_PROTOCOLO=SASL_PLAINTEXT enviaría la "
                                    "contraseña en claro por la red: use SASL_SSL, o un mecanismo SCRAM")
    if not usuario:
        raise ConfiguracionInvalida(f"falta GPR_KAFKA_SASL_USUARIO (GPR_KAFKA_PROTOCOLO={protocolo} autentica con "
                                    f"{mecanismo})")
    if clave and archivo:
        raise ConfiguracionInvalida("GPR_KAFKA_SASL_CLAVE y GPR_KAFKA_SASL_CLAVE_ARCHIVO están definidas: use solo una")
    if archivo:
        clave = _clave_de_archivo(archivo)
    if not clave:
        raise ConfiguracionInvalida(f"falta la contraseña de {usuario}: GPR_KAFKA_SASL_CLAVE_ARCHIVO (un archivo con "
                                    "ella, p. ej. un secreto montado) o GPR_KAFKA_SASL_CLAVE")
    return {"sasl_mecanismo": mecanismo, "sasl_usuario": usuario, "sasl_clave": clave}


def _clave_de_archivo(ruta: str) -> str:
    try:
        contenido = Path(ruta).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfiguracionInvalida(f"GPR_KAFKA_SASL_CLAVE_ARCHIVO={ruta}: no se puede leer ({error.strerror})") from None
    except UnicodeDecodeError:
        raise ConfiguracionInvalida(f"GPR_KAFKA_SASL_CLAVE_ARCHIVO={ruta}: no es texto UTF-8") from None
    # Solo el fin de línea final que deja un editor o `echo`; el resto es la contraseña.
    clave = contenido.removesuffix("\n").removesuffix("\r")
    if not clave:
        raise ConfiguracionInvalida(f"GPR_KAFKA_SASL_CLAVE_ARCHIVO={ruta}: el archivo está vacío")
    if "\n" in clave:
        raise ConfiguracionInvalida(f"GPR_KAFKA_SASL_CLAVE_ARCHIVO={ruta}: tiene más de una línea (debe contener solo "
                                    "la contraseña)")
    return clave


class KafkaInalcanzable(RuntimeError):
    """No se pudo conectar (o autenticar) con Kafka a tiempo; el mensaje dice dónde y cómo."""


def explicar(conexion: ConexionKafka, error: BaseException) -> str:
    """`error` con la conexión y, si aplica, la causa probable: kafka-python informa una
    autenticación rechazada solo como «Unable to bootstrap» tras su plazo."""
    texto = str(error) or type(error).__name__
    if not texto.startswith(type(error).__name__):
        texto = f"{type(error).__name__}: {texto}"
    pista = ""
    if conexion.usa_sasl:
        pista = (f"; si el broker responde, revise el usuario {conexion.sasl_usuario}, su contraseña y el mecanismo "
                 f"{conexion.sasl_mecanismo}")
    elif conexion.protocolo == PLAINTEXT:
        pista = "; si el broker exige TLS o SASL, defina GPR_KAFKA_PROTOCOLO (docs/seguridad-kafka.md)"
    return f"{conexion.describir()}: {texto}{pista}"


def comprobar_saludo_tls(conexion: ConexionKafka, plazo_s: float) -> None:
    """Completa un saludo TLS con algún broker de arranque o lanza `KafkaInalcanzable`.

    El saludo de kafka-python 3.0 no tiene plazo (ver `gpr_cliente.saludo_tls`, que lo hace
    para la biblioteca cliente y para los servicios). aiokafka sí acota el suyo.
    """
    if not conexion.usa_tls:
        return
    try:
        saludo_tls.comprobar_saludo_tls(conexion.bootstrap, conexion.contexto_tls(), plazo_s)
    except saludo_tls.SaludoTlsFallido as error:
        raise KafkaInalcanzable(f"sin conexión TLS con Kafka en {conexion.describir()}: {error}") from None
