"""`gpr rechazados` contra el broker y el procesador reales: listar los rechazados decodificados
(Evento suelto, LoteEventos y bytes ilegibles), y reprocesarlos tras corregir la causa.

Escenario: el procesador arranca con un catálogo al que le falta el servicio
`sunarp/certificado-literal`. Una agencia publica (con un productor Kafka cualquiera) eventos de
ese servicio: van a rechazados con `servicio_desconocido`. Se corrige el catálogo, se reinicia el
procesador y `gpr rechazados reprocesar` los vuelve a publicar: cuentan en los indicadores (las
solicitudes del servicio son tantas como casos distintos publicó la prueba) y un segundo
reprocesamiento no cambia nada (el procesador los descarta como repetidos).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from apoyo.consulta import ClienteConsulta
from apoyo.kafka import leer_todo, publicar
from conftest import CATALOGO, RAIZ
from gpr.v1 import eventos_pb2 as pb
from servicios.comun.broker import puerto_libre
from servicios.comun.topicos import CABECERA_LOTE, CABECERA_MOTIVO, EVENTOS, RECHAZADOS, crear_topicos

pytestmark = pytest.mark.integracion

AGENCIA, SERVICIO = "sunarp", "certificado-literal"
FUENTE = "sistema-registral"
BASURA = b"\xff\x00esto no es un protobuf"


def gpr(*argumentos) -> subprocess.CompletedProcess:
    # Ancho fijo: las tablas se ajustan al ancho (COLUMNS fuera de una terminal) y las pruebas no
    # deben depender del de quien las corre.
    return subprocess.run([sys.executable, "-m", "servicios.cli", *argumentos], cwd=RAIZ, capture_output=True,
                          text=True, timeout=180, env={**os.environ, "COLUMNS": "300"})


def _evento(caso: str, agencia: str = AGENCIA, servicio: str = SERVICIO, ocurrido: float | None = None) -> pb.Evento:
    evento = pb.Evento(evento_id=f"e-{caso}", fuente=FUENTE, tipo=pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, agencia_id=agencia,
                       servicio_id=servicio, caso_id=caso, canal=pb.CANAL_WEB)
    evento.ocurrido_en.seconds = int(ocurrido if ocurrido is not None else time.time() - 3600)
    return evento


def _metricas(puerto: int) -> dict[str, float]:
    """Total de cada contador del procesador (sumando sus etiquetas, si las tiene)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{puerto}/metrics", timeout=5) as respuesta:
        texto = respuesta.read().decode()
    totales: dict[str, float] = {}
    for familia in text_string_to_metric_families(texto):
        for muestra in familia.samples:
            if muestra.name.endswith("_total"):
                totales[muestra.name] = totales.get(muestra.name, 0.0) + muestra.value
    return totales


def _esperar(condicion, limite_s: float, que: str, diagnostico=lambda: ""):
    fin = time.monotonic() + limite_s
    while True:
        try:
            resultado = condicion()
        except OSError:
            resultado = None
        if resultado:
            return resultado
        if time.monotonic() > fin:
            raise AssertionError(f"no ocurrió en {limite_s:.0f} s: {que}\n{diagnostico()}")
        time.sleep(0.3)


def _solicitudes(cliente: ClienteConsulta) -> float | None:
    for i in cliente.listar(AGENCIA):
        if (i.servicio_id, i.indicador, i.ventana, i.etapa_id) == (SERVICIO, "solicitudes", "24h", ""):
            return None if i.sin_datos else i.valor
    return None


@pytest.fixture
def escenario(bootstrap, tmp_path, procesos):
    crear_topicos(bootstrap, 2)
    datos = yaml.safe_load(CATALOGO.read_text(encoding="utf-8"))
    assert any(s["id"] == SERVICIO for s in datos["servicios"])
    datos["servicios"] = [s for s in datos["servicios"] if s["id"] != SERVICIO]
    sin_servicio = tmp_path / "catalogo-sin-servicio.yaml"
    sin_servicio.write_text(yaml.safe_dump(datos, allow_unicode=True), encoding="utf-8")
    metas = tmp_path / "metas"
    metas.mkdir()
    puerto = puerto_libre()

    def procesador(catalogo, nombre):
        return procesos.lanzar("servicios.procesador", {
            "GPR_KAFKA_BOOTSTRAP": bootstrap, "GPR_PARTICIONES": "2", "GPR_CATALOGO": str(catalogo),
            "GPR_METAS": str(metas), "GPR_DIRECTORIO_DATOS": str(tmp_path / "procesador"),
            "GPR_METRICAS_PUERTO": str(puerto)}, nombre=nombre)

    return bootstrap, sin_servicio, procesador, puerto, procesos


