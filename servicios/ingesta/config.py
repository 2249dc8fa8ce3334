"""Configuración de la ingesta, leída una vez del entorno (`GPR_*`).

Los archivos del certificado TLS se leen aquí, al arrancar, para que un camino equivocado
falle de inmediato con un error que nombra la variable y no al primer cliente. Los límites
de tamaño (`GPR_INGESTA_*`, ver docs/ingesta.md) se comprueban también entre sí: una
combinación que no tiene sentido (un evento que no cabe en un mensaje) falla al arrancar.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from servicios.comun import config as c
from servicios.comun import kafka_conexion
from servicios.comun.kafka_conexion import ConexionKafka
from servicios.comun.eventos import BYTES_MAXIMOS_EVENTO
from servicios.comun.trazas import ConfigTrazas
from servicios.comun.trazas import leer as leer_trazas
from servicios.ingesta.recepcion import MOTIVO_MAXIMO

KIB = 1024
MIB = 1024 * KIB
# Lo que recibe por omisión un cliente gRPC (grpc.max_receive_message_length): la respuesta
# de un flujo, que trae un resultado por evento, debe caber en ella en el peor caso.
RESPUESTA_MAXIMA_CLIENTE = 4 * MIB
# Peor caso de un `ResultadoEvento` además de su evento_id recortado: el sufijo del recorte
# («…(N bytes)», a lo más 31 bytes), el motivo (recortado a `MOTIVO_MAXIMO`) y las etiquetas y
# longitudes de protobuf.
SUFIJO_RECORTE_MAXIMO = 40
ENVOLTURA_RESULTADO = 16


@dataclass(frozen=True)
class ConfigIngesta:
    bootstrap: str
    catalogo: str
    credenciales: str
    # Particiones con que se crean gpr.eventos.v1 y el de rechazados si aún no existen; la
    # misma variable y el mismo valor por defecto que el procesador.
    particiones: int
    # Eventos por llamada a Publicar y por flujo de PublicarFlujo.
    lote_maximo: int
    flujo_maximo: int
    # Bytes de un mensaje gRPC recibido (una SolicitudPublicar, o un Evento de un flujo).
    mensaje_maximo: int
    # Bytes de un evento: uno mayor se rechaza (evento_demasiado_grande) sin copiarlo a Kafka.
    evento_maximo: int
    # Bytes UTF-8 de cada identificador del evento (evento_id, caso_id, fuente…).
    id_maximo: int
    # Un flujo se valida y publica por trozos de a lo más tantos eventos o bytes.
    trozo_eventos: int
    trozo_bytes: int
    # Llamadas a Publicar/PublicarFlujo atendidas a la vez; las demás, RESOURCE_EXHAUSTED.
    peticiones_maximas: int
    # Cuánto se espera a que Kafka confirme un envío antes de responder UNAVAILABLE.
    plazo_kafka_s: int
    # Cada cuánto se comprueba que Kafka sigue aceptando escrituras (salud).
    sondeo_s: int
    # Espera máxima entre dos intentos de recrear el productor (crece desde 0,5 s).
    reintento_maximo_s: int
    # Una línea de registro igual se escribe a lo más una vez por este intervalo.
    registro_intervalo_s: int
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
    # Bootstrap, TLS y SASL hacia Kafka (GPR_KAFKA_*, docs/seguridad-kafka.md).
    kafka: ConexionKafka | None = None
    # Trazas OpenTelemetry (OTEL_*, docs/trazas.md); por omisión, apagadas.
    trazas: ConfigTrazas = ConfigTrazas("gpr-ingesta")

    def __post_init__(self) -> None:
        # Construida a mano (pruebas, bancos) sin `kafka`: la del bootstrap, sin seguridad.
        if self.kafka is None:
            object.__setattr__(self, "kafka", ConexionKafka(self.bootstrap))


def leer(env: Mapping[str, str]) -> ConfigIngesta:
    certificado, clave = _tls(env)
    lote_maximo = c.entero(env, "GPR_INGESTA_LOTE_MAXIMO", 500, minimo=1)
    # El máximo del contrato: un evento mayor lo rechazaría igual el validador común.
    evento_maximo = _bytes(env, "GPR_INGESTA_EVENTO_MAXIMO", BYTES_MAXIMOS_EVENTO, minimo=KIB,
                           maximo=BYTES_MAXIMOS_EVENTO)
    mensaje_maximo = _bytes(env, "GPR_INGESTA_MENSAJE_MAXIMO", 4 * MIB, minimo=64 * KIB, maximo=64 * MIB)
    if mensaje_maximo < evento_maximo:
        raise c.ConfiguracionInvalida(
            f"GPR_INGESTA_MENSAJE_MAXIMO={mensaje_maximo} debe ser al menos GPR_INGESTA_EVENTO_MAXIMO="
            f"{evento_maximo}: un evento admitido tiene que caber en un mensaje gRPC")
    id_maximo = _bytes(env, "GPR_INGESTA_ID_MAXIMO", 128, minimo=16, maximo=KIB)
    flujo_maximo = c.entero(env, "GPR_INGESTA_FLUJO_MAXIMO", 10000, minimo=1)
    resultado = resultado_maximo(id_maximo)
    if flujo_maximo * resultado > RESPUESTA_MAXIMA_CLIENTE:
        raise c.ConfiguracionInvalida(
            f"GPR_INGESTA_FLUJO_MAXIMO={flujo_maximo} es demasiado: la respuesta de un flujo trae un resultado "
            f"por evento (hasta {resultado} bytes con GPR_INGESTA_ID_MAXIMO={id_maximo}) y no cabría en los "
            f"{RESPUESTA_MAXIMA_CLIENTE} bytes que un cliente gRPC recibe por omisión; el máximo es "
            f"{RESPUESTA_MAXIMA_CLIENTE // resultado}")
    return ConfigIngesta(
        bootstrap=c.texto(env, "GPR_KAFKA_BOOTSTRAP"),
        kafka=kafka_conexion.leer(env),
        trazas=leer_trazas(env, "gpr-ingesta"),
        catalogo=c.texto(env, "GPR_CATALOGO", "despliegue/catalogo.yaml"),
        credenciales=c.texto(env, "GPR_INGESTA_CREDENCIALES"),
        particiones=c.entero(env, "GPR_PARTICIONES", 4, minimo=1),
        lote_maximo=lote_maximo,
        flujo_maximo=flujo_maximo,
        mensaje_maximo=mensaje_maximo,
        evento_maximo=evento_maximo,
        id_maximo=id_maximo,
        trozo_eventos=c.entero(env, "GPR_INGESTA_TROZO_EVENTOS", 500, minimo=1),
        trozo_bytes=_bytes(env, "GPR_INGESTA_TROZO_BYTES", 2 * MIB, minimo=64 * KIB, maximo=256 * MIB),
        peticiones_maximas=c.entero(env, "GPR_INGESTA_PETICIONES_MAXIMAS", 8, minimo=1),
        plazo_kafka_s=_plazo(env, "GPR_INGESTA_PLAZO_KAFKA", "10s"),
        sondeo_s=_plazo(env, "GPR_INGESTA_SONDEO", "5s"),
        reintento_maximo_s=_plazo(env, "GPR_INGESTA_REINTENTO_MAXIMO", "5s"),
        registro_intervalo_s=_plazo(env, "GPR_REGISTRO_INTERVALO", "30s"),
        lotes=_si_no(env, "GPR_INGESTA_LOTES", True),
        grpc_host=c.texto(env, "GPR_GRPC_HOST", "0.0.0.0"),
        grpc_puerto=c.puerto(env, "GPR_GRPC_PUERTO", 50052),
        metricas_puerto=c.puerto(env, "GPR_METRICAS_PUERTO", 9466),
        metricas_host=c.texto(env, "GPR_METRICAS_HOST", "0.0.0.0"),
        gracia_s=c.duracion(env, "GPR_GRPC_GRACIA", "5s"),
        tls_certificado=certificado,
        tls_clave=clave,
    )


def resultado_maximo(id_maximo: int) -> int:
    """Bytes de un `ResultadoEvento` en el peor caso (evento_id recortado a `id_maximo`)."""
    return id_maximo + SUFIJO_RECORTE_MAXIMO + MOTIVO_MAXIMO + ENVOLTURA_RESULTADO


_UNIDADES_BYTES = {None: 1, "b": 1, "kib": KIB, "mib": MIB}
_TAMANO = re.compile(r"^(\d+)\s*(b|kib|mib)?$", re.IGNORECASE)


def _bytes(env: Mapping[str, str], nombre: str, defecto: int, minimo: int, maximo: int) -> int:
    """Un tamaño en bytes: `1048576`, `512KiB` o `4MiB`, entre `minimo` y `maximo`."""
    crudo = env.get(nombre, "").strip()
    if not crudo:
        return defecto
    coincidencia = _TAMANO.match(crudo)
    if not coincidencia:
        raise c.ConfiguracionInvalida(f"{nombre}={crudo!r} no es un tamaño (ejemplos: 1048576, 512KiB, 4MiB)")
    unidad = coincidencia.group(2)
    valor = int(coincidencia.group(1)) * _UNIDADES_BYTES[unidad.lower() if unidad else None]
    if not minimo <= valor <= maximo:
        raise c.ConfiguracionInvalida(f"{nombre}={crudo} debe estar entre {minimo} y {maximo} bytes")
    return valor


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
