"""Biblioteca cliente de GpR Monitor para los sistemas de las agencias (ver README.md).

    from gpr_cliente import Catalogo, Eventos, Canal, PublicadorKafka

Los nombres se cargan al usarse: validar un evento no importa ni gRPC ni kafka-python.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_DONDE = {
    "Agencia": "catalogo", "Servicio": "catalogo", "Catalogo": "catalogo",
    "Eventos": "eventos", "EventoInvalido": "eventos", "Canal": "eventos", "Resultado": "eventos",
    "importe_exacto": "eventos",
    "validar": "validacion", "clave_kafka": "contrato", "TOPICO_EVENTOS": "contrato", "CABECERA_LOTE": "contrato",
    "ResultadoEvento": "resultados", "Resumen": "resultados",
    "PublicadorKafka": "kafka", "KafkaNoDisponible": "kafka", "PublicadorLleno": "kafka", "Envio": "kafka",
    "PublicadorIngesta": "ingesta", "ErrorIngesta": "ingesta",
    "ClienteIndicadores": "consultas", "Suscripcion": "consultas",
}

__all__ = sorted(_DONDE)


def __getattr__(nombre: str):
    modulo = _DONDE.get(nombre)
    if modulo is None:
        raise AttributeError(f"module 'gpr_cliente' has no attribute {nombre!r}")
    return getattr(importlib.import_module(f"gpr_cliente.{modulo}"), nombre)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_DONDE))


if TYPE_CHECKING:
    from gpr_cliente.catalogo import Agencia, Catalogo, Servicio
    from gpr_cliente.consultas import ClienteIndicadores, Suscripcion
    from gpr_cliente.contrato import CABECERA_LOTE, TOPICO_EVENTOS, clave_kafka
    from gpr_cliente.eventos import Canal, EventoInvalido, Eventos, Resultado, importe_exacto
    from gpr_cliente.ingesta import ErrorIngesta, PublicadorIngesta
    from gpr_cliente.kafka import Envio, KafkaNoDisponible, PublicadorKafka, PublicadorLleno
    from gpr_cliente.resultados import ResultadoEvento, Resumen
    from gpr_cliente.validacion import validar
