"""Las consolas de `gpr`: la salida normal (stdout) y la de errores y avisos (stderr).

Fuera de una terminal (una tubería, un registro, un script) rich toma 80 columnas, o las de
`COLUMNS`, y parte las líneas largas a mitad de frase: un script que busca un mensaje no lo
encuentra y un registro queda con frases cortadas. Así que, fuera de una terminal, los mensajes
no se parten (`soft_wrap`); las tablas sí se ajustan al ancho, en una terminal real y fuera
(`imprimir_tabla`).
"""

from __future__ import annotations

from rich.console import Console


def _consola(stderr: bool) -> Console:
    consola = Console(stderr=stderr)
    consola.soft_wrap = not consola.is_terminal
    return consola


consola = _consola(stderr=False)
consola_errores = _consola(stderr=True)


def imprimir_tabla(tabla, destino: Console | None = None) -> None:
    """Una tabla ajustada al ancho de la consola (sin `soft_wrap` se desbordaría)."""
    (destino or consola).print(tabla, soft_wrap=False)
