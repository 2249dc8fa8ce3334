"""`python -m servicios.procesador`: lee la configuración, crea los tópicos (y ajusta los
internos que ya existían) y corre un trabajador."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.config import ConfiguracionInvalida, entorno
from servicios.comun.kafka_conexion import KafkaInalcanzable
from servicios.comun.metas import IndiceMetas, archivos_de, cargar_metas
from servicios.comun.registro import FiltroRepetidos, instalar_filtro
from servicios.comun.trazas import Trazas
from servicios.comun.topicos import (
    BYTES_MAXIMOS_REGISTRO_INTERNO,
    INTERNOS,
    TopicoInadecuado,
    asegurar_registro_maximo,
    crear_topicos,
)
from servicios.comun.yaml_lineas import ArchivoInvalido
from servicios.procesador import config
from servicios.procesador.metricas import MetricasProcesador


def main() -> int:
    try:
        cfg = config.leer(entorno())
        catalogo = cargar_catalogo(cfg.catalogo)
        carpeta_metas = config.carpeta_de_metas(cfg.metas)
        lista_metas = cargar_metas(archivos_de(carpeta_metas), catalogo)
    except (ConfiguracionInvalida, ArchivoInvalido) as error:
        print(f"gpr-procesador: configuración inválida:\n{error}", file=sys.stderr)
        return 2
    metas = IndiceMetas(lista_metas)
    print("gpr-procesador: " + config.resumen_de_metas(carpeta_metas, (m.agencia for m in lista_metas),
                                                       catalogo.agencias), file=sys.stderr, flush=True)

    import faust
    import mode.loop
    from prometheus_client import start_http_server

    from servicios.comun.broker import con_broker_embebido
    from servicios.comun.topicos import identificador_de_cluster
    from servicios.procesador.app import crear_app
    from servicios.terceros.aiokafka import acotar_espera_de_fetch, corregir_fin_de_log, tolerar_cabeceras_no_utf8
    from servicios.terceros.faust.parches import (
        entrega_directa,
        estado_local_nunca_por_delante,
        huecos_solo_confirmados,
        vaciar_el_bufer_del_todo,
    )

    # uvloop: el bucle de eventos en C abarata la maquinaria por registro de faust y de
    # aiokafka (medido en make bench; GPR_BUCLE=asyncio vuelve al de la biblioteca estándar).
    mode.loop.use("uvloop" if cfg.bucle == "uvloop" else "aio")
    vaciar_el_bufer_del_todo()
    huecos_solo_confirmados()
    entrega_directa()
    estado_local_nunca_por_delante()
    tolerar_cabeceras_no_utf8()
    Path(cfg.directorio_datos).mkdir(parents=True, exist_ok=True)
    try:
        crear_topicos(cfg.kafka, cfg.particiones, replicacion=cfg.replicacion)
        embebido = con_broker_embebido(cfg.embebido, lambda: identificador_de_cluster(cfg.kafka))
    except KafkaInalcanzable as error:
        print(f"gpr-procesador: {error}", file=sys.stderr)
        return 3
    if embebido:
        # Solo con el broker embebido (Tansu): informa mal el fin del log y no despierta una
        # lectura en espera (docs/terceros.md). Con Apache Kafka, aiokafka sin tocar.
        print("gpr-procesador: broker embebido (Tansu): se corrigen el fin del log y la espera de las lecturas",
              file=sys.stderr, flush=True)
        corregir_fin_de_log()
        acotar_espera_de_fetch(cfg.espera_fetch_s)
    metricas = MetricasProcesador()
    if cfg.metricas_puerto:
        start_http_server(cfg.metricas_puerto, registry=metricas.registro)
    # Con OTEL_EXPORTER_OTLP_ENDPOINT, trazas por OTLP; el SDK exporta lo pendiente al salir.
    app = crear_app(cfg, catalogo, metas, metricas, trazas=Trazas.iniciar(cfg.trazas))
    internos = [*INTERNOS, *(tabla.changelog_topic.get_topic_name() for tabla in app.tables.values())]
    try:
        ajustados = asegurar_registro_maximo(cfg.kafka, internos)
    except TopicoInadecuado as error:
        print(f"gpr-procesador: {error}", file=sys.stderr)
        return 2
    except KafkaInalcanzable as error:
        print(f"gpr-procesador: {error}", file=sys.stderr)
        return 3
    for topico, antes in ajustados.cambiados.items():
        previo = f"{antes} bytes" if antes is not None else "sin valor informado"
        print(f"gpr-procesador: max.message.bytes de {topico}: {previo} → {BYTES_MAXIMOS_REGISTRO_INTERNO} bytes",
              file=sys.stderr)
    for aviso in ajustados.sin_verificar.values():
        print(f"gpr-procesador: aviso: {aviso}", file=sys.stderr)
    class Trabajador(faust.Worker):
        def on_setup_root_logger(self, logger, level) -> None:
            super().on_setup_root_logger(logger, level)
            # Con el broker caído, aiokafka y faust repiten la misma línea en cada reintento.
            instalar_filtro(FiltroRepetidos())

    worker = Trabajador(app, loglevel=logging.INFO, quiet=True)
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
