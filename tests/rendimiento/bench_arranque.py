"""Banco 5 — arranque de un trabajador del procesador en el broker embebido.

Del lanzamiento de `python -m servicios.procesador` a ver en gpr.indicadores.v1 el efecto de
un evento ya publicado (uno por partición): importar, unirse al grupo, recuperar tablas y
procesar. Con GPR_INTERVALO_PUBLICACION=0.1 para que la espera del temporizador de
publicación no pese en la medida. Tres casos:

* en frío (broker y directorio vacíos), GPR_BENCH_ARRANQUES veces, cada vez con un broker nuevo;
* reinicio con su estado local (RocksDB) tras procesar una carga;
* reinicio sin estado local (otra máquina): recupera las tablas desde sus changelogs.

La línea base es el arranque del piso de faust, medido en el banco de caudal.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics

import pytest

from rendimiento import instrumentos as ins
from servicios.terceros.aiokafka import corregir_fin_de_log
from servicios.comun.catalogo import cargar_catalogo

PUBLICACION_RAPIDA = {"GPR_INTERVALO_PUBLICACION": "0.1"}
EVENTOS_DE_ESTADO = 5_000


def registros_en_changelogs(bootstrap: str) -> int:
    """Registros en los changelogs de las tablas (fin de log real, ver docs/decisiones.md)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    corregir_fin_de_log()

    async def contar() -> int:
        consumidor = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
        await consumidor.start()
        try:
            tps = [TopicPartition(t, p) for t in await consumidor.topics() if t.endswith("-changelog")
                   for p in consumidor.partitions_for_topic(t) or ()]
            return sum((await consumidor.end_offsets(tps)).values()) if tps else 0
        finally:
            await consumidor.stop()

    return asyncio.run(contar())


@pytest.mark.timeout(600)
def test_arranque(config_bench, resultados, tmp_path):
    catalogo = ins.catalogo_con_control(tmp_path)
    medida: dict = {"intervalo_publicacion_s": 0.1}
    procesos = ins.Procesos(tmp_path / "registros")
    try:
        frio = []
        for i in range(config_bench.arranques):
            with ins.broker_limpio(tmp_path / f"frio-{i}") as bootstrap:
                ins.crear_topicos_bench(bootstrap)
                observador = ins.Observador(bootstrap)
                try:
                    grupo = ins.lanzar_trabajadores(procesos, bootstrap, tmp_path / f"datos-{i}", catalogo, observador,
                                                    1, nombre=f"frio-{i}", **PUBLICACION_RAPIDA)
                    frio.append(round(grupo.arranque_s, 2))
                    print(f"\n[arranque] en frío: {grupo.arranque_s:.2f} s")
                    if i < config_bench.arranques - 1:
                        procesos.detener_todos()
                        continue
                    # El último se queda: se le da estado y se reinicia con él y sin él.
                    eventos = ins.generar_eventos(cargar_catalogo(ins.CATALOGO), EVENTOS_DE_ESTADO, semilla=5)
                    ins.producir(bootstrap, ins.registros_en_lotes(eventos, config_bench.tamano_lote))
                    ins.esperar_totales(observador, ins.totales_esperados(eventos), 300, vivo=grupo.vivos)
                    procesos.detener_todos()
                    medida["registros_changelog"] = registros_en_changelogs(bootstrap)

                    grupo = ins.lanzar_trabajadores(procesos, bootstrap, tmp_path / f"datos-{i}", catalogo, observador,
                                                    1, nombre=f"frio-{i}", ronda=1, **PUBLICACION_RAPIDA)
                    medida["reinicio_con_estado_s"] = round(grupo.arranque_s, 2)
                    print(f"[arranque] reinicio con estado local: {grupo.arranque_s:.2f} s")
                    procesos.detener_todos()

                    shutil.rmtree(tmp_path / f"datos-{i}")
                    grupo = ins.lanzar_trabajadores(procesos, bootstrap, tmp_path / f"datos-{i}", catalogo, observador,
                                                    1, nombre=f"frio-{i}", ronda=2, **PUBLICACION_RAPIDA)
                    medida["reinicio_sin_estado_s"] = round(grupo.arranque_s, 2)
                    print(f"[arranque] reinicio sin estado local ({medida['registros_changelog']} registros "
                          f"de changelog): {grupo.arranque_s:.2f} s")
                    # Tras recuperar, los totales de la carga siguen siendo exactos.
                    ins.esperar_totales(observador, ins.totales_esperados(eventos), 60, vivo=grupo.vivos)
                finally:
                    observador.cerrar()
                    procesos.detener_todos()
        medida["frio_s"] = frio
        medida["frio_mediana_s"] = round(statistics.median(frio), 2)
    finally:
        procesos.detener_todos()
        resultados.fijar("arranque", medida)
