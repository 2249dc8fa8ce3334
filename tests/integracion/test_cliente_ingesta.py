"""El publicador por la Ingesta de la biblioteca cliente (`gpr_cliente.PublicadorIngesta`)
contra la Ingesta real (en proceso, canal gRPC real) y el broker embebido.

Lo esperado se escribe a mano: qué eventos se aceptan y con qué motivo se rechazan los demás,
qué hay en `gpr.eventos.v1` (leído con aiokafka) y cuántos casos cuenta la etapa por caso del
procesador cuando un reintento deja eventos repetidos en el tópico."""

from __future__ import annotations

from collections import Counter

import grpc
import pytest

from apoyo.ingesta import (
    B,
    CATALOGO,
    E,
    H,
    LOTE_MAXIMO,
    PARTICIONES,
    TOKEN_RENIEC,
    evento,
    eventos_de,
    ingesta_en_proceso,
    leer_topico,
)
from apoyo.motor import MotorEnLotes, procesar_como_el_procesador
from gpr_cliente import ErrorIngesta, PublicadorIngesta
from servicios.comun.broker import puerto_libre
from servicios.comun.topicos import EVENTOS

pytestmark = [pytest.mark.integracion, pytest.mark.timeout(120)]


def _casos(n: int, prefijo: str = "c") -> list:
    """Solicitud y entrega de n casos de reniec/dni-duplicado, en horas distintas."""
    return [evento(f"{prefijo}{i}-r", caso=f"{prefijo}{i}", t=B + i * 60) for i in range(n)] + \
           [evento(f"{prefijo}{i}-e", E, caso=f"{prefijo}{i}", t=B + H + i * 60) for i in range(n)]


def test_publica_en_peticiones_acotadas_y_devuelve_un_resultado_por_evento(bootstrap):
    # 23 casos → 46 eventos; la Ingesta acepta hasta LOTE_MAXIMO (20) por petición: 3 peticiones.
    buenos = _casos(23)
    malos = [(evento("x1", caso="x1", servicio="no-existe"), "servicio_desconocido"),
             (evento("x2", caso="", t=B), "campo_requerido:caso_id")]
    entrada = buenos[:10] + [malos[0][0]] + buenos[10:30] + [malos[1][0]] + buenos[30:]
    avances = []
    with ingesta_en_proceso(bootstrap) as (servicio, _, _):
        with PublicadorIngesta(f"127.0.0.1:{servicio.puerto_grpc}", token=TOKEN_RENIEC,
                               eventos_por_peticion=LOTE_MAXIMO) as publicador:
            resumen = publicador.publicar(entrada, al_avanzar=avances.append)
        registros = leer_topico(bootstrap, EVENTOS, len(buenos), limite_s=10)
    motivos = {e.evento_id: m for e, m in malos}
    assert [(r.evento_id, r.aceptado, r.motivo) for r in resumen.resultados] == [
        (e.evento_id, e.evento_id not in motivos, motivos.get(e.evento_id, "")) for e in entrada]
    assert resumen.aceptados == 46 and [i for i, _ in resumen.rechazados] == [10, 31]
    # Tres peticiones (20, 20 y 8 eventos): el avance se informa por petición.
    assert avances == [20, 20, 8]
    ids = [e.evento_id for _, e, _ in eventos_de(registros)]
    assert sorted(ids) == sorted(e.evento_id for e in buenos)


def test_con_catalogo_lo_invalido_no_sale_y_lleva_el_motivo_de_la_ingesta(bootstrap):
    malo = evento("x1", caso="x1", servicio="no-existe")
    buenos = _casos(2)
    pedidos = []
    with ingesta_en_proceso(bootstrap) as (servicio, _, _):
        with PublicadorIngesta(f"127.0.0.1:{servicio.puerto_grpc}", token=TOKEN_RENIEC,
                               catalogo=CATALOGO) as publicador:
            resumen = publicador.publicar([malo, *buenos], al_avanzar=pedidos.append)
        registros = leer_topico(bootstrap, EVENTOS, 4, limite_s=10)
    # El mismo motivo que daría la Ingesta (prueba anterior), sin haberlo enviado: el avance
    # dice 1 resuelto en local y después una petición de 4.
    assert [(r.evento_id, r.motivo) for _, r in resumen.rechazados] == [("x1", "servicio_desconocido")]
    assert pedidos == [1, 4]
    assert sorted(e.evento_id for _, e, _ in eventos_de(registros)) == sorted(e.evento_id for e in buenos)


