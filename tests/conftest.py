"""Accesorios compartidos: el broker Kafka (embebido, o el de GPR_KAFKA_BOOTSTRAP)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from servicios.comun.broker import broker_kafka, morir_con_el_padre

RAIZ = Path(__file__).resolve().parent.parent
CATALOGO = RAIZ / "despliegue" / "catalogo.yaml"

# «Ahora» de las pruebas que no corren un servicio real: un instante fijo (2026-06-17 15:00
# UTC), no el reloj de pared, para que lo esperado no dependa del día en que se corren (los
# meses que caben en una ventana, los días del mes…). Las que cruzan meses construyen sus
# fechas a partir de él.
AHORA = 1_781_708_400


@pytest.fixture
def bootstrap(tmp_path):
    """Un broker embebido nuevo por prueba (arranca en ~0,1 s), así los tópicos del contrato
    empiezan vacíos. Con GPR_KAFKA_BOOTSTRAP se usa ese broker, que debe estar vacío."""
    registro = tmp_path / "tansu.log"
    with broker_kafka(os.environ.get("GPR_KAFKA_BOOTSTRAP"), registro=registro) as direccion:
        yield direccion


@pytest.fixture
def sufijo() -> str:
    """Sufijo único para nombres de grupos y aplicaciones de una prueba."""
    return uuid.uuid4().hex[:8]


class Procesos:
    """Lanza servicios como subprocesos (`python -m servicios.X`) y los detiene al final."""

    def __init__(self, directorio: Path):
        self._directorio = directorio
        self._procesos: list[tuple[str, subprocess.Popen]] = []

    def lanzar(self, modulo: str, env: dict[str, str], nombre: str | None = None) -> subprocess.Popen:
        nombre = nombre or modulo.rsplit(".", 1)[-1]
        registro = open(self._directorio / f"{nombre}.log", "ab")
        proceso = subprocess.Popen(
            [sys.executable, "-m", modulo],
            env={**os.environ, **env},
            stdout=registro,
            stderr=subprocess.STDOUT,
            cwd=RAIZ,
            preexec_fn=morir_con_el_padre(),
        )
        self._procesos.append((nombre, proceso))
        return proceso

    def registro(self, nombre: str) -> str:
        ruta = self._directorio / f"{nombre}.log"
        return ruta.read_text(errors="replace") if ruta.exists() else ""

    def detener_todos(self) -> None:
        for _, proceso in reversed(self._procesos):
            if proceso.poll() is None:
                proceso.send_signal(signal.SIGTERM)
        for _, proceso in self._procesos:
            try:
                proceso.wait(10)
            except subprocess.TimeoutExpired:
                proceso.kill()
                proceso.wait()


@pytest.fixture
def procesos(tmp_path):
    gestor = Procesos(tmp_path)
    yield gestor
    gestor.detener_todos()
