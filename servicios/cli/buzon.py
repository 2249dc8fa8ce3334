"""Buzón local de notificaciones: un servidor SMTP (aiosmtpd) y un receptor HTTP de webhooks.

Para `make run` (Alertmanager notifica aquí y se puede ver qué envió, sin un servidor de correo
ni un sistema de tickets reales) y para las pruebas de punta a punta. Guarda cada correo y cada
webhook en memoria y, si se le da una carpeta, también como archivo (`NNN-correo.eml`,
`NNN-webhook-<ruta>.json`). `GET /` lista lo recibido.
"""

from __future__ import annotations

import email
import email.policy
import json
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# Un webhook de Alertmanager con muchas alertas ocupa decenas de KB; nada legítimo se acerca a esto.
BYTES_MAXIMOS = 4 * 1024 * 1024


@dataclass(frozen=True)
class Webhook:
    ruta: str
    cuerpo: dict
    recibido: float


@dataclass(frozen=True)
class Correo:
    mensaje: EmailMessage
    destinatarios: tuple[str, ...]
    recibido: float

    @property
    def asunto(self) -> str:
        return str(self.mensaje["Subject"] or "")

    def texto(self) -> str:
        parte = self.mensaje.get_body(preferencelist=("plain",))
        return parte.get_content() if parte is not None else ""

    def html(self) -> str:
        parte = self.mensaje.get_body(preferencelist=("html",))
        return parte.get_content() if parte is not None else ""


class Buzon:
    def __init__(self, directorio: str | Path | None = None, host: str = "127.0.0.1",
                 puerto_smtp: int = 0, puerto_http: int = 0):
        self.directorio = Path(directorio) if directorio is not None else None
        self.host = host
        self._puerto_smtp = puerto_smtp
        self._puerto_http = puerto_http
        self._cerrojo = threading.Lock()
        self._correos: list[Correo] = []
        self._webhooks: list[Webhook] = []
        self._smtp = None
        self._http: ThreadingHTTPServer | None = None

    # --- lo recibido ---------------------------------------------------------------------------

    def correos(self) -> list[Correo]:
        with self._cerrojo:
            return list(self._correos)

    def webhooks(self, ruta: str | None = None) -> list[Webhook]:
        with self._cerrojo:
            return [w for w in self._webhooks if ruta is None or w.ruta == ruta]

    def _guardar(self, elemento, nombre: str, contenido: bytes) -> None:
        with self._cerrojo:
            (self._correos if isinstance(elemento, Correo) else self._webhooks).append(elemento)
            numero = len(self._correos) + len(self._webhooks)
        if self.directorio is not None:
            self.directorio.mkdir(parents=True, exist_ok=True)
            (self.directorio / f"{numero:04d}-{nombre}").write_bytes(contenido)

    # --- direcciones ---------------------------------------------------------------------------

    @property
    def smtp(self) -> str:
        return f"{self.host}:{self.puerto_smtp}"

    def url(self, ruta: str = "") -> str:
        return f"http://{self.host}:{self.puerto_http}/{ruta}"

    # --- servidores ----------------------------------------------------------------------------

    def iniciar(self) -> "Buzon":
        from aiosmtpd.controller import Controller

        from servicios.comun.broker import puerto_libre

        buzon = self

        class Manejador:
            async def handle_DATA(self, servidor, sesion, sobre):  # noqa: N802 (API de aiosmtpd)
                mensaje = email.message_from_bytes(sobre.original_content or sobre.content,
                                                   policy=email.policy.default)
                buzon._guardar(Correo(mensaje, tuple(sobre.rcpt_tos), time.time()), "correo.eml",
                               sobre.original_content or sobre.content)
                return "250 OK"

        # aiosmtpd comprueba que el servidor responde conectándose a su puerto: necesita uno fijo.
        self.puerto_smtp = self._puerto_smtp or puerto_libre()
        self._smtp = Controller(Manejador(), hostname=self.host, port=self.puerto_smtp)
        self._smtp.start()

        class Http(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (API de http.server)
                largo = int(self.headers.get("Content-Length") or 0)
                if largo > BYTES_MAXIMOS:
                    self.send_error(413, "demasiado grande")
                    return
                crudo = self.rfile.read(largo)
                try:
                    cuerpo = json.loads(crudo)
                except ValueError:
                    self.send_error(400, "se esperaba JSON")
                    return
                ruta = self.path.strip("/") or "webhook"
                buzon._guardar(Webhook(ruta, cuerpo, time.time()), f"webhook-{ruta.replace('/', '_')}.json", crudo)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):  # noqa: N802
                lineas = [f"Buzón de GpR Monitor: {len(buzon.correos())} correos (SMTP {buzon.smtp}) y "
                          f"{len(buzon.webhooks())} webhooks.", ""]
                for c in reversed(buzon.correos()):
                    lineas.append(f"{time.strftime('%H:%M:%S', time.localtime(c.recibido))} correo a "
                                  f"{', '.join(c.destinatarios)}: {c.asunto}")
                for w in reversed(buzon.webhooks()):
                    alertas = ", ".join(a.get("labels", {}).get("alertname", "?") for a in w.cuerpo.get("alerts", []))
                    lineas.append(f"{time.strftime('%H:%M:%S', time.localtime(w.recibido))} webhook /{w.ruta} "
                                  f"({w.cuerpo.get('receiver')}, {w.cuerpo.get('status')}): {alertas}")
                cuerpo = ("\n".join(lineas) + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(cuerpo)))
                self.end_headers()
                self.wfile.write(cuerpo)

            def log_message(self, *_args):
                pass

        self._http = ThreadingHTTPServer((self.host, self._puerto_http), Http)
        self.puerto_http = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, name="buzon-http", daemon=True).start()
        return self

    def detener(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._smtp is not None:
            self._smtp.stop()
            self._smtp = None

    def __enter__(self) -> "Buzon":
        return self.iniciar()

    def __exit__(self, *_exc) -> None:
        self.detener()
