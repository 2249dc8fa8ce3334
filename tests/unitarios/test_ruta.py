"""La ruta exactamente-una-vez real (`servicios/procesador/ruta.py`) sobre un Kafka en memoria
con cortes (`apoyo/puerto_memoria.py`): el trabajador muere en cualquier paso —con un prefijo
cualquiera de lo enviado y de los changelogs en Kafka, y los offsets confirmados a ratos— y el
siguiente sigue desde lo duradero. Al final, lo que publica la agregación es lo que da la
implementación de referencia con cada evento contado una vez."""

from __future__ import annotations

import asyncio
import random

import pytest

from apoyo import escenario
from apoyo.motor import comprobar
from apoyo.puerto_memoria import TP, Corte, Kafka, PuertoMemoria, TablaMemoria
from conftest import AHORA, CATALOGO
from gpr.v1 import eventos_pb2 as pb
from servicios.comun import topicos
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.eventos import clave_kafka
from servicios.comun.lotes import particion_por_defecto
from servicios.procesador import config as config_procesador
from servicios.procesador.dominio.agregacion import Agregacion
from servicios.procesador.dominio.etapa_casos import EtapaCasos
from servicios.procesador.metricas import MetricasProcesador
from servicios.procesador.publicacion import Publicacion
from servicios.procesador.ruta import Ruta

D = 86400
PARTICIONES = 3
CAT = cargar_catalogo(CATALOGO)
CFG = config_procesador.leer({"GPR_KAFKA_BOOTSTRAP": "k:9092"})
# Los tópicos que el procesador lee, por etapa: reparto, etapa por caso, agregación.
LEIDOS = (topicos.EVENTOS, topicos.EVENTOS_POR_AGENCIA, topicos.APORTES)


def _publicar(kafka: Kafka, eventos, azar: random.Random) -> None:
    """Los eventos en gpr.eventos.v1 como los escribiría un cliente: sueltos o en LoteEventos
    de un mismo caso, en la partición de su clave."""
    i = 0
    while i < len(eventos):
        e = eventos[i]
        clave = clave_kafka(e)
        tp = TP(topicos.EVENTOS, particion_por_defecto(clave, PARTICIONES))
        if azar.random() < 0.5:
            kafka.escribir(tp, clave, e.SerializeToString(), [])
            i += 1
        else:
            trozo = [e]
            for x in eventos[i + 1:i + azar.randint(1, 6)]:
                if clave_kafka(x) != clave:
                    break
                trozo.append(x)
            kafka.escribir(tp, clave, pb.LoteEventos(eventos=trozo).SerializeToString(), [(topicos.CABECERA_LOTE, b"1")])
            i += len(trozo)


class Trabajador:
    """Un trabajador del procesador: la ruta, sus tablas recuperadas de los changelogs y la
    agregación, sobre un puerto en memoria."""

    def __init__(self, kafka: Kafka, azar: random.Random, corte_en: int | None):
        self.puerto = PuertoMemoria(kafka, azar, corte_en)
        self.kafka, self.azar = kafka, azar
        casos = TablaMemoria("casos", self.puerto)
        self.tablas = [TablaMemoria(n, self.puerto) for n in ("cubos", "vencimientos", "agencias")]
        self.agregacion = Agregacion(*self.tablas, catalogo=CAT, tardanza_maxima_s=7 * D)
        metricas = MetricasProcesador()
        publicacion = Publicacion(CFG, None, metricas, self.agregacion, lambda: float(AHORA))
        # Los escenarios llegan revueltos: aquí no se juzga la tardanza.
        etapa = EtapaCasos(CAT, 1000 * D, lambda: AHORA)
        self.ruta = Ruta(self.puerto, etapa, casos, self.agregacion, self.tablas, publicacion, metricas, PARTICIONES)

    async def _lotes(self, topico: str):
        for _ in range(self.azar.randint(1, 3)):
            lote = self.puerto.lote(topico, PARTICIONES, maximo=self.azar.randint(1, 12))
            if not lote:
                return
            yield lote

    def _terminado(self) -> bool:
        return all(self.kafka.confirmados.get(("procesador", tp), 0) == len(log)
                   for tp, log in self.kafka.logs.items() if tp.topic in LEIDOS)

    async def correr(self) -> bool:
        """Procesa hasta terminar (True) o morir (False)."""
        ruta = self.ruta
        try:
            for _ in range(100_000):
                await ruta.procesar_en_orden(self._lotes(topicos.EVENTOS), topicos.EVENTOS,
                                             ruta.repartir_lote_de_eventos)
                await ruta.procesar_en_orden(self._lotes(topicos.EVENTOS_POR_AGENCIA), topicos.EVENTOS_POR_AGENCIA,
                                             ruta.procesar_lote_de_eventos)
                await ruta.procesar_en_orden(self._lotes(topicos.APORTES), topicos.APORTES,
                                             ruta.agregar_lote_de_aportes, self.agregacion.olvidar_memoria)
                if self.azar.random() < 0.3:
                    self.puerto.confirmar_offsets()
                if self._terminado_tras_confirmar():
                    return True
            raise AssertionError("el trabajador no terminó")
        except Corte:
            return False

    def _terminado_tras_confirmar(self) -> bool:
        # Nada pendiente de leer: se confirma todo y se mira si Kafka quedó al día.
        pendiente = any(self.puerto.posicion.get(tp, self.puerto.offset_confirmado(tp) or 0) < len(log)
                        for tp, log in self.kafka.logs.items() if tp.topic in LEIDOS)
        if pendiente:
            return False
        self.puerto.confirmar_offsets()
        return self._terminado()


