"""`python -m servicios.portal`: lee la configuración y el catálogo, arma el cliente de la API
y la aplicación, y sirve con uvicorn hasta SIGTERM/SIGINT (parada con gracia: deja de aceptar
conexiones, espera las peticiones en curso hasta GPR_PORTAL_GRACIA y cierra el canal gRPC)."""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone

from servicios.comun.config import ConfiguracionInvalida, entorno


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from servicios.portal import config

    try:
        cfg = config.leer(entorno())
    except ConfiguracionInvalida as error:
        print(f"gpr-portal: configuración inválida: {error}", file=sys.stderr)
        return 2

    from servicios.comun.catalogo import cargar_catalogo
    from servicios.comun.yaml_lineas import ArchivoInvalido

    try:
        catalogo = cargar_catalogo(cfg.catalogo)
    except ArchivoInvalido as error:
        print(f"gpr-portal: catálogo inválido:\n{error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"gpr-portal: GPR_CATALOGO={cfg.catalogo!r}: {error.strerror}", file=sys.stderr)
        return 2

    import uvicorn

    from servicios.portal.app import Portal
    from servicios.portal.cache import CacheCorta
    from servicios.portal.cliente import ClienteIndicadores
    from servicios.portal.metricas import MetricasPortal

    metricas = MetricasPortal()
    cache = CacheCorta(cfg.cache_s, al_acertar=metricas.cache.labels("acierto").inc,
                       al_fallar=metricas.cache.labels("fallo").inc)
    cliente = ClienteIndicadores(cfg.consulta, cache, token=cfg.token, tls_ca=cfg.tls_ca, plazo_s=cfg.plazo_rpc_s,
                                 al_llamar=lambda rpc, codigo: metricas.rpc.labels(rpc, codigo).inc())
    fijo = cfg.ahora

    def reloj() -> datetime:
        return fijo if fijo is not None else datetime.now(timezone.utc)

    portal = Portal(catalogo, cliente, cfg, reloj, metricas)
    app = portal.app(al_iniciar=cliente.abrir, al_detener=cliente.cerrar)
    servidor = uvicorn.Server(uvicorn.Config(
        app, host=cfg.host, port=cfg.puerto, log_level="info", access_log=False, proxy_headers=False,
        server_header=False, timeout_graceful_shutdown=cfg.gracia_s, lifespan="on"))
    logging.getLogger(__name__).info(
        "portal: API de indicadores en %s (%s%s), caché %.1f s, muestra mínima %d", cfg.consulta,
        "TLS" if cfg.tls_ca else "sin TLS", ", con token" if cfg.token else "", cfg.cache_s, cfg.muestra_minima)
    try:
        servidor.run()
    except OSError as error:
        print(f"gpr-portal: {error}", file=sys.stderr)
        return 1
    return 0 if servidor.started else 1


if __name__ == "__main__":
    sys.exit(main())
