"""Fuera de `servicios/terceros/` ningún módulo toca el interior de una biblioteca de terceros.

Se lee el código (sin ejecutarlo) y se buscan:

- importaciones de un módulo privado de otra biblioteca (`from typer._click… import`,
  `import faust.streams._x`);
- atributos privados (`objeto._nombre`, sin los `__dunder__`) que el proyecto no define en
  ninguna parte: si `_nombre` no es de una clase, función o variable nuestra, es de otro.

Lo que haga falta del interior de faust, mode, aiokafka o typer va en `servicios/terceros/`, con
su porqué y el issue que lo motiva (docs/terceros.md).
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import RAIZ

SERVICIOS = RAIZ / "servicios"
TERCEROS = SERVICIOS / "terceros"
PROPIOS = ("servicios", "gpr")


def _modulos() -> list[Path]:
    return sorted(p for p in SERVICIOS.rglob("*.py") if "__pycache__" not in p.parts)


def _nombres_propios() -> set[str]:
    """Todo nombre privado que el proyecto define: clases, funciones, argumentos, variables,
    atributos asignados, `__slots__` y alias de importación."""
    nombres: set[str] = set()
    for ruta in _modulos():
        for nodo in ast.walk(ast.parse(ruta.read_text(encoding="utf-8"))):
            if isinstance(nodo, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                nombres.add(nodo.name)
            elif isinstance(nodo, ast.arg):
                nombres.add(nodo.arg)
            elif isinstance(nodo, ast.Name) and isinstance(nodo.ctx, ast.Store):
                nombres.add(nodo.id)
            elif isinstance(nodo, ast.Attribute) and isinstance(nodo.ctx, ast.Store):
                nombres.add(nodo.attr)
            elif isinstance(nodo, ast.alias) and nodo.asname:
                nombres.add(nodo.asname)
            elif isinstance(nodo, ast.Call) and isinstance(nodo.func, ast.Name) and nodo.func.id == "setattr":
                if len(nodo.args) > 1 and isinstance(nodo.args[1], ast.Constant):
                    nombres.add(nodo.args[1].value)
            elif isinstance(nodo, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__slots__"
                                                       for t in nodo.targets):
                nombres.update(c.value for c in ast.walk(nodo.value) if isinstance(c, ast.Constant))
    return {n for n in nombres if isinstance(n, str) and n.startswith("_")}


# Nombres con guion bajo que son API pública (los de las tuplas con nombre).
_PUBLICOS = {"_replace", "_asdict", "_fields", "_make", "_field_defaults"}


def _privado(nombre: str) -> bool:
    return (nombre.startswith("_") and not (nombre.startswith("__") and nombre.endswith("__"))
            and nombre not in _PUBLICOS)


def test_solo_servicios_terceros_toca_el_interior_de_otras_bibliotecas():
    propios = _nombres_propios()
    hallazgos = []
    for ruta in _modulos():
        if TERCEROS in ruta.parents:
            continue
        arbol = ast.parse(ruta.read_text(encoding="utf-8"))
        donde = ruta.relative_to(RAIZ)
        for nodo in ast.walk(arbol):
            if isinstance(nodo, ast.ImportFrom) and nodo.module and not nodo.module.startswith(PROPIOS):
                if any(_privado(parte) for parte in nodo.module.split(".")):
                    hallazgos.append(f"{donde}:{nodo.lineno}: from {nodo.module} import …")
                hallazgos += [f"{donde}:{nodo.lineno}: importa {a.name} de {nodo.module}"
                              for a in nodo.names if _privado(a.name)]
            elif isinstance(nodo, ast.Import):
                hallazgos += [f"{donde}:{nodo.lineno}: import {a.name}" for a in nodo.names
                              if not a.name.startswith(PROPIOS) and any(_privado(p) for p in a.name.split("."))]
            elif isinstance(nodo, ast.Attribute) and _privado(nodo.attr) and nodo.attr not in propios:
                hallazgos.append(f"{donde}:{nodo.lineno}: .{nodo.attr}")
    assert not hallazgos, "interior de otras bibliotecas fuera de servicios/terceros/:\n" + "\n".join(hallazgos)


def test_la_prueba_ve_un_acceso_al_interior():
    """Sin `servicios/terceros/`, lo que hay allí se vería: la prueba no pasa por vacía."""
    propios = _nombres_propios()
    vistos = set()
    for ruta in TERCEROS.rglob("*.py"):
        for nodo in ast.walk(ast.parse(ruta.read_text(encoding="utf-8"))):
            if isinstance(nodo, ast.Attribute) and _privado(nodo.attr) and nodo.attr not in propios:
                vistos.add(nodo.attr)
    assert {"_committed_offset", "_current_event", "_unacked_messages", "_read_offset"} <= vistos
