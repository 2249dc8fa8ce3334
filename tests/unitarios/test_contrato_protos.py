"""El contrato (protos/gpr/v1) pasa `buf lint` (reglas STANDARD, con las excepciones que
protos/buf.yaml justifica) y `buf breaking` contra el último contrato publicado
(protos/contrato-publicado.binpb): ningún cambio rompe en silencio a los sistemas de las
agencias. `buf` lo instala despliegue/instalar-herramientas.sh (npm @bufbuild/buf)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import RAIZ

PROTOS = RAIZ / "protos"
PUBLICADO = PROTOS / "contrato-publicado.binpb"


def _buf() -> str:
    """`GPR_BUF`, el del PATH o el que instala despliegue/instalar-herramientas.sh."""
    candidatos = [os.environ.get("GPR_BUF"), shutil.which("buf")]
    cache = Path(os.environ.get("GPR_HERRAMIENTAS", Path.home() / ".cache" / "gpr-monitor"))
    candidatos += sorted(str(p) for p in cache.glob("buf-*/node_modules/.bin/buf"))
    for candidato in candidatos:
        if candidato and Path(candidato).exists():
            return candidato
    pytest.fail("falta buf: ejecute `bash despliegue/instalar-herramientas.sh` (npm @bufbuild/buf)")


def _buf_en(carpeta: Path, *argumentos: str) -> subprocess.CompletedProcess:
    return subprocess.run([_buf(), *argumentos], cwd=carpeta, capture_output=True, text=True, timeout=120)


def test_buf_lint_limpio():
    r = _buf_en(PROTOS, "lint")
    assert r.returncode == 0, r.stdout + r.stderr


def test_buf_breaking_contra_el_contrato_publicado():
    r = _buf_en(PROTOS, "breaking", "--against", str(PUBLICADO))
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("cambio, antes, despues", [
    ("un valor de enum renombrado", "TIPO_EVENTO_SOLICITUD_RECIBIDA = 1;", "TIPO_EVENTO_SOLICITUD = 1;"),
    ("un campo con otro número", "string caso_id = 11;", "string caso_id = 30;"),
    ("un campo borrado sin reservar", "  string region = 9;\n", ""),
])
def test_buf_breaking_ve_un_cambio_incompatible(tmp_path, cambio, antes, despues):
    copia = tmp_path / "protos"
    shutil.copytree(PROTOS, copia)
    eventos = copia / "gpr" / "v1" / "eventos.proto"
    texto = eventos.read_text(encoding="utf-8")
    assert antes in texto, cambio
    eventos.write_text(texto.replace(antes, despues), encoding="utf-8")
    r = _buf_en(copia, "breaking", "--against", str(PUBLICADO))
    assert r.returncode != 0, f"{cambio}: buf breaking no lo vio\n{r.stdout}"


def test_buf_lint_ve_un_valor_sin_prefijo(tmp_path):
    copia = tmp_path / "protos"
    shutil.copytree(PROTOS, copia)
    eventos = copia / "gpr" / "v1" / "eventos.proto"
    eventos.write_text(eventos.read_text(encoding="utf-8").replace("CANAL_WEB = 2;", "WEB = 2;"), encoding="utf-8")
    r = _buf_en(copia, "lint")
    assert r.returncode != 0 and "CANAL_" in r.stdout
