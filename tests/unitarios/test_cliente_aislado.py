"""La biblioteca cliente se importa sola, sin `servicios` en sys.path: como la tiene una agencia.

Cada prueba corre un intérprete aparte con `-S` (sin el site-packages del entorno, así no
cargan los .pth que ponen en la ruta el proyecto y gen/) y un PYTHONPATH con solo lo que la
agencia tendría: la biblioteca, el código de los protos y las dependencias de terceros."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

RAIZ = Path(__file__).resolve().parents[2]
# Terceros (protobuf, grpcio, kafka-python…): el directorio, sin procesar sus .pth.
TERCEROS = sysconfig.get_paths()["purelib"]

PROGRAMA = """
import importlib, sys
try:
    import servicios
except ModuleNotFoundError:
    pass
else:
    sys.exit("servicios se pudo importar: la prueba no aísla la biblioteca")
from datetime import datetime, timezone
import gpr_cliente
from gpr_cliente import Catalogo, Eventos, EventoInvalido, PublicadorKafka, PublicadorIngesta, ClienteIndicadores
from gpr.v1 import eventos_pb2
catalogo = Catalogo.de_agencia("sunarp", {"certificado-literal": ["mesa-de-partes", "emision"]})
eventos = Eventos(catalogo, "sunarp", "sistema", reloj=lambda: 1_781_708_400)
e = eventos.etapa_iniciada("certificado-literal", "EXP-1", "emision", datetime(2026, 6, 17, 14, tzinfo=timezone.utc))
assert e.etapa_id == "emision" and e.ocurrido_en.seconds == 1_781_704_800, e
try:
    eventos.etapa_iniciada("certificado-literal", "EXP-1", "firma", 1_781_704_800)
except EventoInvalido as error:
    assert (error.campo, error.motivo) == ("etapa_id", "etapa_desconocida"), error
else:
    sys.exit("una etapa desconocida no se rechazó")
print(gpr_cliente.__file__)
print(eventos_pb2.__file__)
print(",".join(sorted(m for m in sys.modules if m.split(".")[0] in ("servicios", "faust", "aiokafka"))))
"""


def _correr(ruta: list[Path | str], cwd: Path) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "GPR_"))}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in ruta)
    hecho = subprocess.run([sys.executable, "-S", "-c", PROGRAMA], env=env, cwd=cwd, capture_output=True,
                           text=True, timeout=120)
    assert hecho.returncode == 0, hecho.stderr + hecho.stdout
    return hecho.stdout.splitlines()


def test_desde_el_repositorio_con_gen(tmp_path):
    """En el repositorio: clientes/python y el código generado por `make proto` (gen/)."""
    biblioteca, protos, otros = _correr([RAIZ / "clientes" / "python", RAIZ / "gen", TERCEROS], tmp_path)
    assert Path(biblioteca).is_relative_to(RAIZ / "clientes" / "python")
    assert Path(protos).is_relative_to(RAIZ / "gen")
    # Ni los servicios ni sus dependencias de proceso (faust, aiokafka) se cargan.
    assert otros == ""


def test_instalada_genera_el_codigo_de_los_protos(tmp_path):
    """`pip install ./clientes/python` (aquí sin red ni aislamiento, con el setuptools y el
    grpcio-tools del entorno): la instalación trae su propio gpr/v1 generado desde protos/."""
    copia = tmp_path / "repo"
    shutil.copytree(RAIZ / "clientes" / "python", copia / "clientes" / "python",
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    shutil.copytree(RAIZ / "protos", copia / "protos")
    destino = tmp_path / "instalada"
    hecho = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                            "--no-index", "--target", str(destino), str(copia / "clientes" / "python")],
                           capture_output=True, text=True, timeout=300)
    assert hecho.returncode == 0, hecho.stderr
    # Solo los protos que usa una agencia, no los internos del procesador.
    assert sorted(p.name for p in (destino / "gpr" / "v1").glob("*_pb2.py")) == [
        "eventos_pb2.py", "indicadores_pb2.py", "ingesta_pb2.py"]
    biblioteca, protos, otros = _correr([destino, TERCEROS], tmp_path)
    assert Path(biblioteca).is_relative_to(destino) and Path(protos).is_relative_to(destino)
    assert otros == ""
