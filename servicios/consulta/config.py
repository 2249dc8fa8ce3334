"""Configuración del servicio de consulta, leída una vez del entorno (`GPR_*`).

Los archivos del certificado TLS se leen aquí, al arrancar, para que un camino equivocado
falle de inmediato con un error que nombra la variable y no al primer cliente. El catálogo y
los tokens los carga `__main__` (sus errores nombran archivo, línea y campo).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from servicios.comun import config as c
from servicios.comun import kafka_conexion
from servicios.comun.kafka_conexion import ConexionKafka


@dataclass(frozen=True)
class ConfigConsulta:
    bootstrap: str
    # Dirección de escucha de gRPC. Por omisión 0.0.0.0 (todas las interfaces), como siempre;
    # fuera de una máquina de desarrollo, con TLS y tokens (docs/consulta.md).
    grpc_host: str
    # 0: el sistema elige un puerto libre (el servidor informa cuál).
    grpc_puerto: int
    # 0: sin endpoint /metrics.
    metricas_puerto: int
    metricas_host: str
    gracia_s: int
    # Grupo de consumidores del procesador (su GPR_APP_ID) cuyo retraso se exporta.
    grupo_procesador: str = "gpr-procesador"
    # Cada cuánto se mide ese retraso (segundos).
    intervalo_retraso_s: int = 15
    # Instantáneas que se guardan por serie para ObtenerHistorial.
    historial_maximo: int = 100
    # Instantáneas anteriores a las actuales guardadas entre todas las series (tope de memoria).
    historial_total: int = 200_000
    # Actualizaciones pendientes por suscriptor antes de cortarlo con RESOURCE_EXHAUSTED.
    suscripcion_bufer: int = 1000
    # Espera máxima de cada lectura de Kafka con el broker embebido (ver
    # terceros.aiokafka.acotar_espera_de_fetch).
    espera_fetch_s: float = 0.05
    # Con el broker embebido (Tansu) se acota la espera de cada lectura: "auto", "si" o "no".
    embebido: str = "auto"
    # Segundos sin respuesta de Kafka tras los que la vista deja de estar al día (NOT_SERVING).
    plazo_kafka_s: float = 10.0
    # Catálogo: las agencias conocidas (etiquetas de los rechazados, alcance de los tokens).
    catalogo: str = "despliegue/catalogo.yaml"
    # Archivo de tokens de lectura; None: sin control de acceso (cualquiera lee todo).
    tokens: str | None = None
    # Certificado y clave PEM del servidor gRPC; ambos None sirve sin TLS.
    tls_certificado: bytes | None = None
    tls_clave: bytes | None = None
    # Puerto de un segundo servidor gRPC, en claro, solo con la salud: para las sondas de
    # Kubernetes, que no hablan TLS. 0: no se abre.
    salud_puerto: int = 0
    # Bootstrap, TLS y SASL hacia Kafka (GPR_KAFKA_*, docs/seguridad-kafka.md).
    kafka: ConexionKafka | None = None

    def __post_init__(self) -> None:
        # Construida a mano (pruebas, bancos) sin `kafka`: la del bootstrap, sin seguridad.
        if self.kafka is None:
            object.__setattr__(self, "kafka", ConexionKafka(self.bootstrap))


def leer(env: Mapping[str, str]) -> ConfigConsulta:
    certificado, clave = _tls(env)
    return ConfigConsulta(
        bootstrap=c.texto(env, "GPR_KAFKA_BOOTSTRAP"),
        kafka=kafka_conexion.leer(env),
        grpc_host=c.texto(env, "GPR_GRPC_HOST", "0.0.0.0"),
        grpc_puerto=c.puerto(env, "GPR_GRPC_PUERTO", 50051),
        metricas_puerto=c.puerto(env, "GPR_METRICAS_PUERTO", 9464),
        metricas_host=c.texto(env, "GPR_METRICAS_HOST", "0.0.0.0"),
        gracia_s=c.duracion(env, "GPR_GRPC_GRACIA", "5s"),
        historial_maximo=c.entero(env, "GPR_HISTORIAL_MAXIMO", 100, minimo=1),
        historial_total=c.entero(env, "GPR_HISTORIAL_TOTAL", 200_000, minimo=0),
        espera_fetch_s=c.decimal(env, "GPR_ESPERA_FETCH", 0.05, minimo=0.001),
        embebido=c.broker_embebido(env),
        suscripcion_bufer=c.entero(env, "GPR_SUSCRIPCION_BUFER", 1000, minimo=1),
        grupo_procesador=c.texto(env, "GPR_GRUPO_PROCESADOR", "gpr-procesador"),
        intervalo_retraso_s=_intervalo(env, "GPR_INTERVALO_RETRASO", "15s"),
        plazo_kafka_s=_intervalo(env, "GPR_CONSULTA_PLAZO_KAFKA", "10s"),
        catalogo=c.texto(env, "GPR_CATALOGO", "despliegue/catalogo.yaml"),
        tokens=c.texto_opcional(env, "GPR_CONSULTA_TOKENS"),
        tls_certificado=certificado,
        tls_clave=clave,
        salud_puerto=c.puerto(env, "GPR_CONSULTA_SALUD_PUERTO", 0),
    )


def _intervalo(env: Mapping[str, str], nombre: str, defecto: str) -> int:
    valor = c.duracion(env, nombre, defecto)
    if valor < 1:
        raise c.ConfiguracionInvalida(f"{nombre} debe ser de al menos 1 s")
    return valor


def _tls(env: Mapping[str, str]) -> tuple[bytes | None, bytes | None]:
    # El mismo esquema que la ingesta (servicios/ingesta/config.py), con nombres propios: en
    # un mismo entorno (make run, un .env) cada servicio tiene su certificado.
    ruta_cert = c.texto_opcional(env, "GPR_CONSULTA_TLS_CERT")
    ruta_clave = c.texto_opcional(env, "GPR_CONSULTA_TLS_KEY")
    if ruta_cert is None and ruta_clave is None:
        return None, None
    if ruta_cert is None:
        raise c.ConfiguracionInvalida(
            "GPR_CONSULTA_TLS_KEY está definida pero falta GPR_CONSULTA_TLS_CERT (TLS necesita ambas)")
    if ruta_clave is None:
        raise c.ConfiguracionInvalida(
            "GPR_CONSULTA_TLS_CERT está definida pero falta GPR_CONSULTA_TLS_KEY (TLS necesita ambas)")
    return (_leer_pem(ruta_cert, "GPR_CONSULTA_TLS_CERT", "CERTIFICATE"),
            _leer_pem(ruta_clave, "GPR_CONSULTA_TLS_KEY", "PRIVATE KEY"))


def _leer_pem(ruta: str, nombre: str, tipo: str) -> bytes:
    try:
        contenido = Path(ruta).read_bytes()
    except OSError as error:
        raise c.ConfiguracionInvalida(f"{nombre}={ruta}: no se puede leer ({error.strerror})") from None
    # Basta con un bloque PEM del tipo esperado ("PRIVATE KEY" también cubre "EC PRIVATE KEY");
    # gRPC valida el resto al abrir el puerto.
    if f"{tipo}-----".encode() not in contenido:
        raise c.ConfiguracionInvalida(f"{nombre}={ruta}: no contiene un bloque PEM '{tipo}'")
    return contenido
