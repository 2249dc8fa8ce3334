"""Configuración de la ingesta, leída una vez del entorno (`GPR_*`).

Los archivos del certificado TLS se leen aquí, al arrancar, para que un camino equivocado
falle de inmediato con un error que nombra la variable y no al primer cliente.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from servicios.comun import config as c


@dataclass(frozen=True)
class ConfigIngesta:
    bootstrap: str
    catalogo: str
    credenciales: str
    # Particiones con que se crean gpr.eventos.v1 y el de rechazados si aún no existen; la
    # misma variable y el mismo valor por defecto que el procesador.
    particiones: int
    lote_maximo: int
    flujo_maximo: int
    # Cuánto se espera a que Kafka confirme un envío antes de responder UNAVAILABLE.
    plazo_kafka_s: int
    # Agrupar los eventos de una petición en registros LoteEventos por partición.
    lotes: bool
    grpc_host: str
    # 0: el sistema elige un puerto libre (el servidor informa cuál).
    grpc_puerto: int
    # 0: sin endpoint /metrics.
    metricas_puerto: int
    metricas_host: str
    gracia_s: int
    # Certificado y clave PEM; ambos None sirve sin TLS.
    tls_certificado: bytes | None = None
    tls_clave: bytes | None = None


def leer(env: Mapping[str, str]) -> ConfigIngesta:
    certificado, clave = _tls(env)
    return ConfigIngesta(
        bootstrap=c.texto(env, "GPR_KAFKA_BOOTSTRAP"),
        catalogo=c.texto(env, "GPR_CATALOGO", "despliegue/catalogo.yaml"),
        credenciales=c.texto(env, "GPR_INGESTA_CREDENCIALES"),
        particiones=c.entero(env, "GPR_PARTICIONES", 4, minimo=1),
        lote_maximo=c.entero(env, "GPR_INGESTA_LOTE_MAXIMO", 500, minimo=1),
        flujo_maximo=c.entero(env, "GPR_INGESTA_FLUJO_MAXIMO", 10000, minimo=1),
        plazo_kafka_s=_plazo(env, "GPR_INGESTA_PLAZO_KAFKA", "10s"),
        lotes=_si_no(env, "GPR_INGESTA_LOTES", True),
        grpc_host=c.texto(env, "GPR_GRPC_HOST", "0.0.0.0"),
        grpc_puerto=c.puerto(env, "GPR_GRPC_PUERTO", 50052),
        metricas_puerto=c.puerto(env, "GPR_METRICAS_PUERTO", 9466),
        metricas_host=c.texto(env, "GPR_METRICAS_HOST", "0.0.0.0"),
        gracia_s=c.duracion(env, "GPR_GRPC_GRACIA", "5s"),
        tls_certificado=certificado,
        tls_clave=clave,
    )


def _plazo(env: Mapping[str, str], nombre: str, defecto: str) -> int:
    valor = c.duracion(env, nombre, defecto)
    if valor < 1:
        raise c.ConfiguracionInvalida(f"{nombre} debe ser de al menos 1s")
    return valor


_SI = {"1", "si", "sí", "true", "verdadero"}
_NO = {"0", "no", "false", "falso"}


def _si_no(env: Mapping[str, str], nombre: str, defecto: bool) -> bool:
    crudo = env.get(nombre, "").strip().lower()
    if not crudo:
        return defecto
    if crudo in _SI:
        return True
    if crudo in _NO:
        return False
    raise c.ConfiguracionInvalida(f"{nombre}={crudo!r} debe ser 1/si o 0/no")


def _tls(env: Mapping[str, str]) -> tuple[bytes | None, bytes | None]:
    ruta_cert = c.texto_opcional(env, "GPR_TLS_CERT")
    ruta_clave = c.texto_opcional(env, "GPR_TLS_KEY")
    if ruta_cert is None and ruta_clave is None:
        return None, None
    if ruta_cert is None:
        raise c.ConfiguracionInvalida("GPR_TLS_KEY está definida pero falta GPR_TLS_CERT (TLS necesita ambas)")
    if ruta_clave is None:
        raise c.ConfiguracionInvalida("GPR_TLS_CERT está definida pero falta GPR_TLS_KEY (TLS necesita ambas)")
    return _leer_pem(ruta_cert, "GPR_TLS_CERT", "CERTIFICATE"), _leer_pem(ruta_clave, "GPR_TLS_KEY", "PRIVATE KEY")


def _leer_pem(ruta: str, nombre: str, tipo: str) -> bytes:
    try:
        contenido = Path(ruta).read_bytes()
    except OSError as error:
        raise c.ConfiguracionInvalida(f"{nombre}={ruta}: no se puede leer ({error.strerror})") from None
    # Basta con que haya un bloque PEM del tipo esperado ("PRIVATE KEY" también cubre
    # "RSA PRIVATE KEY" y "EC PRIVATE KEY"); gRPC valida el resto al abrir el puerto.
    if f"{tipo}-----".encode() not in contenido:
        raise c.ConfiguracionInvalida(f"{nombre}={ruta}: no contiene un bloque PEM '{tipo}'")
    return contenido
