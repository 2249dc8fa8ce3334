"""`gpr` en español: la ayuda, la línea de uso y los errores de uso de typer.

typer 0.29 trae su propia copia de click (`typer._click`) sin gettext: los textos de click
("Usage:", "Show this message and exit.", "Missing argument…") están fijos en inglés y no
hay catálogo que instalar. Por eso se usan los puntos de extensión que typer sí ofrece:

- las constantes de módulo de `typer.rich_utils` (títulos de los paneles, `[default: …]`,
  `[env var: …]`, `[required]`, "Try … for help."), que typer lee en cada llamada;
- `TyperGpr`, un `typer.Typer` cuyos grupos y órdenes son `GrupoGpr` y `OrdenGpr` (el `cls=`
  de typer): escriben "Uso:", `[OPCIONES]`, `ORDEN [ARGUMENTOS]...`, la ayuda de `--help`, los
  tipos (`<texto>`, `<entero>`, `<archivo>`…) y traducen los errores de uso antes de que typer
  los muestre, sin cambiar su código de salida (2).

Un texto de error que la tabla no conoce se muestra tal cual: mejor en inglés que perdido.
"""

from __future__ import annotations

import re

import typer
from typer import rich_utils
from typer._click.exceptions import UsageError
from typer.core import TyperCommand, TyperGroup

USO = "Uso: "
OPCIONES = "[OPCIONES]"
ORDEN = "ORDEN [ARGUMENTOS]..."
AYUDA = "Muestra esta ayuda y termina."

rich_utils.ARGUMENTS_PANEL_TITLE = "Argumentos"
rich_utils.OPTIONS_PANEL_TITLE = "Opciones"
rich_utils.COMMANDS_PANEL_TITLE = "Órdenes"
rich_utils.ERRORS_PANEL_TITLE = "Error"
rich_utils.ABORTED_TEXT = "Cancelado."
rich_utils.RICH_HELP = "Pruebe [blue]'{command_path} {help_option}'[/] para ver la ayuda."
rich_utils.DEFAULT_STRING = "[por defecto: {}]"
rich_utils.ENVVAR_STRING = "[variable: {}]"
rich_utils.REQUIRED_LONG_STRING = "[obligatorio]"
rich_utils.DEPRECATED_STRING = "(obsoleto) "
# El resaltador de typer colorea "Usage: "; que coloree también la línea de uso en español.
rich_utils.OptionHighlighter.highlights = [*rich_utils.OptionHighlighter.highlights, r"(?P<usage>Uso: )"]

# Nombres de los tipos que typer muestra entre <>: son los de Python o los de su copia de click.
_TIPOS = {"str": "texto", "int": "entero", "float": "número", "bool": "sí/no", "path": "ruta",
          "file": "archivo", "dir": "directorio", "datetime": "fecha", "Path": "ruta",
          "list": "lista"}

_FALTANTES = {"argument": "el argumento", "option": "la opción", "parameter": "el parámetro"}
_LUGARES = {"file": "el archivo", "dir": "el directorio", "directory": "el directorio", "path": "la ruta"}

# Detalles de un valor inválido: los de la copia de click y los de pydantic (que typer usa
# para convertir los valores).
_DETALLES = [
    (r"^(file|dir|directory|path) (.+) does not exist\.$", lambda m: f"{_LUGARES[m[1]]} {m[2]} no existe."),
    (r"^(file|dir|directory|path) (.+) is a directory\.$", lambda m: f"{_LUGARES[m[1]]} {m[2]} es un directorio."),
    (r"^(file|dir|directory|path) (.+) is a file\.$", lambda m: f"{_LUGARES[m[1]]} {m[2]} es un archivo."),
    (r"^(file|dir|directory|path) (.+) is not readable\.$", lambda m: f"{_LUGARES[m[1]]} {m[2]} no se puede leer."),
    (r"^(file|dir|directory|path) (.+) is not writable\.$",
     lambda m: f"{_LUGARES[m[1]]} {m[2]} no se puede escribir."),
    (r"^Input should be a valid integer.*$", lambda m: "debe ser un número entero."),
    (r"^Input should be a valid number.*$", lambda m: "debe ser un número."),
    (r"^Input should be a valid boolean.*$", lambda m: "debe ser sí o no (true/false, 1/0)."),
    (r"^Input should be greater than or equal to (.+)$", lambda m: f"debe ser mayor o igual que {m[1]}."),
    (r"^Input should be greater than (.+)$", lambda m: f"debe ser mayor que {m[1]}."),
    (r"^Input should be less than or equal to (.+)$", lambda m: f"debe ser menor o igual que {m[1]}."),
    (r"^Input should be less than (.+)$", lambda m: f"debe ser menor que {m[1]}."),
    (r"^Value (.+) is not a valid (\w+)\.$", lambda m: f"{m[1]} no es un valor válido de tipo {_tipo(m[2])}."),
    (r"^(.+) is not one of (.+)\.$", lambda m: f"{m[1]} no es ninguno de {m[2]}."),
]

