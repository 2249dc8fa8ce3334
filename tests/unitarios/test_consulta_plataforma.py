"""Partes puras de las métricas de plataforma de la consulta: retraso y motivo de rechazo."""

from __future__ import annotations

from servicios.consulta.rechazados import motivo_de
from servicios.consulta.retraso import calcular_retraso

E, A = "gpr.eventos.v1", "gpr.aportes.v1"


def test_retraso_es_fin_menos_confirmado():
    fines = {(E, 0): 100, (E, 1): 40, (A, 0): 7, (A, 1): 0}
    inicios = {(E, 0): 0, (E, 1): 15, (A, 0): 0, (A, 1): 0}
    confirmados = {(E, 0): 60, (A, 0): 9, (A, 1): -1}
    assert calcular_retraso(fines, inicios, confirmados) == {
        (E, 0): 40,  # 100 − 60
        (E, 1): 25,  # sin confirmar: desde el inicio del log, 40 − 15
        (A, 0): 0,   # confirmado por delante del fin leído un instante antes: nunca negativo
        (A, 1): 0,   # −1 = sin confirmar, y el log está vacío
    }


def test_motivo_es_la_cabecera_hasta_los_dos_puntos():
    assert motivo_de([("gpr-detalle", b"x"), ("gpr-motivo", b"campo_requerido:agencia_id")]) == "campo_requerido"
    assert motivo_de([("gpr-motivo", b"tardio")]) == "tardio"
    assert motivo_de([("gpr-motivo", b"")]) == "desconocido"
    assert motivo_de([("gpr-detalle", b"x")]) == "desconocido"
    assert motivo_de(None) == "desconocido"
