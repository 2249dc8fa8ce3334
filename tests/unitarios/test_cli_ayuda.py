"""La ayuda y los errores de uso de `gpr`, en español y con los códigos de salida documentados.

Se corre la orden real (`python -m servicios.cli`) en un subproceso, como la usaría un
operador o un script: salida estándar, salida de errores y código de salida.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import RAIZ
from servicios.terceros.typer_es import traducir

# Restos de typer/click en inglés. Se busca en la salida aplanada (sin bordes ni saltos de
# línea) para que una frase partida en dos líneas también se encuentre.
INGLES = [
    r"\bUsage\b", r"\bOptions\b", r"\bCommands?\b", r"\bArguments\b", r"Show this message", r"\[default",
    r"\[env var", r"\[required\]", r"\bTry '", r"for help", r"\bMissing\b", r"No such", r"Invalid value",
    r"Did you mean", r"unexpected extra", r"requires", r"Possible options", r"\bAborted\b",
    r"<(str|int|float|bool|path|file|dir|list)\b", r"\bCOMMAND\b", r"\[OPTIONS\]", r"\[ARGS\]",
    r"\bInput should\b", r"does not exist", r"is a directory",
]


def gpr(*argumentos):
    # Ancho fijo y grande: la ayuda no depende de la terminal de quien corre las pruebas.
    env = {**os.environ, "COLUMNS": "200", "TERMINAL_WIDTH": "200"}
    return subprocess.run([sys.executable, "-m", "servicios.cli", *argumentos], cwd=RAIZ, capture_output=True,
                          text=True, timeout=60, env=env)


def _plana(texto: str) -> str:
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", texto).split())


def _sin_ingles(texto: str) -> None:
    plano = _plana(texto)
    restos = [patron for patron in INGLES if re.search(patron, plano)]
    assert not restos, f"quedan textos en inglés {restos} en:\n{texto}"


@pytest.mark.parametrize("argumentos", [
    ["--help"],
    ["publicar", "--help"],
    ["vigilar", "--help"],
    ["tablero", "--help"],
    ["metas", "--help"],
    ["metas", "reglas", "--help"],
    ["local", "--help"],
])
def test_ayuda_en_espanol(argumentos):
    r = gpr(*argumentos)
    assert r.returncode == 0, r.stdout + r.stderr
    _sin_ingles(r.stdout + r.stderr)
    plano = _plana(r.stdout)
    assert plano.startswith("Uso: gpr")
    assert "Opciones" in plano and "--help <sí/no> Muestra esta ayuda y termina." in plano


def test_ayuda_principal_y_de_publicar():
    principal = _plana(gpr("--help").stdout)
    assert "Uso: gpr [OPCIONES] ORDEN [ARGUMENTOS]..." in principal
    assert "Órdenes" in principal and "publicar" in principal and "vigilar" in principal

    publicar = _plana(gpr("publicar", "--help").stdout)
    assert "Uso: gpr publicar [OPCIONES] {archivo}" in publicar
    assert "Argumentos" in publicar and "[obligatorio]" in publicar
    assert "--tls-ca <archivo>" in publicar and "[variable: GPR_TLS_CA]" in publicar
    assert "[por defecto: despliegue/catalogo.yaml]" in publicar


def test_sin_argumentos_muestra_la_ayuda_y_sale_con_2():
    r = gpr()
    assert r.returncode == 2
    _sin_ingles(r.stdout + r.stderr)
    assert _plana(r.stdout).startswith("Uso: gpr [OPCIONES] ORDEN [ARGUMENTOS]...")


@pytest.mark.parametrize("argumentos, esperado", [
    (["publicar"], "Falta el argumento 'archivo'."),
    (["publicar", "x.jsonl", "--nada"], "No existe la opción --nada."),
    (["--nada"], "No existe la opción --nada."),
    (["vigilr"], "No existe la orden 'vigilr'. ¿Quiso decir 'vigilar'?"),
    (["metas", "nada"], "No existe la orden 'nada'."),
    (["publicar", "/no/existe.jsonl"], "Valor inválido para 'archivo': el archivo '/no/existe.jsonl' no existe."),
    (["publicar", "/"], "Valor inválido para 'archivo': el archivo '/' es un directorio."),
    (["vigilar", "--maximo", "muchas"], "Valor inválido para '--maximo': debe ser un número entero."),
    (["vigilar", "--maximo", "-1"], "Valor inválido para '--maximo': debe ser mayor o igual que 0."),
    (["vigilar", "--duracion", "2x"], "Valor inválido para '--duracion': '2x' no es una duración válida"),
    (["vigilar", "sobra"], "Sobran argumentos: sobra"),
    (["vigilar", "--maximo"], "La opción '--maximo' necesita un valor."),
])
def test_errores_de_uso_en_espanol_con_codigo_2(argumentos, esperado):
    r = gpr(*argumentos)
    assert r.returncode == 2, r.stdout + r.stderr
    _sin_ingles(r.stdout + r.stderr)
    errores = _plana(r.stderr)
    assert esperado in errores, errores
    if argumentos != ["vigilar", "--maximo"]:  # click no da contexto a este error: sin línea de uso
        assert errores.startswith("Uso: gpr") and "para ver la ayuda." in errores


def test_mensaje_desconocido_queda_tal_cual():
    assert traducir("algo que la tabla no conoce") == "algo que la tabla no conoce"
    assert traducir("Missing option '--x' / '-x'.") == "Falta la opción '--x' / '-x'."
