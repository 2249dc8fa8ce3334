"""Documentación que corre: los archivos de docs/ejemplos/ publicados con `gpr publicar` en el
broker embebido y procesados por el procesador real dan los indicadores calculados a mano en
docs/contrato.md, y cada línea de `invalidos.jsonl` acaba en gpr.eventos.rechazados.v1 con el
motivo de `invalidos.esperado.tsv`.

El reloj: los indicadores que se comprueban (`total` y los meses de la agencia) dependen solo del
tiempo de evento (la marca de agua), no de la hora de la máquina; el reloj de pared del
procesador y de `gpr publicar` solo juzga `tiempo_futuro`, y los ejemplos son de 2026 (la línea
de `tiempo_futuro`, de 2099). La misma cuenta con el reloj fijado, y veinte años después, sin
Kafka: tests/unitarios/test_guia_contrato.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter

import pytest
from kafka import KafkaProducer

from apoyo.guia import EJEMPLOS, ILEGIBLE, INVALIDOS, SOLO_PROCESADOR, VALIDOS, comprobar_indicadores, esperados, \
    evento_de, lineas
from apoyo.kafka import leer_todo
from apoyo.procesador import PARTICIONES, lanzar_procesador
from conftest import RAIZ
from gpr.v1 import eventos_pb2 as pb
from gpr.v1 import indicadores_pb2 as ipb
from servicios.comun.eventos import clave_kafka
from servicios.comun.topicos import CABECERA_MOTIVO, EVENTOS, INDICADORES, RECHAZADOS, crear_topicos

pytestmark = pytest.mark.integracion


def gpr_publicar(archivo, bootstrap):
    # Un ancho fijo: la tabla de rechazados no depende de la terminal que corre la prueba.
    entorno = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "servicios.cli", "publicar", str(archivo), "--kafka", bootstrap],
                          cwd=RAIZ, capture_output=True, text=True, timeout=120, env=entorno)


def _sin_sello(evento: pb.Evento) -> bytes:
    """El evento sin `recibido_en` (lo sella `gpr publicar` al enviar), en bytes comparables."""
    copia = pb.Evento()
    copia.CopyFrom(evento)
    copia.ClearField("recibido_en")
    return copia.SerializeToString(deterministic=True)


def test_los_ejemplos_de_la_guia_publicados_y_procesados(bootstrap, procesos, tmp_path):
    crear_topicos(bootstrap, PARTICIONES)
    procesador = lanzar_procesador(procesos, bootstrap, tmp_path)

    for nombre in VALIDOS:
        n = len(lineas(nombre))
        r = gpr_publicar(EJEMPLOS / nombre, bootstrap)
        assert r.returncode == 0, f"{nombre}: {r.stdout}{r.stderr}"
        assert f"{n} aceptados, 0 rechazados de {n}" in r.stdout, r.stdout

    # Los inválidos: `gpr publicar` rechaza antes de enviar lo que juzga el validador, con su
    # línea y motivo, y envía lo que solo el procesador puede juzgar (tardio, caso_de_otro_servicio,
    # identidad_repetida).
    filas = esperados()
    texto = lineas(INVALIDOS)
    r = gpr_publicar(EJEMPLOS / INVALIDOS, bootstrap)
    assert r.returncode == 1, r.stdout + r.stderr
    pasan = [f for f in filas if f["motivo"] in SOLO_PROCESADOR]
    assert f"{len(pasan)} aceptados, {len(filas) - len(pasan)} rechazados de {len(filas)}" in r.stdout, r.stdout
    por_motivo = Counter(f["motivo"].split(":")[0] for f in filas if f["motivo"] not in SOLO_PROCESADOR)
    linea_motivos = re.search(r"^Por motivo: (.*)$", r.stdout, re.M).group(1)
    assert dict((m, int(n)) for m, n in (par.rsplit(" ", 1) for par in linea_motivos.split(", "))) == por_motivo
    for fila in filas:
        if fila["motivo"] not in SOLO_PROCESADOR and fila["motivo"] != ILEGIBLE:
            assert re.search(rf"^\W*{fila['linea']}\W.*{re.escape(fila['motivo'])}", r.stdout, re.M), (fila, r.stdout)

    # Un sistema que publica con su propio cliente de Kafka sin validar antes: las mismas líneas
    # rechazadas por `gpr publicar`, un `Evento` por registro, las rechaza el procesador.
    crudos = [(f, evento_de(l)) for f, l in zip(filas, texto)
              if f["motivo"] not in SOLO_PROCESADOR and f["motivo"] != ILEGIBLE]
    productor = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    for _, evento in crudos:
        productor.send(EVENTOS, evento.SerializeToString(), key=clave_kafka(evento))
    productor.flush()
    productor.close()

    esperado = {_sin_sello(evento_de(l)): f["motivo"] for f, l in zip(filas, texto) if f["motivo"] != ILEGIBLE}
    assert len(esperado) == len(filas) - 1

    def motivos(registros):
        return {_sin_sello(pb.Evento.FromString(r.value)): dict(r.headers)[CABECERA_MOTIVO].decode()
                for r in registros}

    rechazados = leer_todo(bootstrap, RECHAZADOS, lambda rs: len(rs) >= len(esperado), 120)
    assert len(rechazados) == len(esperado), (len(rechazados), procesos.registro("procesador")[-3000:])
    assert motivos(rechazados) == esperado

    # Los indicadores que publica el procesador (el último valor de cada serie, del tópico
    # compactado) igualan a los calculados a mano.
    errores = ["sin leer"]
    fin = time.monotonic() + 120
    while errores and time.monotonic() < fin:
        publicado = {r.key.decode(): ipb.Indicador.FromString(r.value)
                     for r in leer_todo(bootstrap, INDICADORES, lambda rs: False, 3) if r.value}
        errores = comprobar_indicadores(publicado)
    assert procesador.poll() is None, procesos.registro("procesador")[-3000:]
    assert errores == [], procesos.registro("procesador")[-3000:]
