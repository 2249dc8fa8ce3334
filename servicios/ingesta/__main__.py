"""`python -m servicios.ingesta`: lee la configuración, el catálogo y las credenciales, y sirve."""

from __future__ import annotations

import asyncio
import logging
import sys

from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.config import ConfiguracionInvalida, entorno
from servicios.comun.registro import configurar_registro, instalar_filtro
from servicios.comun.yaml_lineas import ArchivoInvalido
from servicios.ingesta import config
from servicios.ingesta.credenciales import agencias_con_token_demo, cargar_credenciales

log = logging.getLogger("servicios.ingesta")


class SinTrazasDeRed(logging.Filter):
    """kafka-python registra con su traza un error de red esperable (el broker cortó la
    conexión): una traza en el registro alarma sin decir nada que la línea no diga. Se deja la
    línea, con el error al final, y sin la traza. Solo para los registros de kafka-python."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("kafka") and record.exc_info and isinstance(record.exc_info[1], OSError):
            error = record.exc_info[1]
            record.msg = f"{record.msg} ({type(error).__name__}: {error})"
            record.exc_info = None
            record.exc_text = None
        return True


def main() -> int:
    try:
        cfg = config.leer(entorno())
    except ConfiguracionInvalida as error:
        print(f"gpr-ingesta: configuración inválida:\n{error}", file=sys.stderr)
        return 2
    # Con Kafka caído, kafka-python y el ciclo de reconexión repiten la misma línea varias veces
    # por segundo: el filtro deja pasar cada una a lo más una vez por GPR_REGISTRO_INTERVALO.
    configurar_registro(logging.INFO, cfg.registro_intervalo_s)
    instalar_filtro(SinTrazasDeRed())
    # En INFO kafka-python anota cada conexión y cada refresco de metadatos.
    logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        catalogo = cargar_catalogo(cfg.catalogo)
        credenciales = cargar_credenciales(cfg.credenciales, catalogo)
    except (ConfiguracionInvalida, ArchivoInvalido) as error:
        print(f"gpr-ingesta: configuración inválida:\n{error}", file=sys.stderr)
        return 2

    demo = agencias_con_token_demo(credenciales, catalogo)
    if demo:
        log.warning("las credenciales aceptan los tokens de DEMOSTRACIÓN (públicos) de: %s; "
                    "úselos solo en desarrollo local", ", ".join(demo))

    from servicios.ingesta.servidor import servir

    try:
        asyncio.run(servir(cfg, catalogo, credenciales))
    except OSError as error:
        print(f"gpr-ingesta: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
