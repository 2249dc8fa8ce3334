"""Recolección y resultados de los bancos de rendimiento.

Los bancos viven en archivos `bench_*.py`, que pytest no recoge por su nombre: así `make
test` (testpaths = tests) no los corre. Este conftest los recoge solo cuando la sesión se
pidió con tests/rendimiento (o algo dentro) como argumento explícito, como hace `make bench`
(`pytest tests/rendimiento -s -p no:cacheprovider`). Un archivo bench_*.py nombrado en la
línea de órdenes ya lo recoge pytest, y aquí no se repite.

Al terminar la sesión se escriben resultados/bench.json (máquina, configuración y cada
medida) y el resumen resultados/bench.md con su gráfico (ver `resumen.py`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

DIRECTORIO = Path(__file__).resolve().parent


def _pedido_explicitamente(config: pytest.Config) -> bool:
    for argumento in config.args:
        ruta = Path(config.invocation_params.dir, argumento.split("::")[0]).resolve()
        if ruta == DIRECTORIO or DIRECTORIO in ruta.parents:
            return True
    return False


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    if (file_path.suffix == ".py" and file_path.name.startswith("bench_")
            and not parent.session.isinitpath(file_path) and _pedido_explicitamente(parent.config)):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


# Los instrumentos se importan dentro de los accesorios: `make test` también carga este
# conftest, y no debe depender de nada de los bancos.
@pytest.fixture(scope="session")
def config_bench():
    from rendimiento.instrumentos import ConfigBench

    return ConfigBench()


@pytest.fixture(scope="session")
def resultados(config_bench):
    from rendimiento.instrumentos import Resultados

    registro = Resultados(config_bench.directorio, config_bench)
    yield registro
    from rendimiento.resumen import escribir_resumen

    escribir_resumen(registro.ruta)
    print(f"\nresultados: {registro.ruta} y {registro.ruta.with_suffix('.md')}")
