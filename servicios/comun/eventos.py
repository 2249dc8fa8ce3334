"""Decodificación de los registros de `gpr.eventos.v1` y, reexportada, la validación de eventos.

La validación (`validar`, sus topes, `clave_kafka`) vive en la biblioteca cliente
(`clientes/python/gpr_cliente/validacion.py`): una sola implementación para el sistema de la
agencia, la Ingesta y el procesador. Aquí queda lo que solo hace quien lee de Kafka: decodificar
un registro (`Evento` o `LoteEventos`). Todo es puro (sin E/S).
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.message import DecodeError

from gpr.v1 import eventos_pb2 as pb
from gpr_cliente.contrato import CABECERA_LOTE, SEPARADOR_CLAVE, clave_kafka
from gpr_cliente.validacion import (
    ATRIBUTOS_MAXIMOS,
    BYTES_MAXIMOS_EVENTO,
    ESCALA_MAXIMA_SATISFACCION,
    FUTURO_TOLERADO_S,
    INSTANTE_MINIMO_S,
    INTENTO_MAXIMO,
    LARGO_MAXIMO_IDENTIFICADOR,
    LARGO_MAXIMO_TEXTO,
    PLAZO_MAXIMO_DIAS,
    TIPOS_DE_CASO,
    TIPOS_DE_ETAPA,
    validar,
)

__all__ = [
    "ATRIBUTOS_MAXIMOS", "BYTES_MAXIMOS_EVENTO", "ESCALA_MAXIMA_SATISFACCION", "FUTURO_TOLERADO_S",
    "INSTANTE_MINIMO_S", "INTENTO_MAXIMO", "LARGO_MAXIMO_IDENTIFICADOR", "LARGO_MAXIMO_TEXTO",
    "PLAZO_MAXIMO_DIAS", "SEPARADOR_CLAVE", "TIPOS_DE_CASO", "TIPOS_DE_ETAPA", "RegistroInvalido",
    "clave_kafka", "decodificar", "es_lote", "eventos_en_bruto", "validar",
]


class RegistroInvalido(ValueError):
    """El valor de un registro de Kafka no es un Evento ni un LoteEventos decodificable."""

    motivo = "protobuf_invalido"


def es_lote(cabeceras: Iterable[tuple[str, bytes]] | None) -> bool:
    if not cabeceras:
        return False
    for k, v in cabeceras:
        if k == CABECERA_LOTE and v == b"1":
            return True
    return False


def decodificar(valor: bytes | None, cabeceras: Iterable[tuple[str, bytes]] | None = None) -> list[pb.Evento]:
    """Los eventos de un registro: uno, o los de un LoteEventos si lleva la cabecera de lote."""
    if not valor:
        raise RegistroInvalido("registro vacío")
    try:
        if es_lote(cabeceras):
            return list(pb.LoteEventos.FromString(valor).eventos)
        return [pb.Evento.FromString(valor)]
    except DecodeError as error:
        raise RegistroInvalido(f"no es un protobuf gpr.v1.Evento: {error}") from None


def _varint(datos: bytes, posicion: int) -> tuple[int, int]:
    valor = desplazamiento = 0
    while True:
        byte = datos[posicion]
        posicion += 1
        valor |= (byte & 0x7F) << desplazamiento
        if byte < 0x80:
            return valor, posicion
        desplazamiento += 7
        if desplazamiento > 63:
            raise ValueError("varint demasiado largo")


def eventos_en_bruto(valor: bytes) -> list[bytes] | None:
    """Los bytes de cada evento de un `LoteEventos`, tal como vinieron (None si el registro
    no se deja recorrer así). Sirven para rechazar un evento de un lote con sus bytes: volver
    a serializar el evento no siempre los reproduce (el orden de un mapa, p. ej.)."""
    partes = []
    posicion = 0
    try:
        while posicion < len(valor):
            etiqueta, posicion = _varint(valor, posicion)
            tipo = etiqueta & 7
            if tipo == 2:
                largo, posicion = _varint(valor, posicion)
                if posicion + largo > len(valor):
                    return None
                if etiqueta >> 3 == 1:
                    partes.append(bytes(valor[posicion:posicion + largo]))
                posicion += largo
            elif tipo == 0:
                _, posicion = _varint(valor, posicion)
            elif tipo == 1:
                posicion += 8
            elif tipo == 5:
                posicion += 4
            else:
                return None
    except (IndexError, ValueError):
        return None
    return partes if posicion == len(valor) else None
