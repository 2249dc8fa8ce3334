"""Kafka con TLS (y TLS mutuo) para las pruebas: el broker embebido detrás de un frente TLS.

Tansu 0.6.0 acepta `--cert`/`--key` pero su oyente sigue en TCP sin cifrar (medido: el saludo
TLS de un cliente queda sin respuesta hasta su plazo; el problema está abierto en el
proyecto). Para probar de verdad la configuración TLS de nuestros clientes, un frente con el
módulo `ssl` de la biblioteca estándar (OpenSSL) termina TLS y pasa los bytes a Tansu, que
anuncia en sus metadatos la dirección del frente: toda conexión de un cliente, la de arranque
y las que abre tras leer los metadatos, va cifrada y verifica el certificado del broker (y el
frente, si se le da una CA de clientes, exige el del cliente).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import trustme

from servicios.comun.broker import BrokerEmbebido, puerto_libre


@dataclass(frozen=True)
class Certificados:
    """PEM en disco: la CA, el certificado del broker (127.0.0.1 y localhost) y uno de cliente."""

    ca: Path
    broker_cert: Path
    broker_clave: Path
    cliente_cert: Path
    cliente_clave: Path


def generar_certificados(directorio: Path, nombre: str = "ca") -> Certificados:
    ca = trustme.CA()
    servidor = ca.issue_cert("127.0.0.1", "localhost")
    cliente = ca.issue_cert("gpr-cliente@pruebas")
    directorio.mkdir(parents=True, exist_ok=True)
    rutas = Certificados(*(directorio / f"{nombre}-{p}.pem" for p in
                           ("ca", "broker-cert", "broker-clave", "cliente-cert", "cliente-clave")))
    ca.cert_pem.write_to_path(str(rutas.ca))
    with open(rutas.broker_cert, "wb") as f:
        for pem in servidor.cert_chain_pems:
            f.write(pem.bytes())
    servidor.private_key_pem.write_to_path(str(rutas.broker_clave))
    with open(rutas.cliente_cert, "wb") as f:
        for pem in cliente.cert_chain_pems:
            f.write(pem.bytes())
    cliente.private_key_pem.write_to_path(str(rutas.cliente_clave))
    return rutas


class FrenteTLS:
    """Termina TLS en 127.0.0.1:`puerto` y pasa cada conexión a 127.0.0.1:`destino`."""

    def __init__(self, destino: int, certificados: Certificados, exigir_cliente: bool = False,
                 puerto: int | None = None):
        self.puerto = puerto or puerto_libre()
        self._destino = destino
        self._contexto = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._contexto.load_cert_chain(certificados.broker_cert, certificados.broker_clave)
        if exigir_cliente:
            self._contexto.verify_mode = ssl.CERT_REQUIRED
            self._contexto.load_verify_locations(certificados.ca)
        self._bucle: asyncio.AbstractEventLoop | None = None
        self._hilo: threading.Thread | None = None

    def iniciar(self) -> None:
        listo = threading.Event()
        self._bucle = asyncio.new_event_loop()

        def correr() -> None:
            asyncio.set_event_loop(self._bucle)
            servidor = self._bucle.run_until_complete(asyncio.start_server(
                self._atender, "127.0.0.1", self.puerto, ssl=self._contexto, ssl_handshake_timeout=10))
            listo.set()
            try:
                self._bucle.run_forever()
            finally:
                servidor.close()
                with contextlib.suppress(Exception):
                    self._bucle.run_until_complete(servidor.wait_closed())
                self._bucle.close()

        self._hilo = threading.Thread(target=correr, name="frente-tls", daemon=True)
        self._hilo.start()
        if not listo.wait(10):
            raise RuntimeError("el frente TLS no arrancó")
        # Un saludo fallido (cliente sin TLS, sin certificado) es un rechazo esperado, no un error.
        self._bucle.set_exception_handler(lambda _bucle, _contexto: None)

    async def _atender(self, lector: asyncio.StreamReader, escritor: asyncio.StreamWriter) -> None:
        try:
            destino_lector, destino_escritor = await asyncio.open_connection("127.0.0.1", self._destino)
        except OSError:
            escritor.close()
            return

        async def copiar(de: asyncio.StreamReader, a: asyncio.StreamWriter) -> None:
            try:
                while datos := await de.read(65536):
                    a.write(datos)
                    await a.drain()
            except (OSError, ssl.SSLError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    a.close()

        await asyncio.gather(copiar(lector, destino_escritor), copiar(destino_lector, escritor))

    def detener(self) -> None:
        if self._bucle is not None and self._hilo is not None:
            self._bucle.call_soon_threadsafe(self._bucle.stop)
            self._hilo.join(10)
        self._bucle = self._hilo = None


class KafkaConTLS:
    """Tansu (que anuncia el puerto del frente) + el frente TLS; `bootstrap` es el del frente."""

    def __init__(self, certificados: Certificados, registro: Path, exigir_cliente: bool = False,
                 autenticacion: bool = False):
        self.frente = FrenteTLS(puerto_libre(), certificados, exigir_cliente)
        self.broker = BrokerEmbebido(puerto=self.frente._destino, registro=registro, anunciado=self.frente.puerto,
                                     autenticacion=autenticacion)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.frente.puerto}"

    def __enter__(self) -> "KafkaConTLS":
        self.broker.iniciar()
        try:
            self.frente.iniciar()
        except BaseException:
            self.broker.detener()
            raise
        return self

    def __exit__(self, *_exc) -> None:
        self.frente.detener()
        self.broker.detener()
