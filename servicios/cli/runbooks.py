"""`gpr runbooks`: sirve los runbooks de despliegue/runbooks/ como páginas HTML.

Los enlaces `runbook_url` de las alertas apuntan a GPR_RUNBOOKS_URL; por omisión, a este
servidor (`http://localhost:8099/runbooks/`), que corre en `make run` y en docker-compose.yml.
Si su organización publica los runbooks en otro sitio (su wiki, el portal), apunte allí
GPR_RUNBOOKS_URL y no necesita este servidor. Markdown → HTML con markdown-it-py (CommonMark, el
mismo que usa rich) y las anclas de los títulos con su plugin `anchors`, como las arma GitHub:
así `vigilancia.md#watchdog` abre en la sección.
"""

from __future__ import annotations

import html
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PREFIJO = "/runbooks/"


def renderizar(texto: str, titulo: str) -> bytes:
    from markdown_it import MarkdownIt
    from mdit_py_plugins.anchors import anchors_plugin

    md = MarkdownIt("commonmark").enable("table").use(anchors_plugin, min_level=1, max_level=4)
    return (f'<!DOCTYPE html>\n<html lang="es"><head><meta charset="utf-8"><title>{html.escape(titulo)}</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<style>body{font-family:sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem;line-height:1.5}'
            'table{border-collapse:collapse}td,th{border:1px solid #999;padding:.2rem .5rem}'
            'code{background:#eee}</style></head>\n<body><main>\n'
            f'{md.render(texto)}</main></body></html>\n').encode()


class ServidorRunbooks:
    def __init__(self, carpeta: str | Path, host: str = "127.0.0.1", puerto: int = 8099):
        self.carpeta = Path(carpeta)
        self._direccion = (host, puerto)
        self._servidor: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        host, puerto = self._servidor.server_address[:2] if self._servidor else self._direccion
        return f"http://{host}:{puerto}{PREFIJO}"

    def _manejador(self):
        carpeta = self.carpeta

        class Manejador(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (API de http.server)
                ruta = self.path.split("?", 1)[0].split("#", 1)[0]
                if ruta in ("/", PREFIJO.rstrip("/")):
                    self.send_response(302)
                    self.send_header("Location", PREFIJO)
                    self.end_headers()
                    return
                if ruta == PREFIJO:
                    enlaces = "".join(f'- [{p.stem}]({p.name})\n' for p in sorted(carpeta.glob("*.md")))
                    self._responder(200, renderizar(f"# Runbooks de GpR Monitor\n\n{enlaces}", "Runbooks"))
                    return
                nombre = ruta.removeprefix(PREFIJO)
                # Solo archivos .md de la carpeta, sin subcarpetas ni rutas relativas.
                archivo = carpeta / nombre
                if (not ruta.startswith(PREFIJO) or not re.fullmatch(r"[\w.-]+\.md", nombre)
                        or not archivo.is_file()):
                    self._responder(404, renderizar(f"# No existe\n\n`{nombre}` no es un runbook. "
                                                    f"[Ver todos]({PREFIJO})", "No existe"))
                    return
                self._responder(200, renderizar(archivo.read_text(encoding="utf-8"), archivo.stem))

            def _responder(self, codigo: int, cuerpo: bytes) -> None:
                self.send_response(codigo)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(cuerpo)))
                self.end_headers()
                self.wfile.write(cuerpo)

            def log_message(self, *_args):
                pass

        return Manejador

    def iniciar(self) -> "ServidorRunbooks":
        self._servidor = ThreadingHTTPServer(self._direccion, self._manejador())
        threading.Thread(target=self._servidor.serve_forever, name="runbooks", daemon=True).start()
        return self

    def servir(self) -> None:
        self._servidor = ThreadingHTTPServer(self._direccion, self._manejador())
        self._servidor.serve_forever()

    def detener(self) -> None:
        if self._servidor is not None:
            self._servidor.shutdown()
            self._servidor.server_close()
            self._servidor = None
