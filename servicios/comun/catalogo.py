"""Catálogo de agencias y servicios (`despliegue/catalogo.yaml`), validado al arrancar.

Un error nombra archivo, línea y campo. Las zonas horarias deben tener desfases de horas
enteras: las ventanas mensuales se suman a partir de cubos horarios en UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from servicios.comun.yaml_lineas import ArchivoInvalido, ErrorArchivo, cargar, linea_de, traducir

_ID = r"^[a-z0-9][a-z0-9_-]*$"


class _Estricto(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgenciaYaml(_Estricto):
    id: str = Field(pattern=_ID)
    nombre: str = Field(min_length=1)
    zona_horaria: str = "America/Lima"
    # Moneda (ISO 4217) en que la agencia registra sus costos.
    moneda: str = Field(default="PEN", pattern=r"^[A-Z]{3}$")

    @field_validator("zona_horaria")
    @classmethod
    def _zona_valida(cls, valor: str) -> str:
        try:
            zona = ZoneInfo(valor)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"zona horaria desconocida {valor!r} (ejemplo: America/Lima)") from None
        for anio in range(2000, 2040):
            for mes in (1, 7):
                desfase = datetime(anio, mes, 1, tzinfo=timezone.utc).astimezone(zona).utcoffset()
                if desfase.total_seconds() % 3600:
                    raise ValueError(
                        f"la zona {valor!r} tiene un desfase de {desfase} respecto de UTC; "
                        "solo se admiten desfases de horas enteras"
                    )
        return valor


class ServicioYaml(_Estricto):
    id: str = Field(pattern=_ID)
    nombre: str = Field(min_length=1)
    agencia: str = Field(pattern=_ID)
    plazo_dias: int = Field(gt=0)
    etapas: list[str] = Field(default_factory=list)


class CatalogoYaml(_Estricto):
    agencias: list[AgenciaYaml] = Field(min_length=1)
    servicios: list[ServicioYaml] = Field(min_length=1)


@dataclass(frozen=True)
class Agencia:
    id: str
    nombre: str
    zona_horaria: str
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


def desde_datos(datos: object, archivo: str = "<catálogo>", lineas: dict | None = None) -> Catalogo:
    lineas = lineas or {}
    if not isinstance(datos, dict):
        raise ArchivoInvalido([ErrorArchivo(archivo, 1, "-", "el catálogo debe ser un mapa con 'agencias' y 'servicios'")])
    try:
        modelo = CatalogoYaml.model_validate(datos)
    except ValidationError as error:
        raise ArchivoInvalido(traducir(error, archivo, lineas)) from None

    errores: list[ErrorArchivo] = []
    agencias: dict[str, Agencia] = {}
    for i, a in enumerate(modelo.agencias):
        if a.id in agencias:
            errores.append(ErrorArchivo(archivo, linea_de(lineas, ("agencias", i, "id")), f"agencias[{i}].id", f"agencia repetida {a.id!r}"))
        agencias[a.id] = Agencia(a.id, a.nombre, a.zona_horaria, a.moneda)
    servicios: dict[tuple[str, str], Servicio] = {}
    for i, s in enumerate(modelo.servicios):
        if s.agencia not in agencias:
            errores.append(ErrorArchivo(archivo, linea_de(lineas, ("servicios", i, "agencia")), f"servicios[{i}].agencia", f"agencia desconocida {s.agencia!r}"))
        if (s.agencia, s.id) in servicios:
            errores.append(ErrorArchivo(archivo, linea_de(lineas, ("servicios", i, "id")), f"servicios[{i}].id", f"servicio repetido {s.id!r} en la agencia {s.agencia!r}"))
        servicios[(s.agencia, s.id)] = Servicio(s.id, s.nombre, s.agencia, s.plazo_dias, tuple(s.etapas))
    if errores:
        raise ArchivoInvalido(errores)
    return Catalogo(agencias, servicios)


def cargar_catalogo(ruta: str | Path) -> Catalogo:
    datos, lineas = cargar(ruta)
    return desde_datos(datos, str(ruta), lineas)
