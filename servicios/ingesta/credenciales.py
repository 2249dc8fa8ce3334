"""Credenciales de la ingesta: un token por sistema emisor, guardado solo como su hash.

Archivo (`GPR_INGESTA_CREDENCIALES`)::

    credenciales:
      - agencia: reniec
        token_sha256: 3f1c…(64 hexadecimales)
        descripcion: sistema de trámites   # opcional

Por qué SHA-256 sin sal y no scrypt/PBKDF2: los tokens los genera este módulo con 256 bits
de azar (`secrets`), no los eligen personas. Una sal y un hash lento protegen secretos de
poca entropía (contraseñas) contra diccionarios; con 256 bits no hay diccionario posible y
el hash rápido basta (es lo que hacen, p. ej., los tokens de acceso de GitHub). Además el
hash sin sal permite buscar el token en un diccionario en O(1), sin probar cada credencial
con un hash lento en cada petición, que sería un coste por llamada y una vía de denegación
de servicio. El archivo nunca contiene un token en claro; si se filtra, no sirve para
publicar.

Una agencia puede tener varias credenciales (una por sistema, o la vieja y la nueva durante
una rotación). Revocar es borrar la línea y recargar (SIGHUP) o reiniciar la ingesta.

`python -m servicios.ingesta.credenciales nueva AGENCIA` crea un token, lo muestra una sola
vez y escribe la entrada que hay que agregar al archivo.
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from servicios.comun.catalogo import Catalogo
from servicios.comun.yaml_lineas import ArchivoInvalido, ErrorArchivo, cargar, linea_de, traducir

# Prefijo reconocible: los escáneres de secretos (y las personas) identifican el token si
# aparece donde no debe, p. ej. en un repositorio o en un registro.
PREFIJO_TOKEN = "gpr_"
_BYTES_AZAR = 32


def hash_token(token: str) -> str:
    """SHA-256 hexadecimal del token tal como lo envía el cliente."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def nuevo_token() -> str:
    return PREFIJO_TOKEN + secrets.token_urlsafe(_BYTES_AZAR)


class _CredencialYaml(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    agencia: str = Field(min_length=1)
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    descripcion: str = ""


class _ArchivoCredenciales(BaseModel):
    model_config = ConfigDict(extra="forbid")

    credenciales: list[_CredencialYaml] = Field(min_length=1)


@dataclass(frozen=True)
class Credenciales:
    """Hash del token → agencia."""

    por_hash: dict[str, str]

    def agencia_de(self, token: str) -> str | None:
        return self.por_hash.get(hash_token(token))

    def __len__(self) -> int:
        return len(self.por_hash)


def cargar_credenciales(ruta: str | Path, catalogo: Catalogo) -> Credenciales:
    """Carga y valida el archivo; cada error nombra archivo, línea y campo."""
    archivo = str(ruta)
    datos, lineas = cargar(ruta)
    try:
        modelo = _ArchivoCredenciales.model_validate(datos if datos is not None else {})
    except ValidationError as error:
        raise ArchivoInvalido(traducir(error, archivo, lineas)) from None
    errores: list[ErrorArchivo] = []
    por_hash: dict[str, str] = {}
    for i, credencial in enumerate(modelo.credenciales):
        if credencial.agencia not in catalogo.agencias:
            errores.append(ErrorArchivo(archivo, linea_de(lineas, ("credenciales", i, "agencia")),
                                        f"credenciales[{i}].agencia",
                                        f"agencia desconocida {credencial.agencia!r} (no está en el catálogo)"))
        if credencial.token_sha256 in por_hash:
            errores.append(ErrorArchivo(archivo, linea_de(lineas, ("credenciales", i, "token_sha256")),
                                        f"credenciales[{i}].token_sha256", "token repetido"))
        por_hash[credencial.token_sha256] = credencial.agencia
    if errores:
        raise ArchivoInvalido(errores)
    return Credenciales(por_hash)


def token_demo(agencia: str) -> str:
    """El token de demostración de `despliegue/ingesta/credenciales.ejemplo.yaml` (público)."""
    return f"{PREFIJO_TOKEN}demo_{agencia}_SOLO_DESARROLLO_LOCAL"


def agencias_con_token_demo(credenciales: Credenciales, catalogo: Catalogo) -> list[str]:
    """Agencias que aceptan su token de demostración: la ingesta lo advierte al arrancar,
    porque ese token está publicado en docs/contrato.md."""
    return sorted(a for a in catalogo.agencias if credenciales.agencia_de(token_demo(a)) == a)


def entrada_yaml(agencia: str, token: str, descripcion: str = "") -> str:
    """La entrada de la lista `credenciales:` para un token (solo su hash)."""
    entrada = f"  - {{agencia: {agencia}, token_sha256: {hash_token(token)}"
    if descripcion:
        escapada = descripcion.replace("\\", "\\\\").replace('"', '\\"')
        entrada += f', descripcion: "{escapada}"'
    return entrada + "}"


def _principal(argumentos: list[str]) -> int:
    analizador = argparse.ArgumentParser(
        prog="python -m servicios.ingesta.credenciales",
        description="Credenciales de la ingesta gRPC (tokens por agencia).",
    )
    ordenes = analizador.add_subparsers(dest="orden", required=True, metavar="ORDEN")
    nueva = ordenes.add_parser("nueva", help="crea un token para una agencia y muestra la entrada del archivo",
                               description="Crea un token aleatorio para AGENCIA. El token se muestra una "
                                           "sola vez; en el archivo de credenciales va solo su hash.")
    nueva.add_argument("agencia", metavar="AGENCIA", help="id de la agencia en el catálogo (p. ej. reniec)")
    nueva.add_argument("--descripcion", default="", help="qué sistema usará el token (queda en el archivo)")
    nueva.add_argument("--catalogo", default="despliegue/catalogo.yaml",
                       help="catálogo donde debe existir la agencia (por defecto %(default)s)")
    opciones = analizador.parse_args(argumentos)

    from servicios.comun.catalogo import cargar_catalogo

    try:
        catalogo = cargar_catalogo(opciones.catalogo)
    except ArchivoInvalido as error:
        print(f"catálogo inválido:\n{error}", file=sys.stderr)
        return 2
    if opciones.agencia not in catalogo.agencias:
        conocidas = ", ".join(sorted(catalogo.agencias))
        print(f"agencia desconocida {opciones.agencia!r}; las del catálogo son: {conocidas}", file=sys.stderr)
        return 2
    token = nuevo_token()
    print(f"Token de la agencia {opciones.agencia} (se muestra solo esta vez; guárdelo en el gestor "
          "de secretos del sistema emisor):")
    print(f"  {token}")
    print()
    print("Agregue esta entrada a la lista 'credenciales:' del archivo GPR_INGESTA_CREDENCIALES "
          "y recargue la ingesta (SIGHUP) o reiníciela:")
    print(entrada_yaml(opciones.agencia, token, opciones.descripcion))
    print()
    print("El sistema emisor lo envía en cada llamada como metadato gRPC: "
          "authorization: Bearer <token>")
    return 0


if __name__ == "__main__":
    sys.exit(_principal(sys.argv[1:]))
