"""El procesador no arranca con una carpeta de metas que no existe (antes arrancaba con cero
metas sin decir nada) y resume las metas que cargó."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import CATALOGO, RAIZ
from servicios.procesador.config import carpeta_de_metas, resumen_de_metas
from servicios.comun.config import ConfiguracionInvalida


def _arrancar(metas: str, tmp_path) -> subprocess.CompletedProcess:
    # Un broker que no existe: si la validación no lo detiene antes, el proceso se quedaría
    # esperando a Kafka y el plazo de la prueba lo delataría.
    env = {"PATH": "/usr/bin:/bin", "GPR_KAFKA_BOOTSTRAP": "127.0.0.1:1", "GPR_CATALOGO": str(CATALOGO),
           "GPR_METAS": metas, "GPR_DIRECTORIO_DATOS": str(tmp_path / "datos")}
    return subprocess.run([sys.executable, "-m", "servicios.procesador"], cwd=RAIZ, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("caso", ["no_existe", "es_archivo"])
def test_el_procesador_no_arranca_sin_la_carpeta_de_metas(caso, tmp_path):
    ruta = tmp_path / "metas"
    if caso == "es_archivo":
        ruta.write_text("metas: []\n", encoding="utf-8")
    r = _arrancar(str(ruta), tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"GPR_METAS={str(ruta)!r}" in r.stderr, r.stderr
    assert ("no existe" if caso == "no_existe" else "no una carpeta") in r.stderr, r.stderr
    assert not (tmp_path / "datos").exists(), "no debió llegar a preparar su estado"


def test_carpeta_de_metas_nombra_la_variable(tmp_path):
    assert carpeta_de_metas(str(tmp_path)) == tmp_path
    with pytest.raises(ConfiguracionInvalida, match=r"^GPR_METAS='.*/falta': no existe"):
        carpeta_de_metas(str(tmp_path / "falta"))


def test_resumen_por_agencia_y_agencias_sin_metas(tmp_path):
    linea = resumen_de_metas(tmp_path, ["sunarp", "reniec", "sunarp"], ["minsa", "reniec", "sunarp"])
    assert linea == f"3 metas cargadas de {tmp_path} (reniec 1, sunarp 2); sin metas: minsa"
    assert resumen_de_metas(tmp_path, [], ["reniec"]) == f"0 metas cargadas de {tmp_path}; sin metas: reniec"