def test_listar_y_reprocesar_los_rechazados_tras_corregir_el_catalogo(escenario, tmp_path):
    bootstrap, sin_servicio, procesador, puerto, procesos = escenario
    proceso = procesador(sin_servicio, "procesador-1")

    # Lo que publica la agencia, con un productor Kafka cualquiera (sin validar antes):
    sueltos = [_evento(f"s{i}") for i in range(3)]                     # Evento por registro
    del_lote = [_evento(f"l{i}") for i in range(2)]                    # un LoteEventos
    ajeno = _evento("m1", agencia="minsa", servicio="no-existe")       # sigue mal tras la corrección
    validos = [_evento(f"r{i}", agencia="reniec", servicio="dni-duplicado") for i in range(2)]
    lote = pb.LoteEventos(eventos=del_lote)
    publicar(bootstrap, [*((e.caso_id.encode(), e.SerializeToString()) for e in sueltos + [ajeno] + validos),
                         (del_lote[0].caso_id.encode(), lote.SerializeToString(), [(CABECERA_LOTE, b"1")]),
                         (b"basura", BASURA)])
    # Un rechazado que ya es un LoteEventos entero (con su cabecera), como lo dejaría otro productor
    # de cartas muertas: la lista debe decodificarlo también.
    directos = [_evento(f"d{i}") for i in range(2)]
    publicar(bootstrap, [(b"d0", pb.LoteEventos(eventos=directos).SerializeToString(),
                          [(CABECERA_LOTE, b"1"), (CABECERA_MOTIVO, b"servicio_desconocido"),
                           ("gpr-detalle", b"lote de prueba"), ("gpr-agencia", AGENCIA.encode())])], RECHAZADOS)

    # 3 sueltos + 2 del lote (el procesador rechaza cada evento del lote por separado) + el ajeno +
    # la basura + el lote directo = 8 registros.
    _esperar(lambda: len(leer_todo(bootstrap, RECHAZADOS, lambda rs: len(rs) >= 8, 5)) >= 8, 90,
             "8 registros en el tópico de rechazados", lambda: procesos.registro("procesador-1"))

    # --- listar (JSON): cada evento decodificado con su motivo; la basura, como no decodificable.
    r = gpr("rechazados", "listar", "--kafka", bootstrap, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    filas = [json.loads(linea) for linea in r.stdout.splitlines()]
    decodificados = {f["evento"]["eventoId"]: f for f in filas if f["decodificable"]}
    de_sunarp = {e.evento_id for e in sueltos + del_lote + directos}
    assert set(decodificados) == de_sunarp | {ajeno.evento_id}
    for evento_id in de_sunarp:
        assert decodificados[evento_id]["motivo"] == "servicio_desconocido", decodificados[evento_id]
        assert decodificados[evento_id]["agencia"] == AGENCIA
    assert decodificados[ajeno.evento_id]["motivo"] == "servicio_desconocido"
    ilegibles = [f for f in filas if not f["decodificable"]]
    assert len(ilegibles) == 1 and ilegibles[0]["bytes"] == len(BASURA)
    assert ilegibles[0]["motivo"].startswith("protobuf_invalido"), ilegibles[0]
    assert BASURA.decode(errors="replace") not in r.stdout

    # --- listar (tabla) con filtros: agencia, motivo, agencia desconocida y --desde.
    r = gpr("rechazados", "listar", "--kafka", bootstrap, "--agencia", AGENCIA)
    assert r.returncode == 0, r.stderr
    assert all(evento_id in r.stdout for evento_id in de_sunarp) and ajeno.evento_id not in r.stdout
    assert f"{len(de_sunarp)} eventos rechazados en 6 registros" in r.stdout
    r = gpr("rechazados", "listar", "--kafka", bootstrap, "--motivo", "protobuf_invalido")
    assert f"(no decodificable: {len(BASURA)} bytes)" in r.stdout and "e-s0" not in r.stdout
    r = gpr("rechazados", "listar", "--kafka", bootstrap, "--agencia", "desconocida", "--json")
    assert [f["decodificable"] for f in map(json.loads, r.stdout.splitlines())] == [False]
    r = gpr("rechazados", "listar", "--kafka", bootstrap, "--desde", "2999-01-01T00:00:00Z")
    assert r.returncode == 0 and "0 eventos rechazados" in r.stdout
    r = gpr("rechazados", "listar", "--kafka", bootstrap, "--desde", "ayer")
    assert r.returncode == 2 and "--desde 'ayer'" in r.stderr

    # --- reprocesar antes de corregir: nada pasa la validación y nada se publica.
    antes = len(leer_todo(bootstrap, EVENTOS, lambda rs: False, 3))
    r = gpr("rechazados", "reprocesar", "--kafka", bootstrap, "--agencia", AGENCIA, "--catalogo", str(sin_servicio))
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"0 de {len(de_sunarp)} eventos publicados" in r.stdout and "servicio_desconocido" in r.stdout
    assert len(leer_todo(bootstrap, EVENTOS, lambda rs: False, 3)) == antes

    # --- la corrección: el catálogo completo, y el procesador reiniciado con él.
    proceso.terminate()
    assert proceso.wait(60) is not None
    procesador(CATALOGO, "procesador-2")
    # Los aceptados van por agencia: el contador sin etiquetas de los repetidos existe desde el arranque.
    _esperar(lambda: "gpr_procesador_eventos_duplicados_total" in _metricas(puerto), 90, "el procesador reiniciado",
             lambda: procesos.registro("procesador-2"))
    cliente = ClienteConsulta(bootstrap)
    try:
        cliente.esperar_al_dia(90)
        assert _solicitudes(cliente) is None

        r = gpr("rechazados", "reprocesar", "--kafka", bootstrap, "--agencia", AGENCIA, "--catalogo", str(CATALOGO))
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"{len(de_sunarp)} de {len(de_sunarp)} eventos publicados en gpr.eventos.v1" in r.stdout
        # Cada evento reprocesado es un caso distinto con su solicitud: cuentan todos.
        _esperar(lambda: _solicitudes(cliente) == len(de_sunarp), 90,
                 f"{len(de_sunarp)} solicitudes de {AGENCIA}/{SERVICIO} en la consulta",
                 lambda: f"{_solicitudes(cliente)}\n" + procesos.registro("procesador-2"))
        assert _metricas(puerto)["gpr_procesador_eventos_aceptados_total"] == len(de_sunarp)

        # Un segundo reprocesamiento publica lo mismo y no cambia nada: son repetidos.
        r = gpr("rechazados", "reprocesar", "--kafka", bootstrap, "--agencia", AGENCIA, "--catalogo", str(CATALOGO))
        assert r.returncode == 0, r.stdout + r.stderr
        _esperar(lambda: _metricas(puerto).get("gpr_procesador_eventos_duplicados_total") == len(de_sunarp), 90,
                 "los repetidos descartados", lambda: str(_metricas(puerto)))
        assert _metricas(puerto)["gpr_procesador_eventos_aceptados_total"] == len(de_sunarp)
        assert _solicitudes(cliente) == len(de_sunarp)
    finally:
        cliente.cerrar()


def test_reprocesar_simula_sin_publicar_y_sin_broker_sale_con_3(bootstrap, tmp_path):
    crear_topicos(bootstrap, 1)
    evento = _evento(f"x-{uuid.uuid4().hex[:6]}")
    publicar(bootstrap, [(b"x", evento.SerializeToString(), [(CABECERA_MOTIVO, b"servicio_desconocido")])],
             RECHAZADOS)
    r = gpr("rechazados", "reprocesar", "--kafka", bootstrap, "--simular", "--catalogo", str(CATALOGO))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 de 1 eventos se publicarían" in r.stdout
    assert leer_todo(bootstrap, EVENTOS, lambda rs: False, 3) == []

    r = gpr("rechazados", "listar", "--kafka", f"127.0.0.1:{puerto_libre()}")
    assert r.returncode == 3 and "Kafka no disponible" in r.stderr
