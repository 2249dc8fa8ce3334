"""Canales de notificación de Alertmanager desde el entorno (puro: sin E/S salvo leer secretos).

Alertmanager no expande variables de entorno en su configuración, y las direcciones de cada
agencia (su sistema de tickets, su chat, sus correos) no van en el repositorio. Así que la
configuración efectiva se genera al arrancar (`gpr alertmanager configurar`): la versionada
(`despliegue/alertmanager/alertmanager.yml`: rutas, receptores sin canales, inhibiciones,
plantillas) más los canales que dicen estas variables:

* `GPR_ALERTAS_WEBHOOK_<R>`: URL a la que Alertmanager envía su JSON (sistema de tickets,
  chat con un adaptador, receptor de latidos). `GPR_ALERTAS_WEBHOOK_<R>_ARCHIVO`: la misma URL
  leída de un archivo (un Secret), para URL con credenciales.
* `GPR_ALERTAS_CORREO_<R>`: direcciones de correo separadas por comas.

`<R>` es el nombre de un receptor en mayúsculas y con `_` por `-` (`REGISTROS_GUARDIA`), el de
un equipo (`REGISTROS`: sus receptores de guardia y de tickets) o `TODOS` (todo receptor sin
canal propio, salvo `latido`). Lo más específico gana. El correo sale por el servidor SMTP de
`GPR_SMTP_SERVIDOR` (host:puerto), con remitente `GPR_SMTP_REMITENTE`, usuario
`GPR_SMTP_USUARIO` y clave en el archivo `GPR_SMTP_CLAVE_ARCHIVO`; `GPR_SMTP_TLS=no` solo para
un servidor local sin STARTTLS.

Un nombre de variable que no corresponde a ningún receptor es un error, no algo que se ignora:
un error de tipeo dejaría a un equipo sin avisos sin que nadie lo note.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PREFIJO = "GPR_ALERTAS_"
TODOS = "TODOS"
LATIDO = "latido"
SUFIJOS_EQUIPO = ("-guardia", "-tickets")
VARIABLES_SMTP = ("GPR_SMTP_SERVIDOR", "GPR_SMTP_REMITENTE", "GPR_SMTP_USUARIO", "GPR_SMTP_CLAVE_ARCHIVO",
                  "GPR_SMTP_TLS")

# Plantillas de despliegue/alertmanager/plantillas/gpr.tmpl.
CORREO = {
    "headers": {"Subject": '{{ template "gpr.correo.asunto" . }}'},
    "html": '{{ template "gpr.correo.html" . }}',
    "text": '{{ template "gpr.correo.texto" . }}',
}


class CanalesInvalidos(ValueError):
    """Variables de canales mal formadas; el mensaje nombra cada variable."""

    def __init__(self, errores: list[str]):
        super().__init__("\n".join(errores))
        self.errores = errores


@dataclass
class Canales:
    """Lo que recibe un receptor."""

    webhooks: list[str] = field(default_factory=list)
    correos: list[str] = field(default_factory=list)
    # De qué variable salió cada canal (para el resumen: nunca se muestra la URL, puede tener un token).
    origen: list[str] = field(default_factory=list)


def clave(nombre: str) -> str:
    """Nombre de un receptor o equipo tal como va en una variable: `registros-guardia` → `REGISTROS_GUARDIA`."""
    return re.sub(r"[^A-Za-z0-9]", "_", nombre).upper()


def _equipo(receptor: str) -> str | None:
    for sufijo in SUFIJOS_EQUIPO:
        if receptor.endswith(sufijo):
            return receptor[: -len(sufijo)]
    return None


def _es_url(valor: str) -> bool:
    return re.fullmatch(r"https?://[^\s/?#]+(?:[/?#]\S*)?", valor) is not None


def canales_del_entorno(receptores: list[str], env: Mapping[str, str],
                        leer_archivo: Callable[[str], str] = lambda r: Path(r).read_text(encoding="utf-8"),
                        ) -> dict[str, Canales]:
    """Canales de cada receptor según GPR_ALERTAS_*; CanalesInvalidos con todos los errores."""
    errores: list[str] = []
    por_clave = {clave(r): r for r in receptores}
    equipos = {clave(e): e for e in filter(None, map(_equipo, receptores))}
    webhooks: dict[str, tuple[str, str]] = {}  # clave → (url, variable)
    correos: dict[str, tuple[list[str], str]] = {}
    for variable in sorted(v for v in env if v.startswith(PREFIJO)):
        valor = env[variable].strip()
        m = re.fullmatch(PREFIJO + r"(WEBHOOK|CORREO)_(\w+?)(_ARCHIVO)?", variable)
        if not m:
            errores.append(f"{variable}: variable desconocida (use {PREFIJO}WEBHOOK_<RECEPTOR>, "
                           f"{PREFIJO}WEBHOOK_<RECEPTOR>_ARCHIVO o {PREFIJO}CORREO_<RECEPTOR>)")
            continue
        tipo, destino, archivo = m.groups()
        if destino not in por_clave and destino not in equipos and destino != TODOS:
            validos = ", ".join(sorted(set(por_clave) | set(equipos) | {TODOS}))
            errores.append(f"{variable}: {destino} no es un receptor ni un equipo de Alertmanager ({validos})")
            continue
        if not valor:
            continue
        if tipo == "CORREO":
            if archivo:
                errores.append(f"{variable}: las direcciones de correo no son secretas; use {PREFIJO}CORREO_{destino}")
                continue
            direcciones = [d.strip() for d in valor.split(",") if d.strip()]
            malas = [d for d in direcciones if not re.fullmatch(r"[^@\s,<>]+@[^@\s,<>]+\.[^@\s,<>]+", d)]
            if malas or not direcciones:
                errores.append(f"{variable}: dirección de correo inválida: {', '.join(malas) or repr(valor)}")
                continue
            correos[destino] = (direcciones, variable)
            continue
        if destino in webhooks:
            errores.append(f"{variable}: {webhooks[destino][1]} ya define el webhook de {destino}; use solo una")
            continue
        if archivo:
            try:
                url = leer_archivo(valor).strip()
            except OSError as error:
                errores.append(f"{variable}={valor}: no se puede leer ({error.strerror or error})")
                continue
            if not _es_url(url):
                errores.append(f"{variable}={valor}: el archivo no contiene una URL http:// o https://")
                continue
        else:
            url = valor
            if not _es_url(url):
                # El valor no se repite: podría ser una URL con credenciales mal escrita.
                errores.append(f"{variable}: debe ser una URL http:// o https:// ({len(valor)} caracteres recibidos)")
                continue
        webhooks[destino] = (url, variable)
    if errores:
        raise CanalesInvalidos(errores)

    resultado = {}
    for receptor in receptores:
        niveles = [clave(receptor)]
        equipo = _equipo(receptor)
        if equipo:
            niveles.append(clave(equipo))
        if receptor != LATIDO:
            niveles.append(TODOS)
        canales = Canales()
        for tabla, lista in ((webhooks, canales.webhooks), (correos, canales.correos)):
            for nivel in niveles:
                if nivel in tabla:
                    valor, variable = tabla[nivel]
                    lista.extend(valor if isinstance(valor, list) else [valor])
                    canales.origen.append(variable)
                    break
        resultado[receptor] = canales
    return resultado


@dataclass(frozen=True)
class Smtp:
    servidor: str
    remitente: str
    usuario: str | None
    clave: str | None
    tls: bool


def smtp_del_entorno(env: Mapping[str, str],
                     leer_archivo: Callable[[str], str] = lambda r: Path(r).read_text(encoding="utf-8"),
                     ) -> Smtp | None:
    """Servidor SMTP de GPR_SMTP_*; None si no se configuró ninguno."""
    valores = {v: env.get(v, "").strip() for v in VARIABLES_SMTP}
    desconocidas = sorted(v for v in env if v.startswith("GPR_SMTP_") and v not in VARIABLES_SMTP)
    errores = [f"{v}: variable desconocida (las de SMTP son {', '.join(VARIABLES_SMTP)})" for v in desconocidas]
    if not any(valores.values()):
        if errores:
            raise CanalesInvalidos(errores)
        return None
    servidor = valores["GPR_SMTP_SERVIDOR"]
    if not re.fullmatch(r"[^\s:]+:\d{1,5}", servidor):
        errores.append(f"GPR_SMTP_SERVIDOR={servidor!r}: debe ser host:puerto (p. ej. smtp.agencia.gob:587)")
    remitente = valores["GPR_SMTP_REMITENTE"]
    if not re.fullmatch(r"[^@\s]+@[^@\s]+", remitente):
        errores.append(f"GPR_SMTP_REMITENTE={remitente!r}: debe ser una dirección de correo")
    tls = valores["GPR_SMTP_TLS"].lower() or "si"
    if tls not in ("si", "sí", "no"):
        errores.append(f"GPR_SMTP_TLS={tls!r}: debe ser si o no")
    clave_smtp = None
    if valores["GPR_SMTP_CLAVE_ARCHIVO"]:
        try:
            clave_smtp = leer_archivo(valores["GPR_SMTP_CLAVE_ARCHIVO"]).strip()
        except OSError as error:
            errores.append(f"GPR_SMTP_CLAVE_ARCHIVO={valores['GPR_SMTP_CLAVE_ARCHIVO']}: no se puede leer "
                           f"({error.strerror or error})")
        if clave_smtp is not None and not valores["GPR_SMTP_USUARIO"]:
            errores.append("GPR_SMTP_CLAVE_ARCHIVO está definida pero falta GPR_SMTP_USUARIO")
    if errores:
        raise CanalesInvalidos(errores)
    return Smtp(servidor, remitente, valores["GPR_SMTP_USUARIO"] or None, clave_smtp, tls != "no")


def receptores_de(base: dict) -> list[str]:
    return [r["name"] for r in base.get("receivers", [])]


def configurar(base: dict, env: Mapping[str, str], plantillas: str | None = None,
               leer_archivo: Callable[[str], str] = lambda r: Path(r).read_text(encoding="utf-8"),
               ) -> tuple[dict, dict[str, Canales]]:
    """La configuración de Alertmanager con los canales del entorno, y los canales de cada receptor.

    `plantillas`: carpeta donde Alertmanager verá las plantillas (las rutas relativas de
    `templates` se resuelven contra la carpeta del archivo de configuración, que al generarlo
    cambia de sitio).
    """
    canales = canales_del_entorno(receptores_de(base), env, leer_archivo)
    smtp = smtp_del_entorno(env, leer_archivo)
    con_correo = sorted(r for r, c in canales.items() if c.correos)
    if con_correo and smtp is None:
        variables = sorted({v for r in con_correo for v in canales[r].origen if "_CORREO_" in v})
        raise CanalesInvalidos([f"{', '.join(variables)}: hay destinatarios de correo pero falta el servidor "
                                "(GPR_SMTP_SERVIDOR y GPR_SMTP_REMITENTE)"])
    config = copy.deepcopy(base)
    if smtp is not None:
        global_ = config.setdefault("global", {})
        global_["smtp_smarthost"] = smtp.servidor
        global_["smtp_from"] = smtp.remitente
        global_["smtp_require_tls"] = smtp.tls
        if smtp.usuario:
            global_["smtp_auth_username"] = smtp.usuario
        if smtp.clave is not None:
            global_["smtp_auth_password"] = smtp.clave
    for receptor in config.get("receivers", []):
        propios = canales[receptor["name"]]
        # El latido no tiene resolución (Watchdog nunca se resuelve); el resto avisa también al resolverse.
        resuelta = receptor["name"] != LATIDO
        if propios.webhooks:
            receptor["webhook_configs"] = [{"url": url, "send_resolved": resuelta, "max_alerts": 0}
                                           for url in propios.webhooks]
        if propios.correos:
            receptor["email_configs"] = [{"to": ", ".join(propios.correos), "send_resolved": resuelta,
                                          **copy.deepcopy(CORREO)}]
    if plantillas is not None and config.get("templates"):
        config["templates"] = [str(Path(plantillas) / Path(t).name) for t in config["templates"]]
    return config, canales
