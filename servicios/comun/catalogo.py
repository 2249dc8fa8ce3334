"""Catálogo de agencias y servicios (`despliegue/catalogo.yaml`), validado al arrancar.

Un error nombra archivo, línea y campo. Las zonas horarias deben tener desfases de horas
enteras: las ventanas mensuales se suman a partir de cubos horarios en UTC.

Los tipos del catálogo ya cargado (`Agencia`, `Servicio`, `Catalogo`) son los de la biblioteca
cliente (`gpr_cliente.catalogo`), que valida eventos con ellos sin depender de `servicios`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gpr_cliente.catalogo import Agencia, Catalogo, Servicio
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


__all__ = ["Agencia", "Catalogo", "Servicio", "cargar_catalogo", "desde_datos"]
