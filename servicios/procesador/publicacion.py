"""Qué instantáneas publicar y cuándo (gpr.indicadores.v1 y gpr.cumplimiento.v1)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from google.protobuf.timestamp_pb2 import Timestamp

from gpr.v1 import indicadores_pb2 as ipb
from servicios.comun import topicos
from servicios.comun.indicadores import INDICADORES, clave_serie, unidad_de
from servicios.comun.metas import CUMPLE, INCUMPLE, SIN_DATOS, IndiceMetas, evaluar
from servicios.comun.trazas import APAGADAS, VINCULOS_MAXIMOS, Trazas
from servicios.procesador.config import ConfigProcesador
from servicios.procesador.dominio.agregacion import Agregacion, Pendientes
from servicios.procesador.metricas import MetricasProcesador

_ESTADOS = {CUMPLE: ipb.ESTADO_CUMPLIMIENTO_CUMPLE, INCUMPLE: ipb.ESTADO_CUMPLIMIENTO_INCUMPLE, SIN_DATOS: ipb.ESTADO_CUMPLIMIENTO_SIN_DATOS}


def _timestamp(segundos: float, cache: dict[float, Timestamp]) -> Timestamp:
    ts = cache.get(segundos)
    if ts is None:
        ts = cache[segundos] = Timestamp()
        ts.FromNanoseconds(int(segundos * 1e9))
    return ts


class Publicacion:
    """Qué instantáneas publicar y cuándo.

    Una pasada empieza en cuanto la agregación deja agencias por publicar (`hay_pendientes`),
    no en un tic fijo: con un tic de 1 s un evento esperaba hasta 1 s a la pasada siguiente, y
    esa espera era casi toda la frescura. Entre el inicio de dos pasadas media al menos
    `GPR_INTERVALO_PUBLICACION`, y `_FACTOR_DURACION` veces lo que tardó la última, así que
    publicar no se lleva más de una fracción del bucle; si el trabajador va retrasado respecto
    de los eventos que llegan (`anotar_retraso`), el mínimo se multiplica por
    `_FACTOR_CON_RETRASO`: con cola nada está fresco y el tiempo rinde más procesándola. Así se
    regula sola: si publicar quitara tanto tiempo que el trabajador dejara de dar abasto, el
    retraso crecería y las pasadas se espaciarían.

    Cada pasada recalcula solo las ventanas que la agregación anotó como posiblemente
    cambiadas (`Agregacion.tomar_pendientes`): los meses pasados de un servicio casi nunca
    cambian. Se publica una serie cuando cambia su valor, muestras, cuello de botella o estado
    de meta. Si solo cambió su rango (`hasta` sigue a la marca de agua con cada evento),
    mientras la agencia sigue recibiendo eventos se publica a lo más cada
    `GPR_REFRESCO_RANGO` (la ventana queda anotada para la pasada siguiente), y en cuanto deja
    de recibir: así una ráfaga no republica miles de series por segundo y, al terminar, lo
    publicado coincide con el estado.
    """

    _FACTOR_DURACION = 4
    _FACTOR_CON_RETRASO = 4
    # Retraso (s) del último lote de eventos respecto de su escritura en Kafka a partir del
    # cual el trabajador se considera con cola.
    _RETRASO_CON_COLA_S = 1.0

    def __init__(self, cfg: ConfigProcesador, metas: IndiceMetas, metricas: MetricasProcesador,
                 agregacion: Agregacion, reloj: Callable[[], float], trazas: Trazas = APAGADAS):
        self.cfg = cfg
        self.metas = metas
        self.metricas = metricas
        self.agregacion = agregacion
        self.reloj = reloj
        self._con_rango_pendiente = Pendientes()
        self._todo = True
        # Por serie: (firma sin rango, rango, instante de publicación). Solo en memoria: tras
        # un reinicio se republica el estado vigente de cada serie (se toma por clave).
        self._publicado: dict[str, tuple] = {}
        # Último estado de meta publicado por serie, para gpr.cumplimiento.v1.
        self._estado_meta: dict[str, int] = {}
        self._evaluaciones: dict[tuple[int, int], ipb.EvaluacionMeta] = {}
        self._unidades: dict[tuple[str, str], str] = {}
        self.hay_pendientes = asyncio.Event()
        self.hay_pendientes.set()
        self._retraso_s = 0.0
        self.trazas = trazas
        # Contextos de los tramos de agregación que tocaron agencias desde la última pasada
        # (solo con trazas): el tramo de la pasada los enlaza (docs/trazas.md).
        self._contextos: list = []
        self._contextos_omitidos = 0
        self._ultimo_contexto = None

    def marcar(self, agencias: set[str], contexto=None) -> None:
        """La agregación tocó estas agencias (lo que cambió lo anota ella misma); `contexto`:
        el de su tramo, con trazas."""
        if not agencias:
            return
        self.hay_pendientes.set()
        # Un lote de agregación marca una vez por partición, con el mismo contexto.
        if contexto is None or contexto == self._ultimo_contexto:
            return
        self._ultimo_contexto = contexto
        if len(self._contextos) < VINCULOS_MAXIMOS:
            self._contextos.append(contexto)
        else:
            self._contextos_omitidos += 1

    def _evaluacion(self, meta, estado: int) -> ipb.EvaluacionMeta:
        """La evaluación de `meta` con `estado` (las metas no cambian mientras corre el proceso)."""
        clave = (id(meta), estado)
        evaluacion = self._evaluaciones.get(clave)
        if evaluacion is None:
            evaluacion = self._evaluaciones[clave] = ipb.EvaluacionMeta(
                operador=meta.operador, valor=meta.valor, muestra_minima=meta.muestra_minima,
                estado=estado, severidad=meta.severidad, equipo=meta.equipo, descripcion=meta.descripcion,
            )
        return evaluacion

    def _unidad(self, agencia_id: str, indicador: str) -> str:
        """La unidad del indicador en el catálogo (la moneda, la de la agencia)."""
        clave = (agencia_id, indicador)
        unidad = self._unidades.get(clave)
        if unidad is None:
            definicion = INDICADORES.get(indicador)
            agencia = self.agregacion.catalogo.agencias.get(agencia_id)
            unidad = self._unidades[clave] = unidad_de(definicion, agencia.moneda if agencia else "") \
                if definicion is not None else ""
        return unidad

    def republicar_todo(self) -> None:
        self._todo = True
        self.hay_pendientes.set()

    def anotar_retraso(self, segundos: float) -> None:
        """Cuánto hace que se escribió en Kafka el último registro de eventos procesado."""
        self._retraso_s = segundos

    def espacio_s(self, duracion_s: float) -> float:
        """Tiempo mínimo entre el inicio de la pasada que tardó `duracion_s` y la siguiente."""
        minimo = self.cfg.intervalo_publicacion_s
        if self._retraso_s > self._RETRASO_CON_COLA_S:
            minimo *= self._FACTOR_CON_RETRASO
        return max(minimo, self._FACTOR_DURACION * duracion_s)

    async def publicar(self, detenerse: Callable[[], bool], enviar: Callable[..., Awaitable]) -> None:
        """Una pasada: publica en gpr.indicadores.v1 (y los cambios de estado de meta en
        gpr.cumplimiento.v1) con `enviar(topico, clave, valor)`; con trazas, en un tramo cuyo
        contexto llevan las instantáneas (`enviar(..., cabeceras=…)`)."""
        contextos, self._contextos = self._contextos, []
        omitidos, self._contextos_omitidos = self._contextos_omitidos, 0
        with self.trazas.envio(topicos.INDICADORES, contextos) as tramo:
            if omitidos:
                tramo.anotar(vinculos_omitidos=omitidos)
            await self._pasada(detenerse, tramo.envolver(enviar))

    async def _pasada(self, detenerse: Callable[[], bool], enviar: Callable[[str, bytes, bytes], Awaitable]) -> None:
        # Lo que se marque mientras dura la pasada la vuelve a pedir.
        self.hay_pendientes.clear()
        activas = self.agregacion.tomar_pendientes()
        if self._todo:
            # Tras arrancar o reequilibrar se republica todo lo local: un cambio pudo quedar
            # sin publicar antes de un corte.
            for clave in self.agregacion.agencias.claves():
                activas.toda_la_agencia(clave.decode())
            self._todo = False
        pendientes = self._con_rango_pendiente.tomar()
        pendientes.unir(activas)
        ahora = self.reloj()
        # Los mismos instantes (desde, hasta, ahora) se repiten en cientos de series de la
        # pasada: crear un Timestamp era dos tercios del costo de armar cada instantánea.
        instantes: dict[float, Timestamp] = {}
        for agencia_id in pendientes.agencias:
            if detenerse():
                # Al detenerse el trabajador el productor se cierra: lo que falte se
                # republica al arrancar (todo lo local se marca sucio).
                return
            recibiendo = agencia_id in activas
            for inst in self.agregacion.instantaneas(agencia_id, pendientes):
                await self._publicar_serie(agencia_id, inst, recibiendo, ahora, instantes, enviar)
            # Cede el bucle entre agencia y agencia: enviar al productor no lo cede, y una
            # pasada con muchas agencias retenía los lotes de las dos etapas hasta terminar.
            await asyncio.sleep(0)
        if self._con_rango_pendiente:
            self.hay_pendientes.set()

    async def _publicar_serie(self, agencia_id, inst, recibiendo, ahora, instantes, enviar) -> None:
        v = inst.valor
        clave = clave_serie(agencia_id, inst.servicio_id, v.indicador, inst.ventana, v.etapa_id)
        meta = self.metas.buscar(agencia_id, inst.servicio_id, v.indicador, v.etapa_id, inst.ventana)
        estado = _ESTADOS[evaluar(meta, v.valor, v.muestras)] if meta is not None else None
        firma = (v.valor, v.muestras, v.numerador, inst.cuello_botella, estado)
        rango = (inst.desde_s, inst.hasta_s)
        anterior = self._publicado.get(clave)
        if anterior is not None and anterior[0] == firma:
            if anterior[1] == rango:
                return
            if recibiendo and ahora - anterior[2] < self.cfg.refresco_rango_s:
                self._con_rango_pendiente.anotar(agencia_id, inst.servicio_id, [inst.ventana])
                return
        indicador = ipb.Indicador(
            agencia_id=agencia_id, servicio_id=inst.servicio_id, indicador=v.indicador,
            ventana=inst.ventana, valor=v.valor if v.valor is not None else 0.0,
            muestras=v.muestras, sin_datos=v.valor is None, numerador=v.numerador,
            etapa_id=v.etapa_id, etapa_cuello_botella=inst.cuello_botella,
            desde=_timestamp(inst.desde_s, instantes), hasta=_timestamp(inst.hasta_s, instantes),
            actualizado_en=_timestamp(ahora, instantes),
            meta=self._evaluacion(meta, estado) if meta is not None else None,
            unidad=self._unidad(agencia_id, v.indicador),
        )
        await enviar(topicos.INDICADORES, clave.encode(), indicador.SerializeToString())
        self._publicado[clave] = (firma, rango, ahora)
        self.metricas.instantaneas.inc()
        if meta is not None and self._estado_meta.get(clave) != estado:
            cambio = ipb.CambioCumplimiento(
                indicador=indicador, estado=estado,
                estado_anterior=self._estado_meta.get(clave, ipb.ESTADO_CUMPLIMIENTO_NO_ESPECIFICADO),
            )
            await enviar(topicos.CUMPLIMIENTO, clave.encode(), cambio.SerializeToString())
            self._estado_meta[clave] = estado