_MENSAJES = [
    (r"^Invalid value for (.+?): (.*)$", lambda m: f"Valor inválido para {m[1]}: {_detalle(m[2])}"),
    (r"^Invalid value: (.*)$", lambda m: f"Valor inválido: {_detalle(m[1])}"),
    (r"^Missing (argument|option|parameter)( '[^']*'(?: / '[^']*')*)?\.(?: (.*))?$",
     lambda m: f"Falta {_FALTANTES[m[1]]}{m[2] or ''}." + _resto(m[3])),
    (r"^Missing command\.$", lambda m: "Falta la orden."),
    (r"^No such option: (\S+)(?: \(Possible options: (.+)\))?$",
     lambda m: f"No existe la opción {m[1]}." + (f" Opciones parecidas: {m[2]}." if m[2] else "")),
    (r"^No such command (.+?)\.(?: Did you mean (.+)\?)?$",
     lambda m: f"No existe la orden {m[1]}." + (f" ¿Quiso decir {m[2]}?" if m[2] else "")),
    (r"^Got unexpected extra argument(?:\(s\)|s)? \((.*)\)$", lambda m: f"Sobran argumentos: {m[1]}"),
    (r"^Option (.+?) requires (.+)$", lambda m: f"La opción {m[1]} necesita un valor."),
    (r"^Option (.+?) does not take a value\.$", lambda m: f"La opción {m[1]} no lleva valor."),
]


def _tipo(nombre: str) -> str:
    return _TIPOS.get(nombre, nombre)


def _resto(texto: str | None) -> str:
    return f" {texto}" if texto else ""


def _aplicar(tabla, texto: str) -> str | None:
    for patron, traduccion in tabla:
        m = re.match(patron, texto, re.DOTALL)
        if m:
            return traduccion(m)
    return None


def _detalle(texto: str) -> str:
    return _aplicar(_DETALLES, texto) or texto


def traducir(mensaje: str) -> str:
    """Un mensaje de error de uso de typer/click en español (o tal cual si no se conoce)."""
    return _aplicar(_MENSAJES, mensaje) or mensaje


class ErrorDeUso(UsageError):
    """Error de uso ya traducido: se muestra su mensaje tal cual, con código de salida 2."""


def _traducir_error(error: UsageError) -> UsageError:
    # NoArgsIsHelpError es `gpr` sin argumentos: la ayuda ya se mostró, no hay mensaje.
    if isinstance(error, ErrorDeUso) or type(error).__name__ == "NoArgsIsHelpError":
        return error
    traducido = ErrorDeUso(traducir(error.format_message()), ctx=error.ctx)
    traducido.exit_code = error.exit_code
    return traducido


def _tipo_en_espanol(parametro) -> None:
    """Cambia los nombres de tipo que muestra la ayuda de un parámetro (una sola vez)."""
    if getattr(parametro, "_gpr_tipo_es", False):
        return
    original = parametro.display_type_rich

    def mostrar(ctx):
        texto = original(ctx)
        if texto is None:
            return None
        return re.sub(r"[A-Za-z]+", lambda m: _tipo(m[0]), texto)

    # typer no deja elegir la clase de los parámetros: se envuelve el método de la instancia.
    parametro.display_type_rich = mostrar
    parametro._gpr_tipo_es = True


class _EnEspanol:
    """Lo común a grupos y órdenes: línea de uso, ayuda de --help y nombres de tipos."""

    def format_usage(self, ctx, formatter) -> None:
        formatter.write_usage(ctx.command_path, " ".join(self.collect_usage_pieces(ctx)), prefix=USO)

    def get_help_option(self, ctx):
        opcion = super().get_help_option(ctx)
        if opcion is not None:
            opcion.help = AYUDA
        return opcion

    def get_params(self, ctx):
        parametros = super().get_params(ctx)
        for parametro in parametros:
            _tipo_en_espanol(parametro)
        return parametros


class OrdenGpr(_EnEspanol, TyperCommand):
    """Orden de `gpr` con ayuda y uso en español."""


class GrupoGpr(_EnEspanol, TyperGroup):
    """Grupo de órdenes de `gpr`: ayuda y uso en español, y errores de uso traducidos.

    Todo error de uso de `gpr` (también el de una orden o un subgrupo) sale de crear el
    contexto del grupo raíz o de invocarlo, y pasa por aquí antes de que typer lo muestre.
    """

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except UsageError as error:
            raise _traducir_error(error) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UsageError as error:
            raise _traducir_error(error) from None


class TyperGpr(typer.Typer):
    """`typer.Typer` cuyos grupos y órdenes hablan español (ver el módulo)."""

    def __init__(self, **opciones):
        opciones.setdefault("cls", GrupoGpr)
        opciones.setdefault("options_metavar", OPCIONES)
        opciones.setdefault("subcommand_metavar", ORDEN)
        super().__init__(**opciones)

    def command(self, name=None, *, cls=None, **opciones):
        return super().command(name, cls=cls or OrdenGpr, **opciones)
