"""Lo que devuelve una publicación: el resultado de cada evento, en el orden en que se dio."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ResultadoEvento:
    """`motivo`: vacío si se aceptó. Si no, el motivo de rechazo de la plataforma (el mismo
    vocabulario que el tópico de rechazados, p. ej. `servicio_desconocido`), o `kafka:<error>` /
    `ingesta:<código gRPC>` si no se pudo entregar (entonces reenviar el mismo evento es seguro)."""

    evento_id: str
    aceptado: bool
    motivo: str = ""


@dataclass(frozen=True)
class Resumen:
    """Un resultado por evento, en el orden de entrada."""

    resultados: tuple[ResultadoEvento, ...]

    @property
    def aceptados(self) -> int:
        return sum(1 for r in self.resultados if r.aceptado)

    @property
    def rechazados(self) -> list[tuple[int, ResultadoEvento]]:
        """(posición en la entrada, resultado) de cada evento no aceptado."""
        return [(i, r) for i, r in enumerate(self.resultados) if not r.aceptado]

    @property
    def todo_aceptado(self) -> bool:
        return all(r.aceptado for r in self.resultados)
