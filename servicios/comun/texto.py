"""Textos que vienen de quien llama y vuelven en un error, un registro o una cabecera."""

from __future__ import annotations

LARGO_ECO = 200


def recortar(texto: object, maximo: int = LARGO_ECO) -> str:
    """`texto` (repr si no es str) con a lo más `maximo` caracteres: un error no devuelve el
    megabyte que mandó quien llama, pero dice cuánto era."""
    texto = texto if isinstance(texto, str) else repr(texto)
    if len(texto) <= maximo:
        return texto
    return f"{texto[:maximo]}… ({len(texto)} caracteres)"
