"""La aplicación faust del procesador: agentes, tablas y publicación de instantáneas.

Dos etapas, unidas por el tópico interno gpr.aportes.v1:

1. `procesar_eventos` (clave caso_id): decodifica y valida cada registro (lo inválido va a
   gpr.eventos.rechazados.v1 con su motivo), deduplica y actualiza el estado del caso
   (tabla `casos`), y envía los aportes del evento a la partición de su agencia.
2. `agregar_aportes` (partición por agencia): suma los aportes en cubos horarios y
   mensuales por (agencia, servicio), la línea de vencimientos y la marca de agua de la
   agencia (`dominio/agregacion.py`).

Un temporizador publica cada `GPR_INTERVALO_PUBLICACION` las instantáneas que cambiaron de
las agencias tocadas en gpr.indicadores.v1 (compactado). Todo el estado vive en tablas con
changelog, así que un trabajador perdido no pierde nada.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable

import faust
from google.protobuf.timestamp_pb2 import Timestamp

from gpr.v1 import indicadores_pb2 as ipb
from gpr.v1 import interno_pb2 as interno
from servicios.comun import topicos
from servicios.comun.catalogo import Catalogo
from servicios.comun.eventos import RegistroInvalido, decodificar, es_lote, validar
from servicios.comun.indicadores import clave_serie
from servicios.comun.metas import CUMPLE, INCUMPLE, SIN_DATOS, IndiceMetas, evaluar
from servicios.procesador.config import ConfigProcesador
from servicios.procesador.dominio.agregacion import Agregacion
from servicios.procesador.dominio.casos import aplicar_evento, lote_si_visto
from servicios.procesador.metricas import MetricasProcesador
from servicios.procesador.faust_seguro import confirmar_hueco
from servicios.procesador.orden import RELECTURAS_PARA_ACEPTAR, Decision, GuardiaDeOrden

registro = logging.getLogger("gpr.procesador")

_ESTADOS = {CUMPLE: ipb.CUMPLE, INCUMPLE: ipb.INCUMPLE, SIN_DATOS: ipb.SIN_DATOS}
# Bits de la secuencia reservados a la posición del evento dentro de su registro.
_BITS_POSICION = 20
# Sin avance en una partición con log por delante durante este tiempo, se relee (el último
# registro pudo descartarse sin que otro posterior delate el hueco).
_QUIETUD_S = 30.0


def particion_de_agencia(agencia_id: str, particiones: int) -> int:
    """Todos los servicios de una agencia en una partición: la marca de agua es local."""
    return zlib.crc32(agencia_id.encode()) % particiones


def _cabeceras(mensaje) -> list[tuple[str, bytes]]:
    cabeceras = mensaje.headers or []
    return list(cabeceras.items()) if isinstance(cabeceras, dict) else list(cabeceras)


def _timestamp(segundos: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(segundos * 1e9))
    return ts


def crear_app(cfg: ConfigProcesador, catalogo: Catalogo, metas: IndiceMetas, metricas: MetricasProcesador,
              reloj: Callable[[], float] = time.time) -> faust.App:
    """Construye la app sin conectarse a nada: la conexión empieza al arrancar el trabajador."""
    app = faust.App(
        cfg.app_id,
        broker=f"kafka://{cfg.bootstrap}",
        store="rocksdb://" if cfg.almacen == "rocksdb" else "memory://",
        datadir=cfg.directorio_datos,
        topic_partitions=cfg.particiones,
        topic_replication_factor=cfg.replicacion,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        # Con los valores por defecto una unión al grupo tarda ~30 s en el broker embebido.
        broker_rebalance_timeout=6.0,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        producer_acks=-1,
        web_enabled=False,
        table_standby_replicas=0,
    )
    t_eventos = app.topic(topicos.EVENTOS, partitions=cfg.particiones)
    t_rechazados = app.topic(topicos.RECHAZADOS, partitions=cfg.particiones)
    t_aportes = app.topic(topicos.APORTES, partitions=cfg.particiones)
    t_indicadores = app.topic(topicos.INDICADORES, partitions=cfg.particiones)
    t_cumplimiento = app.topic(topicos.CUMPLIMIENTO, partitions=cfg.particiones)

    # key_type/value_type bytes: claves y valores crudos (protobuf), sin JSON de por medio.
    def tabla(nombre: str, **opciones):
        return app.Table(nombre, partitions=cfg.particiones, key_type=bytes, **opciones)

    # Estado por caso y, con claves que empiezan por 0xFF (imposible en UTF-8, así que no
    # chocan con ningún caso), la marca de agua de cada agencia vista en cada partición.
    casos = tabla("casos", value_type=bytes)
    agregacion = Agregacion(
        cubos=tabla("cubos", value_type=bytes),
        lineas=tabla("vencimientos", value_type=bytes),
        agencias=tabla("agencias", value_type=bytes),
        catalogo=catalogo,
        tardanza_maxima_s=cfg.tardanza_maxima_s,
    )

    sucias: set[str] = set()
    publicado: dict[str, bytes] = {}
    # Último estado de meta publicado por serie. Solo en memoria: tras un reinicio se vuelve a
    # publicar el estado vigente de cada serie con meta (los consumidores lo toman por clave).
    estado_meta: dict[str, int] = {}
    estado_publicacion = {"todo": True}

    async def rechazar(mensaje, valor: bytes, motivo: str, detalle: str) -> None:
        metricas.rechazados.labels(motivo=motivo.split(":")[0]).inc()
        await t_rechazados.send(
            key=mensaje.key,
            value=valor,
            headers=[(topicos.CABECERA_MOTIVO, motivo.encode()), ("gpr-detalle", detalle.encode())],
        )

    def clave_marca(agencia_id: str, particion: int) -> bytes:
        return b"\xff" + f"marca|{agencia_id}|{particion}".encode()

    guardias = {topicos.EVENTOS: GuardiaDeOrden(), topicos.APORTES: GuardiaDeOrden()}

    async def releer(tp, offset: int) -> None:
        # En el hilo del consumidor de aiokafka: `Consumer.seek` de faust lo llama desde el
        # bucle principal y el fetcher no se entera (medido: la partición no volvía a leer).
        await app.consumer._thread.seek_wait({tp: offset})

    async def en_orden(evento_kafka) -> bool:
        """¿Se procesa este registro? Si falta un offset anterior, relee la partición desde
        él y no lo procesa ni lo confirma (`orden.py` explica por qué)."""
        mensaje = evento_kafka.message
        tp = mensaje.tp
        guardia = guardias[tp.topic]
        antes = guardia.esperado(tp)
        decision = guardia.decidir(tp, mensaje.offset, confirmado=app.consumer._committed_offset.get(tp),
                                   ahora=time.monotonic())
        if decision is Decision.RELEER:
            metricas.relecturas.labels(topico=tp.topic).inc()
            registro.warning("%s[%d]: llegó el offset %d antes que el %d; se relee desde ahí",
                             tp.topic, tp.partition, mensaje.offset, guardia.esperado(tp))
            await releer(tp, guardia.esperado(tp))
            return False
        if decision is Decision.IGNORAR:
            return False
        if decision is Decision.PROCESAR and antes is not None and mensaje.offset > antes:
            registro.warning("%s[%d]: los offsets %d–%d no existen (releídos %d veces); se siguen",
                             tp.topic, tp.partition, antes, mensaje.offset - 1, RELECTURAS_PARA_ACEPTAR)
            await confirmar_hueco(app.consumer, tp, antes, mensaje.offset - 1)
        return True

    @app.timer(interval=_QUIETUD_S, name="vigilar-particiones-quietas")
    async def vigilar_particiones_quietas():
        if app.rebalancing or app.in_recovery:
            return
        consumidor = app.consumer
        asignadas = [tp for tp in consumidor.assignment() if tp.topic in guardias]
        for topico, guardia in guardias.items():
            propias = [tp for tp in asignadas if tp.topic == topico]
            fines = {tp: consumidor.highwater(tp) for tp in propias}
            confirmados = {tp: consumidor._committed_offset.get(tp) for tp in propias}
            for tp, offset in guardia.rezagadas(fines, time.monotonic(), _QUIETUD_S, confirmados):
                registro.warning("%s[%d]: sin avance con el log en %s; se relee desde %d",
                                 tp.topic, tp.partition, fines[tp], offset)
                metricas.relecturas.labels(topico=topico).inc()
                await releer(tp, offset)

    @app.agent(t_eventos, name="procesar-eventos")
    async def procesar_eventos(stream):
        async for evento_kafka in stream.noack().events():
            if not await en_orden(evento_kafka):
                continue
            await procesar_registro(evento_kafka.message)
            evento_kafka.ack()

    async def procesar_registro(mensaje) -> None:
        try:
            eventos = decodificar(mensaje.value, _cabeceras(mensaje))
        except RegistroInvalido as error:
            await rechazar(mensaje, mensaje.value or b"", error.motivo, str(error))
            return
        lote = es_lote(_cabeceras(mensaje))
        for posicion, evento in enumerate(eventos):
            original = evento.SerializeToString() if lote else mensaje.value
            motivo = validar(evento, catalogo, reloj())
            if motivo is not None:
                await rechazar(mensaje, original, motivo, f"evento {evento.evento_id!r}: {motivo}")
                continue
            clave = (evento.caso_id or evento.evento_id).encode()
            previo = casos.get(clave)
            estado = interno.EstadoCaso.FromString(previo) if previo is not None else None
            destino = particion_de_agencia(evento.agencia_id, cfg.particiones)
            clave_aportes = f"{evento.agencia_id}|{evento.servicio_id}".encode()
            ya_emitido = lote_si_visto(estado, evento)
            if ya_emitido is not None:
                # Repetido: se reenvía su lote original (la agregación lo descarta si ya lo
                # sumó; tras un corte puede no haberle llegado nunca).
                metricas.duplicados.inc()
                await t_aportes.send(key=clave_aportes, value=ya_emitido.SerializeToString(), partition=destino)
                continue
            # La tardanza se juzga contra la marca de agua de la agencia en *esta* partición,
            # guardada en la misma tabla (mismo changelog) que los casos: así la decisión es
            # la misma si el evento se reprocesa tras un corte, sin importar cuánto hayan
            # avanzado las demás particiones.
            marca_clave = clave_marca(evento.agencia_id, mensaje.partition)
            marca = int(casos.get(marca_clave) or 0)
            if evento.ocurrido_en.seconds < marca - cfg.tardanza_maxima_s:
                await rechazar(mensaje, original, "tardio", f"evento {evento.evento_id!r}: tardio")
                continue
            resultado = aplicar_evento(
                estado, evento,
                catalogo.servicio(evento.agencia_id, evento.servicio_id).plazo_dias,
                mensaje.partition,
                (mensaje.offset << _BITS_POSICION) | posicion,
            )
            casos[clave] = resultado.estado.SerializeToString()
            if evento.ocurrido_en.seconds > marca:
                casos[marca_clave] = str(evento.ocurrido_en.seconds).encode()
            metricas.aceptados.inc()
            await t_aportes.send(key=clave_aportes, value=resultado.lote.SerializeToString(), partition=destino)

    @app.agent(t_aportes, name="agregar-aportes")
    async def agregar_aportes(stream):
        async for evento_kafka in stream.noack().events():
            if not await en_orden(evento_kafka):
                continue
            sucias.add(agregacion.aplicar_lote(interno.LoteAportes.FromString(evento_kafka.message.value)))
            evento_kafka.ack()

    @app.on_partitions_assigned.connect
    async def al_asignar_particiones(app, assigned, **_kwargs):
        # La recuperación de las tablas escribe directo en el almacén, sin pasar por la
        # memoria de la agregación: se descarta para releer del almacén.
        agregacion.olvidar_memoria()
        # faust vuelve al offset confirmado de cada partición tras el reequilibrio.
        for guardia in guardias.values():
            guardia.olvidar()

    @app.timer(interval=cfg.intervalo_publicacion_s, name="publicar-indicadores")
    async def publicar_indicadores():
        if app.rebalancing or app.in_recovery:
            estado_publicacion["todo"] = True
            return
        if estado_publicacion["todo"]:
            # Tras arrancar o reequilibrar se republica todo lo local: un cambio pudo quedar
            # sin publicar antes de un corte.
            sucias.update(k.decode() for k in agregacion.agencias.claves())
            estado_publicacion["todo"] = False
        ahora = reloj()
        while sucias and not app.should_stop:
            agencia_id = sucias.pop()
            for inst in agregacion.instantaneas(agencia_id):
                v = inst.valor
                indicador = ipb.Indicador(
                    agencia_id=agencia_id, servicio_id=inst.servicio_id, indicador=v.indicador,
                    ventana=inst.ventana, valor=v.valor if v.valor is not None else 0.0,
                    muestras=v.muestras, sin_datos=v.valor is None, numerador=v.numerador,
                    etapa_id=v.etapa_id, etapa_cuello_botella=inst.cuello_botella,
                    desde=_timestamp(inst.desde_s), hasta=_timestamp(inst.hasta_s),
                )
                clave = clave_serie(agencia_id, inst.servicio_id, v.indicador, inst.ventana, v.etapa_id)
                meta = metas.buscar(agencia_id, inst.servicio_id, v.indicador, v.etapa_id, inst.ventana)
                if meta is not None:
                    indicador.meta.CopyFrom(ipb.EvaluacionMeta(
                        operador=meta.operador, valor=meta.valor, muestra_minima=meta.muestra_minima,
                        estado=_ESTADOS[evaluar(meta, v.valor, v.muestras)], severidad=meta.severidad,
                        equipo=meta.equipo, descripcion=meta.descripcion,
                    ))
                contenido = indicador.SerializeToString()
                if publicado.get(clave) == contenido:
                    continue
                if app.should_stop:
                    # Al detenerse el trabajador el productor se cierra: lo que falte se
                    # republica al arrancar (todo lo local se marca sucio).
                    return
                indicador.actualizado_en.CopyFrom(_timestamp(ahora))
                await t_indicadores.send(key=clave.encode(), value=indicador.SerializeToString())
                publicado[clave] = contenido
                metricas.instantaneas.inc()
                if meta is not None and estado_meta.get(clave) != indicador.meta.estado:
                    cambio = ipb.CambioCumplimiento(
                        indicador=indicador, estado=indicador.meta.estado,
                        estado_anterior=estado_meta.get(clave, ipb.ESTADO_CUMPLIMIENTO_NO_ESPECIFICADO),
                    )
                    await t_cumplimiento.send(key=clave.encode(), value=cambio.SerializeToString())
                    estado_meta[clave] = indicador.meta.estado

    return app
