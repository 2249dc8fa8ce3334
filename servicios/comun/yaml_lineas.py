"""Carga de YAML que recuerda la línea de cada campo, para errores `archivo:línea: campo`.

Los archivos que escriben las personas (catálogo, metas) se validan con pydantic; este
módulo traduce la ruta de un error de pydantic (`servicios.2.plazo_dias`) a la línea del
archivo y a un mensaje en español.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError


@dataclass(frozen=True)
class ErrorArchivo:
    archivo: str
    linea: int
    campo: str
    mensaje: str

    def __str__(self) -> str:
        return f"{self.archivo}:{self.linea}: campo '{self.campo}': {self.mensaje}"


class ArchivoInvalido(ValueError):
    """Uno o más errores en un archivo de configuración escrito por personas."""

    def __init__(self, errores: list[ErrorArchivo]):
        self.errores = errores
        super().__init__("\n".join(str(e) for e in errores))


def _a_python(nodo: yaml.Node, lineas: dict[tuple, int], ruta: tuple) -> Any:
    lineas[ruta] = nodo.start_mark.line + 1
    if isinstance(nodo, yaml.MappingNode):
        resultado = {}
        for clave_nodo, valor_nodo in nodo.value:
            clave = clave_nodo.value
            lineas[ruta + (clave,)] = clave_nodo.start_mark.line + 1
            resultado[clave] = _a_python(valor_nodo, lineas, ruta + (clave,))
            lineas[ruta + (clave,)] = clave_nodo.start_mark.line + 1
        return resultado
    if isinstance(nodo, yaml.SequenceNode):
        return [_a_python(v, lineas, ruta + (i,)) for i, v in enumerate(nodo.value)]
    return yaml.SafeLoader(" ").construct_object(nodo)


def cargar(ruta: str | Path) -> tuple[Any, dict[tuple, int]]:
    """Devuelve el contenido y un mapa ruta-de-campo → línea (1 = primera línea)."""
    ruta = Path(ruta)
    try:
        texto = ruta.read_text(encoding="utf-8")
    except OSError as error:
        raise ArchivoInvalido([ErrorArchivo(str(ruta), 0, "-", f"no se puede leer: {error.strerror}")]) from None
    try:
        nodo = yaml.compose(texto, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        marca = getattr(error, "problem_mark", None)
        linea = marca.line + 1 if marca else 0
        raise ArchivoInvalido([ErrorArchivo(str(ruta), linea, "-", f"YAML inválido: {error}")]) from None
    lineas: dict[tuple, int] = {}
    if nodo is None:
        return None, lineas
    return _a_python(nodo, lineas, ()), lineas


def linea_de(lineas: dict[tuple, int], ruta: tuple) -> int:
    """Línea del campo o, si no existe (p. ej. un campo que falta), la de su padre más cercano."""
    while ruta not in lineas and ruta:
        ruta = ruta[:-1]
    return lineas.get(ruta, 1)


def nombre_campo(ruta: tuple) -> str:
    partes = []
    for parte in ruta:
        if isinstance(parte, int):
            partes.append(f"[{parte}]")
        else:
            partes.append(("." if partes else "") + str(parte))
    return "".join(partes) or "-"


_MENSAJES = {
    "missing": "es obligatorio",
    "extra_forbidden": "no es un campo conocido",
    "string_type": "debe ser texto",
    "int_type": "debe ser un número entero",
    "int_parsing": "debe ser un número entero",
    "float_type": "debe ser un número",
    "float_parsing": "debe ser un número",
    "bool_type": "debe ser verdadero o falso",
    "list_type": "debe ser una lista",
    "dict_type": "debe ser un mapa de campos",
    "model_type": "debe ser un mapa de campos",
    "greater_than": "debe ser mayor que {gt}",
    "greater_than_equal": "debe ser al menos {ge}",
    "less_than_equal": "debe ser como mucho {le}",
    "string_pattern_mismatch": "tiene un formato inválido (se espera {pattern})",
    "string_too_short": "no puede estar vacío",
    "literal_error": "debe ser uno de {expected}",
    "enum": "debe ser uno de {expected}",
}


def traducir(error: ValidationError, archivo: str, lineas: dict[tuple, int],
             prefijo: tuple = ()) -> list[ErrorArchivo]:
    errores = []
    for detalle in error.errors():
        ruta = prefijo + tuple(detalle["loc"])
        plantilla = _MENSAJES.get(detalle["type"])
        if plantilla:
            mensaje = plantilla.format(**(detalle.get("ctx") or {}))
        else:
            # Errores de validadores propios: ya vienen en español tras "Value error, ".
            mensaje = detalle["msg"].removeprefix("Value error, ")
        errores.append(ErrorArchivo(archivo, linea_de(lineas, ruta), nombre_campo(ruta), mensaje))
    return errores
