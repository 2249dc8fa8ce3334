"""Banco 1 — caudal del procesador frente a sus dos líneas base, con los mismos eventos.

Para cada formato de registro (un Evento por registro; LoteEventos de 500 eventos de una
partición con la cabecera `gpr-lote: 1`):

* piso de faust: una app faust con los mismos ajustes cuyo agente no hace nada por registro;
  en registros sueltos, también con la entrega del procesador (`entrega_por_lotes.py`: los
  registros en listas directo del consumidor, sin el flujo de faust), en un broker aparte;
* consumo crudo: un consumidor aiokafka que lee y decodifica los mismos registros;
* el procesador completo (todos los indicadores, almacén RocksDB) con 1 y con 2 trabajadores.

De cada medida se anota también la CPU gastada por los trabajadores (por evento), el broker
embebido, el proceso del banco y la máquina entera (`instrumentos.CpuDurante`): con dos
trabajadores, una CPU por evento igual a la de uno dice que repartir no añade trabajo, y los
núcleos ocupados, cuánta CPU obtuvieron.

Las apps faust se lanzan primero y se calientan (unidas al grupo, un evento de control por
partición visto), y después se publican todos los registros de golpe: el caudal es eventos
/ (desde el inicio de la publicación hasta ver su efecto). Para el procesador «su efecto» es
que las instantáneas de gpr.indicadores.v1 den, para cada (agencia, servicio), las
solicitudes y entregas contadas directamente de los eventos (incluye hasta un intervalo de
publicación). Si vence el tope (GPR_BENCH_TOPE_CAUDAL_SEGUNDOS) se estima lo procesado
por la fracción de solicitudes ya reflejada (los eventos van en orden de ocurrencia).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rendimiento import instrumentos as ins
from servicios.comun.catalogo import cargar_catalogo

SEMILLA = 61
# Avisos de faust en el registro de un trabajador que explican un caudal bajo: el búfer del
# productor lleno (cada registro espera a vaciarlo) y el temporizador de publicación que
# dura más que su intervalo.
AVISOS = ("producer buffer full", "Timer publicar-indicadores is overlapping")


def medir_piso(bootstrap: str, procesos: ins.Procesos, directorio: Path, registros, eventos: int,
               tope_s: float, por_lotes: bool = False) -> dict:
    nombre = "piso-lotes" if por_lotes else "piso"
    progreso = directorio / nombre / "piso.json"
    progreso.parent.mkdir(parents=True, exist_ok=True)
    control = ins.registros_de_control(ins.SERVICIOS_CONTROL[0], "piso")
    ins.producir(bootstrap, control)
    lanzado = time.time()
    proceso = procesos.lanzar([str(Path(__file__).with_name("piso_faust.py"))],
                              {"GPR_KAFKA_BOOTSTRAP": bootstrap, "BENCH_PROGRESO": str(progreso),
                               "BENCH_ENTREGA": "lotes" if por_lotes else "faust"}, nombre)

    def leer() -> dict:
        try:
            return json.loads(progreso.read_text())
        except (OSError, ValueError):
            return {"n": 0, "ultimo": 0.0}

    def esperar(n: int, limite_s: float) -> dict:
        fin = time.monotonic() + limite_s
        while (estado := leer())["n"] < n:
            assert proceso.poll() is None, f"el piso de faust terminó:\n{procesos.registro(nombre)}"
            assert time.monotonic() < fin, f"el piso de faust no llegó a {n} registros:\n{procesos.registro(nombre)}"
            time.sleep(0.05)
        return estado

    arranque = esperar(len(control), 120)["ultimo"] - lanzado
    cpu = ins.CpuDurante([proceso.pid], ins.pid_del_broker(bootstrap))
    inicio = time.time()
    ins.producir(bootstrap, registros)
    fin = esperar(len(control) + len(registros), max(tope_s, 300))["ultimo"]
    gastado = cpu.medir()
    procesos.detener(proceso)
    segundos = fin - inicio
    return {"segundos": round(segundos, 3), "registros_s": round(len(registros) / segundos, 1),
            "eventos_s": round(eventos / segundos, 1), "arranque_s": round(arranque, 2), "cpu": gastado,
            "cpu_us_registro": round(gastado["trabajadores_s"] / len(registros) * 1e6, 1),
            "cpu_us_evento": round(gastado["trabajadores_s"] / eventos * 1e6, 1)}


def medir_crudo(bootstrap: str, registros_en_topico: int) -> dict:
    salida = subprocess.run([sys.executable, str(Path(__file__).with_name("consumo_crudo.py")), bootstrap,
                             str(registros_en_topico)], capture_output=True, text=True, timeout=300, check=True)
    medida = json.loads(salida.stdout.strip().splitlines()[-1])
    return {"segundos": round(medida["segundos"], 3), "registros_s": round(medida["registros"] / medida["segundos"], 1),
            "eventos_s": round(medida["eventos"] / medida["segundos"], 1)}


def medir_procesador(bootstrap: str, procesos: ins.Procesos, directorio: Path, catalogo: Path, trabajadores: int,
                     registros, esperados, eventos: int, config: ins.ConfigBench, etiqueta: str) -> dict:
    ins.crear_topicos_bench(bootstrap)
    observador = ins.Observador(bootstrap)
    try:
        grupo = ins.lanzar_trabajadores(procesos, bootstrap, directorio, catalogo, observador, trabajadores,
                                        nombre=etiqueta)
        perfil = (ins.Perfilador(grupo.procesos[0].pid, config.directorio / f"perfil-{etiqueta}.txt",
                                   config.tope_caudal_s)
                  if config.perfil else None)
        cpu = ins.CpuDurante([p.pid for p in grupo.procesos], ins.pid_del_broker(bootstrap))
        inicio = time.time()
        ins.producir(bootstrap, registros)
        espera = ins.esperar_totales(observador, esperados, config.tope_caudal_s, vivo=grupo.vivos, exigir=False)
        gastado = cpu.medir()
        resumen_perfil = perfil.resumen() if perfil else None
    finally:
        observador.cerrar()
    segundos = espera.instante - inicio
    procesados = eventos if espera.completa else round(eventos * espera.fraccion)
    avisos = dict.fromkeys(AVISOS, 0)
    for i in range(trabajadores):
        registro = procesos.registro(f"{etiqueta}-{i}", 10**9)
        assert "Traceback" not in registro, registro[-3000:]
        for aviso in AVISOS:
            avisos[aviso] += registro.count(aviso)
    return {"trabajadores": trabajadores, "completo": espera.completa, "eventos": procesados,
            "segundos": round(segundos, 3), "eventos_s": round(procesados / segundos, 1),
            "registros_s": round(len(registros) * procesados / eventos / segundos, 1),
            "arranque_s": round(grupo.arranque_s, 2), "avisos": avisos, "perfil": resumen_perfil,
            "cpu": gastado, "cpu_us_evento": round(gastado["trabajadores_s"] / procesados * 1e6, 1) if procesados else None,
            "cpu_us_registro": (round(gastado["trabajadores_s"] / (len(registros) * procesados / eventos) * 1e6, 1)
                                if procesados else None)}


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("formato", ["evento", "lote"])
def test_caudal(formato, config_bench, resultados, tmp_path):
    catalogo_control = ins.catalogo_con_control(tmp_path)
    catalogo = cargar_catalogo(ins.CATALOGO)
    n = config_bench.eventos_simples if formato == "evento" else config_bench.eventos_lote
    eventos = ins.generar_eventos(catalogo, n, SEMILLA)
    registros = (ins.registros_simples(eventos) if formato == "evento"
                 else ins.registros_en_lotes(eventos, config_bench.tamano_lote))
    esperados = ins.totales_esperados(eventos)
    medida: dict = {"eventos": len(eventos), "registros": len(registros)}
    procesos = ins.Procesos(tmp_path / "registros")
    try:
        with ins.broker_limpio(tmp_path / "base") as bootstrap:
            ins.crear_topicos_bench(bootstrap)
            medida["piso_faust"] = medir_piso(bootstrap, procesos, tmp_path, registros, len(eventos),
                                               config_bench.tope_caudal_s)
            print(f"\n[caudal {formato}] piso de faust: {medida['piso_faust']}")
            # El tópico tiene los registros medidos más los de control del piso.
            medida["crudo"] = medir_crudo(bootstrap, len(registros) + ins.PARTICIONES)
            print(f"[caudal {formato}] consumo crudo: {medida['crudo']}")
        if formato == "evento":
            # El procesador recibe los eventos por lotes, sin el flujo de faust por registro
            # (`entrega_por_lotes.py`): el piso con la misma entrega dice cuánto de su razón
            # frente al piso de faust viene de esa entrega y cuánto cuesta lo suyo.
            with ins.broker_limpio(tmp_path / "piso-lotes") as bootstrap:
                ins.crear_topicos_bench(bootstrap)
                medida["piso_faust_lotes"] = medir_piso(bootstrap, procesos, tmp_path, registros, len(eventos),
                                                        config_bench.tope_caudal_s, por_lotes=True)
            print(f"[caudal {formato}] piso de faust con entrega por lotes: {medida['piso_faust_lotes']}")
        for trabajadores in (1, 2):
            with ins.broker_limpio(tmp_path / f"procesador-{trabajadores}") as bootstrap:
                clave = f"procesador_{trabajadores}"
                medida[clave] = medir_procesador(bootstrap, procesos, tmp_path / clave, catalogo_control, trabajadores,
                                                 registros, esperados, len(eventos), config_bench,
                                                 f"{formato}-{trabajadores}")
                procesos.detener_todos()
            print(f"[caudal {formato}] procesador ×{trabajadores}: "
                  f"{ {k: v for k, v in medida[clave].items() if k != 'perfil'} }")
    finally:
        procesos.detener_todos()
        resultados.registrar("caudal", formato, medida)
