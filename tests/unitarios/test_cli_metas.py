"""`gpr metas validar` y `gpr metas reglas` por la aplicación typer real (CliRunner).

Las líneas esperadas de cada error se cuentan a mano sobre el texto YAML de la prueba
(numeradas en el comentario de `DOS_METAS`).
"""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from conftest import CATALOGO, RAIZ
from servicios.cli.principal import app
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.metas import archivos_de, cargar_metas
from servicios.comun.reglas import generar_yaml

#  1 # Metas de prueba.
#  2 metas:
#  3   - agencia: reniec            ← metas[0]
#  4     servicio: dni-duplicado
#  5     indicador: cumplimiento_plazo
#  6     ventana: 24h
#  7     operador: ">="
#  8     valor: 0.9
#  9     muestra_minima: 5
# 10     severidad: critica
# 11     equipo: atencion-ciudadana
# 12     descripcion: Nueve de cada diez en plazo.
# 13   - agencia: reniec            ← metas[1]
# 14     servicio: dni-primera-vez
# 15     indicador: cumplimiento_plazo
# 16     ventana: 24h
# 17     operador: ">="
# 18     valor: 0.9
# 19     muestra_minima: 5
# 20     severidad: critica
# 21     equipo: atencion-ciudadana
# 22     descripcion: Nueve de cada diez en plazo.
PRIMERA = """\
  - agencia: reniec
    servicio: dni-duplicado
    indicador: cumplimiento_plazo
    ventana: 24h
    operador: ">="
    valor: 0.9
    muestra_minima: 5
    severidad: critica
    equipo: atencion-ciudadana
    descripcion: Nueve de cada diez en plazo.
"""
SEGUNDA = PRIMERA.replace("servicio: dni-duplicado", "servicio: dni-primera-vez")
DOS_METAS = "# Metas de prueba.\nmetas:\n" + PRIMERA + SEGUNDA

# Cada archivo malo cambia solo la segunda meta; el error nombra archivo, línea y campo.
MALOS = {
    "indicador.yaml": (("indicador: cumplimiento_plazo", "indicador: rapidez"),
                       "15: campo 'metas[1].indicador': 'rapidez' no es un indicador conocido"),
    "sentido.yaml": (('operador: ">="', 'operador: "<="'),
                     "17: campo 'metas[1].operador': 'cumplimiento_plazo' mejora con '>=': la meta debe usar ese "
                     "operador"),
    "proporcion.yaml": (("valor: 0.9", "valor: 1.5"),
                        "18: campo 'metas[1].valor': 'cumplimiento_plazo' es una proporción: el valor debe estar "
                        "entre 0 y 1"),
    "agencia.yaml": (("agencia: reniec", "agencia: onpe"), "13: campo 'metas[1].agencia': agencia desconocida 'onpe'"),
    "repetida.yaml": (("servicio: dni-primera-vez", "servicio: dni-duplicado"),
                      "13: campo 'metas[1]': meta repetida: ya definida en {archivo}:3"),
}

runner = CliRunner()


def _malo(tmp_path, nombre):
    (viejo, nuevo), _ = MALOS[nombre]
    archivo = tmp_path / nombre
    archivo.write_text("# Metas de prueba.\nmetas:\n" + PRIMERA + SEGUNDA.replace(viejo, nuevo), encoding="utf-8")
    return archivo


def _esperado(archivo, nombre):
    return f"{archivo}:" + MALOS[nombre][1].format(archivo=archivo)


def gpr(*argumentos):
    return runner.invoke(app, ["metas", *argumentos, "--catalogo", str(CATALOGO)])


@pytest.mark.parametrize("nombre", sorted(MALOS))
def test_validar_rechaza_nombrando_archivo_linea_y_campo(tmp_path, nombre):
    archivo = _malo(tmp_path, nombre)
    r = gpr("validar", str(archivo))
    assert r.exit_code == 1, r.output
    assert r.stderr.splitlines() == [_esperado(archivo, nombre),
                                     "1 error(es): nada se ha validado como correcto"]
    assert r.stdout == ""


def test_validar_una_carpeta_lista_todos_los_errores(tmp_path):
    a = {nombre: _malo(tmp_path, nombre) for nombre in MALOS}
    r = gpr("validar", str(tmp_path))
    assert r.exit_code == 1, r.output
    # Los *.yaml de la carpeta en orden alfabético. La primera meta es la misma en todos: desde
    # el segundo archivo es una meta repetida de agencia.yaml:3 (las repetidas se buscan entre
    # archivos), y en repetida.yaml también la segunda.
    primera = a["agencia.yaml"]
    repetida = f"campo 'metas[0]': meta repetida: ya definida en {primera}:3"
    assert r.stderr.splitlines() == [
        _esperado(primera, "agencia.yaml"),
        f"{a['indicador.yaml']}:3: {repetida}",
        _esperado(a["indicador.yaml"], "indicador.yaml"),
        f"{a['proporcion.yaml']}:3: {repetida}",
        _esperado(a["proporcion.yaml"], "proporcion.yaml"),
        f"{a['repetida.yaml']}:3: {repetida}",
        f"{a['repetida.yaml']}:13: campo 'metas[1]': meta repetida: ya definida en {primera}:3",
        f"{a['sentido.yaml']}:3: {repetida}",
        _esperado(a["sentido.yaml"], "sentido.yaml"),
        "9 error(es): nada se ha validado como correcto",
    ]


