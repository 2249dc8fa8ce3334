"""El filtro de repetidos del registro: una línea por intervalo, con la cuenta de las calladas."""

from __future__ import annotations

import logging

from servicios.comun.registro import FiltroRepetidos


class Reloj:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _registro(msg, *args, nombre="kafka", nivel=logging.ERROR):
    return logging.LogRecord(nombre, nivel, __file__, 1, msg, args, None)


def test_un_mensaje_repetido_sale_una_vez_por_intervalo_y_dice_cuantos_se_callaron():
    reloj = Reloj()
    filtro = FiltroRepetidos(30.0, reloj)
    # Cien reintentos en 10 s (como un cliente de Kafka con el broker caído): sale el primero.
    pasaron = []
    for i in range(100):
        reloj.t = i * 0.1
        r = _registro("sin conexión con %s (intento %d)", "kafka:9092", i)
        if filtro.filter(r):
            pasaron.append(r.getMessage())
    assert pasaron == ["sin conexión con kafka:9092 (intento 0)"]
    # Pasado el intervalo (medido desde el último que salió), sale otro con la cuenta.
    reloj.t = 30.0
    r = _registro("sin conexión con %s (intento %d)", "kafka:9092", 100)
    assert filtro.filter(r)
    assert r.getMessage() == "sin conexión con kafka:9092 (intento 100) (y 99 veces más en los últimos 30 s)"
    reloj.t = 31.0
    assert not filtro.filter(_registro("sin conexión con %s (intento %d)", "kafka:9092", 101))


def test_mensajes_distintos_no_se_callan_entre_si():
    reloj = Reloj()
    filtro = FiltroRepetidos(30.0, reloj)
    assert filtro.filter(_registro("a"))
    assert filtro.filter(_registro("b"))
    assert filtro.filter(_registro("a", nombre="otro"))
    assert filtro.filter(_registro("a", nivel=logging.WARNING))
    assert not filtro.filter(_registro("a"))
