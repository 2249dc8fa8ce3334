"""`gpr alertmanager configurar`: la configuración de Alertmanager con los canales del entorno.

Parte de la versionada (rutas, receptores, inhibiciones, plantillas) y le añade a cada receptor
el webhook y los destinatarios de correo de las variables GPR_ALERTAS_* y el servidor de
GPR_SMTP_* (servicios/comun/canales.py dice cuáles). docker-compose.yml la corre al arrancar,
antes que Alertmanager; `make run` también, apuntando a su buzón local.

Códigos de salida: 0 bien; 2 variables o archivos inválidos (cada error nombra la variable).
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from servicios.terceros.typer_es import TyperGpr
from servicios.cli.salida import consola, consola_errores

app = TyperGpr(
    help="Alertmanager: generar su configuración con los canales de notificación del entorno.",
    no_args_is_help=True,
    add_completion=False,
)

BASE = Path("despliegue/alertmanager/alertmanager.yml")


def generar(base: Path, salida: Path, env, plantillas: Path | None = None) -> dict:
    """Escribe la configuración efectiva en `salida` (de forma atómica) y devuelve los canales por
    receptor. Lanza CanalesInvalidos si alguna variable está mal."""
    import yaml

    from servicios.comun.canales import configurar as configurar_canales

    datos = yaml.safe_load(base.read_text(encoding="utf-8"))
    carpeta = plantillas if plantillas is not None else (base.parent / "plantillas").resolve()
    config, canales = configurar_canales(datos, env, str(carpeta))
    salida.parent.mkdir(parents=True, exist_ok=True)
    temporal = salida.with_name(salida.name + ".nuevo")
    temporal.write_text("# GENERADO por `gpr alertmanager configurar` desde " + str(base)
                        + " y las variables GPR_ALERTAS_*/GPR_SMTP_*: no lo edite.\n"
                        + yaml.safe_dump(config, allow_unicode=True, sort_keys=False, width=1000), encoding="utf-8")
    temporal.replace(salida)
    return canales


@app.command()
def configurar(
    salida: Path = typer.Option(..., "--salida", "-o", help="Archivo de configuración a escribir."),
    base: Path = typer.Option(BASE, "--base", exists=True, dir_okay=False,
                              help="Configuración versionada (rutas, receptores, plantillas)."),
    plantillas: Path | None = typer.Option(
        None, "--plantillas", help="Carpeta de las plantillas tal como la verá Alertmanager "
        "(por omisión, plantillas/ junto a --base)."),
) -> None:
    """Genera la configuración de Alertmanager con los webhooks y correos de GPR_ALERTAS_* y GPR_SMTP_*."""
    from servicios.comun.canales import CanalesInvalidos

    try:
        canales = generar(base, salida, os.environ, plantillas)
    except CanalesInvalidos as error:
        for detalle in error.errores:
            consola_errores.print(detalle, markup=False, highlight=False)
        consola_errores.print(f"{len(error.errores)} error(es): no se escribió {salida}", markup=False)
        raise typer.Exit(2) from None
    sin_canal = []
    for receptor, propios in canales.items():
        if propios.origen:
            consola.print(f"{receptor}: " + ", ".join(
                [f"webhook ({v})" for v in propios.origen if "_WEBHOOK_" in v]
                + [f"correo a {', '.join(propios.correos)}" for v in propios.origen if "_CORREO_" in v]),
                markup=False, highlight=False)
        else:
            sin_canal.append(receptor)
    if sin_canal:
        consola_errores.print("aviso: sin canales (sus alertas solo se ven en Alertmanager): " + ", ".join(sin_canal),
                              markup=False, highlight=False)
    consola.print(f"escrito {salida}", markup=False, highlight=False)
