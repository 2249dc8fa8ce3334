"""Catálogo de metas: cada error nombra archivo, línea y campo; evaluación a mano."""

from __future__ import annotations

import pytest

from conftest import CATALOGO
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.metas import (CUMPLE, INCUMPLE, SIN_DATOS, IndiceMetas, archivos_de, cargar_metas,
                                   evaluar)
from servicios.comun.yaml_lineas import ArchivoInvalido

BUENA = """\
metas:
  - agencia: reniec
    servicio: dni-duplicado
    indicador: cumplimiento_plazo
    ventana: 24h
    operador: ">="
    valor: 0.9
    muestra_minima: 5
    severidad: critica
    equipo: atencion
    descripcion: Nueve de cada diez en plazo.
"""


@pytest.fixture(scope="module")
def catalogo():
    return cargar_catalogo(CATALOGO)


def errores_de(tmp_path, catalogo, texto):
    ruta = tmp_path / "metas.yaml"
    ruta.write_text(texto)
    with pytest.raises(ArchivoInvalido) as error:
        cargar_metas([ruta], catalogo)
    return [str(e).replace(str(ruta), "A") for e in error.value.errores]


def test_las_metas_del_repositorio_son_validas(catalogo):
    from conftest import RAIZ
    assert len(cargar_metas(archivos_de(RAIZ / "despliegue" / "metas"), catalogo)) >= 5


@pytest.mark.parametrize("cambio, esperado", [
    (("indicador: cumplimiento_plazo", "indicador: rapidez"), "A:4: campo 'metas[0].indicador': 'rapidez' no es un indicador conocido"),
    (('operador: ">="', 'operador: "<="'), "A:6: campo 'metas[0].operador': 'cumplimiento_plazo' mejora con '>=': la meta debe usar ese operador"),
    (("valor: 0.9", "valor: 90"), "A:7: campo 'metas[0].valor': 'cumplimiento_plazo' es una proporción: el valor debe estar entre 0 y 1"),
    (("valor: 0.9", "valor: -1"), "A:7: campo 'metas[0].valor': 'cumplimiento_plazo' es una proporción: el valor debe estar entre 0 y 1"),
    (("agencia: reniec", "agencia: onpe"), "A:2: campo 'metas[0].agencia': agencia desconocida 'onpe'"),
    (("servicio: dni-duplicado", "servicio: pasaporte"), "A:3: campo 'metas[0].servicio': servicio desconocido 'pasaporte' en la agencia 'reniec'"),
    (("ventana: 24h", "ventana: 2h"), "A:5: campo 'metas[0].ventana': '2h' no es una ventana de meta (1h, 24h, 7d, 30d)"),
    (("severidad: critica", "severidad: urgente"), "A:9: campo 'metas[0].severidad': debe ser uno de 'critica' or 'advertencia'"),
    (("indicador: cumplimiento_plazo", "indicador: solicitudes"), "A:4: campo 'metas[0].indicador': 'solicitudes' describe volumen y no tiene sentido de mejora: no admite metas"),
])
def test_cada_error_nombra_archivo_linea_y_campo(tmp_path, catalogo, cambio, esperado):
    assert errores_de(tmp_path, catalogo, BUENA.replace(*cambio)) == [esperado]


def test_un_indice_va_de_0_a_1_y_un_importe_no_es_negativo(tmp_path, catalogo):
    """La meta va en la unidad del indicador: un índice de satisfacción, de 0 a 1 (un 4 sobre 5
    no es una meta válida); un importe, sin tope pero no negativo."""
    indice = BUENA.replace("indicador: cumplimiento_plazo", "indicador: satisfaccion_indice")
    assert errores_de(tmp_path, catalogo, indice.replace("valor: 0.9", "valor: 4")) == [
        "A:7: campo 'metas[0].valor': 'satisfaccion_indice' es un índice: el valor debe estar entre 0 y 1"]
    costo = BUENA.replace("indicador: cumplimiento_plazo", "indicador: costo_por_tramite").replace('">="', '"<="')
    assert errores_de(tmp_path, catalogo, costo.replace("valor: 0.9", "valor: -5")) == [
        "A:7: campo 'metas[0].valor': no puede ser negativo"]


def test_campo_que_falta_y_campo_desconocido(tmp_path, catalogo):
    texto = BUENA.replace("    equipo: atencion\n", "    equipos: atencion\n")
    assert errores_de(tmp_path, catalogo, texto) == [
        "A:2: campo 'metas[0].equipo': es obligatorio",
        "A:10: campo 'metas[0].equipos': no es un campo conocido",
    ]


def test_meta_repetida_nombra_la_primera(tmp_path, catalogo):
    texto = BUENA + BUENA.split("\n", 1)[1]
    assert errores_de(tmp_path, catalogo, texto) == ["A:12: campo 'metas[1]': meta repetida: ya definida en A:2"]


def test_yaml_roto(tmp_path, catalogo):
    [error] = errores_de(tmp_path, catalogo, "metas:\n  - agencia: [reniec\n")
    assert error.startswith("A:3: campo '-': YAML inválido")


def test_evaluacion_y_precedencia(tmp_path, catalogo):
    ruta = tmp_path / "m.yaml"
    ruta.write_text(BUENA + BUENA.split("\n", 1)[1].replace("servicio: dni-duplicado", 'servicio: "*"').replace("0.9", "0.5"))
    indice = IndiceMetas(cargar_metas([ruta], catalogo))
    concreta = indice.buscar("reniec", "dni-duplicado", "cumplimiento_plazo", "", "24h")
    general = indice.buscar("reniec", "dni-primera-vez", "cumplimiento_plazo", "", "24h")
    assert (concreta.valor, general.valor) == (0.9, 0.5)
    assert indice.buscar("reniec", "dni-duplicado", "cumplimiento_plazo", "", "7d") is None
    assert evaluar(concreta, 0.9, 5) == CUMPLE  # justo en la meta cumple
    assert evaluar(concreta, 0.89, 5) == INCUMPLE
    assert evaluar(concreta, 0.5, 4) == SIN_DATOS  # por debajo de la muestra mínima
    assert evaluar(concreta, None, 0) == SIN_DATOS
