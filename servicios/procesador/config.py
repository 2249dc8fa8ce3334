"""Configuración del procesador, leída una vez del entorno (`GPR_*`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from servicios.comun import config as c
from servicios.comun import kafka_conexion
from servicios.comun.kafka_conexion import ConexionKafka
from servicios.comun.trazas import ConfigTrazas
from servicios.comun.trazas import leer as leer_trazas


@dataclass(frozen=True)
class ConfigProcesador:
    bootstrap: str
    catalogo: str
    metas: str
    particiones: int
    app_id: str
    almacen: str
    directorio_datos: str
    tardanza_maxima_s: int
    eventos_maximos_por_caso: int
    intervalo_publicacion_s: float
    metricas_puerto: int
    lote_maximo: int
    lote_espera_s: float
    refresco_rango_s: float
    replicacion: int
    espera_fetch_s: float
    embebido: str
    bucle: str
    prueba_fallar_lote: int
    prueba_evento_veneno: str
    # Bootstrap, TLS y SASL (GPR_KAFKA_*, docs/seguridad-kafka.md).
    kafka: ConexionKafka | None = None
    # Trazas OpenTelemetry (OTEL_*, docs/trazas.md); por omisión, apagadas.
    trazas: ConfigTrazas = ConfigTrazas("gpr-procesador")

    def __post_init__(self) -> None:
        # Construida a mano (pruebas, bancos) sin `kafka`: la del bootstrap, sin seguridad.
        if self.kafka is None:
            object.__setattr__(self, "kafka", ConexionKafka(self.bootstrap))


def leer(env: Mapping[str, str]) -> ConfigProcesador:
    almacen = c.texto(env, "GPR_ALMACEN", "rocksdb")
    if almacen not in ("rocksdb", "memoria"):
        raise c.ConfiguracionInvalida(f"GPR_ALMACEN={almacen!r} debe ser 'rocksdb' o 'memoria'")
    bucle = c.texto(env, "GPR_BUCLE", "uvloop")
    if bucle not in ("uvloop", "asyncio"):
        raise c.ConfiguracionInvalida(f"GPR_BUCLE={bucle!r} debe ser 'uvloop' o 'asyncio'")
    return ConfigProcesador(
        bootstrap=c.texto(env, "GPR_KAFKA_BOOTSTRAP"),
        kafka=kafka_conexion.leer(env),
        trazas=leer_trazas(env, "gpr-procesador"),
        catalogo=c.texto(env, "GPR_CATALOGO", "despliegue/catalogo.yaml"),
        metas=c.texto(env, "GPR_METAS", "despliegue/metas"),
        particiones=c.entero(env, "GPR_PARTICIONES", 4, minimo=1),
        app_id=c.texto(env, "GPR_APP_ID", "gpr-procesador"),
        almacen=almacen,
        directorio_datos=c.texto(env, "GPR_DIRECTORIO_DATOS", "datos/procesador"),
        tardanza_maxima_s=c.duracion(env, "GPR_TARDANZA_MAXIMA", "7d"),
        # Un caso real tiene decenas de eventos; miles suelen ser un emisor que repite el mismo
        # caso_id. Su estado (que guarda cada evento) se reescribiría entero en cada lote y
        # acabaría sin caber en un registro de Kafka.
        eventos_maximos_por_caso=c.entero(env, "GPR_EVENTOS_MAXIMOS_POR_CASO", 1000, minimo=1),
        intervalo_publicacion_s=c.decimal(env, "GPR_INTERVALO_PUBLICACION", 0.25, minimo=0.05),
        metricas_puerto=c.entero(env, "GPR_METRICAS_PUERTO", 9465),
        # Registros por lote de cada etapa, y cuánto esperar a completarlo: más grande reparte
        # mejor el costo por registro; la espera acota la latencia cuando hay poco tráfico.
        lote_maximo=c.entero(env, "GPR_LOTE_MAXIMO", 3000, minimo=1),
        lote_espera_s=c.decimal(env, "GPR_LOTE_ESPERA", 0.05, minimo=0.001),
        refresco_rango_s=c.decimal(env, "GPR_REFRESCO_RANGO", 10.0, minimo=0.0),
        replicacion=c.entero(env, "GPR_REPLICACION", 1, minimo=1),
        espera_fetch_s=c.decimal(env, "GPR_ESPERA_FETCH", 0.05, minimo=0.001),
        # Las correcciones del broker embebido (Tansu) solo se instalan con él.
        embebido=c.broker_embebido(env),
        bucle=bucle,
        # Solo para pruebas de cortes: el lote número N de la etapa por caso falla una vez con
        # sus estados ya confirmados y sus agregados sin enviar (0: nunca).
        prueba_fallar_lote=c.entero(env, "GPR_PRUEBA_FALLAR_LOTE", 0, minimo=0),
        # Solo para pruebas: procesar el evento con este evento_id lanza un error inesperado
        # (vacío: nunca); el resto del lote debe seguir y ese evento, ir a rechazados.
        prueba_evento_veneno=c.texto(env, "GPR_PRUEBA_EVENTO_VENENO", ""),
    )


def carpeta_de_metas(ruta: str) -> Path:
    """La carpeta de GPR_METAS, que debe existir: sin ella el procesador arrancaría sin metas y
    sin decir nada (semáforos y ListarIncumplimientos vacíos) mientras Prometheus, con los
    umbrales compilados en sus reglas, seguiría alertando."""
    carpeta = Path(ruta)
    if not carpeta.is_dir():
        que = "es un archivo, no una carpeta" if carpeta.exists() else "no existe"
        raise c.ConfiguracionInvalida(
            f"GPR_METAS={ruta!r}: {que}. Debe nombrar la carpeta con los *.yaml de metas "
            "(en docker-compose.yml se monta despliegue/metas; en Kubernetes, el ConfigMap gpr-metas)")
    return carpeta


def resumen_de_metas(carpeta: Path, agencias_de_metas: Iterable[str], agencias_del_catalogo: Iterable[str]) -> str:
    """Una línea para el registro de arranque: cuántas metas se cargaron, por agencia, y qué
    agencias del catálogo quedaron sin ninguna."""
    por_agencia = Counter(agencias_de_metas)
    total = sum(por_agencia.values())
    detalle = ", ".join(f"{a} {n}" for a, n in sorted(por_agencia.items()))
    linea = f"{total} metas cargadas de {carpeta}" + (f" ({detalle})" if detalle else "")
    sin_metas = sorted(set(agencias_del_catalogo) - set(por_agencia))
    if sin_metas:
        linea += "; sin metas: " + ", ".join(sin_metas)
    return linea
