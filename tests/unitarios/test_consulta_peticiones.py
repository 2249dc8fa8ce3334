"""Peticiones hostiles a `Indicadores`, sin red: tokens de página anidados o enormes y campos
enormes. Cada una es un error del cliente que nombra su campo (INVALID_ARGUMENT en el
servidor), nunca una excepción inesperada, y ningún error repite más de ~200 caracteres de lo
que mandó el cliente (se recorta con «…» y se dice el largo original)."""

from __future__ import annotations

import base64
import json

import pytest

from gpr.v1 import indicadores_pb2 as ipb
from servicios.consulta.peticiones import (PeticionInvalida, clave_de_solicitud, codificar_token,
                                           decodificar_token, paginar)

MEGA = 1024 * 1024


def _token(crudo: bytes) -> str:
    return base64.urlsafe_b64encode(crudo).rstrip(b"=").decode("ascii")


def _error(funcion, *argumentos) -> PeticionInvalida:
    with pytest.raises(PeticionInvalida) as error:
        funcion(*argumentos)
    return error.value


# Tokens que un cliente puede inventar: cada uno debe dar PeticionInvalida en token_pagina.
TOKENS_MALOS = {
    "anidado_listas": _token(b"[" * 100_000),
    "anidado_objetos": _token(b'{"a":' * 50_000),
    "anidado_en_u": _token(b'{"v":2,"u":' + b"[" * 5000 + b"]" * 5000 + b',"f":"x"}'),
    "enorme": _token(b'{"v":2,"u":["' + b"a" * MEGA + b'"]}'),
    "enorme_sin_base64": "?" * MEGA,
    "no_utf8": _token(b"\xff\xfe\xfd"),
    "lista": _token(b"[1,2,3]"),
    "version_vieja": _token(b'{"v":1}'),
    "u_con_numeros": _token(b'{"v":2,"u":[1,2,3,4,5],"f":"x"}'),
    "numero_gigante": _token(b'{"v":2,"u":["a","b","c","d",""],"f":' + b"9" * 5000 + b"}"),
}


@pytest.mark.parametrize("nombre", sorted(TOKENS_MALOS))
def test_token_de_pagina_hostil_es_invalid_argument_de_token_pagina(nombre):
    token = TOKENS_MALOS[nombre]
    error = _error(decodificar_token, token, ipb.FiltroIndicadores())
    assert [e.split(":")[0] for e in error.errores] == ["token_pagina"], error.errores
    # Ni el token ni su contenido vuelven en el mensaje.
    assert len(str(error)) < 300, str(error)[:500]
    # Por el listado completo, igual (es el camino del servidor).
    error = _error(paginar, [], ipb.FiltroIndicadores(token_pagina=token))
    assert str(error).startswith("token_pagina:")


def test_token_enorme_dice_su_largo_y_el_maximo():
    error = _error(decodificar_token, "A" * MEGA, ipb.FiltroIndicadores())
    assert f"{MEGA} caracteres" in str(error)


def test_un_token_propio_sigue_valiendo_y_se_ata_al_filtro():
    ultima = ("reniec", "dni", "cumplimiento_plazo", "24h", "", "reniec/dni/cumplimiento_plazo/24h")
    filtro = ipb.FiltroIndicadores(agencia_id="reniec", tamano_pagina=3)
    token = codificar_token(ultima, filtro)
    assert decodificar_token(token, filtro) == ultima
    # Corto aunque el filtro tenga campos largos: el filtro va como huella, no entero.
    largo = ipb.FiltroIndicadores(agencia_id="reniec", servicio_id="s" * 200)
    assert len(codificar_token(ultima, largo)) < 200
    error = _error(decodificar_token, token, ipb.FiltroIndicadores(agencia_id="sunarp"))
    assert str(error).startswith("token_pagina: pertenece a un listado con otro filtro")
    # Un token con la forma correcta pero una última serie inventada no rompe nada: es solo
    # un punto de partida del listado.
    inventado = _token(json.dumps({"v": 2, "u": ["z", "z", "z", "z", "z"],
                                   "f": json.loads(base64.urlsafe_b64decode(token + "=="))["f"]}).encode())
    assert decodificar_token(inventado, filtro)[0] == "z"


def _peticion(**campos) -> ipb.SolicitudIndicador:
    base = {"agencia_id": "reniec", "servicio_id": "dni", "indicador": "cumplimiento_plazo", "ventana": "24h"}
    return ipb.SolicitudIndicador(**{**base, **campos})


@pytest.mark.parametrize("campo", ["agencia_id", "servicio_id", "indicador", "ventana", "etapa_id"])
def test_un_campo_de_un_mega_se_rechaza_sin_repetirlo(campo):
    valor = "ñ" * MEGA
    error = _error(clave_de_solicitud, _peticion(**{campo: valor}))
    mensaje = str(error)
    assert mensaje.startswith(f"{campo}:"), mensaje[:300]
    assert mensaje.count("ñ") <= 200 and len(mensaje) < 600, len(mensaje)
    assert f"({MEGA} caracteres" in mensaje


@pytest.mark.parametrize("campo", ["agencia_id", "servicio_id", "indicador", "ventana"])
def test_filtro_con_un_campo_de_un_mega_se_rechaza_sin_repetirlo(campo):
    filtro = ipb.FiltroIndicadores(**{campo: "x" * MEGA})
    mensaje = str(_error(paginar, [], filtro))
    assert mensaje.startswith(f"{campo}:") and len(mensaje) < 600, mensaje[:300]
    assert f"({MEGA} caracteres" in mensaje


def test_un_valor_corto_se_repite_entero():
    assert str(_error(clave_de_solicitud, _peticion(indicador="xyz"))) == "indicador: 'xyz' no es un indicador conocido"
    valor = "v" * 200
    assert f"{valor!r} no es una ventana válida" in str(_error(clave_de_solicitud, _peticion(ventana=valor)))
    recortado = str(_error(clave_de_solicitud, _peticion(ventana="v" * 201)))
    assert f"{'v' * 200!r}… (201 caracteres)" in recortado
