"""Banco 6 — costo de una pasada de publicación con 13 meses de historia: incremental (solo
las ventanas que la agregación anotó) frente a recalcular todas las ventanas de cada agencia
tocada, con los mismos eventos, en el mismo proceso y alternando cuál va primero.

Sin Kafka (etapa por caso, agregación y publicación sobre dicts, `apoyo/publicacion.py`): mide
el cálculo, que ocupa el único bucle del trabajador mientras dura. La historia se carga sin
medir; después llegan los eventos de los últimos días en tandas de `TANDA` eventos con una
pasada tras cada una, como en un trabajador con carga constante.
"""

from __future__ import annotations

import random
import statistics
import time

from apoyo import escenario
from apoyo.publicacion import Banco
from rendimiento import instrumentos as ins
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.metas import IndiceMetas, cargar_metas

D = 86400
TANDA = 200
DIAS_DE_HISTORIA = 395
DIAS_MEDIDOS = 10


def test_pasada_incremental_frente_a_recalcular_todo(resultados):
    catalogo = cargar_catalogo(ins.CATALOGO)
    metas = IndiceMetas(cargar_metas(sorted((ins.RAIZ / "despliegue" / "metas").glob("*.yaml")), catalogo))
    azar = random.Random(71)
    fin = (int(time.time()) // 3600) * 3600 - D
    eventos = escenario.generar(catalogo, azar, casos_por_servicio=3000, inicio=fin - DIAS_DE_HISTORIA * D,
                                duracion=DIAS_DE_HISTORIA * D)
    corte = fin - DIAS_MEDIDOS * D
    historia = [e for e in eventos if e.ocurrido_en.seconds < corte]
    recientes = [e for e in eventos if e.ocurrido_en.seconds >= corte]
    bancos = {"incremental": Banco(catalogo, metas, refresco_rango_s=10.0),
              "todo": Banco(catalogo, metas, refresco_rango_s=10.0, recalcular_todo=True)}
    for banco in bancos.values():
        for i in range(0, len(historia), 5000):
            banco.procesar(historia[i:i + 5000])
        banco.pasada()
    tiempos: dict[str, list[float]] = {nombre: [] for nombre in bancos}
    for n, i in enumerate(range(0, len(recientes), TANDA)):
        orden = list(bancos) if n % 2 == 0 else list(reversed(bancos))
        for nombre in orden:
            bancos[nombre].procesar(recientes[i:i + TANDA])
            tiempos[nombre].append(bancos[nombre].pasada(avance_s=0.3))
    # Sin eventos nuevos se publican los rangos pendientes: lo publicado debe coincidir.
    for banco in bancos.values():
        banco.pasada()
    assert bancos["incremental"].publicado == bancos["todo"].publicado
    medida = {
        "eventos_historia": len(historia), "eventos_medidos": len(recientes), "tanda": TANDA,
        "pasadas": len(tiempos["incremental"]),
        **{f"{nombre}_ms_p50": round(1000 * statistics.median(t), 2) for nombre, t in tiempos.items()},
        **{f"{nombre}_ms_media": round(1000 * statistics.fmean(t), 2) for nombre, t in tiempos.items()},
    }
    medida["razon_media"] = round(medida["incremental_ms_media"] / medida["todo_ms_media"], 3)
    print(f"\n[publicacion] {medida}")
    resultados.fijar("publicacion", medida)
