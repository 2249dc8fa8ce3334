"""Control de acceso de `Indicadores`: tokens de lectura con alcance por agencia.

Apagado si `GPR_CONSULTA_TOKENS` no está definida (como en `make run`): toda llamada puede
leer todo. Encendido, cada llamada a `gpr.v1.Indicadores` debe traer el metadato
`authorization: Bearer <token>`; la salud (`grpc.health.v1`) y la reflexión quedan abiertas.

Archivo (`GPR_CONSULTA_TOKENS`)::

    tokens:
      - token_sha256: 3f1c…(64 hexadecimales)
        agencias: ["*"]                 # todas: p. ej. el portal público
        descripcion: portal público     # opcional
      - token_sha256: 9a0b…
        agencias: [reniec, sunarp]      # solo estas (deben estar en el catálogo)

Un token con alcance de agencias ve solo las series de esas agencias en los listados y
suscripciones, y recibe PERMISSION_DENIED si pide otra agencia por nombre.

Como en las credenciales de la ingesta, el archivo guarda solo el SHA-256 de cada token: los
tokens los genera `python -m servicios.consulta.acceso nuevo` con 256 bits de azar, así que
un hash rápido sin sal basta y permite buscar el token en O(1) en cada llamada (ver
servicios/ingesta/credenciales.py). Si el archivo se filtra, no sirve para leer.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import secrets
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from servicios.comun.catalogo import Catalogo
from servicios.comun.yaml_lineas import ArchivoInvalido, ErrorArchivo, cargar, linea_de, traducir

log = logging.getLogger(__name__)

TODAS = "*"
# Prefijo reconocible por los escáneres de secretos (y por las personas).
PREFIJO_TOKEN = "gpr_lectura_"
_BYTES_AZAR = 32


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def nuevo_token() -> str:
    return PREFIJO_TOKEN + secrets.token_urlsafe(_BYTES_AZAR)


def token_demo(nombre: str) -> str:
    """Token de demostración de despliegue/consulta/tokens.ejemplo.yaml (público: está en docs)."""
    return f"gpr_demo_lectura_{nombre}_SOLO_DESARROLLO_LOCAL"


@dataclass(frozen=True)
class Alcance:
    """Qué agencias puede leer quien llama; `agencias` None: todas."""

    agencias: frozenset[str] | None
    descripcion: str = ""

    def permite(self, agencia: str) -> bool:
        return self.agencias is None or agencia in self.agencias


# Sin control de acceso: lo que reciben todas las llamadas cuando está apagado.
ABIERTO = Alcance(None, "sin control de acceso")


class NoAutenticado(Exception):
    """La llamada no trae un token válido; el mensaje es el detalle del UNAUTHENTICATED."""


@dataclass(frozen=True)
class Tokens:
    """Hash del token → su alcance."""

    por_hash: dict[str, Alcance]

    def alcance_de(self, token: str) -> Alcance | None:
        return self.por_hash.get(hash_token(token))

    def __len__(self) -> int:
        return len(self.por_hash)


def alcance_de_metadatos(tokens: Tokens | None, metadatos: Iterable[tuple[str, str | bytes]] | None) -> Alcance:
    """El alcance de una llamada según su metadato `authorization`; `NoAutenticado` si falta
    o no sirve. Sin `tokens` (control apagado), `ABIERTO`. El token nunca va en un mensaje."""
    if tokens is None:
        return ABIERTO
    valor = ""
    for clave, dato in metadatos or ():
        if clave == "authorization":
            valor = dato if isinstance(dato, str) else dato.decode("utf-8", "replace")
    if not valor.strip():
        raise NoAutenticado("authorization: falta el metadato; envíe 'authorization: Bearer <token de lectura>'")
    esquema, _, token = valor.strip().partition(" ")
    token = token.strip()
    if esquema.lower() != "bearer" or not token:
        raise NoAutenticado("authorization: se espera el formato 'Bearer <token de lectura>'")
    alcance = tokens.alcance_de(token)
    if alcance is None:
        raise NoAutenticado("authorization: token desconocido o revocado")
    return alcance


class _TokenYaml(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    agencias: list[str] = Field(min_length=1)
    descripcion: str = ""


class _ArchivoTokens(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokens: list[_TokenYaml] = Field(min_length=1)


def cargar_tokens(ruta: str | Path, catalogo: Catalogo) -> Tokens:
    """Carga y valida el archivo; cada error nombra archivo, línea y campo."""
    archivo = str(ruta)
    datos, lineas = cargar(ruta)
    try:
        modelo = _ArchivoTokens.model_validate(datos if datos is not None else {})
    except ValidationError as error:
        raise ArchivoInvalido(traducir(error, archivo, lineas)) from None
    errores: list[ErrorArchivo] = []
    por_hash: dict[str, Alcance] = {}
    for i, token in enumerate(modelo.tokens):
        for j, agencia in enumerate(token.agencias):
            campo = ("tokens", i, "agencias", j)
            if agencia == TODAS and len(token.agencias) > 1:
                errores.append(ErrorArchivo(archivo, linea_de(lineas, campo), f"tokens[{i}].agencias[{j}]",
                                            "'*' (todas las agencias) va solo, sin otras agencias"))
            elif agencia != TODAS and agencia not in catalogo.agencias:
                errores.append(ErrorArchivo(archivo, linea_de(lineas, campo), f"tokens[{i}].agencias[{j}]",
                                            f"agencia desconocida {agencia[:100]!r} (no está en el catálogo)"))
        if token.token_sha256 in por_hash:
            errores.append(ErrorArchivo(archivo, linea_de(lineas, ("tokens", i, "token_sha256")),
                                        f"tokens[{i}].token_sha256", "token repetido"))
        agencias = None if token.agencias == [TODAS] else frozenset(token.agencias)
        por_hash[token.token_sha256] = Alcance(agencias, token.descripcion)
    if errores:
        raise ArchivoInvalido(errores)
    return Tokens(por_hash)


def tokens_demo_aceptados(tokens: Tokens) -> list[str]:
    """Nombres de los tokens de demostración (públicos) que el archivo acepta: la consulta
    lo advierte al arrancar."""
    nombres = ["portal", "reniec", "sunarp", "minsa"]
    return [n for n in nombres if tokens.alcance_de(token_demo(n)) is not None]


def entrada_yaml(token: str, agencias: list[str], descripcion: str = "") -> str:
    """La entrada de la lista `tokens:` para un token (solo su hash)."""
    lista = ", ".join(f'"{a}"' if a == TODAS else a for a in agencias)
    entrada = f"  - {{token_sha256: {hash_token(token)}, agencias: [{lista}]"
    if descripcion:
        escapada = descripcion.replace("\\", "\\\\").replace('"', '\\"')
        entrada += f', descripcion: "{escapada}"'
    return entrada + "}"


def _principal(argumentos: list[str]) -> int:
    analizador = argparse.ArgumentParser(
        prog="python -m servicios.consulta.acceso",
        description="Tokens de lectura de la consulta gRPC (Indicadores), con alcance por agencia.")
    ordenes = analizador.add_subparsers(dest="orden", required=True, metavar="ORDEN")
    nuevo = ordenes.add_parser("nuevo", help="crea un token y muestra la entrada del archivo GPR_CONSULTA_TOKENS",
                               description="Crea un token aleatorio de lectura. Se muestra una sola vez; en el "
                                           "archivo va solo su hash.")
    nuevo.add_argument("--agencias", required=True,
                       help="agencias que puede leer, separadas por comas (p. ej. reniec,sunarp), o '*' para todas")
    nuevo.add_argument("--descripcion", default="", help="quién usará el token (queda en el archivo)")
    nuevo.add_argument("--catalogo", default="despliegue/catalogo.yaml",
                       help="catálogo donde deben existir las agencias (por defecto %(default)s)")
    opciones = analizador.parse_args(argumentos)

    from servicios.comun.catalogo import cargar_catalogo

    agencias = [a.strip() for a in opciones.agencias.split(",") if a.strip()]
    try:
        catalogo = cargar_catalogo(opciones.catalogo)
    except ArchivoInvalido as error:
        print(f"catálogo inválido:\n{error}", file=sys.stderr)
        return 2
    if agencias != [TODAS]:
        desconocidas = [a for a in agencias if a not in catalogo.agencias]
        if not agencias or desconocidas:
            conocidas = ", ".join(sorted(catalogo.agencias))
            print(f"--agencias: {', '.join(desconocidas) or 'vacío'} no está en el catálogo; use '*' o algunas "
                  f"de: {conocidas}", file=sys.stderr)
            return 2
    token = nuevo_token()
    print("Token de lectura (se muestra solo esta vez; guárdelo en el gestor de secretos de quien lo use):")
    print(f"  {token}")
    print()
    print("Agregue esta entrada a la lista 'tokens:' del archivo GPR_CONSULTA_TOKENS y reinicie la consulta "
          "(o envíele SIGHUP):")
    print(entrada_yaml(token, agencias, opciones.descripcion))
    print()
    print("El cliente lo envía en cada llamada como metadato gRPC: authorization: Bearer <token>")
    return 0


if __name__ == "__main__":
    sys.exit(_principal(sys.argv[1:]))
