"""Los tableros de Grafana versionados (despliegue/grafana/tableros/*.json) vistos por las pruebas:
sus paneles, sus consultas PromQL y esas consultas con las variables de plantilla sustituidas."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

RAIZ = Path(__file__).resolve().parents[2]
GRAFANA = RAIZ / "despliegue" / "grafana"
TABLEROS = GRAFANA / "tableros"

# Variables que Grafana define solo: un valor razonable para una consulta instantánea con
# raspados de un segundo (en Grafana dependen del rango y el ancho del gráfico).
GLOBALES = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m", "__range_s": "300", "__interval_ms": "15000"}


@dataclass(frozen=True)
class Consulta:
    tablero: str
    panel: str
    ref: str
    expr: str


def archivos() -> list[Path]:
    return sorted(TABLEROS.glob("*.json"))


def cargar(archivo: Path) -> dict:
    return json.loads(archivo.read_text(encoding="utf-8"))


def paneles(tablero: dict) -> Iterator[dict]:
    """Todos los paneles, también los de las filas plegadas (que guardan los suyos dentro)."""
    for panel in tablero.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def consultas(archivo: Path) -> list[Consulta]:
    tablero = cargar(archivo)
    return [Consulta(archivo.name, panel.get("title", ""), objetivo.get("refId", ""), objetivo["expr"])
            for panel in paneles(tablero) for objetivo in panel.get("targets", []) if objetivo.get("expr")]


def variables(tablero: dict) -> list[str]:
    return [v["name"] for v in tablero.get("templating", {}).get("list", [])]


def sustituir(expr: str, valores: dict[str, str]) -> str:
    """`$var`, `${var}`, `${var:formato}` y `[[var]]` por su valor; falla con una variable desconocida."""
    todos = {**GLOBALES, **valores}

    def valor(coincidencia: re.Match) -> str:
        nombre = next(g for g in coincidencia.groups() if g)
        if nombre not in todos:
            raise KeyError(f"variable de plantilla sin valor: ${nombre} en {expr!r}")
        return todos[nombre]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", valor, expr)