def test_peticiones_rechazadas_enteras_son_errores_con_lo_ya_resuelto(bootstrap):
    ajeno = evento("s1", caso="s1", agencia="sunarp", servicio="certificado-literal")
    buenos = _casos(1)
    with ingesta_en_proceso(bootstrap) as (servicio, _, _):
        destino = f"127.0.0.1:{servicio.puerto_grpc}"
        with PublicadorIngesta(destino, token="token-que-no-existe", reintentos=0) as publicador:
            with pytest.raises(ErrorIngesta) as error:
                publicador.publicar(buenos)
        assert error.value.codigo == grpc.StatusCode.UNAUTHENTICATED
        # Peticiones de 2: la primera (de reniec) pasa, la segunda trae un evento de sunarp.
        with PublicadorIngesta(destino, token=TOKEN_RENIEC, eventos_por_peticion=2) as publicador:
            with pytest.raises(ErrorIngesta) as error:
                publicador.publicar([*buenos, ajeno])
        assert error.value.codigo == grpc.StatusCode.PERMISSION_DENIED
        assert [(r.evento_id, r.aceptado) for r in error.value.resultados[:2]] == [("c0-r", True), ("c0-e", True)]
        assert error.value.resultados[2] is None
        registros = leer_topico(bootstrap, EVENTOS, 2, limite_s=10)
    assert sorted(e.evento_id for _, e, _ in eventos_de(registros)) == ["c0-e", "c0-r"]


def test_reintenta_cuando_la_ingesta_aun_no_escucha(bootstrap):
    """La primera petición no encuentra servidor (UNAVAILABLE): se reintenta la misma, con los
    mismos evento_id, cuando la Ingesta ya escucha en ese puerto."""
    puerto = puerto_libre()
    eventos = _casos(3)
    rondas, pila = [], []

    def al_reintentar(ronda, cuantos, error):
        rondas.append((ronda, cuantos, error.code()))
        if not pila:
            contexto = ingesta_en_proceso(bootstrap, GPR_GRPC_PUERTO=str(puerto))
            pila.append((contexto, contexto.__enter__()))

    try:
        with PublicadorIngesta(f"127.0.0.1:{puerto}", token=TOKEN_RENIEC, espera_reintento_s=0.2,
                               reintentos=5, plazo_s=10) as publicador:
            resumen = publicador.publicar(eventos, al_reintentar=al_reintentar)
        registros = leer_topico(bootstrap, EVENTOS, 6, limite_s=10)
    finally:
        for contexto, _ in pila:
            contexto.__exit__(None, None, None)
    assert resumen.todo_aceptado
    assert rondas[0] == (1, 6, grpc.StatusCode.UNAVAILABLE)
    assert sorted(e.evento_id for _, e, _ in eventos_de(registros)) == sorted(e.evento_id for e in eventos)


def test_reenviar_tras_una_respuesta_perdida_no_cuenta_dos_veces(bootstrap):
    """Si la respuesta de la Ingesta se pierde, el emisor reenvía la misma lista (los mismos
    evento_id): el tópico tiene cada evento dos veces y la etapa por caso del procesador cuenta
    cada uno una vez."""
    eventos = _casos(4)
    with ingesta_en_proceso(bootstrap) as (servicio, _, _):
        with PublicadorIngesta(f"127.0.0.1:{servicio.puerto_grpc}", token=TOKEN_RENIEC) as publicador:
            assert publicador.publicar(eventos).todo_aceptado
            assert publicador.publicar(eventos).todo_aceptado
        registros = leer_topico(bootstrap, EVENTOS, 16, limite_s=10)
    veces = Counter(e.evento_id for _, e, _ in eventos_de(registros))
    assert veces == {e.evento_id: 2 for e in eventos}

    motor = MotorEnLotes(CATALOGO, B + 10 * H)
    aceptados, duplicados, rechazos = procesar_como_el_procesador(motor, registros, PARTICIONES)
    assert (aceptados, duplicados, rechazos) == (8, 8, [])
    valores, _ = motor.observado("reniec")
    assert valores[("dni-duplicado", "solicitudes", "24h", "")] == (4.0, 4)
    assert valores[("dni-duplicado", "entregas", "24h", "")][1] == 4
