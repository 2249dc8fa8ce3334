"""La CLI escribe cada valor en la unidad que trae de la API (`Indicador.unidad`), no según el
nombre del indicador: `gpr indicadores`/`tablero`/`vigilar` y la tabla en vivo de `make run`.

Lo esperado está escrito a mano. Las tablas se dibujan con un ancho fijo (no el de la
terminal de quien corre la prueba) y se comparan celda por celda, sin depender del trazado.
"""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from gpr.v1 import indicadores_pb2 as ipb
from servicios.cli.consultas import _linea, tabla_indicadores
from servicios.cli.formato import en_unidad
from servicios.cli.local import _tabla


@pytest.mark.parametrize("valor,unidad,texto", [
    (0.8766, "proporcion", "87.7%"),
    (1.0, "proporcion", "100.0%"),
    (0.8234, "indice", "0.82"),
    (1234.0, "conteo", "1,234"),
    (3.456, "por_mil", "3.46 ‰"),
    (1234.5, "PEN", "1,234.50 PEN"),
    (0.1, "USD", "0.10 USD"),
    (2.5 * 86400, "segundos", "2.5 d"),
    (86400, "segundos", "1.0 d"),
    (5400, "segundos", "1.5 h"),
    (2700, "segundos", "45 min"),
    (30, "segundos", "30 s"),
    # Sin unidad (instantánea anterior al campo) o una que la CLI no conoce: el número, sin adivinar.
    (0.5, "", "0.5"),
    (1234.5, "otra", "1234.5"),
])
def test_cada_unidad_se_escribe_a_su_manera(valor, unidad, texto):
    assert en_unidad(valor, unidad) == texto


def _ind(indicador, valor, unidad, servicio="dni", etapa="", meta=None, sin_datos=False, muestras=10):
    i = ipb.Indicador(agencia_id="reniec", servicio_id=servicio, indicador=indicador, ventana="24h", valor=valor,
                      muestras=muestras, unidad=unidad, etapa_id=etapa, sin_datos=sin_datos)
    if meta is not None:
        operador, objetivo, estado = meta
        i.meta.CopyFrom(ipb.EvaluacionMeta(operador=operador, valor=objetivo, estado=estado, severidad="critica",
                                           equipo="e"))
    return i


CUMPLE, INCUMPLE, SIN_DATOS = (ipb.ESTADO_CUMPLIMIENTO_CUMPLE, ipb.ESTADO_CUMPLIMIENTO_INCUMPLE,
                               ipb.ESTADO_CUMPLIMIENTO_SIN_DATOS)

SERIES = [
    _ind("solicitudes", 1234, "conteo"),
    _ind("cumplimiento_plazo", 0.8766, "proporcion", meta=(">=", 0.9, INCUMPLE)),
    _ind("tiempo_atencion_p50", 2.5 * 86400, "segundos", meta=("<=", 2 * 86400, INCUMPLE)),
    _ind("tiempo_etapa_p50", 2700, "segundos", etapa="revision"),
    _ind("satisfaccion_indice", 0.8234, "indice", meta=(">=", 0.8, CUMPLE)),
    _ind("reclamos_por_mil", 3.456, "por_mil"),
    _ind("costo_por_tramite", 1234.5, "PEN", meta=("<=", 1500, SIN_DATOS)),
    # La unidad manda, no el nombre: el mismo indicador en otra moneda, y una serie sin unidad.
    _ind("costo_por_tramite", 20, "USD", servicio="pasaporte"),
    _ind("tasa_reproceso", 0.05, "", servicio="pasaporte"),
    _ind("entregas", 0, "conteo", servicio="pasaporte", sin_datos=True, muestras=0),
]


def _celdas(tabla) -> list[list[str]]:
    """Las filas de datos de la tabla tal como se ven, celda por celda."""
    consola = Console(width=400, record=True, color_system=None, file=io.StringIO())
    consola.print(tabla)
    filas = []
    for linea in consola.export_text().splitlines():
        # La cabecera va entre ┃ y los datos entre │ (bordes de rich por omisión).
        if linea.startswith(("│", "┃")):
            filas.append([c.strip() for c in linea.strip("│┃").replace("┃", "│").split("│")])
    return filas


