"""Servidor HTTP de /metrics de la consulta que escribe la exposición en trozos, sin armarla entera.

`prometheus_client.start_http_server` arma todo el texto en memoria antes de enviarlo (y
otra copia comprimida): con 1,2 millones de series son cientos de MB por raspado, más de lo
que ocupa la vista. Aquí cada familia se codifica y se envía (con gzip en flujo si el
cliente lo acepta) una tras otra: las `FamiliaRapida` línea a línea con su propio
formateador, el resto con el codificador de `prometheus_client`, familia por familia. El
formato se negocia como en `prometheus_client` (`choose_encoder`: texto 0.0.4 u
OpenMetrics), con las mismas cabeceras HELP/TYPE, porque las escribe su codificador.
"""

from __future__ import annotations

import socket
import threading
import zlib
from collections.abc import Iterator
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import Collector

from servicios.consulta.metricas import FamiliaRapida

_FIN_OPENMETRICS = b"# EOF\n"
# Se envía a la red cada vez que se juntan ~256 KB: pocas llamadas y memoria acotada.
_TAMANO_ENVIO = 256 * 1024


class _Una(Collector):
    """Registro de una sola familia, para pasarla al codificador de `prometheus_client`."""

    def __init__(self, familia):
        self._familia = familia

    def collect(self):
        yield self._familia


def exposicion(registro: Collector, encoder) -> Iterator[bytes]:
    """El texto de exposición de `registro` en trozos, con el codificador `encoder`."""
    openmetrics = False
    for familia in registro.collect():
        if isinstance(familia, FamiliaRapida):
            cabecera = encoder(_Una(familia.vacia()))
        else:
            cabecera = encoder(_Una(familia))
        if cabecera.endswith(_FIN_OPENMETRICS):
            # OpenMetrics cierra cada salida con "# EOF": va una sola vez, al final de todo.
            openmetrics = True
            cabecera = cabecera[:-len(_FIN_OPENMETRICS)]
        yield cabecera
        if isinstance(familia, FamiliaRapida):
            for trozo in familia.lineas():
                yield trozo.encode("utf-8")
    if openmetrics:
        yield _FIN_OPENMETRICS


def _agrupar(trozos: Iterator[bytes], comprimir: bool) -> Iterator[bytes]:
    compresor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS) if comprimir else None
    pendiente: list[bytes] = []
    tamano = 0
    for trozo in trozos:
        if compresor is not None:
            trozo = compresor.compress(trozo)
        if trozo:
            pendiente.append(trozo)
            tamano += len(trozo)
        if tamano >= _TAMANO_ENVIO:
            yield b"".join(pendiente)
            pendiente, tamano = [], 0
    if compresor is not None:
        pendiente.append(compresor.flush())
    if pendiente:
        yield b"".join(pendiente)


def crear_app(registro: Collector):
    """Aplicación WSGI de /metrics (cualquier ruta, como `prometheus_client`)."""

    def app(environ, start_response):
        metodo = environ["REQUEST_METHOD"]
        if metodo == "OPTIONS":
            start_response("200 OK", [("Allow", "OPTIONS,GET")])
            return [b""]
        if metodo != "GET":
            start_response("405 Method Not Allowed", [("Allow", "OPTIONS,GET")])
            return [b"Method Not Allowed"]
        if environ.get("PATH_INFO") == "/favicon.ico":
            start_response("200 OK", [])
            return [b""]
        encoder, tipo = choose_encoder(environ.get("HTTP_ACCEPT"))
        comprimir = gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING"))
        cabeceras = [("Content-Type", tipo)]
        if comprimir:
            cabeceras.append(("Content-Encoding", "gzip"))
        # Sin Content-Length: el cuerpo termina al cerrar la conexión (wsgiref atiende una
        # petición por conexión), así se envía a medida que se escribe.
        start_response("200 OK", cabeceras)
        return _agrupar(exposicion(registro, encoder), comprimir)

    return app


class _Silencioso(WSGIRequestHandler):
    def log_message(self, format, *args):
        """Un raspado cada 15 s no merece una línea de registro."""


class _ServidorHilos(ThreadingMixIn, WSGIServer):
    # Hilos "dispara y olvida": ThreadingMixIn no acumula los hilos terminados.
    daemon_threads = True


def servir_metricas(puerto: int, host: str, registro: Collector) -> tuple[WSGIServer, threading.Thread]:
    """Como `prometheus_client.start_http_server`: servidor en un hilo demonio y ese hilo."""
    familia, _, _, _, direccion = next(iter(socket.getaddrinfo(
        host, puerto, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)))

    class Servidor(_ServidorHilos):
        address_family = familia

    servidor = make_server(direccion[0], puerto, crear_app(registro), Servidor, handler_class=_Silencioso)
    hilo = threading.Thread(target=servidor.serve_forever, name="gpr-metricas", daemon=True)
    hilo.start()
    return servidor, hilo
