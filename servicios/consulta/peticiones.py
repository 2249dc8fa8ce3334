"""Validación de las peticiones de `Indicadores` y paginación del listado, sin E/S.

Los errores son textos `campo: motivo` en español; el servidor los devuelve como detalle de
un INVALID_ARGUMENT. Lo que mandó el cliente se repite en el error a lo más en
`ECO_MAXIMO` caracteres (`eco`): un campo de 1 MB no vuelve entero en la respuesta ni en
ningún registro.

El token de página es opaco para el cliente: guarda la última serie entregada (paginación
por clave, estable aunque la vista cambie entre páginas) y una huella del filtro con que se
pidió, para rechazar un token usado con otro filtro. Como lo puede inventar cualquiera, se
lee con tamaño y anidamiento acotados (`TOKEN_MAXIMO`, `_ANIDAMIENTO_MAXIMO`) antes de
pasarlo a `json`, que con miles de corchetes agota la pila (RecursionError).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from gpr.v1 import indicadores_pb2 as ipb
from servicios.comun.indicadores import INDICADORES, clave_serie, ventana_valida

TAMANO_PAGINA_DEFECTO = 100
TAMANO_PAGINA_MAXIMO = 1000
_VENTANAS = "1h, 24h, 7d, 30d, total o mes:AAAA-MM"
_VERSION_TOKEN = 2
# Un token propio mide ~150 caracteres; con identificadores de LARGO_MAXIMO_ID caracteres de
# 4 bytes en UTF-8, unos 7 000. Lo que pase de esto no puede ser uno nuestro.
TOKEN_MAXIMO = 8192
# {"v": …, "u": [ … ]}: un objeto con una lista dentro.
_ANIDAMIENTO_MAXIMO = 2
# Caracteres de lo que mandó el cliente que se repiten en un mensaje de error.
ECO_MAXIMO = 200
# Largo máximo de un identificador (agencia, servicio, indicador, ventana, etapa) en una
# petición; la vista tampoco acepta instantáneas con identificadores más largos.
LARGO_MAXIMO_ID = 256

ClaveOrden = tuple[str, str, str, str, str, str]
# (agencia, servicio, indicador, ventana) de un listado, suscripción, tablero o lista de
# incumplimientos; un campo vacío no filtra.
Filtro = tuple[str, str, str, str]


def eco(valor: str) -> str:
    """`repr` de un dato del cliente para un mensaje, recortado a `ECO_MAXIMO` caracteres con
    «…» y el largo original si es más largo."""
    if len(valor) <= ECO_MAXIMO:
        return repr(valor)
    return f"{valor[:ECO_MAXIMO]!r}… ({len(valor)} caracteres)"


def errores_largo(**campos: str) -> list[str]:
    """Un error por cada identificador más largo que `LARGO_MAXIMO_ID`."""
    return [f"{nombre}: demasiado largo ({len(valor)} caracteres; máximo {LARGO_MAXIMO_ID})"
            for nombre, valor in campos.items() if len(valor) > LARGO_MAXIMO_ID]


class PeticionInvalida(ValueError):
    """Uno o más campos de la petición son inválidos; cada error nombra su campo."""

    def __init__(self, errores: list[str]):
        self.errores = errores
        super().__init__("; ".join(errores))


def _errores_indicador(indicador: str, obligatorio: bool) -> list[str]:
    if not indicador:
        return ["indicador: es obligatorio"] if obligatorio else []
    if indicador not in INDICADORES:
        return [f"indicador: {eco(indicador)} no es un indicador conocido"]
    return []


def _errores_ventana(ventana: str, obligatoria: bool) -> list[str]:
    if not ventana:
        return [f"ventana: es obligatoria ({_VENTANAS})"] if obligatoria else []
    if not ventana_valida(ventana):
        return [f"ventana: {eco(ventana)} no es una ventana válida ({_VENTANAS})"]
    return []


def clave_de_solicitud(solicitud: ipb.SolicitudIndicador) -> str:
    """Clave de la serie pedida en gpr.indicadores.v1; PeticionInvalida si algún campo falla."""
    errores = []
    if not solicitud.agencia_id:
        errores.append("agencia_id: es obligatorio")
    if not solicitud.servicio_id:
        errores.append("servicio_id: es obligatorio")
    errores += errores_largo(agencia_id=solicitud.agencia_id, servicio_id=solicitud.servicio_id)
    errores += _errores_indicador(solicitud.indicador, obligatorio=True)
    errores += _errores_ventana(solicitud.ventana, obligatoria=True)
    errores += errores_largo(etapa_id=solicitud.etapa_id)
    definicion = INDICADORES.get(solicitud.indicador)
    if definicion is not None and len(solicitud.etapa_id) <= LARGO_MAXIMO_ID:
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


def _huella_filtro(filtro: ipb.FiltroIndicadores) -> str:
    # Una huella y no los campos: el token queda corto aunque el filtro sea largo.
    campos = json.dumps([filtro.agencia_id, filtro.servicio_id, filtro.indicador, filtro.ventana],
                        ensure_ascii=False).encode()
    return hashlib.sha256(campos).hexdigest()[:16]


def codificar_token(ultima: ClaveOrden, filtro: ipb.FiltroIndicadores) -> str:
    # La clave (sexto elemento) no viaja: es la canónica de los cinco campos (la vista
    # descarta las instantáneas cuya clave no lo es).
    datos = {"v": _VERSION_TOKEN, "u": list(ultima[:5]), "f": _huella_filtro(filtro)}
    crudo = json.dumps(datos, ensure_ascii=False, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(crudo).rstrip(b"=").decode("ascii")


def _anidamiento(texto: str) -> int:
    """Profundidad máxima de corchetes y llaves de un JSON, sin contar los de las cadenas."""
    profundidad = maxima = 0
    en_cadena = escapado = False
    for c in texto:
        if en_cadena:
            if escapado:
                escapado = False
            elif c == "\\":
                escapado = True
            elif c == '"':
                en_cadena = False
        elif c == '"':
            en_cadena = True
        elif c in "[{":
            profundidad += 1
            maxima = max(maxima, profundidad)
        elif c in "]}":
            profundidad -= 1
    return maxima


def decodificar_token(token: str, filtro: ipb.FiltroIndicadores) -> ClaveOrden:
    """Última clave entregada según el token; PeticionInvalida (token_pagina) si no sirve."""
    invalido = PeticionInvalida(
        ["token_pagina: no es un token de página válido (use siguiente_pagina de la respuesta anterior)"])
    if len(token) > TOKEN_MAXIMO:
        raise PeticionInvalida([f"token_pagina: demasiado largo ({len(token)} caracteres; máximo {TOKEN_MAXIMO}); "
                                "use siguiente_pagina de la respuesta anterior"])
    try:
        texto = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8")
        if _anidamiento(texto) > _ANIDAMIENTO_MAXIMO:
            raise invalido
        datos = json.loads(texto)
    except (binascii.Error, ValueError, RecursionError):
        # RecursionError no debería llegar (el anidamiento se mide antes): defensa de más.
        raise invalido from None
    if not isinstance(datos, dict) or datos.get("v") != _VERSION_TOKEN:
        raise invalido
    ultima, huella = datos.get("u"), datos.get("f")
    if not (isinstance(ultima, list) and len(ultima) == 5 and all(isinstance(x, str) for x in ultima)
            and isinstance(huella, str)):
        raise invalido
    if huella != _huella_filtro(filtro):
        raise PeticionInvalida(["token_pagina: pertenece a un listado con otro filtro; "
                                "repita la primera página con el filtro nuevo"])
    return (*ultima, clave_serie(*ultima))


def filtro_de(peticion: ipb.FiltroIndicadores) -> Filtro:
    return (peticion.agencia_id, peticion.servicio_id, peticion.indicador, peticion.ventana)


def cumple(campos: Sequence[str], filtro: Filtro) -> bool:
    """Si una serie con `campos` (agencia, servicio, indicador, ventana[, …]) entra en `filtro`.

    Recibe las etiquetas y no el Indicador: la vista guarda las series serializadas y filtra
    sin decodificarlas.
    """
    agencia, servicio, indicador, ventana = filtro
    return ((not agencia or campos[0] == agencia) and (not servicio or campos[1] == servicio)
            and (not indicador or campos[2] == indicador) and (not ventana or campos[3] == ventana))


def errores_filtro(filtro: Filtro) -> list[str]:
    """Errores de los campos de un filtro (vacío: sin filtrar ese campo)."""
    agencia, servicio, indicador, ventana = filtro
    errores = errores_largo(agencia_id=agencia, servicio_id=servicio)
    errores += _errores_indicador(indicador, obligatorio=False)
    errores += _errores_ventana(ventana, obligatoria=False)
    return errores


def paginar(ordenadas: Sequence[tuple[ClaveOrden, ipb.Indicador]], filtro: ipb.FiltroIndicadores,
            agencias: frozenset[str] | None = None) -> Pagina:
    """Una página del listado ordenado `ordenadas`; PeticionInvalida si el filtro no es válido.

    `agencias`: las únicas agencias que se pueden listar (el alcance del token); None, todas.
    """
    campos = filtro_de(filtro)
    errores = errores_filtro(campos)
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
    permitidas = sorted(agencias) if agencias is not None else None

    elegidas: list[tuple[ClaveOrden, object]] = []
    hay_mas = False
    i = inicio
    while i < len(ordenadas):
        par = ordenadas[i]
        orden = par[0]
        if filtro.agencia_id and orden[0] != filtro.agencia_id:
            break
        if permitidas is not None and orden[0] not in agencias:
            # Fuera del alcance: se salta a la siguiente agencia permitida (sin recorrer las demás).
            siguiente_agencia = next((a for a in permitidas if a > orden[0]), None)
            if siguiente_agencia is None:
                break
            i = bisect.bisect_left(ordenadas, (siguiente_agencia,), lo=i, key=lambda par: par[0])
            continue
        i += 1
        if not cumple(orden, campos):
            continue
        if len(elegidas) == tamano:
            hay_mas = True
            break
        elegidas.append((orden, par))
    siguiente = codificar_token(elegidas[-1][0], filtro) if hay_mas else ""
    return Pagina([par[1] for _, par in elegidas], siguiente)
