"""Configuración del portal, leída una vez del entorno (`GPR_PORTAL_*` y `GPR_CATALOGO`).

| Variable | Por omisión | Qué es |
|---|---|---|
| `GPR_PORTAL_CONSULTA` | `127.0.0.1:50051` | dirección gRPC de la API `Indicadores` |
| `GPR_PORTAL_CONSULTA_TOKEN` | (ninguno) | token que se manda como `authorization: Bearer …` |
| `GPR_PORTAL_CONSULTA_TLS_CA` | (ninguna) | CA en PEM: si está, el canal es TLS y verifica con ella |
| `GPR_PORTAL_HOST`, `GPR_PORTAL_PUERTO` | `0.0.0.0`, `8080` | dónde escucha HTTP (0: puerto libre) |
| `GPR_PORTAL_CACHE` | `5` | segundos que vale una lectura de la API (`5`, `0.5` o `5s`) |
| `GPR_PORTAL_MUESTRA_MINIMA` | `10` | casos mínimos para publicar un valor |
| `GPR_PORTAL_LICENCIA` | `CC-BY-4.0` | licencia de los datos abiertos (identificador SPDX) |
| `GPR_PORTAL_LICENCIA_URL` | (la de la licencia) | URL del texto de una licencia que el portal no conoce |
| `GPR_PORTAL_AHORA` | (el reloj del sistema) | instante fijo ISO 8601 (demos y pruebas): «este mes» |
| `GPR_PORTAL_PLAZO_RPC` | `5` | segundos de plazo de cada llamada a la API |
| `GPR_PORTAL_GRACIA` | `10s` | espera de las peticiones en curso al detenerse |
| `GPR_CATALOGO` | `despliegue/catalogo.yaml` | nombres de agencias y servicios, zona horaria y moneda |
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from servicios.comun import config as c
from servicios.comun.tiempo import DuracionInvalida, parsear_duracion
from servicios.portal.datos_abiertos import LICENCIAS

_LICENCIA = re.compile(r"^[A-Za-z0-9.+-]{1,64}$")


@dataclass(frozen=True)
class ConfigPortal:
    consulta: str = "127.0.0.1:50051"
    host: str = "0.0.0.0"
    puerto: int = 8080
    catalogo: str = "despliegue/catalogo.yaml"
    cache_s: float = 5.0
    muestra_minima: int = 10
    licencia: str = "CC-BY-4.0"
    licencia_url: str = ""
    token: str | None = None
    tls_ca: bytes | None = None
    ahora: datetime | None = None
    plazo_rpc_s: float = 5.0
    gracia_s: int = 10


def _segundos(env: Mapping[str, str], nombre: str, defecto: float) -> float:
    crudo = env.get(nombre, "").strip()
    if not crudo:
        return defecto
    try:
        valor = float(crudo)
    except ValueError:
        try:
            valor = float(parsear_duracion(crudo))
        except DuracionInvalida:
            raise c.ConfiguracionInvalida(f"{nombre}={crudo!r} no es una duración (ejemplos: 5, 0.5, 5s, 1m)") from None
    if valor < 0:
        raise c.ConfiguracionInvalida(f"{nombre}={crudo!r} no puede ser negativo")
    return valor


def _instante(env: Mapping[str, str], nombre: str) -> datetime | None:
    crudo = env.get(nombre, "").strip()
    if not crudo:
        return None
    try:
        instante = datetime.fromisoformat(crudo.replace("Z", "+00:00"))
    except ValueError:
        raise c.ConfiguracionInvalida(f"{nombre}={crudo!r} no es un instante ISO 8601 "
                                      "(ejemplo: 2026-06-17T15:00:00Z)") from None
    if instante.tzinfo is None:
        raise c.ConfiguracionInvalida(f"{nombre}={crudo!r} debe decir su zona horaria (por ejemplo, Z)")
    return instante.astimezone(timezone.utc)


def _archivo(env: Mapping[str, str], nombre: str) -> bytes | None:
    ruta = c.texto_opcional(env, nombre)
    if ruta is None:
        return None
    try:
        contenido = Path(ruta).read_bytes()
    except OSError as error:
        raise c.ConfiguracionInvalida(f"{nombre}={ruta!r}: no se puede leer ({error.strerror})") from None
    if b"-----BEGIN CERTIFICATE-----" not in contenido:
        raise c.ConfiguracionInvalida(f"{nombre}={ruta!r}: no contiene un certificado PEM")
    return contenido


def leer(env: Mapping[str, str]) -> ConfigPortal:
    licencia = c.texto(env, "GPR_PORTAL_LICENCIA", "CC-BY-4.0")
    if not _LICENCIA.match(licencia):
        raise c.ConfiguracionInvalida(f"GPR_PORTAL_LICENCIA={licencia!r} no es un identificador de licencia "
                                      "(ejemplos: CC-BY-4.0, CC0-1.0)")
    licencia_url = c.texto(env, "GPR_PORTAL_LICENCIA_URL", "")
    if licencia not in LICENCIAS and not licencia_url:
        raise c.ConfiguracionInvalida(f"GPR_PORTAL_LICENCIA={licencia!r} no es una de {', '.join(LICENCIAS)}: "
                                      "indique también GPR_PORTAL_LICENCIA_URL con la URL de su texto")
    if licencia_url and not licencia_url.startswith(("https://", "http://")):
        raise c.ConfiguracionInvalida(f"GPR_PORTAL_LICENCIA_URL={licencia_url!r} debe ser una URL http(s)")
    return ConfigPortal(
        consulta=c.texto(env, "GPR_PORTAL_CONSULTA", "127.0.0.1:50051"),
        host=c.texto(env, "GPR_PORTAL_HOST", "0.0.0.0"),
        puerto=c.puerto(env, "GPR_PORTAL_PUERTO", 8080),
        catalogo=c.texto(env, "GPR_CATALOGO", "despliegue/catalogo.yaml"),
        cache_s=_segundos(env, "GPR_PORTAL_CACHE", 5.0),
        muestra_minima=c.entero(env, "GPR_PORTAL_MUESTRA_MINIMA", 10, minimo=1),
        licencia=licencia,
        licencia_url=licencia_url,
        token=c.texto_opcional(env, "GPR_PORTAL_CONSULTA_TOKEN"),
        tls_ca=_archivo(env, "GPR_PORTAL_CONSULTA_TLS_CA"),
        ahora=_instante(env, "GPR_PORTAL_AHORA"),
        plazo_rpc_s=_segundos(env, "GPR_PORTAL_PLAZO_RPC", 5.0) or 5.0,
        gracia_s=c.duracion(env, "GPR_PORTAL_GRACIA", "10s"),
    )
