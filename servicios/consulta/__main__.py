"""`python -m servicios.consulta`: lee la configuración, arma vista, servidor y /metrics, y sirve."""

from __future__ import annotations

import asyncio
import logging
import sys

from servicios.comun.config import ConfiguracionInvalida, entorno
from servicios.consulta import config


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = config.leer(entorno())
    except ConfiguracionInvalida as error:
        print(f"gpr-consulta: configuración inválida: {error}", file=sys.stderr)
        return 2

    from servicios.comun.broker import acotar_espera_de_fetch
    from servicios.consulta.servidor import servir

    acotar_espera_de_fetch(cfg.espera_fetch_s)

    try:
        asyncio.run(servir(cfg))
    except OSError as error:
        print(f"gpr-consulta: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
