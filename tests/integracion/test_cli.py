"""La orden `gpr` contra servicios reales: publicar por Kafka y consultar por gRPC."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from apoyo.kafka import leer_todo
from conftest import RAIZ
from gpr.v1 import eventos_pb2 as pb
from servicios.comun.topicos import EVENTOS, crear_topicos

pytestmark = pytest.mark.integracion


def gpr(*argumentos, env=None):
    return subprocess.run([sys.executable, "-m", "servicios.cli", *argumentos], cwd=RAIZ, capture_output=True,
                          text=True, timeout=120, env=env)


def test_publicar_por_kafka_valida_publica_y_resume(bootstrap, tmp_path):
    crear_topicos(bootstrap, 2)
    ahora = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    lineas = [
        {"eventoId": "a1", "fuente": "cli", "tipo": "SOLICITUD_RECIBIDA", "ocurridoEn": ahora,
         "agenciaId": "reniec", "servicioId": "dni-duplicado", "casoId": "k1"},
        {"evento_id": "a2", "fuente": "cli", "tipo": "SERVICIO_ENTREGADO", "ocurrido_en": ahora,
         "agencia_id": "reniec", "servicio_id": "dni-duplicado", "caso_id": "k1", "canal": "WEB"},
        {"eventoId": "a3", "fuente": "cli", "tipo": "SOLICITUD_RECIBIDA", "ocurridoEn": ahora,
         "agenciaId": "onpe", "servicioId": "x", "casoId": "k2"},
    ]
    archivo = tmp_path / "eventos.jsonl"
    archivo.write_text("\n".join(json.dumps(l) for l in lineas[:2]) + "\n{no es json\n" + json.dumps(lineas[2]) + "\n")
    r = gpr("publicar", str(archivo), "--kafka", bootstrap)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "2 aceptados, 2 rechazados de 4" in r.stdout
    assert "json_invalido" in r.stdout and "agencia_desconocida" in r.stdout
    publicados = leer_todo(bootstrap, EVENTOS, lambda rs: len(rs) >= 2, 20)
    assert sorted(pb.Evento.FromString(x.value).evento_id for x in publicados) == ["a1", "a2"]
    assert {x.key for x in publicados} == {b"k1"}


def test_publicar_sin_broker_sale_con_3(tmp_path):
    archivo = tmp_path / "e.jsonl"
    archivo.write_text(json.dumps({"eventoId": "a1", "tipo": "SOLICITUD_RECIBIDA", "ocurridoEn": "2026-01-01T00:00:00Z",
                                   "agenciaId": "reniec", "servicioId": "dni-duplicado", "casoId": "k"}) + "\n")
    r = gpr("publicar", str(archivo), "--kafka", "127.0.0.1:1")
    assert r.returncode == 3, r.stdout + r.stderr


def test_indicadores_sin_consulta_sale_con_3():
    r = gpr("indicadores", "--consulta", "127.0.0.1:1")
    assert r.returncode == 3 and "UNAVAILABLE" in r.stdout
