"""La sección «Últimas cifras» de docs/rendimiento.md, regenerada de resultados/bench.md.

Las cifras de rendimiento no se copian a mano: `make bench` (con `make docs-rendimiento`)
reemplaza lo que hay entre las marcas `<!-- bench:inicio -->` y `<!-- bench:fin -->` por la
máquina y el broker de la ejecución y las tablas de metas y de CPU de resultados/bench.md
(`resumen.py` las escribe). El resto del documento queda igual, byte a byte. Sin E/S salvo en
`actualizar` y `__main__`:

    .venv/bin/python tests/rendimiento/documento.py [resultados/bench.md [docs/rendimiento.md]]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

INICIO = "<!-- bench:inicio -->"
FIN = "<!-- bench:fin -->"
# Lo que se copia de bench.md: las viñetas de la cabecera que dicen dónde se midió, y las tablas
# que siguen a estos títulos (el resto de bench.md es detalle de cada banco).
VINETAS = ("- Fecha:", "- Máquina:", "- Broker:")
TABLAS = ("## Metas", "### CPU gastada")


class DocumentoSinMarcas(ValueError):
    """El documento no tiene exactamente un par de marcas en orden."""


def _tabla_tras(lineas: list[str], titulo: str) -> list[str]:
    """Las filas de la primera tabla después del título que empieza por `titulo`."""
    for i, linea in enumerate(lineas):
        if linea.startswith(titulo):
            filas = []
            for siguiente in lineas[i + 1:]:
                if siguiente.startswith("|"):
                    filas.append(siguiente)
                elif filas or siguiente.startswith("#"):
                    break
            return filas
    return []


def seccion(bench_md: str) -> str:
    """El texto que va entre las marcas, sacado de un resultados/bench.md."""
    lineas = bench_md.splitlines()
    partes = [linea for linea in lineas if linea.startswith(VINETAS)]
    metas = _tabla_tras(lineas, TABLAS[0])
    if not metas:
        raise ValueError("resultados/bench.md no tiene la tabla de metas ('## Metas …')")
    partes += ["", *metas]
    cpu = _tabla_tras(lineas, TABLAS[1])
    if cpu:
        partes += ["", "CPU gastada durante la medida del caudal (banco 1):", "", *cpu]
    return "\n".join(partes)


def reemplazar(documento: str, nueva: str) -> str:
    """El documento con `nueva` entre las marcas; todo lo de fuera, idéntico."""
    if documento.count(INICIO) != 1 or documento.count(FIN) != 1 or documento.index(INICIO) > documento.index(FIN):
        raise DocumentoSinMarcas(f"se esperaba un {INICIO} y luego un {FIN}, una vez cada uno")
    antes, resto = documento.split(INICIO)
    _, despues = resto.split(FIN)
    return f"{antes}{INICIO}\n{nueva.strip(chr(10))}\n{FIN}{despues}"


def actualizar(ruta_bench: Path, ruta_documento: Path) -> bool:
    """Reescribe la sección del documento; dice si cambió algo."""
    documento = ruta_documento.read_text(encoding="utf-8")
    nuevo = reemplazar(documento, seccion(ruta_bench.read_text(encoding="utf-8")))
    if nuevo == documento:
        return False
    ruta_documento.write_text(nuevo, encoding="utf-8")
    return True


if __name__ == "__main__":
    raiz = Path(__file__).resolve().parents[2]
    resultados = Path(os.environ.get("GPR_BENCH_RESULTADOS", raiz / "resultados"))
    bench = Path(sys.argv[1]) if len(sys.argv) > 1 else resultados / "bench.md"
    destino = Path(sys.argv[2]) if len(sys.argv) > 2 else raiz / "docs" / "rendimiento.md"
    cambio = actualizar(bench, destino)
    print(f"{destino}: {'sección de cifras regenerada' if cambio else 'sin cambios'} desde {bench}")
