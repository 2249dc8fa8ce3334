"""Configuración del servicio de consulta, leída una vez del entorno (`GPR_*`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from servicios.comun import config as c


@dataclass(frozen=True)
class ConfigConsulta:
    bootstrap: str
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
    # Espera máxima de cada lectura de Kafka (ver comun.broker.acotar_espera_de_fetch).
    espera_fetch_s: float = 0.05


def leer(env: Mapping[str, str]) -> ConfigConsulta:
    return ConfigConsulta(
        bootstrap=c.texto(env, "GPR_KAFKA_BOOTSTRAP"),
        grpc_host=c.texto(env, "GPR_GRPC_HOST", "0.0.0.0"),
        grpc_puerto=c.puerto(env, "GPR_GRPC_PUERTO", 50051),
        metricas_puerto=c.puerto(env, "GPR_METRICAS_PUERTO", 9464),
        metricas_host=c.texto(env, "GPR_METRICAS_HOST", "0.0.0.0"),
        gracia_s=c.duracion(env, "GPR_GRPC_GRACIA", "5s"),
        historial_maximo=c.entero(env, "GPR_HISTORIAL_MAXIMO", 100, minimo=1),
        historial_total=c.entero(env, "GPR_HISTORIAL_TOTAL", 200_000, minimo=0),
        espera_fetch_s=c.decimal(env, "GPR_ESPERA_FETCH", 0.05, minimo=0.001),
        suscripcion_bufer=c.entero(env, "GPR_SUSCRIPCION_BUFER", 1000, minimo=1),
        grupo_procesador=c.texto(env, "GPR_GRUPO_PROCESADOR", "gpr-procesador"),
        intervalo_retraso_s=_intervalo(env, "GPR_INTERVALO_RETRASO", "15s"),
    )


def _intervalo(env: Mapping[str, str], nombre: str, defecto: str) -> int:
    valor = c.duracion(env, nombre, defecto)
    if valor < 1:
        raise c.ConfiguracionInvalida(f"{nombre} debe ser de al menos 1 s")
    return valor
