"""Construcción de gpr-cliente: además del paquete `gpr_cliente`, genera en la rueda el código
de los protos del contrato (`gpr/v1/*_pb2*.py`) desde `protos/` del repositorio, que no se
confirma en git (como `make proto`). Solo los protos que usa una agencia: eventos, ingesta e
indicadores (no los internos del procesador).

En una instalación editable no se genera nada: en el repositorio el código viene de `gen/`
(`make proto`), y dos copias de `gpr.v1` en un mismo proceso no pueden convivir.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

AQUI = Path(__file__).resolve().parent
PROTOS = ("gpr/v1/eventos.proto", "gpr/v1/ingesta.proto", "gpr/v1/indicadores.proto")


def raiz_protos() -> Path:
    """`protos/` junto a este archivo (en una sdist) o la del repositorio (../../protos)."""
    for candidata in (AQUI / "protos", AQUI.parent.parent / "protos"):
        if all((candidata / p).is_file() for p in PROTOS):
            return candidata
    raise SystemExit(f"gpr-cliente: no se encuentran {', '.join(PROTOS)} ni en {AQUI / 'protos'} ni en "
                     f"{AQUI.parent.parent / 'protos'}; construya desde el repositorio de GpR Monitor")


class ConProtos(build_py):
    def run(self) -> None:
        super().run()
        if not getattr(self, "editable_mode", False):
            generar(Path(self.build_lib))


def generar(destino: Path) -> None:
    import grpc_tools
    from grpc_tools import protoc

    raiz = raiz_protos()
    incluidos = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/timestamp.proto
    destino.mkdir(parents=True, exist_ok=True)
    argumentos = ["grpc_tools.protoc", f"-I{raiz}", f"-I{incluidos}", f"--python_out={destino}",
                  f"--pyi_out={destino}", f"--grpc_python_out={destino}", *(str(raiz / p) for p in PROTOS)]
    if protoc.main(argumentos) != 0:
        raise SystemExit("gpr-cliente: grpc_tools.protoc falló al generar el código de los protos")
    for paquete in (destino / "gpr", destino / "gpr" / "v1"):
        (paquete / "__init__.py").touch()


class ConProtosFuente(sdist):
    """La sdist lleva los protos: desde ella se construye la rueda sin el repositorio."""

    def make_release_tree(self, base_dir, files) -> None:
        super().make_release_tree(base_dir, files)
        raiz = raiz_protos()
        for proto in PROTOS:
            copia = Path(base_dir) / "protos" / proto
            copia.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(raiz / proto, copia)


setup(cmdclass={"build_py": ConProtos, "sdist": ConProtosFuente})
