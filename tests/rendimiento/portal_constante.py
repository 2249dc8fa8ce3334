"""Línea base del banco del portal: el mismo framework (Starlette servido por uvicorn, con la
misma configuración que `python -m servicios.portal`) respondiendo una página constante del
mismo tamaño que una del portal.

    python portal_constante.py PUERTO BYTES
"""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route


def main() -> None:
    puerto, tamano = int(sys.argv[1]), int(sys.argv[2])
    cuerpo = "<!doctype html><html lang=\"es\"><title>constante</title><p>" + "x" * max(0, tamano - 60) + "</p>"

    async def pagina(_request):
        return HTMLResponse(cuerpo)

    app = Starlette(routes=[Route("/{resto:path}", pagina)])
    uvicorn.run(app, host="127.0.0.1", port=puerto, log_level="warning", access_log=False, server_header=False)


if __name__ == "__main__":
    main()