def test_tabla_de_indicadores_con_valor_y_meta_en_la_unidad_de_cada_serie():
    assert _celdas(tabla_indicadores(SERIES, "prueba")) == [
        ["Agencia", "Servicio", "Indicador", "Ventana", "Etapa", "Valor", "Muestras", "Meta", "Estado"],
        ["reniec", "dni", "solicitudes", "24h", "", "1,234", "10", "", ""],
        ["reniec", "dni", "cumplimiento_plazo", "24h", "", "87.7%", "10", ">= 90.0%", "incumple"],
        ["reniec", "dni", "tiempo_atencion_p50", "24h", "", "2.5 d", "10", "<= 2.0 d", "incumple"],
        ["reniec", "dni", "tiempo_etapa_p50", "24h", "revision", "45 min", "10", "", ""],
        ["reniec", "dni", "satisfaccion_indice", "24h", "", "0.82", "10", ">= 0.80", "cumple"],
        ["reniec", "dni", "reclamos_por_mil", "24h", "", "3.46 ‰", "10", "", ""],
        ["reniec", "dni", "costo_por_tramite", "24h", "", "1,234.50 PEN", "10", "<= 1,500.00 PEN", "sin datos"],
        ["reniec", "pasaporte", "costo_por_tramite", "24h", "", "20.00 USD", "10", "", ""],
        ["reniec", "pasaporte", "tasa_reproceso", "24h", "", "0.05", "10", "", ""],
        ["reniec", "pasaporte", "entregas", "24h", "", "sin datos", "0", "", ""],
    ]


def test_vigilar_sin_terminal_escribe_una_linea_por_actualizacion_con_su_unidad():
    # Sin la hora del principio: es la del reloj de quien corre la prueba.
    lineas = [_linea(i).split(" ", 1)[1] for i in SERIES[1:3] + SERIES[6:8]]
    assert lineas == [
        "reniec dni cumplimiento_plazo 24h valor=87.7% muestras=10 meta=>= 90.0% incumple",
        "reniec dni tiempo_atencion_p50 24h valor=2.5 d muestras=10 meta=<= 2.0 d incumple",
        "reniec dni costo_por_tramite 24h valor=1,234.50 PEN muestras=10 meta=<= 1,500.00 PEN sin datos",
        "reniec pasaporte costo_por_tramite 24h valor=20.00 USD muestras=10",
    ]


def test_tabla_en_vivo_de_make_run_en_la_unidad_de_cada_serie():
    series = [
        _ind("solicitudes", 40, "conteo"), _ind("entregas", 1500, "conteo"),
        _ind("cumplimiento_plazo", 0.955, "proporcion"), _ind("tiempo_atencion_p50", 5400, "segundos"),
        _ind("casos_vencidos", 3, "conteo"), _ind("tasa_reproceso", 0.05, "proporcion"),
        _ind("satisfaccion_top2", 0.8, "proporcion"), _ind("adopcion_digital", 0.25, "proporcion"),
        _ind("costo_por_tramite", 12.5, "PEN"),
        # Otro servicio: sin datos, sin la serie, y el costo en otra moneda.
        _ind("solicitudes", 7, "conteo", servicio="pasaporte"),
        _ind("entregas", 0, "conteo", servicio="pasaporte", sin_datos=True, muestras=0),
        _ind("costo_por_tramite", 99, "USD", servicio="pasaporte"),
        # Las series por etapa no tienen columna.
        _ind("tiempo_etapa_p50", 60, "segundos", etapa="revision"),
    ]
    filas = _celdas(_tabla(series, "12:00:00"))
    assert [f[:-1] for f in filas] == [
        ["Agencia / servicio", "Solicitudes", "Entregas", "En plazo", "Atención p50", "Vencidos", "Reproceso",
         "Satisfacción", "Digital", "Costo/trámite", "Cuello de botella"],
        ["reniec / dni", "40", "1,500", "95.5%", "1.5 h", "3", "5.0%", "80.0%", "25.0%", "12.50 PEN", "—"],
        ["reniec / pasaporte", "7", "—", "—", "—", "—", "—", "—", "—", "99.00 USD", "—"],
    ]