@pytest.mark.parametrize("semilla", range(6))
def test_la_ruta_con_cortes_en_cualquier_paso_no_pierde_ni_duplica(semilla):
    azar = random.Random(semilla)
    eventos = escenario.generar(CAT, azar, casos_por_servicio=25, inicio=AHORA - 10 * D, duracion=9 * D)
    kafka = Kafka()
    # Con repetidos: un emisor que reintenta, como los reprocesos tras un corte.
    _publicar(kafka, escenario.desordenar(eventos, azar, 0.05), azar)
    cortes = 0
    while True:
        # Cuatro cortes a lo más, en cualquier operación del puerto; después, hasta el final.
        corte_en = azar.randint(1, 400) if cortes < 4 else None
        if asyncio.run(Trabajador(kafka, azar, corte_en).correr()):
            break
        cortes += 1
    assert cortes == 4
    # Un trabajador nuevo, con las tablas recuperadas de los changelogs: lo duradero.
    final = Trabajador(kafka, azar, None)
    comprobar(final.agregacion, eventos, CAT)


def _rechazados(kafka: Kafka, motivo: str) -> list[pb.Evento]:
    eventos = []
    for tp, log in kafka.logs.items():
        if tp.topic != topicos.RECHAZADOS:
            continue
        for m in log:
            cabeceras = dict(m.headers)
            if cabeceras[topicos.CABECERA_MOTIVO] == motivo.encode():
                eventos.append(pb.Evento.FromString(m.value))
    return eventos


@pytest.mark.parametrize("semilla", range(3))
def test_la_misma_identidad_en_otro_caso_cuenta_una_vez_con_cortes(semilla):
    """Copias de eventos con la misma (fuente, evento_id) en otro caso de la misma agencia, en
    otra partición de gpr.eventos.v1: por cada identidad cuenta exactamente una de las dos
    versiones (la primera que llega a la etapa por caso) y la otra va a rechazados con
    `identidad_repetida`, también con cortes en cualquier paso."""
    azar = random.Random(50 + semilla)
    eventos = escenario.generar(CAT, azar, casos_por_servicio=12, inicio=AHORA - 10 * D, duracion=9 * D)
    con_caso = [e for e in eventos if e.caso_id]
    copias = []
    for original in azar.sample(con_caso, 25):
        copia = pb.Evento()
        copia.CopyFrom(original)
        copia.caso_id = original.caso_id + "-copia"
        copias.append(copia)
    kafka = Kafka()
    _publicar(kafka, escenario.desordenar(eventos + copias, azar, 0.05), azar)
    cortes = 0
    while not asyncio.run(Trabajador(kafka, azar, azar.randint(1, 400) if cortes < 3 else None).correr()):
        cortes += 1
    rechazados = {(e.caso_id, e.fuente, e.evento_id) for e in _rechazados(kafka, "identidad_repetida")}
    contados = []
    por_identidad = {(c.agencia_id, c.fuente, c.evento_id): c for c in copias}
    for e in eventos:
        copia = por_identidad.get((e.agencia_id, e.fuente, e.evento_id))
        if copia is None:
            contados.append(e)
            continue
        original_fuera = (e.caso_id, e.fuente, e.evento_id) in rechazados
        copia_fuera = (copia.caso_id, copia.fuente, copia.evento_id) in rechazados
        assert original_fuera != copia_fuera, f"{e.evento_id}: rechazados el original {original_fuera}, la copia {copia_fuera}"
        contados.append(copia if original_fuera else e)
    assert len(rechazados) == len(copias)
    comprobar(Trabajador(kafka, azar, None).agregacion, contados, CAT)


def test_sin_la_regla_1_un_corte_duplica(monkeypatch):
    """La prueba ve el fallo: si los agregados salieran antes de que los estados estén en el
    changelog (sin `vaciar`), un corte entre ambos deja agregados sumados cuyos eventos no
    constan como vistos, y el reproceso los vuelve a sumar."""
    fallos = 0
    for semilla in range(8):
        azar = random.Random(100 + semilla)
        eventos = escenario.generar(CAT, azar, casos_por_servicio=15, inicio=AHORA - 10 * D, duracion=9 * D)
        kafka = Kafka()
        _publicar(kafka, eventos, azar)

        async def vaciar_nada(self):
            self._operacion()

        with monkeypatch.context() as m:
            m.setattr(PuertoMemoria, "vaciar", vaciar_nada)
            for _ in range(4):
                if asyncio.run(Trabajador(kafka, azar, azar.randint(1, 400)).correr()):
                    break
            assert asyncio.run(Trabajador(kafka, azar, None).correr())
        try:
            comprobar(Trabajador(kafka, azar, None).agregacion, eventos, CAT)
        except AssertionError:
            fallos += 1
    assert fallos > 0
