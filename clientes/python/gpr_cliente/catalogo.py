"""El catálogo tal como lo usa la validación: agencias (con su moneda) y servicios (con sus
etapas). Tipos puros, sin E/S.

La plataforma lo carga de `despliegue/catalogo.yaml` (`servicios.comun.catalogo`, con errores
por archivo, línea y campo); el sistema de una agencia lo arma con `Catalogo.de_agencia` con
los servicios y etapas que la plataforma le asignó. Para validar un evento solo cuentan qué
agencias y servicios existen, las etapas de cada servicio y la moneda de cada agencia.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

_MONEDA = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True)
class Agencia:
    id: str
    nombre: str
    zona_horaria: str
    # Moneda (ISO 4217) en que la agencia registra sus costos.
    moneda: str


@dataclass(frozen=True)
class Servicio:
    id: str
    nombre: str
    agencia_id: str
    plazo_dias: int
    etapas: tuple[str, ...]


@dataclass(frozen=True)
class Catalogo:
    agencias: dict[str, Agencia]
    servicios: dict[tuple[str, str], Servicio]

    @classmethod
    def de_agencia(cls, agencia_id: str, servicios: Mapping[str, Sequence[str]], *, moneda: str = "PEN",
                   nombre: str = "", zona_horaria: str = "America/Lima") -> Catalogo:
        """El catálogo de una sola agencia, para validar sus eventos antes de enviarlos.

        `servicios`: servicio_id → sus etapas, en orden (vacío si no tiene etapas), p. ej.
        `{"certificado-literal": ["recepcion", "calificacion", "emision"]}`. Deben ser los del
        catálogo de la plataforma: un servicio o una etapa que ella no conoce se rechaza allí
        (`servicio_desconocido`, `etapa_desconocida`). El plazo no interviene en la validación
        (queda en 0: desconocido).
        """
        if not isinstance(agencia_id, str) or not agencia_id:
            raise ValueError("agencia_id: debe ser un texto no vacío")
        if not isinstance(moneda, str) or not _MONEDA.fullmatch(moneda):
            raise ValueError(f"moneda: {moneda!r} no es un código ISO 4217 (tres letras mayúsculas, p. ej. PEN)")
        if isinstance(servicios, (str, bytes)) or not isinstance(servicios, Mapping) or not servicios:
            raise ValueError("servicios: debe ser un mapa no vacío servicio_id → etapas")
        agencia = Agencia(agencia_id, nombre or agencia_id, zona_horaria, moneda)
        propios: dict[tuple[str, str], Servicio] = {}
        for servicio_id, etapas in servicios.items():
            if not isinstance(servicio_id, str) or not servicio_id:
                raise ValueError(f"servicios: {servicio_id!r} no es un servicio_id (texto no vacío)")
            if isinstance(etapas, str) or not all(isinstance(e, str) and e for e in etapas):
                raise ValueError(f"servicios[{servicio_id!r}]: debe ser una lista de etapa_id (textos no vacíos)")
            propios[(agencia_id, servicio_id)] = Servicio(servicio_id, servicio_id, agencia_id, 0, tuple(etapas))
        return cls({agencia_id: agencia}, propios)

    def servicio(self, agencia_id: str, servicio_id: str) -> Servicio | None:
        return self.servicios.get((agencia_id, servicio_id))

    def servicios_de(self, agencia_id: str) -> tuple[Servicio, ...]:
        """Los servicios de la agencia, por id."""
        return self._por_agencia.get(agencia_id, ())

    @cached_property
    def _por_agencia(self) -> dict[str, tuple[Servicio, ...]]:
        # Índice hecho una vez: la agregación y la publicación lo consultan por cada agencia
        # tocada, y recorrer todo el catálogo cada vez era cuadrático con miles de servicios.
        por_agencia: dict[str, list[Servicio]] = {}
        for (agencia, _), servicio in sorted(self.servicios.items()):
            por_agencia.setdefault(agencia, []).append(servicio)
        return {agencia: tuple(lista) for agencia, lista in por_agencia.items()}
