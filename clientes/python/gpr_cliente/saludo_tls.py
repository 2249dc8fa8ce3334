"""Un saludo TLS con plazo antes de entregarle la conexión a kafka-python.

Por qué: el saludo TLS de kafka-python 3.0 no tiene plazo. Contra un puerto que acepta la
conexión y no responde al saludo (un oyente sin TLS que espera más bytes, o algo en el medio
que retiene el tráfico) el cliente queda colgado para siempre, sin que valgan
`bootstrap_timeout_ms` ni `request_timeout_ms`. Con esta prueba se falla a tiempo y con la
causa (p. ej. CERTIFICATE_VERIFY_FAILED), que kafka-python resume como «Unable to bootstrap».
"""

from __future__ import annotations

import socket
import ssl


class SaludoTlsFallido(ConnectionError):
    """Ningún broker de arranque completó el saludo TLS; el mensaje dice qué pasó con cada uno."""


def comprobar_saludo_tls(bootstrap: str, contexto: ssl.SSLContext, plazo_s: float) -> None:
    """Completa un saludo TLS con algún broker de `bootstrap` (`host:puerto[,host:puerto…]`) o
    lanza `SaludoTlsFallido`."""
    errores = []
    for direccion in bootstrap.split(","):
        host, _, puerto = direccion.strip().rpartition(":")
        host = host.strip("[]")
        try:
            with socket.create_connection((host, int(puerto)), timeout=plazo_s) as crudo:
                crudo.settimeout(plazo_s)
                with contexto.wrap_socket(crudo, server_hostname=host):
                    return
        except socket.timeout:
            errores.append(f"{direccion}: el saludo TLS no terminó en {plazo_s:g} s (¿ese puerto habla TLS?)")
        except (OSError, ValueError) as error:
            errores.append(f"{direccion}: {error}")
    raise SaludoTlsFallido("; ".join(errores))


def contexto_de_opciones(opciones: dict) -> ssl.SSLContext:
    """El contexto TLS que usaría kafka-python con estas opciones de `KafkaProducer`: el
    `ssl_context` dado, o uno armado con `ssl_cafile`, `ssl_certfile`, `ssl_keyfile`…"""
    if opciones.get("ssl_context") is not None:
        return opciones["ssl_context"]
    contexto = ssl.create_default_context(cafile=opciones.get("ssl_cafile"))
    if opciones.get("ssl_certfile"):
        contexto.load_cert_chain(opciones["ssl_certfile"], opciones.get("ssl_keyfile"), opciones.get("ssl_password"))
    if opciones.get("ssl_check_hostname") is False:
        contexto.check_hostname = False
    return contexto
