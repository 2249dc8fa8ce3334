"""`python -m servicios.consulta`: lee la configuración, el catálogo y los tokens, arma vista,
servidor y /metrics, y sirve."""

from __future__ import annotations

import asyncio
import logging
import sys

from servicios.comun.config import ConfiguracionInvalida, entorno
from servicios.comun.registro import configurar_registro
from servicios.consulta import config

log = logging.getLogger("servicios.consulta")


def main() -> int:
    # Con el filtro de repetidos: durante un corte de Kafka, una línea por intervalo y no
    # una por reintento (también las de aiokafka).
    configurar_registro()
    try:
        cfg = config.leer(entorno())
    except ConfiguracionInvalida as error:
        print(f"gpr-consulta: configuración inválida: {error}", file=sys.stderr)
        return 2

    from servicios.comun.broker import con_broker_embebido
    from servicios.comun.kafka_conexion import KafkaInalcanzable
    from servicios.comun.topicos import identificador_de_cluster
    from servicios.terceros.aiokafka import acotar_espera_de_fetch
    from servicios.comun.catalogo import cargar_catalogo
    from servicios.comun.yaml_lineas import ArchivoInvalido
    from servicios.consulta.acceso import cargar_tokens, tokens_demo_aceptados
    from servicios.consulta.servidor import servir

    try:
        catalogo = cargar_catalogo(cfg.catalogo)
    except ArchivoInvalido as error:
        print(f"gpr-consulta: catálogo inválido (GPR_CATALOGO):\n{error}", file=sys.stderr)
        return 2
    tokens = None
    if cfg.tokens:
        try:
            tokens = cargar_tokens(cfg.tokens, catalogo)
        except ArchivoInvalido as error:
            print(f"gpr-consulta: archivo de tokens inválido (GPR_CONSULTA_TOKENS):\n{error}", file=sys.stderr)
            return 2
        demo = tokens_demo_aceptados(tokens)
        if demo:
            log.warning("los tokens de lectura aceptan los de DEMOSTRACIÓN (públicos) de: %s; no use este archivo "
                        "fuera de una máquina de desarrollo", ", ".join(demo))
        if cfg.tls_certificado is None:
            log.warning("tokens de lectura SIN TLS (GPR_CONSULTA_TLS_CERT): viajan en claro por la red")

    def identificador() -> str | None:
        # La consulta arranca aunque Kafka no responda (su salud dice NOT_SERVING): si no se
        # puede preguntar, no se supone el broker embebido (GPR_KAFKA_EMBEBIDO=si lo fuerza).
        try:
            return identificador_de_cluster(cfg.kafka, limite_s=5.0)
        except KafkaInalcanzable as error:
            log.warning("no se pudo saber si el broker es el embebido: %s", error)
            return None

    if con_broker_embebido(cfg.embebido, identificador):
        # Tansu no despierta una lectura en espera cuando llegan datos (docs/terceros.md).
        acotar_espera_de_fetch(cfg.espera_fetch_s)

    try:
        asyncio.run(servir(cfg, catalogo, tokens))
    except OSError as error:
        print(f"gpr-consulta: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
