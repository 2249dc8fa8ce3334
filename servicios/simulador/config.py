"""Configuración del simulador, leída una vez del entorno (`GPR_*`).

| Variable | Defecto | Qué es |
|---|---|---|
| `GPR_KAFKA_BOOTSTRAP` | (obligatoria) | broker Kafka |
| `GPR_CATALOGO` | `despliegue/catalogo.yaml` | catálogo de agencias y servicios |
| `GPR_PARTICIONES` | `4` | particiones de los tópicos que se crean si faltan |
| `GPR_SIMULADOR_TASA` | `200` | tope de eventos por segundo (la historia sale a este ritmo) |
| `GPR_SIMULADOR_SEMILLA` | `42` | semilla del escenario y de los identificadores |
| `GPR_SIMULADOR_HISTORIA` | `3d` | cuánto pasado se repite antes de seguir en tiempo real |
| `GPR_SIMULADOR_CASOS_HORA` | `10` | solicitudes por hora de cada servicio, en promedio semanal |
| `GPR_SIMULADOR_LENTOS` | el servicio de plazo más corto, en su última etapa | `agencia/servicio:etapa,...` que incumplen su plazo por esa etapa; `ninguno` para ninguno |
| `GPR_SIMULADOR_CONTROL` | (ninguno) | archivo con el mismo formato que `GPR_SIMULADOR_LENTOS`, releído cuando cambia: degrada y recupera servicios en marcha |
| `GPR_SIMULADOR_MAXIMO` | `0` | termina tras publicar tantos eventos (0: sin límite) |
| `GPR_KAFKA_PROTOCOLO`, `GPR_KAFKA_TLS_*`, `GPR_KAFKA_SASL_*` | sin seguridad | TLS y SASL hacia Kafka (docs/seguridad-kafka.md) |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from servicios.comun import config as c
from servicios.comun import kafka_conexion
from servicios.comun.kafka_conexion import ConexionKafka
from servicios.comun.catalogo import Catalogo
from servicios.simulador.generador import ClaveServicio, LentosInvalidos, errores_lentos, parsear_lentos


@dataclass(frozen=True)
class ConfigSimulador:
    bootstrap: str
    catalogo: str
    particiones: int
    tasa: float
    semilla: int
    historia_s: int
    casos_por_hora: float
    # None: los de `lentos_por_defecto` del catálogo.
    lentos: dict[ClaveServicio, str] | None
    control: str | None
    maximo: int
    # Bootstrap, TLS y SASL (GPR_KAFKA_*, docs/seguridad-kafka.md).
    kafka: ConexionKafka | None = None

    def __post_init__(self) -> None:
        # Construida a mano (pruebas, bancos) sin `kafka`: la del bootstrap, sin seguridad.
        if self.kafka is None:
            object.__setattr__(self, "kafka", ConexionKafka(self.bootstrap))


def _positivo(env: Mapping[str, str], nombre: str, defecto: float) -> float:
    valor = c.decimal(env, nombre, defecto)
    if valor <= 0:
        raise c.ConfiguracionInvalida(f"{nombre}={valor:g} debe ser mayor que 0")
    return valor


def leer(env: Mapping[str, str]) -> ConfigSimulador:
    crudo_lentos = c.texto_opcional(env, "GPR_SIMULADOR_LENTOS")
    try:
        lentos = None if crudo_lentos is None else parsear_lentos(crudo_lentos)
    except LentosInvalidos as error:
        raise c.ConfiguracionInvalida(f"GPR_SIMULADOR_LENTOS: {error}") from None
    return ConfigSimulador(
        bootstrap=c.texto(env, "GPR_KAFKA_BOOTSTRAP"),
        kafka=kafka_conexion.leer(env),
        catalogo=c.texto(env, "GPR_CATALOGO", "despliegue/catalogo.yaml"),
        particiones=c.entero(env, "GPR_PARTICIONES", 4, minimo=1),
        tasa=_positivo(env, "GPR_SIMULADOR_TASA", 200.0),
        semilla=c.entero(env, "GPR_SIMULADOR_SEMILLA", 42),
        historia_s=c.duracion(env, "GPR_SIMULADOR_HISTORIA", "3d"),
        casos_por_hora=_positivo(env, "GPR_SIMULADOR_CASOS_HORA", 10.0),
        lentos=lentos,
        control=c.texto_opcional(env, "GPR_SIMULADOR_CONTROL"),
        maximo=c.entero(env, "GPR_SIMULADOR_MAXIMO", 0),
    )


def comprobar_con_catalogo(cfg: ConfigSimulador, catalogo: Catalogo) -> None:
    """Los servicios y etapas de GPR_SIMULADOR_LENTOS deben existir en el catálogo."""
    errores = errores_lentos(cfg.lentos or {}, catalogo)
    if errores:
        raise c.ConfiguracionInvalida(f"GPR_SIMULADOR_LENTOS: {'; '.join(errores)}")
