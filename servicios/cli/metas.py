"""`gpr metas`: validar el catálogo de metas y generar las reglas de alerta de Prometheus.

`gpr metas validar [ARCHIVOS|CARPETAS]` valida como lo hará el procesador al arrancar (mismo
código, mismo catálogo de agencias) y lista cada error como `archivo:línea: campo '...': motivo`.
`gpr metas reglas` escribe `despliegue/prometheus/reglas/metas.yml` (con `--comprobar`, solo
dice si el archivo está al día).

Códigos de salida: 0 bien; 1 metas o catálogo inválidos, o reglas desactualizadas
(`--comprobar`); 2 uso incorrecto o una ruta que no existe.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer

from servicios.terceros.typer_es import TyperGpr

app = TyperGpr(
    help="Metas: validar los archivos de metas y generar las reglas de alerta de Prometheus.",
    no_args_is_help=True,
    add_completion=False,
)

METAS = Path("despliegue/metas")
CATALOGO = Path("despliegue/catalogo.yaml")
SALIDA = Path("despliegue/prometheus/reglas/metas.yml")

OPCION_CATALOGO = typer.Option(CATALOGO, "--catalogo", envvar="GPR_CATALOGO",
                               help="Catálogo de agencias y servicios (o GPR_CATALOGO).")


def _archivos(rutas: list[Path]) -> list[Path]:
    """Los archivos a validar: cada archivo tal cual y, de cada carpeta, sus *.yaml."""
    from servicios.comun.metas import archivos_de

    archivos = []
    for ruta in rutas:
        if ruta.is_dir():
            propios = archivos_de(ruta)
            if not propios:
                typer.echo(f"{ruta}: la carpeta no tiene archivos *.yaml de metas", err=True)
                raise typer.Exit(1)
            archivos.extend(propios)
        elif ruta.is_file():
            archivos.append(ruta)
        else:
            typer.echo(f"{ruta}: no existe", err=True)
            raise typer.Exit(2)
    return archivos


def _cargar(rutas: list[Path], catalogo: Path):
    """Catálogo y metas validados; si algo falla, lista los errores y sale con 1."""
    from servicios.comun.catalogo import cargar_catalogo
    from servicios.comun.metas import cargar_metas
    from servicios.comun.yaml_lineas import ArchivoInvalido

    archivos = _archivos(rutas)
    if not catalogo.is_file():
        typer.echo(f"{catalogo}: no existe el catálogo de agencias y servicios", err=True)
        raise typer.Exit(2)
    try:
        cat = cargar_catalogo(catalogo)
        metas = cargar_metas(archivos, cat)
    except ArchivoInvalido as error:
        for detalle in error.errores:
            typer.echo(str(detalle), err=True)
        typer.echo(f"{len(error.errores)} error(es): nada se ha validado como correcto", err=True)
        raise typer.Exit(1) from None
    return cat, metas, archivos


@app.command()
def validar(
    rutas: list[Path] = typer.Argument(
        None, envvar="GPR_METAS", show_default=False,
        help="Archivos de metas o carpetas con *.yaml (por defecto GPR_METAS o despliegue/metas)."),
    catalogo: Path = OPCION_CATALOGO,
) -> None:
    """Valida los archivos de metas como lo hará el procesador y resume lo que declaran."""
    _, metas, archivos = _cargar(rutas or [METAS], catalogo)
    por_archivo = Counter(m.archivo for m in metas)
    for archivo in archivos:
        cuantas = por_archivo[str(archivo)]
        typer.echo(f"{archivo}: {cuantas} meta{'s' if cuantas != 1 else ''}")
    por_agencia = Counter(m.agencia for m in metas)
    detalle = ", ".join(f"{a} {n}" for a, n in sorted(por_agencia.items()))
    typer.echo(f"{len(metas)} metas válidas en {len(archivos)} archivo(s)" + (f" ({detalle})" if detalle else ""))


@app.command()
def reglas(
    metas: list[Path] = typer.Option(
        [METAS], "--metas", envvar="GPR_METAS",
        help="Archivo o carpeta de metas (o GPR_METAS); se puede repetir."),
    catalogo: Path = OPCION_CATALOGO,
    salida: Path = typer.Option(SALIDA, "--salida", "-o",
                                help="Archivo de reglas a escribir ('-': la salida estándar)."),
    comprobar: bool = typer.Option(False, "--comprobar",
                                   help="No escribir: salir con 1 si el archivo no coincide con lo generado."),
    runbooks: str = typer.Option(None, "--runbooks-url", envvar="GPR_RUNBOOKS_URL", show_default=False,
                                 help="Dirección donde se publican los runbooks de despliegue/runbooks/ "
                                      "(o GPR_RUNBOOKS_URL; por omisión la de `gpr runbooks`, "
                                      "http://localhost:8099/runbooks/): base de los enlaces runbook_url."),
) -> None:
    """Genera las reglas de alerta de Prometheus.

    Umbral y tasa de quema de cada meta, agencias sin eventos, rechazos, retraso del procesador
    y la vigilancia de la cadena de alertas (Watchdog, objetivos caídos, fallos de reglas y de
    notificaciones).
    """
    from servicios.comun.reglas import RUNBOOKS_URL, a_yaml, base_runbooks, generar

    runbooks = runbooks or RUNBOOKS_URL
    try:
        base_runbooks(runbooks)
    except ValueError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    cat, lista, _ = _cargar(metas, catalogo)
    grupos = generar(lista, cat, runbooks=runbooks)
    texto = a_yaml(grupos)
    if comprobar:
        actual = salida.read_text(encoding="utf-8") if salida.is_file() else None
        if actual != texto:
            typer.echo(f"{salida} no está al día con las metas: ejecute `gpr metas reglas`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{salida} está al día ({len(lista)} metas)")
        return
    if str(salida) == "-":
        typer.echo(texto, nl=False)
        return
    salida.parent.mkdir(parents=True, exist_ok=True)
    salida.write_text(texto, encoding="utf-8")
    de_metas, de_plataforma, de_vigilancia = (sum("alert" in r for r in g["rules"]) for g in grupos["groups"])
    typer.echo(f"escrito {salida}: {de_metas} alertas de {len(lista)} metas, {de_plataforma} de la plataforma "
               f"y {de_vigilancia} de vigilancia")