def test_validar_archivos_correctos_resume(tmp_path):
    (tmp_path / "a.yaml").write_text(DOS_METAS, encoding="utf-8")
    (tmp_path / "b.yaml").write_text(
        "metas:\n" + PRIMERA.replace("reniec", "sunarp").replace("dni-duplicado", "certificado-literal"),
        encoding="utf-8")
    r = gpr("validar", str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml"))
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == [
        f"{tmp_path / 'a.yaml'}: 2 metas",
        f"{tmp_path / 'b.yaml'}: 1 meta",
        "3 metas válidas en 2 archivo(s) (reniec 2, sunarp 1)",
    ]


def test_validar_sin_argumentos_usa_las_metas_del_repositorio(monkeypatch):
    monkeypatch.chdir(RAIZ)
    monkeypatch.delenv("GPR_METAS", raising=False)
    r = gpr("validar")
    assert r.exit_code == 0, r.output
    archivos = archivos_de(RAIZ / "despliegue" / "metas")
    assert f"metas válidas en {len(archivos)} archivo(s)" in r.stdout.splitlines()[-1]


def test_validar_ruta_inexistente_sale_con_2(tmp_path):
    r = gpr("validar", str(tmp_path / "no-existe.yaml"))
    assert r.exit_code == 2
    assert r.stderr.strip() == f"{tmp_path / 'no-existe.yaml'}: no existe"


def test_reglas_escribe_comprueba_y_va_a_la_salida_estandar(tmp_path):
    (tmp_path / "a.yaml").write_text(DOS_METAS, encoding="utf-8")
    catalogo = cargar_catalogo(CATALOGO)
    esperado = generar_yaml(cargar_metas([tmp_path / "a.yaml"], catalogo), catalogo)
    salida = tmp_path / "reglas" / "metas.yml"

    r = gpr("reglas", "--metas", str(tmp_path), "--salida", str(salida))
    assert r.exit_code == 0, r.output
    assert salida.read_text(encoding="utf-8") == esperado
    # Dos metas de proporción con margen 0,1: umbral + página + ticket cada una. Plataforma: sin
    # eventos y rechazos de reniec (su equipo), de sunarp y de minsa (sin metas: plataforma), rechazos
    # de agencias desconocidas y retraso. Vigilancia: Watchdog, ServicioCaido, ObjetivoCaido,
    # TrabajoAusente, ReglasFallan, NotificacionesFallan, AlertasSinEnviar, ConfiguracionNoRecargada.
    assert r.stdout.strip() == f"escrito {salida}: 6 alertas de 2 metas, 8 de la plataforma y 8 de vigilancia"

    r = gpr("reglas", "--metas", str(tmp_path), "--salida", str(salida), "--comprobar")
    assert r.exit_code == 0, r.output
    salida.write_text(esperado.replace("0.9", "0.8"), encoding="utf-8")
    r = gpr("reglas", "--metas", str(tmp_path), "--salida", str(salida), "--comprobar")
    assert r.exit_code == 1
    assert "no está al día" in r.stderr

    r = gpr("reglas", "--metas", str(tmp_path), "--salida", "-")
    assert r.exit_code == 0, r.output
    assert r.stdout == esperado


def test_reglas_con_metas_invalidas_no_escribe(tmp_path):
    archivo = _malo(tmp_path, "sentido.yaml")
    salida = tmp_path / "metas.yml"
    r = gpr("reglas", "--metas", str(archivo), "--salida", str(salida))
    assert r.exit_code == 1
    assert r.stderr.splitlines()[0] == _esperado(archivo, "sentido.yaml")
    assert not salida.exists()


def test_la_ayuda_esta_en_espanol():
    r = runner.invoke(app, ["metas", "--help"])
    assert r.exit_code == 0
    assert "validar" in r.stdout and "reglas" in r.stdout and "Metas: validar" in r.stdout


def test_reglas_toma_la_base_de_los_runbooks_de_gpr_runbooks_url(tmp_path, monkeypatch):
    (tmp_path / "a.yaml").write_text(DOS_METAS, encoding="utf-8")
    monkeypatch.setenv("GPR_RUNBOOKS_URL", "https://wiki.ejemplo.gob/gpr/runbooks")
    r = gpr("reglas", "--metas", str(tmp_path), "--salida", "-")
    assert r.exit_code == 0, r.output
    enlaces = set(re.findall(r"runbook_url: (\S+)", r.stdout))
    assert enlaces and all(e.startswith("https://wiki.ejemplo.gob/gpr/runbooks/") for e in enlaces), enlaces
    assert "https://wiki.ejemplo.gob/gpr/runbooks/meta-incumplida.md#cumplimiento_plazo" in enlaces

    monkeypatch.setenv("GPR_RUNBOOKS_URL", "wiki/runbooks")
    r = gpr("reglas", "--metas", str(tmp_path), "--salida", "-")
    assert r.exit_code == 2
    assert "GPR_RUNBOOKS_URL='wiki/runbooks' debe ser una URL http:// o https://" in r.stderr
