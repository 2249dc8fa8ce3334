"""La app faust del procesador: el cableado de la ruta (`ruta.py`) con faust.

Solo la API pública de faust: la app, sus tablas, una tarea para el reparto y otra para la etapa
por caso (que reciben los eventos en lotes directo del consumidor:
`servicios/terceros/faust/entrega_por_lotes.py`),
un agente para la agregación, un temporizador para el vigía de particiones quietas y una tarea
para la publicación. Lo que necesita el interior de faust lo hace el puerto
(`servicios/terceros/faust/puerto.py`). Todo el estado vive en tablas con changelog, así que un
trabajador perdido no pierde nada.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import faust

from servicios.comun import topicos
from servicios.comun.catalogo import Catalogo
from servicios.comun.metas import IndiceMetas
from servicios.comun.trazas import APAGADAS, Trazas
from servicios.procesador.config import ConfigProcesador
from servicios.procesador.dominio.agregacion import Agregacion
from servicios.procesador.dominio.etapa_casos import EtapaCasos
from servicios.procesador.metricas import MetricasProcesador
from servicios.procesador.publicacion import Publicacion
from servicios.procesador.ruta import Ruta
from servicios.terceros.faust.entrega_por_lotes import EntregaPorLotes
from servicios.terceros.faust.puerto import PuertoFaust
from servicios.terceros.faust.tablas import TablaEnBloque

logger = logging.getLogger("gpr.procesador")
# Sin avance en una partición con log por delante durante este tiempo, se relee (el último
# registro pudo descartarse sin que otro posterior delate el hueco).
_QUIETUD_S = 30.0
# Tras un lote fallido de la etapa por caso, antes de volver a leer: un fallo persistente (el
# broker caído) no se repite en un bucle sin pausa.
_PAUSA_TRAS_FALLO_S = 1.0


def _veneno(evento_id: str) -> Callable:
    """`GPR_PRUEBA_EVENTO_VENENO`: un error inesperado al procesar ese evento."""
    def antes_de_aplicar(evento) -> None:
        if evento.evento_id == evento_id:
            raise RuntimeError(f"GPR_PRUEBA_EVENTO_VENENO: falla el evento {evento_id}")
    return antes_de_aplicar


def opciones_faust(cfg: ConfigProcesador) -> dict:
    """Ajustes de la app faust; el banco de rendimiento mide su línea base con los mismos."""
    return dict(
        # broker y, con TLS o SASL, broker_credentials (GPR_KAFKA_*, docs/seguridad-kafka.md).
        **cfg.kafka.para_faust(),
        store="rocksdb://" if cfg.almacen == "rocksdb" else "memory://",
        datadir=cfg.directorio_datos,
        topic_partitions=cfg.particiones,
        topic_replication_factor=cfg.replicacion,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        # Con los valores por defecto una unión al grupo tarda decenas de segundos en el
        # broker embebido (docs/decisiones.md).
        broker_rebalance_timeout=6.0,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        producer_acks=-1,
        # Sin espera para juntar envíos: cada lote de la etapa por caso espera sus estados en
        # el changelog y luego sus agregados, y esa espera se sumaba a cada una (el
        # trabajador quedaba ocioso una parte notable del tiempo en registros sueltos). Lo que
        # se envía seguido mientras el productor está ocupado ya sale en un solo lote.
        producer_linger_ms=0,
        producer_max_request_size=topicos.BYTES_MAXIMOS_REGISTRO_INTERNO,
        web_enabled=False,
        table_standby_replicas=0,
    )


def crear_app(cfg: ConfigProcesador, catalogo: Catalogo, metas: IndiceMetas, metricas: MetricasProcesador,
              reloj: Callable[[], float] = time.time, trazas: Trazas = APAGADAS) -> faust.App:
    """Construye la app sin conectarse a nada: la conexión empieza al arrancar el trabajador."""
    app = faust.App(cfg.app_id, **opciones_faust(cfg))
    t_eventos = app.topic(topicos.EVENTOS, partitions=cfg.particiones)
    t_por_agencia = app.topic(topicos.EVENTOS_POR_AGENCIA, partitions=cfg.particiones)
    t_aportes = app.topic(topicos.APORTES, partitions=cfg.particiones)
    # Los tópicos que la app escribe sin Topic.send (el puerto manda directo al productor).
    for nombre in (topicos.RECHAZADOS, topicos.INDICADORES, topicos.CUMPLIMIENTO):
        app.topic(nombre, partitions=cfg.particiones)

    # key_type/value_type bytes: claves y valores crudos (protobuf), sin JSON de por medio.
    def tabla(nombre: str) -> TablaEnBloque:
        return TablaEnBloque(app.Table(nombre, partitions=cfg.particiones, key_type=bytes, value_type=bytes,
                                       extra_topic_configs=topicos.configuracion_interna()), app)

    # Estado por caso y, con claves que empiezan por 0xFF, la marca de agua de cada agencia
    # vista en cada partición (ver `etapa_casos.clave_marca`).
    casos = tabla("casos")
    tablas_agregacion = [tabla(nombre) for nombre in ("cubos", "vencimientos", "agencias")]
    agregacion = Agregacion(*tablas_agregacion, catalogo=catalogo, tardanza_maxima_s=cfg.tardanza_maxima_s)
    etapa = EtapaCasos(catalogo, cfg.tardanza_maxima_s, reloj, cfg.eventos_maximos_por_caso,
                       _veneno(cfg.prueba_evento_veneno) if cfg.prueba_evento_veneno else None,
                       particiones_origen=cfg.particiones)
    publicacion = Publicacion(cfg, metas, metricas, agregacion, reloj, trazas)
    # Los eventos no pasan por un agente: llegan en lotes directo del consumidor, al reparto
    # los de gpr.eventos.v1 y a la etapa por caso los repartidos por agencia.
    entrega = EntregaPorLotes(app, t_eventos)
    entrega_por_agencia = EntregaPorLotes(app, t_por_agencia)
    puerto = PuertoFaust(app, entrega, entrega_por_agencia)
    ruta = Ruta(puerto, etapa, casos, agregacion, tablas_agregacion, publicacion, metricas, cfg.particiones,
                cfg.prueba_fallar_lote, reloj, trazas=trazas)

    async def etapa_por_lotes(nombre: str, lotes: Callable, topico: str, procesar: Callable) -> None:
        # Un lote fallido reinicia la lectura, como faust reinicia un agente.
        while not app.should_stop:
            try:
                await ruta.procesar_en_orden(lotes(cfg.lote_maximo, cfg.lote_espera_s), topico, procesar)
            except Exception:
                logger.exception("%s: lote fallido; se sigue con lo no confirmado", nombre)
                await app.sleep(_PAUSA_TRAS_FALLO_S)

    @app.task
    async def repartir_eventos():
        await etapa_por_lotes("reparto", entrega.lotes, topicos.EVENTOS, ruta.repartir_lote_de_eventos)

    @app.task
    async def procesar_eventos():
        await etapa_por_lotes("etapa por caso", entrega_por_agencia.lotes, topicos.EVENTOS_POR_AGENCIA,
                              ruta.procesar_lote_de_eventos)

    @app.agent(t_aportes, name="agregar-aportes")
    async def agregar_aportes(stream):
        # Un lote fallido pudo dejar en la memoria de la agregación cubos a medio sumar (con su
        # secuencia ya avanzada): se releen del almacén.
        await ruta.procesar_en_orden(stream.noack_take(cfg.lote_maximo, within=cfg.lote_espera_s), topicos.APORTES,
                                     ruta.agregar_lote_de_aportes, agregacion.olvidar_memoria)

    @app.timer(interval=_QUIETUD_S, name="vigilar-particiones-quietas")
    async def vigilar_particiones_quietas():
        await ruta.vigilar_particiones_quietas(_QUIETUD_S)

    @app.on_partitions_assigned.connect
    async def al_asignar_particiones(app, assigned, **_kwargs):
        ruta.al_asignar_particiones()

    @app.on_rebalance_complete.connect
    async def al_completar_recuperacion(app, **_kwargs):
        ruta.al_completar_recuperacion()

    @app.task
    async def publicar_indicadores():
        while not app.should_stop:
            await publicacion.hay_pendientes.wait()
            inicio = time.perf_counter()
            if app.rebalancing or app.in_recovery:
                publicacion.republicar_todo()
            else:
                # Un reequilibrio a media pasada la corta: las particiones pudieron cambiar de
                # dueño, y al terminar se republica todo lo local (`al_completar_recuperacion`).
                await publicacion.publicar(lambda: app.should_stop or app.rebalancing, puerto.enviar)
                metricas.publicacion_segundos.observe(time.perf_counter() - inicio)
            duracion = time.perf_counter() - inicio
            await app.sleep(max(publicacion.espacio_s(duracion) - duracion, 0.0))

    return app
