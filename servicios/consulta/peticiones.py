"""Validación de las peticiones de `Indicadores` y paginación del listado, sin E/S.

Los errores son textos `campo: motivo` en español; el servidor los devuelve como detalle de
un INVALID_ARGUMENT. El token de página es opaco para el cliente: guarda la última serie
entregada (paginación por clave, estable aunque la vista cambie entre páginas) y el filtro
con que se pidió, para rechazar un token usado con otro filtro.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
from collections.abc import Sequence
from dataclasses import dataclass

from gpr.v1 import indicadores_pb2 as ipb
from servicios.comun.indicadores import INDICADORES, clave_serie, ventana_valida

TAMANO_PAGINA_DEFECTO = 100
TAMANO_PAGINA_MAXIMO = 1000
_VENTANAS = "1h, 24h, 7d, 30d, total o mes:AAAA-MM"
_VERSION_TOKEN = 1

ClaveOrden = tuple[str, str, str, str, str, str]


def clave_orden(clave: str, indicador: ipb.Indicador) -> ClaveOrden:
    """Orden del listado: agencia, servicio, indicador, ventana, etapa (y la clave, que desempata)."""
    return (indicador.agencia_id, indicador.servicio_id, indicador.indicador,
            indicador.ventana, indicador.etapa_id, clave)


class PeticionInvalida(ValueError):
    """Uno o más campos de la petición son inválidos; cada error nombra su campo."""

    def __init__(self, errores: list[str]):
        self.errores = errores
        super().__init__("; ".join(errores))


def _errores_indicador(indicador: str, obligatorio: bool) -> list[str]:
    if not indicador:
        return ["indicador: es obligatorio"] if obligatorio else []
    if indicador not in INDICADORES:
        return [f"indicador: {indicador!r} no es un indicador conocido"]
    return []


def _errores_ventana(ventana: str, obligatoria: bool) -> list[str]:
    if not ventana:
        return [f"ventana: es obligatoria ({_VENTANAS})"] if obligatoria else []
    if not ventana_valida(ventana):
        return [f"ventana: {ventana!r} no es una ventana válida ({_VENTANAS})"]
    return []


def clave_de_solicitud(solicitud: ipb.SolicitudIndicador) -> str:
    """Clave de la serie pedida en gpr.indicadores.v1; PeticionInvalida si algún campo falla."""
    errores = []
    if not solicitud.agencia_id:
        errores.append("agencia_id: es obligatorio")
    if not solicitud.servicio_id:
        errores.append("servicio_id: es obligatorio")
    errores += _errores_indicador(solicitud.indicador, obligatorio=True)
    errores += _errores_ventana(solicitud.ventana, obligatoria=True)
    definicion = INDICADORES.get(solicitud.indicador)
    if definicion is not None:
        if definicion.por_etapa and not solicitud.etapa_id:
            errores.append(f"etapa_id: es obligatorio para el indicador por etapa {solicitud.indicador!r}")
        elif not definicion.por_etapa and solicitud.etapa_id:
            errores.append(f"etapa_id: el indicador {solicitud.indicador!r} no es por etapa; déjelo vacío")
    if errores:
        raise PeticionInvalida(errores)
    return clave_serie(solicitud.agencia_id, solicitud.servicio_id, solicitud.indicador,
                       solicitud.ventana, solicitud.etapa_id)


@dataclass(frozen=True)
class Pagina:
    indicadores: list[ipb.Indicador]
    siguiente: str


def _campos_filtro(filtro: ipb.FiltroIndicadores) -> list[str]:
    return [filtro.agencia_id, filtro.servicio_id, filtro.indicador, filtro.ventana]


def codificar_token(ultima: ClaveOrden, filtro: ipb.FiltroIndicadores) -> str:
    datos = {"v": _VERSION_TOKEN, "u": list(ultima), "f": _campos_filtro(filtro)}
    crudo = json.dumps(datos, ensure_ascii=False, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(crudo).rstrip(b"=").decode("ascii")


def decodificar_token(token: str, filtro: ipb.FiltroIndicadores) -> ClaveOrden:
    """Última clave entregada según el token; PeticionInvalida (token_pagina) si no sirve."""
    invalido = PeticionInvalida(
        ["token_pagina: no es un token de página válido (use siguiente_pagina de la respuesta anterior)"])
    try:
        crudo = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        datos = json.loads(crudo.decode("utf-8"))
    except (binascii.Error, ValueError):
        raise invalido from None
    if not isinstance(datos, dict) or datos.get("v") != _VERSION_TOKEN:
        raise invalido
    ultima, campos = datos.get("u"), datos.get("f")
    if not (isinstance(ultima, list) and len(ultima) == 6 and all(isinstance(x, str) for x in ultima)):
        raise invalido
    if campos != _campos_filtro(filtro):
        raise PeticionInvalida(["token_pagina: pertenece a un listado con otro filtro; "
                                "repita la primera página con el filtro nuevo"])
    return tuple(ultima)


def _cumple(orden: ClaveOrden, filtro: ipb.FiltroIndicadores) -> bool:
    # Sobre la clave de orden y no sobre el Indicador: tiene los cuatro campos del filtro y
    # no obliga a decodificar cada serie recorrida (la vista guarda las series serializadas).
    return ((not filtro.agencia_id or orden[0] == filtro.agencia_id)
            and (not filtro.servicio_id or orden[1] == filtro.servicio_id)
            and (not filtro.indicador or orden[2] == filtro.indicador)
            and (not filtro.ventana or orden[3] == filtro.ventana))


def paginar(ordenadas: Sequence[tuple[ClaveOrden, ipb.Indicador]], filtro: ipb.FiltroIndicadores) -> Pagina:
    """Una página del listado ordenado `ordenadas`; PeticionInvalida si el filtro no es válido."""
    errores = _errores_indicador(filtro.indicador, obligatorio=False)
    errores += _errores_ventana(filtro.ventana, obligatoria=False)
    if filtro.tamano_pagina < 0:
        errores.append("tamano_pagina: no puede ser negativo")
    if errores:
        raise PeticionInvalida(errores)
    tamano = min(filtro.tamano_pagina or TAMANO_PAGINA_DEFECTO, TAMANO_PAGINA_MAXIMO)
    inicio = 0
    if filtro.token_pagina:
        ultima = decodificar_token(filtro.token_pagina, filtro)
        inicio = bisect.bisect_right(ordenadas, ultima, key=lambda par: par[0])
    if filtro.agencia_id:
        # El listado está ordenado por agencia: se salta directo a la suya y se para al salir.
        inicio = max(inicio, bisect.bisect_left(ordenadas, (filtro.agencia_id,), key=lambda par: par[0]))

    elegidas: list[tuple[ClaveOrden, object]] = []
    hay_mas = False
    for i in range(inicio, len(ordenadas)):
        par = ordenadas[i]
        orden = par[0]
        if filtro.agencia_id and orden[0] != filtro.agencia_id:
            break
        if not _cumple(orden, filtro):
            continue
        if len(elegidas) == tamano:
            hay_mas = True
            break
        elegidas.append((orden, par))
    siguiente = codificar_token(elegidas[-1][0], filtro) if hay_mas else ""
    return Pagina([par[1] for _, par in elegidas], siguiente)
