"""Generador del simulador: reproducible, válido, ciclos en orden, plazos incumplidos donde se
pide, cambios de perfil en marcha y un reloj que nunca se adelanta al reloj de pared.

Las proporciones de entregas en plazo y las duraciones de etapa se recalculan aquí a partir de
los eventos emitidos (entrega − recepción ≤ plazo_dias·86400), sin usar el código del procesador.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

import pytest

from gpr.v1 import eventos_pb2 as pb
from servicios.comun.catalogo import cargar_catalogo, desde_datos
from servicios.comun.config import ConfiguracionInvalida
from servicios.comun.eventos import TIPOS_DE_CASO, validar
from servicios.simulador import config
from servicios.simulador.generador import (
    Generador,
    LentosInvalidos,
    Reloj,
    lentos_por_defecto,
    parsear_lentos,
)

from conftest import CATALOGO

D = 86400
# Lunes 16 de junio de 2025, 10:00 en Lima: empieza en horario de oficina.
INICIO = 1_750_086_000
HORIZONTE = INICIO + 14 * D
LENTO = ("sunarp", "certificado-literal")


@pytest.fixture(scope="module")
def catalogo():
    return cargar_catalogo(CATALOGO)


@pytest.fixture(scope="module")
def eventos(catalogo):
    """Dos semanas simuladas con certificado-literal lento por su etapa de emisión."""
    generador = Generador(catalogo, 7, INICIO, lentos={LENTO: "emision"}, casos_por_hora=3)
    return generador.emitir_hasta(HORIZONTE)


def por_caso(eventos):
    casos = defaultdict(list)
    for e in eventos:
        casos[e.caso_id].append(e)
    return casos


def cumplimiento(eventos, catalogo):
    """{(agencia, servicio): (entregas en plazo, entregas)} de casos con recepción conocida."""
    recibido, cuentas = {}, defaultdict(lambda: [0, 0])
    for e in eventos:
        if e.tipo == pb.TIPO_EVENTO_SOLICITUD_RECIBIDA:
            recibido[e.caso_id] = e.ocurrido_en.seconds
        elif e.tipo == pb.TIPO_EVENTO_SERVICIO_ENTREGADO and e.caso_id in recibido:
            plazo_s = catalogo.servicio(e.agencia_id, e.servicio_id).plazo_dias * D
            c = cuentas[(e.agencia_id, e.servicio_id)]
            c[0] += e.ocurrido_en.seconds - recibido[e.caso_id] <= plazo_s
            c[1] += 1
    return {k: tuple(v) for k, v in cuentas.items()}


def duraciones_etapa(eventos, agencia, servicio):
    """{etapa: [(inicio, duración)]} de los primeros intentos de las etapas de un servicio."""
    inicios, duraciones = {}, defaultdict(list)
    for e in eventos:
        if (e.agencia_id, e.servicio_id) != (agencia, servicio) or e.intento != 1:
            continue
        if e.tipo == pb.TIPO_EVENTO_ETAPA_INICIADA:
            inicios[(e.caso_id, e.etapa_id)] = e.ocurrido_en.seconds
        elif e.tipo == pb.TIPO_EVENTO_ETAPA_COMPLETADA:
            t0 = inicios[(e.caso_id, e.etapa_id)]
            duraciones[e.etapa_id].append((t0, e.ocurrido_en.seconds - t0))
    return duraciones


# --- reproducibilidad -------------------------------------------------------------------------

def _bytes(eventos):
    return [e.SerializeToString() for e in eventos]


def test_misma_semilla_mismos_eventos(catalogo):
    a = Generador(catalogo, 11, INICIO).emitir_hasta(INICIO + 2 * D)
    b = Generador(catalogo, 11, INICIO).emitir_hasta(INICIO + 2 * D)
    assert len(a) > 1000
    assert _bytes(a) == _bytes(b)


def test_otra_semilla_u_otro_inicio_no_repiten_identificadores(catalogo):
    base = Generador(catalogo, 11, INICIO).emitir_hasta(INICIO + D)
    otra_semilla = Generador(catalogo, 12, INICIO).emitir_hasta(INICIO + D)
    otro_inicio = Generador(catalogo, 11, INICIO + 1).emitir_hasta(INICIO + D)
    ids = {e.evento_id for e in base}
    assert not ids & {e.evento_id for e in otra_semilla}
    assert not ids & {e.evento_id for e in otro_inicio}
    assert not {e.caso_id for e in base} & {e.caso_id for e in otro_inicio}


def test_emitir_por_tandas_da_lo_mismo_que_de_una_vez(catalogo):
    entero = Generador(catalogo, 5, INICIO).emitir_hasta(INICIO + D)
    por_tandas, generador = [], Generador(catalogo, 5, INICIO)
    hasta = INICIO
    while hasta < INICIO + D:
        hasta += 977
        while tanda := generador.emitir_hasta(min(hasta, INICIO + D), limite=13):
            por_tandas.extend(tanda)
    assert _bytes(por_tandas) == _bytes(entero)


# --- validez y orden --------------------------------------------------------------------------

def test_todo_evento_es_valido_y_unico(eventos, catalogo):
    assert len(eventos) > 20_000
    assert {e.tipo for e in eventos} >= {
        pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, pb.TIPO_EVENTO_ETAPA_INICIADA, pb.TIPO_EVENTO_ETAPA_COMPLETADA, pb.TIPO_EVENTO_CASO_DEVUELTO,
        pb.TIPO_EVENTO_SERVICIO_ENTREGADO, pb.TIPO_EVENTO_CASO_CERRADO, pb.TIPO_EVENTO_ENCUESTA_RESPONDIDA, pb.TIPO_EVENTO_RECLAMO_REGISTRADO,
        pb.TIPO_EVENTO_RECLAMO_RESUELTO, pb.TIPO_EVENTO_COSTO_REGISTRADO,
    }
    for e in eventos:
        assert validar(e, catalogo, HORIZONTE) is None, e
        assert INICIO <= e.ocurrido_en.seconds <= HORIZONTE
        assert e.fuente == "simulador" and e.caso_id
    assert len({e.evento_id for e in eventos}) == len(eventos)
    instantes = [e.ocurrido_en.seconds for e in eventos]
    assert instantes == sorted(instantes)


def test_valido_con_la_hora_de_su_propia_emision(catalogo):
    # Emitido en pasos de un minuto: cada evento es aceptable en el instante en que sale.
    generador = Generador(catalogo, 3, INICIO)
    for paso in range(1, 6 * 60):
        ahora = INICIO + 60 * paso
        for e in generador.emitir_hasta(ahora):
            assert validar(e, catalogo, ahora) is None
            assert e.ocurrido_en.seconds <= ahora


def test_campos_de_encuestas_reclamos_y_costos(eventos, catalogo):
    for e in eventos:
        if e.tipo == pb.TIPO_EVENTO_ENCUESTA_RESPONDIDA:
            assert e.satisfaccion.escala_max == 5 and 1 <= e.satisfaccion.puntaje <= 5
        elif e.tipo == pb.TIPO_EVENTO_RECLAMO_REGISTRADO:
            assert e.reclamo.reclamo_id and e.reclamo.categoria
            etapas = catalogo.servicio(e.agencia_id, e.servicio_id).etapas
            assert e.reclamo.etapa_relacionada in etapas
        elif e.tipo == pb.TIPO_EVENTO_COSTO_REGISTRADO:
            assert e.costo.unidades > 0 or e.costo.nanos > 0
            assert e.costo.nanos % 10_000_000 == 0  # céntimos exactos
            assert e.costo.moneda == catalogo.agencias[e.agencia_id].moneda
        elif e.tipo == pb.TIPO_EVENTO_SERVICIO_ENTREGADO:
            assert e.canal != pb.CANAL_NO_ESPECIFICADO
    resultados = [e.resultado for e in eventos if e.tipo == pb.TIPO_EVENTO_SERVICIO_ENTREGADO]
    otorgados = resultados.count(pb.RESULTADO_OTORGADO) / len(resultados)
    assert 0.9 < otorgados < 1.0
    assert pb.RESULTADO_ERROR in resultados and pb.RESULTADO_DESISTIDO in resultados


def _comprobar_ciclo(caso, etapas):
    """Recorre el ciclo de un caso con una máquina de estados escrita aparte del generador."""
    ciclo = [e for e in caso if e.tipo in TIPOS_DE_CASO]
    assert ciclo[0].tipo == pb.TIPO_EVENTO_SOLICITUD_RECIBIDA
    instantes = [e.ocurrido_en.seconds for e in ciclo]
    assert instantes == sorted(set(instantes)), "el ciclo de un caso avanza en el tiempo"
    siguiente, en_curso, ultima, devuelta, conclusion = 0, None, None, None, None
    for e in ciclo[1:]:
        assert conclusion is None, "nada del ciclo después de la entrega o el cierre"
        if e.tipo == pb.TIPO_EVENTO_ETAPA_INICIADA:
            assert en_curso is None
            if devuelta is not None:
                assert (e.etapa_id, e.intento) == (devuelta, 2)
                devuelta = None
            else:
                assert (e.etapa_id, e.intento) == (etapas[siguiente], 1)
                siguiente += 1
            en_curso = (e.etapa_id, e.intento)
        elif e.tipo == pb.TIPO_EVENTO_ETAPA_COMPLETADA:
            assert en_curso == (e.etapa_id, e.intento)
            ultima, en_curso = en_curso, None
        elif e.tipo == pb.TIPO_EVENTO_CASO_DEVUELTO:
            assert en_curso is None and devuelta is None and ultima == (e.etapa_id, 1)
            devuelta = e.etapa_id
        elif e.tipo == pb.TIPO_EVENTO_SERVICIO_ENTREGADO:
            assert en_curso is None and devuelta is None and siguiente == len(etapas)
            conclusion = e
        elif e.tipo == pb.TIPO_EVENTO_CASO_CERRADO:
            assert en_curso is None
            assert e.resultado in (pb.RESULTADO_DESISTIDO, pb.RESULTADO_DENEGADO_NO_ELEGIBLE)
            conclusion = e
    for e in caso:
        if e.tipo in (pb.TIPO_EVENTO_ENCUESTA_RESPONDIDA, pb.TIPO_EVENTO_COSTO_REGISTRADO):
            assert conclusion is not None and e.ocurrido_en.seconds >= conclusion.ocurrido_en.seconds
        if e.tipo == pb.TIPO_EVENTO_ENCUESTA_RESPONDIDA:
            assert conclusion.tipo == pb.TIPO_EVENTO_SERVICIO_ENTREGADO
    registrados = {}
    for e in caso:
        if e.tipo == pb.TIPO_EVENTO_RECLAMO_REGISTRADO:
            registrados[e.reclamo.reclamo_id] = e.ocurrido_en.seconds
        elif e.tipo == pb.TIPO_EVENTO_RECLAMO_RESUELTO:
            assert registrados[e.reclamo.reclamo_id] < e.ocurrido_en.seconds
    return conclusion


def test_ciclo_de_cada_caso_en_orden(eventos, catalogo):
    conclusiones = defaultdict(int)
    for caso in por_caso(eventos).values():
        servicio = catalogo.servicio(caso[0].agencia_id, caso[0].servicio_id)
        conclusion = _comprobar_ciclo(caso, servicio.etapas)
        conclusiones[pb.TipoEvento.Name(conclusion.tipo) if conclusion else "abierto"] += 1
    assert conclusiones["TIPO_EVENTO_SERVICIO_ENTREGADO"] > 10 * conclusiones["TIPO_EVENTO_CASO_CERRADO"] > 0
    assert conclusiones["abierto"] > 0


def test_caso_devuelto_se_reintenta_o_se_cierra_por_abandono(eventos):
    reintentados = abandonados = 0
    for caso in por_caso(eventos).values():
        for i, e in enumerate(caso):
            if e.tipo != pb.TIPO_EVENTO_CASO_DEVUELTO:
                continue
            despues = [x for x in caso[i + 1:] if x.tipo in (pb.TIPO_EVENTO_ETAPA_INICIADA, pb.TIPO_EVENTO_CASO_CERRADO)]
            if not despues:
                continue  # aún esperando la subsanación al final del horizonte
            if despues[0].tipo == pb.TIPO_EVENTO_ETAPA_INICIADA:
                assert (despues[0].etapa_id, despues[0].intento) == (e.etapa_id, 2)
                reintentados += 1
            else:
                assert despues[0].resultado == pb.RESULTADO_DESISTIDO
                abandonados += 1
    assert reintentados > 50
    assert 0.1 < abandonados / (reintentados + abandonados) < 0.4


# --- plazos -----------------------------------------------------------------------------------

def test_el_servicio_lento_incumple_su_plazo_y_los_demas_cumplen(eventos, catalogo):
    cuentas = cumplimiento(eventos, catalogo)
    assert set(cuentas) == set(catalogo.servicios)
    for clave, (en_plazo, entregas) in cuentas.items():
        assert entregas >= 100, clave
        if clave == LENTO:
            assert en_plazo / entregas < 0.15, (clave, en_plazo, entregas)
        else:
            assert en_plazo / entregas > 0.9, (clave, en_plazo, entregas)


def test_la_etapa_lenta_es_la_culpable(eventos, catalogo):
    plazo_s = catalogo.servicio(*LENTO).plazo_dias * D
    medianas = {etapa: statistics.median(d for _, d in v)
                for etapa, v in duraciones_etapa(eventos, *LENTO).items()}
    assert medianas["emision"] > plazo_s
    assert medianas["mesa-de-partes"] < 0.5 * plazo_s


def test_se_elige_que_servicio_incumple_y_por_que_etapa(catalogo):
    lentos = {("reniec", "dni-duplicado"): "impresion"}
    generador = Generador(catalogo, 7, INICIO, lentos=lentos, casos_por_hora=3)
    eventos = generador.emitir_hasta(INICIO + 12 * D)
    cuentas = cumplimiento(eventos, catalogo)
    en_plazo, entregas = cuentas[("reniec", "dni-duplicado")]
    assert entregas >= 100 and en_plazo / entregas < 0.15
    en_plazo, entregas = cuentas[LENTO]
    assert entregas >= 100 and en_plazo / entregas > 0.9
    medianas = {etapa: statistics.median(d for _, d in v)
                for etapa, v in duraciones_etapa(eventos, "reniec", "dni-duplicado").items()}
    assert max(medianas, key=medianas.get) == "impresion"


def test_degradar_y_recuperar_en_marcha(catalogo):
    generador = Generador(catalogo, 9, INICIO, lentos={}, casos_por_hora=6)
    degradado, recuperado = INICIO + 2 * D, INICIO + 4 * D
    eventos = generador.emitir_hasta(degradado)
    generador.fijar_lentos({LENTO: "emision"})
    eventos += generador.emitir_hasta(recuperado)
    generador.fijar_lentos({})
    eventos += generador.emitir_hasta(INICIO + 10 * D)
    plazo_s = catalogo.servicio(*LENTO).plazo_dias * D
    tramos = defaultdict(list)
    for inicio, duracion in duraciones_etapa(eventos, *LENTO)["emision"]:
        tramo = "antes" if inicio < degradado else "degradado" if inicio < recuperado else "después"
        tramos[tramo].append(duracion)
    assert all(len(v) > 100 for v in tramos.values())
    assert statistics.median(tramos["antes"]) < 0.3 * plazo_s
    assert statistics.median(tramos["degradado"]) > plazo_s
    assert statistics.median(tramos["después"]) < 0.3 * plazo_s


def test_servicio_sin_etapas_y_otra_moneda():
    catalogo = desde_datos({
        "agencias": [{"id": "sat", "nombre": "Servicio de Administración Tributaria", "moneda": "USD"}],
        "servicios": [{"id": "constancia", "nombre": "Constancia", "agencia": "sat", "plazo_dias": 1}],
    })
    assert lentos_por_defecto(catalogo) == {}
    eventos = Generador(catalogo, 1, INICIO).emitir_hasta(INICIO + 5 * D)
    assert not any(e.tipo in (pb.TIPO_EVENTO_ETAPA_INICIADA, pb.TIPO_EVENTO_ETAPA_COMPLETADA) for e in eventos)
    assert any(e.tipo == pb.TIPO_EVENTO_SERVICIO_ENTREGADO for e in eventos)
    for e in eventos:
        assert validar(e, catalogo, INICIO + 5 * D) is None
    assert {e.costo.moneda for e in eventos if e.tipo == pb.TIPO_EVENTO_COSTO_REGISTRADO} == {"USD"}


# --- reloj ------------------------------------------------------------------------------------

def test_el_reloj_nunca_se_adelanta_al_reloj_de_pared(catalogo):
    """Reloj de pared falso: 1 h de historia a 400 eventos/s y después 2 h en tiempo real."""
    arranque = float(INICIO + 3600)
    generador = Generador(catalogo, 4, INICIO, casos_por_hora=60)
    reloj = Reloj(generador, tasa=400)
    pared, emitidos, alcanzado = arranque, [], None
    while pared < arranque + 2 * 3600:
        eventos, espera = reloj.paso(pared)
        for e in eventos:
            assert e.ocurrido_en.seconds <= pared
            emitidos.append((pared, e.ocurrido_en.seconds))
        # Nunca más de la tasa más la ráfaga del cubo (una décima de segundo).
        assert len(emitidos) <= 400 * (pared - arranque) + 40 + 1
        if alcanzado is None and reloj.retraso_s(pared) == 0 and emitidos:
            alcanzado = pared
        assert 0 <= espera <= 1.0
        pared += max(espera, 0.001)
    assert len(emitidos) > 2000
    # La historia sale a la tasa: tarda lo que sus eventos a 400/s, no una hora.
    historicos = sum(1 for _, t in emitidos if t <= arranque)
    assert alcanzado is not None and alcanzado - arranque < historicos / 400 * 1.2 + 1
    # En tiempo real un evento sale, como mucho, un segundo después de ocurrir.
    en_vivo = [p - t for p, t in emitidos if p > alcanzado + 1]
    assert len(en_vivo) > 500 and max(en_vivo) <= 1.0


def test_reloj_respeta_maximo(catalogo):
    reloj = Reloj(Generador(catalogo, 4, INICIO), tasa=1000)
    eventos, _ = reloj.paso(INICIO + D, maximo=7)
    assert len(eventos) == 7


# --- configuración ----------------------------------------------------------------------------

def test_parsear_lentos():
    assert parsear_lentos("sunarp/certificado-literal:emision, minsa/cita-especialidad:asignacion") == {
        ("sunarp", "certificado-literal"): "emision", ("minsa", "cita-especialidad"): "asignacion",
    }
    assert parsear_lentos("ninguno") == {} == parsear_lentos("")
    for malo in ("sunarp:emision", "sunarp/certificado-literal", "a/b:c,a/b:d"):
        with pytest.raises(LentosInvalidos):
            parsear_lentos(malo)


def test_lentos_por_defecto_es_el_plazo_mas_corto(catalogo):
    assert lentos_por_defecto(catalogo) == {LENTO: "emision"}


def test_config_por_defecto():
    cfg = config.leer({"GPR_KAFKA_BOOTSTRAP": "k:9092"})
    assert (cfg.catalogo, cfg.particiones, cfg.tasa, cfg.semilla) == ("despliegue/catalogo.yaml", 4, 200.0, 42)
    assert (cfg.historia_s, cfg.lentos, cfg.maximo, cfg.control) == (3 * D, None, 0, None)


def test_config_lentos_explicitos(catalogo):
    cfg = config.leer({"GPR_KAFKA_BOOTSTRAP": "k", "GPR_SIMULADOR_LENTOS": "minsa/cita-especialidad:asignacion"})
    assert cfg.lentos == {("minsa", "cita-especialidad"): "asignacion"}
    config.comprobar_con_catalogo(cfg, catalogo)


@pytest.mark.parametrize("env, variable", [
    ({}, "GPR_KAFKA_BOOTSTRAP"),
    ({"GPR_SIMULADOR_TASA": "rápido"}, "GPR_SIMULADOR_TASA"),
    ({"GPR_SIMULADOR_TASA": "0"}, "GPR_SIMULADOR_TASA"),
    ({"GPR_SIMULADOR_SEMILLA": "x"}, "GPR_SIMULADOR_SEMILLA"),
    ({"GPR_SIMULADOR_HISTORIA": "3 días"}, "GPR_SIMULADOR_HISTORIA"),
    ({"GPR_SIMULADOR_LENTOS": "sunarp-emision"}, "GPR_SIMULADOR_LENTOS"),
    ({"GPR_SIMULADOR_MAXIMO": "-1"}, "GPR_SIMULADOR_MAXIMO"),
    ({"GPR_SIMULADOR_CASOS_HORA": "0"}, "GPR_SIMULADOR_CASOS_HORA"),
])
def test_config_invalida_nombra_la_variable(env, variable):
    base = {} if variable == "GPR_KAFKA_BOOTSTRAP" else {"GPR_KAFKA_BOOTSTRAP": "k"}
    with pytest.raises(ConfiguracionInvalida, match=variable):
        config.leer({**base, **env})


@pytest.mark.parametrize("lentos, mensaje", [
    ("sunarp/no-existe:emision", "servicio desconocido"),
    ("sunarp/certificado-literal:calificacion", "no tiene la etapa"),
])
def test_config_lentos_fuera_del_catalogo(catalogo, lentos, mensaje):
    cfg = config.leer({"GPR_KAFKA_BOOTSTRAP": "k", "GPR_SIMULADOR_LENTOS": lentos})
    with pytest.raises(ConfiguracionInvalida, match=f"GPR_SIMULADOR_LENTOS.*{mensaje}"):
        config.comprobar_con_catalogo(cfg, catalogo)


def test_archivo_de_control_degrada_y_recupera_en_marcha(catalogo, tmp_path):
    from servicios.simulador.__main__ import Control

    generador = Generador(catalogo, 1, INICIO)
    ruta = tmp_path / "lentos"
    control = Control(str(ruta), generador)
    control.revisar()
    assert generador.lentos == {LENTO: "emision"}
    ruta.write_text("minsa/cita-especialidad:asignacion\n")
    control.revisar()
    assert generador.lentos == {("minsa", "cita-especialidad"): "asignacion"}
    assert generador.perfil("minsa", "cita-especialidad").etapa_lenta == "asignacion"
    assert generador.perfil(*LENTO).etapa_lenta is None
    ruta.write_text("minsa/cita-especialidad:no-existe")
    control.revisar()
    assert generador.lentos == {("minsa", "cita-especialidad"): "asignacion"}
    ruta.write_text("")
    control.revisar()
    assert generador.lentos == {}
    assert generador.perfil("minsa", "cita-especialidad").etapa_lenta is None
