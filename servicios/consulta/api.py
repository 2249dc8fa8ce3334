"""El resto de la API `Indicadores`: historial, tablero, incumplimientos y suscripción en vivo.

La lógica de cada respuesta es pura (recibe las series de la vista); `ApiExtendida` la expone
como métodos del servicer gRPC. El historial guarda, por serie, las últimas
`GPR_HISTORIAL_MAXIMO` instantáneas vistas desde que arrancó la consulta (el tópico está
compactado: tras un reinicio empieza con la última de cada serie y lo que aún no se compactó),
y entre todas las series como mucho `GPR_HISTORIAL_TOTAL` anteriores a las actuales (se
olvidan primero las más viejas): así la memoria queda acotada aunque todo cambie cada segundo.
Cada suscriptor tiene un búfer de `GPR_SUSCRIPCION_BUFER` actualizaciones: si se llena porque
el cliente no lee, su flujo termina con RESOURCE_EXHAUSTED; la memoria nunca crece sin límite.

Acceso (ver `acceso`): cada método empieza por `_autorizar`, que da el alcance del token
(UNAUTHENTICATED sin uno válido). Pedir por nombre una agencia fuera del alcance es
PERMISSION_DENIED; sin agencia en el pedido, los listados y suscripciones se limitan a las
agencias del alcance.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import grpc

from gpr.v1 import indicadores_pb2 as ipb
from servicios.consulta.acceso import ABIERTO, Alcance, NoAutenticado, Tokens, alcance_de_metadatos
from servicios.consulta.peticiones import (Filtro, PeticionInvalida, clave_de_solicitud, cumple, eco, errores_filtro,
                                           filtro_de)
from servicios.consulta.vista import Vista

log = logging.getLogger(__name__)

# Instantáneas anteriores a las actuales que se guardan entre todas las series (GPR_HISTORIAL_TOTAL).
HISTORIAL_TOTAL = 200_000
_CARGANDO = ("la vista de indicadores aún se está cargando desde gpr.indicadores.v1; "
             "reintente en unos segundos")


def _campos(indicador: ipb.Indicador) -> Filtro:
    return (indicador.agencia_id, indicador.servicio_id, indicador.indicador, indicador.ventana)


def armar_tablero(series: Iterable[ipb.Indicador], agencia_id: str, ventana: str) -> ipb.Tablero:
    """Cada servicio con sus indicadores (sin los de etapa); `series`: las de la agencia en la ventana."""
    por_servicio: dict[str, list[ipb.Indicador]] = {}
    for i in series:
        if not i.etapa_id:
            por_servicio.setdefault(i.servicio_id, []).append(i)
    tablero = ipb.Tablero(agencia_id=agencia_id, ventana=ventana)
    for servicio_id in sorted(por_servicio):
        indicadores = sorted(por_servicio[servicio_id], key=lambda i: i.indicador)
        tablero.servicios.add(servicio_id=servicio_id, indicadores=indicadores,
                              etapa_cuello_botella=indicadores[0].etapa_cuello_botella)
        tablero.incumplimientos += sum(1 for i in indicadores if i.meta.estado == ipb.ESTADO_CUMPLIMIENTO_INCUMPLE)
    return tablero


def incumplimientos(series: Iterable[ipb.Indicador], filtro: Filtro) -> list[ipb.Indicador]:
    return sorted(
        (i for i in series if i.meta.estado == ipb.ESTADO_CUMPLIMIENTO_INCUMPLE and cumple(_campos(i), filtro)),
        key=lambda i: (i.agencia_id, i.servicio_id, i.indicador, i.ventana, i.etapa_id),
    )


class Suscripcion:
    """Búfer acotado de un suscriptor; `desbordada` cuando el cliente no da abasto."""

    def __init__(self, filtro: Filtro, bufer: int, alcance: Alcance = ABIERTO):
        self.filtro = filtro
        self.alcance = alcance
        self.cola: asyncio.Queue = asyncio.Queue(maxsize=bufer)
        self.desbordada = False

    def ofrecer(self, indicador: ipb.Indicador, campos: Filtro) -> None:
        """`campos`: los de `indicador`, leídos una vez por actualización y no por suscriptor."""
        if self.desbordada or not cumple(campos, self.filtro) or not self.alcance.permite(campos[0]):
            return
        try:
            self.cola.put_nowait(indicador)
        except asyncio.QueueFull:
            self.desbordada = True
            # Despierta al flujo para que termine ya, sin esperar otra actualización.
            self.cola.get_nowait()
            self.cola.put_nowait(None)


class ApiExtendida:
    """Métodos de `Indicadores` más allá de obtener y listar (mezcla para el servicer)."""

    def _iniciar_api(self, vista: Vista, historial_maximo: int, bufer_suscripcion: int,
                     historial_total: int = HISTORIAL_TOTAL, tokens: Tokens | None = None) -> None:
        self._vista = vista
        # None: sin control de acceso. Se reemplaza entero al recargar (SIGHUP).
        self.tokens = tokens
        vista.conservar_historial(historial_maximo, historial_total)
        self._bufer = bufer_suscripcion
        self._suscripciones: set[Suscripcion] = set()
        # Claves de las series que hoy incumplen su meta: ListarIncumplimientos no recorre
        # (ni decodifica) todas las series.
        self._incumplen: set[str] = set()
        vista.suscribir(self._al_cambiar)

    def _al_cambiar(self, clave: str, indicador: ipb.Indicador | None) -> None:
        if indicador is not None and indicador.meta.estado == ipb.ESTADO_CUMPLIMIENTO_INCUMPLE:
            self._incumplen.add(clave)
        else:
            self._incumplen.discard(clave)
        if indicador is not None and self._suscripciones:
            campos = _campos(indicador)
            for suscripcion in list(self._suscripciones):
                suscripcion.ofrecer(indicador, campos)

    async def _exigir_cargada(self, context) -> None:
        # Durante un corte de Kafka la vista sigue cargada y se sirve lo último leído; la
        # salud dice NOT_SERVING. Solo antes de la primera lectura completa no hay nada que dar.
        if not self._vista.cargada.is_set():
            await context.abort(grpc.StatusCode.UNAVAILABLE, _CARGANDO)

    async def _autorizar(self, context) -> Alcance:
        """El alcance del token de la llamada; UNAUTHENTICATED si no trae uno válido."""
        try:
            return alcance_de_metadatos(self.tokens, context.invocation_metadata())
        except NoAutenticado as error:
            # Ni el token ni el metadato se registran: un token mal pegado es igual de secreto.
            log.warning("llamada sin token válido desde %s: %s", context.peer(), error)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(error))

    async def _exigir_agencia(self, alcance: Alcance, agencia: str, context) -> None:
        if agencia and not alcance.permite(agencia):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"agencia_id: este token no puede leer la agencia {eco(agencia)}")

    async def ObtenerHistorial(self, request: ipb.SolicitudHistorial, context) -> ipb.HistorialIndicador:
        alcance = await self._autorizar(context)
        errores = [] if request.maximo >= 0 else ["maximo: no puede ser negativo"]
        try:
            clave = clave_de_solicitud(ipb.SolicitudIndicador(
                agencia_id=request.agencia_id, servicio_id=request.servicio_id, indicador=request.indicador,
                ventana=request.ventana, etapa_id=request.etapa_id))
        except PeticionInvalida as error:
            errores.insert(0, str(error))
        if errores:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(errores))
        await self._exigir_agencia(alcance, request.agencia_id, context)
        await self._exigir_cargada(context)
        instantaneas = self._vista.historial(clave, request.maximo)
        if not instantaneas:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no hay datos de la serie {eco(clave)}")
        return ipb.HistorialIndicador(instantaneas=instantaneas)

    async def ObtenerTablero(self, request: ipb.SolicitudTablero, context) -> ipb.Tablero:
        alcance = await self._autorizar(context)
        ventana = request.ventana or "24h"
        filtro = (request.agencia_id, "", "", ventana)
        errores = [] if request.agencia_id else ["agencia_id: es obligatorio"]
        errores += errores_filtro(filtro)
        if errores:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(errores))
        await self._exigir_agencia(alcance, request.agencia_id, context)
        await self._exigir_cargada(context)
        tablero = armar_tablero(self._vista.indicadores(filtro), request.agencia_id, ventana)
        if not tablero.servicios:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"no hay indicadores de la agencia {eco(request.agencia_id)} en la ventana {eco(ventana)}")
        return tablero

    async def ListarIncumplimientos(self, request: ipb.FiltroIncumplimientos, context) -> ipb.ListaIndicadores:
        alcance = await self._autorizar(context)
        filtro = (request.agencia_id, request.servicio_id, "", "")
        errores = errores_filtro(filtro)
        if errores:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(errores))
        await self._exigir_agencia(alcance, request.agencia_id, context)
        await self._exigir_cargada(context)
        series = (self._vista.obtener(clave) for clave in list(self._incumplen))
        return ipb.ListaIndicadores(indicadores=incumplimientos(
            (i for i in series if i is not None and alcance.permite(i.agencia_id)), filtro))

    async def SuscribirIndicadores(self, request: ipb.FiltroIndicadores, context):
        alcance = await self._autorizar(context)
        filtro = filtro_de(request)
        errores = errores_filtro(filtro)
        if errores:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(errores))
        await self._exigir_agencia(alcance, request.agencia_id, context)
        await self._exigir_cargada(context)
        suscripcion = Suscripcion(filtro, self._bufer, alcance)
        self._suscripciones.add(suscripcion)
        try:
            # Primero el estado actual de las series pedidas, luego cada cambio.
            for indicador in self._vista.indicadores(filtro):
                suscripcion.ofrecer(indicador, _campos(indicador))
            while True:
                indicador = await suscripcion.cola.get()
                if indicador is None or suscripcion.desbordada:
                    await context.abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"el cliente no lee a tiempo: se llenó su búfer de {self._bufer} actualizaciones; "
                        "vuelva a suscribirse (recibirá el estado actual)")
                yield indicador
        finally:
            self._suscripciones.discard(suscripcion)

