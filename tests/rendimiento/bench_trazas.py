"""Banco 7 — costo de las trazas en la etapa por caso (`Ruta.procesar_lote_de_eventos`, la de
más registros por segundo): apagadas (sin OTEL_EXPORTER_OTLP_ENDPOINT) frente a encendidas
(proveedor del SDK con `BatchSpanProcessor`, como en producción, y un exportador que descarta:
se mide el costo en el bucle del trabajador, no la red), con los mismos registros, en el mismo
proceso y alternando cuál va primero.

Sin Kafka (puerto en memoria, `apoyo/puerto_memoria.py`). Registros de un evento cada uno (el
peor caso para un costo por registro), todos con `traceparent` como los escribe la ingesta, un
contexto cada `POR_PETICION` registros. Apagadas, las cabeceras no se leen; encendidas, cada
lote lee las de todos sus registros y enlaza sus contextos distintos.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from apoyo import escenario
from apoyo.puerto_memoria import TP, Evento, Kafka, PuertoMemoria, TablaMemoria
from rendimiento import instrumentos as ins
from servicios.comun import topicos
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.eventos import clave_kafka
from servicios.comun.lotes import particion_por_defecto
from servicios.comun.metas import IndiceMetas
from servicios.comun.trazas import APAGADAS, Trazas
from servicios.procesador import config as config_procesador
from servicios.procesador.dominio.agregacion import Agregacion
from servicios.procesador.dominio.etapa_casos import EtapaCasos
from servicios.procesador.metricas import MetricasProcesador
from servicios.procesador.publicacion import Publicacion
from servicios.procesador.ruta import Ruta

D = 86400
PARTICIONES = 4
LOTE = 1000
POR_PETICION = 20
RONDAS = 9


class _Descarta(SpanExporter):
    def export(self, spans) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _registros(catalogo) -> list[tuple[int, bytes, bytes, list]]:
    azar = random.Random(7)
    fin = (int(time.time()) // 3600) * 3600 - D
    eventos = escenario.generar(catalogo, azar, casos_por_servicio=800, inicio=fin - 20 * D, duracion=19 * D)
    registros = []
    for i, e in enumerate(eventos):
        contexto = f"00-{random.Random(i // POR_PETICION).getrandbits(128):032x}-{i // POR_PETICION + 1:016x}-01"
        clave = clave_kafka(e)
        registros.append((particion_por_defecto(clave, PARTICIONES), clave, e.SerializeToString(),
                          [("traceparent", contexto.encode())]))
    return registros


def _lotes_de(registros: list) -> list[list]:
    return [registros[i:i + LOTE] for i in range(0, len(registros), LOTE)]


def _una_corrida(catalogo, registros, trazas: Trazas, solo_tramos: bool = False) -> float:
    """Segundos dentro de `procesar_lote_de_eventos` para todos los registros, en lotes de `LOTE`
    (`solo_tramos`: solo abrir y cerrar el tramo de cada lote, lo que las trazas agregan)."""
    kafka = Kafka()
    puerto = PuertoMemoria(kafka, random.Random(0))
    casos = TablaMemoria("casos", puerto)
    tablas = [TablaMemoria(n, puerto) for n in ("cubos", "vencimientos", "agencias")]
    agregacion = Agregacion(*tablas, catalogo=catalogo, tardanza_maxima_s=7 * D)
    metricas = MetricasProcesador()
    cfg = config_procesador.leer({"GPR_KAFKA_BOOTSTRAP": "k:9092"})
    publicacion = Publicacion(cfg, IndiceMetas([]), metricas, agregacion, time.time, trazas)
    ruta = Ruta(puerto, EtapaCasos(catalogo, 1000 * D, time.time), casos, agregacion, tablas, publicacion,
                metricas, PARTICIONES, trazas=trazas)
    for particion, clave, valor, cabeceras in registros:
        kafka.escribir(TP(topicos.EVENTOS, particion), clave, valor, cabeceras)
    mensajes = [Evento(m, puerto) for tp, log in sorted(kafka.logs.items(), key=lambda x: x[0].partition)
                for m in log]
    # Los lotes como los arma la guardia de orden: por partición, en orden de offset.
    lotes = []
    for i in range(0, len(mensajes), LOTE):
        grupos: dict[int, list] = {}
        for evento in mensajes[i:i + LOTE]:
            grupos.setdefault(evento.message.partition, []).append(evento)
        lotes.append(grupos)

    async def correr() -> float:
        total = 0.0
        for grupos in lotes:
            inicio = time.perf_counter()
            if solo_tramos:
                with trazas.consumo(topicos.EVENTOS, (e.message for g in grupos.values() for e in g)):
                    pass
            else:
                await ruta.procesar_lote_de_eventos(grupos)
            total += time.perf_counter() - inicio
        return total

    return asyncio.run(correr())


def test_trazas_apagadas_frente_a_encendidas(resultados):
    catalogo = cargar_catalogo(ins.CATALOGO)
    registros = _registros(catalogo)
    proveedor = TracerProvider()
    proveedor.add_span_processor(BatchSpanProcessor(_Descarta()))
    variantes = {"apagadas": APAGADAS, "encendidas": Trazas(proveedor)}
    tiempos: dict[str, list[float]] = {nombre: [] for nombre in variantes}
    _una_corrida(catalogo, registros, APAGADAS)  # calentamiento
    for ronda in range(RONDAS):
        orden = list(variantes) if ronda % 2 == 0 else list(reversed(variantes))
        for nombre in orden:
            tiempos[nombre].append(_una_corrida(catalogo, registros, variantes[nombre]))
    tramos = [_una_corrida(catalogo, registros, variantes["encendidas"], solo_tramos=True) for _ in range(RONDAS)]
    proveedor.shutdown()
    # Contextos distintos por lote (los registros de una partición se leen seguidos).
    por_lote = [len({c[0][1] for _, _, _, c in trozo})
                for trozo in _lotes_de(sorted(registros, key=lambda r: r[0]))]
    # Apagadas, lo que la ruta agrega por lote (un `with` y un generador sin recorrer).
    n = 100_000
    inicio = time.perf_counter()
    for _ in range(n):
        with APAGADAS.consumo(topicos.EVENTOS, (e for e in ())):
            pass
    apagadas_por_lote_us = (time.perf_counter() - inicio) / n * 1e6
    medida = {
        "registros": len(registros), "lote": LOTE, "registros_por_contexto": POR_PETICION, "rondas": RONDAS,
        **{f"{nombre}_s_p50": round(statistics.median(t), 4) for nombre, t in tiempos.items()},
        **{f"{nombre}_s_min": round(min(t), 4) for nombre, t in tiempos.items()},
        **{f"{nombre}_us_por_registro": round(1e6 * statistics.median(t) / len(registros), 2)
           for nombre, t in tiempos.items()},
        "contextos_por_lote_media": round(statistics.fmean(por_lote), 1),
        "encendidas_tramos_us_por_registro": round(1e6 * min(tramos) / len(registros), 3),
        "apagadas_costo_por_lote_us": round(apagadas_por_lote_us, 3),
    }
    medida["razon_encendidas"] = round(medida["encendidas_s_p50"] / medida["apagadas_s_p50"], 3)
    medida["razon_encendidas_min"] = round(medida["encendidas_s_min"] / medida["apagadas_s_min"], 3)
    medida["apagadas_costo_relativo"] = round(
        apagadas_por_lote_us * len(range(0, len(registros), LOTE)) / 1e6 / medida["apagadas_s_p50"], 6)
    print(f"\n[trazas] {medida}")
    resultados.fijar("trazas", medida)
