"""La aplicación faust del procesador: agentes, tablas y publicación de instantáneas.

Dos etapas, unidas por el tópico interno gpr.aportes.v1, y ambas por lotes de registros:
el costo por registro de faust y de Kafka se reparte entre muchos eventos, y cada clave de
tabla se escribe una vez por lote.

1. `procesar_eventos` (clave caso_id), una tarea que recibe los eventos en lotes directo
   del consumidor de faust, sin agente (`entrega_por_lotes.py`): por cada partición del lote,
   la etapa pura `dominio/etapa_casos.py` decodifica y valida (lo inválido va a
   gpr.eventos.rechazados.v1 con su motivo), deduplica, actualiza el estado de los casos
   (tabla `casos`) y suma los aportes por (agencia, servicio). Los estados se confirman en el
   changelog *antes* de enviar los agregados a la partición de su agencia: es una de las dos
   reglas del exactamente-una-vez en efecto (ver el módulo de la etapa).
2. `agregar_aportes` (partición por agencia), un agente de faust (`stream.noack_take`): suma
   los agregados en cubos horarios y mensuales por (agencia, servicio), la línea de
   vencimientos y la marca de agua de la agencia (`dominio/agregacion.py`).

Una tarea publica en gpr.indicadores.v1 (compactado) las instantáneas que cambiaron de las
agencias tocadas, en cuanto la agregación las toca y con un mínimo entre pasadas
(`GPR_INTERVALO_PUBLICACION`; ver `Publicacion`). Todo el estado vive en tablas con
changelog, así que un trabajador perdido no pierde nada.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
import zlib
from collections.abc import Callable, Iterator

import faust
import faust.streams
from google.protobuf.timestamp_pb2 import Timestamp

from gpr.v1 import indicadores_pb2 as ipb
from gpr.v1 import interno_pb2 as interno
from servicios.comun import topicos
from servicios.comun.catalogo import Catalogo
from servicios.comun.indicadores import clave_serie
from servicios.comun.metas import CUMPLE, INCUMPLE, SIN_DATOS, IndiceMetas, evaluar
from servicios.procesador.config import ConfigProcesador
from servicios.procesador.dominio.agregacion import Agregacion, Pendientes
from servicios.procesador.dominio.etapa_casos import ERROR_INTERNO, EtapaCasos, Registro
from servicios.procesador.entrega_por_lotes import EntregaPorLotes
from servicios.procesador.faust_seguro import confirmar_hueco, olvidar_entregados
from servicios.procesador.metricas import AGENCIA_DESCONOCIDA, MetricasProcesador
from servicios.procesador.orden import RELECTURAS_PARA_ACEPTAR, Decision, GuardiaDeOrden
from servicios.procesador.tablas import TablaEnBloque

logger = logging.getLogger("gpr.procesador")
_ESTADOS = {CUMPLE: ipb.CUMPLE, INCUMPLE: ipb.INCUMPLE, SIN_DATOS: ipb.SIN_DATOS}
# Sin avance en una partición con log por delante durante este tiempo, se relee (el último
# registro pudo descartarse sin que otro posterior delate el hueco).
_QUIETUD_S = 30.0
# Lo más que el vigía espera al broker por el fin del log de las particiones que no leyeron nada.
_ESPERA_FIN_DE_LOG_S = 10.0
# Tras un lote fallido de la etapa por caso, antes de volver a leer: un fallo persistente (el
# broker caído) no se repite en un bucle sin pausa.
_PAUSA_TRAS_FALLO_S = 1.0


class FalloDePrueba(RuntimeError):
    """El fallo que pide `GPR_PRUEBA_FALLAR_LOTE` (pruebas de cortes)."""


def _veneno(evento_id: str) -> Callable:
    """`GPR_PRUEBA_EVENTO_VENENO`: un error inesperado al procesar ese evento."""
    def antes_de_aplicar(evento) -> None:
        if evento.evento_id == evento_id:
            raise RuntimeError(f"GPR_PRUEBA_EVENTO_VENENO: falla el evento {evento_id}")
    return antes_de_aplicar


def particion_de_agencia(agencia_id: str, particiones: int) -> int:
    """Todos los servicios de una agencia en una partición: la marca de agua es local."""
    return zlib.crc32(agencia_id.encode()) % particiones


def opciones_faust(cfg: ConfigProcesador) -> dict:
    """Ajustes de la app faust; el banco de rendimiento mide su línea base con los mismos."""
    return dict(
        # broker y, con TLS o SASL, broker_credentials (GPR_KAFKA_*, docs/seguridad-kafka.md).
        **cfg.kafka.para_faust(),
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
        # Sin espera para juntar envíos: cada lote de la etapa por caso espera sus estados en
        # el changelog y luego sus agregados, y esa espera se sumaba a cada una (medido: con
        # 5 ms, el trabajador pasaba un 18 % del tiempo ocioso en registros sueltos). Lo que
        # se envía seguido mientras el productor está ocupado ya sale en un solo lote.
        producer_linger_ms=0,
        producer_max_request_size=topicos.BYTES_MAXIMOS_REGISTRO_INTERNO,
        web_enabled=False,
        table_standby_replicas=0,
    )


def _cabeceras(mensaje) -> list[tuple[str, bytes]] | tuple:
    cabeceras = mensaje.headers
    if not cabeceras:
        return ()
    return list(cabeceras.items()) if isinstance(cabeceras, dict) else list(cabeceras)


def _timestamp(segundos: float, cache: dict[float, Timestamp]) -> Timestamp:
    ts = cache.get(segundos)
    if ts is None:
        ts = cache[segundos] = Timestamp()
        ts.FromNanoseconds(int(segundos * 1e9))
    return ts


def _vigentes(app: faust.App, eventos) -> list:
    """Los registros del lote leídos en la generación vigente del grupo de consumidores.

    Tras un reequilibrio faust vuelve al último offset confirmado y descarta en su iteración
    los registros de la generación anterior, pero los que ya estaban en el búfer del lote
    llegarían igual, *antes* que los mismos offsets leídos de nuevo: la agregación aplicaría
    un agregado posterior antes que uno anterior y, al comparar secuencias, descartaría el
    anterior. Se descartan como lo hace faust, sin confirmarlos (se leen otra vez).
    """
    generacion = app.consumer_generation_id
    vigentes = [e for e in eventos if e.message.generation_id == generacion]
    if len(vigentes) < len(eventos):
        logger.info("%d registros de una generación anterior descartados; se leerán de nuevo",
                    len(eventos) - len(vigentes))
    return vigentes


def _reequilibrando(app: faust.App) -> bool:
    """Un lote que llega mientras se recuperan las tablas se descarta sin confirmarlo: las
    tablas aún no están completas, y al terminar la recuperación faust devuelve el consumo
    al último offset confirmado, así que esos registros llegan otra vez. (No vale mirar
    `app.rebalancing`: sigue activo un momento *después* de esa vuelta atrás, y lo que
    llega entonces no se vuelve a leer.)"""
    if app.in_recovery:
        logger.info("lote descartado durante la recuperación de las tablas; se leerá de nuevo")
        return True
    return False


async def _escritos(envios: list) -> None:
    """Espera a que Kafka confirme cada envío; lanza el error del primero que falló."""
    if envios:
        await asyncio.gather(*envios)


def _confirmar(grupos: dict[int, list]) -> None:
    """Marca como procesados los registros del lote (faust confirma su offset después).

    Se usa `noack_take` y se confirma aquí, al final: `take_events` los confirma en un
    `finally`, también cuando la tarea se cancela a mitad de lote al detener el trabajador,
    y la confirmación final de la parada perdía el resto del lote.
    """
    for grupo in grupos.values():
        for evento in grupo:
            evento.ack()


@contextlib.contextmanager
def en_particion(evento) -> Iterator[None]:
    """Hace de `evento` el evento en curso mientras se leen y escriben las tablas.

    faust decide la partición del changelog (y la base RocksDB) de cada escritura por el
    evento en curso, una variable de contexto que fija al iterar un stream evento a evento;
    con `noack_take` el lote se recibe en otra tarea y esa variable no apunta a nada útil.
    Cada grupo de un lote es de una sola partición, así que se fija a un evento del grupo.
    """
    ficha = faust.streams._current_event.set(weakref.ref(evento))
    try:
        yield
    finally:
        faust.streams._current_event.reset(ficha)


async def fines_de_log(consumidor, particiones: list) -> dict:
    """El fin del log de cada partición: el highwater del último fetch y, para las que aún no
    leyeron nada (sin highwater), el que da el broker. Sin ese respaldo, una partición
    asignada cuyo fetch no llega nunca no se vigilaría: es justo la que hay que releer."""
    fines = {tp: consumidor.highwater(tp) for tp in particiones}
    sin_fetch = [tp for tp, fin in fines.items() if fin is None]
    if sin_fetch:
        try:
            fines.update(await asyncio.wait_for(consumidor.highwaters(*sin_fetch), timeout=_ESPERA_FIN_DE_LOG_S))
        except Exception as error:  # el broker puede no responder: se mira en la vuelta siguiente
            logger.warning("no se pudo leer el fin del log de %s: %r; se mira en la próxima vuelta",
                           ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sin_fetch), error)
    return fines


async def inicios_de_log(consumidor, particiones: list) -> dict:
    """El primer offset del log de cada partición: sin offset confirmado faust lee desde ahí
    (`consumer_auto_offset_reset="earliest"`), así que es el primer registro que debe
    procesarse. Si el broker no responde, {} (con un aviso)."""
    if not particiones:
        return {}
    try:
        return dict(await asyncio.wait_for(consumidor.earliest_offsets(*particiones), timeout=_ESPERA_FIN_DE_LOG_S))
    except Exception as error:  # el broker puede no responder: se mira en la vuelta siguiente
        logger.warning("no se pudo leer el inicio del log de %s: %r", ", ".join(
            f"{tp.topic}[{tp.partition}]" for tp in particiones), error)
        return {}


def crear_app(cfg: ConfigProcesador, catalogo: Catalogo, metas: IndiceMetas, metricas: MetricasProcesador,
              reloj: Callable[[], float] = time.time) -> faust.App:
    """Construye la app sin conectarse a nada: la conexión empieza al arrancar el trabajador."""
    app = faust.App(cfg.app_id, **opciones_faust(cfg))
    t_eventos = app.topic(topicos.EVENTOS, partitions=cfg.particiones)
    t_rechazados = app.topic(topicos.RECHAZADOS, partitions=cfg.particiones)
    t_aportes = app.topic(topicos.APORTES, partitions=cfg.particiones)
    t_indicadores = app.topic(topicos.INDICADORES, partitions=cfg.particiones)
    t_cumplimiento = app.topic(topicos.CUMPLIMIENTO, partitions=cfg.particiones)

    # key_type/value_type bytes: claves y valores crudos (protobuf), sin JSON de por medio.
    def tabla(nombre: str, **opciones):
        return app.Table(nombre, partitions=cfg.particiones, key_type=bytes,
                         extra_topic_configs=topicos.configuracion_interna(), **opciones)

    # Estado por caso y, con claves que empiezan por 0xFF, la marca de agua de cada agencia
    # vista en cada partición (ver `etapa_casos.clave_marca`).
    casos = TablaEnBloque(tabla("casos", value_type=bytes))
    etapa = EtapaCasos(catalogo, cfg.tardanza_maxima_s, reloj, cfg.eventos_maximos_por_caso,
                       _veneno(cfg.prueba_evento_veneno) if cfg.prueba_evento_veneno else None)
    tablas_agregacion = [TablaEnBloque(tabla(nombre, value_type=bytes))
                         for nombre in ("cubos", "vencimientos", "agencias")]
    agregacion = Agregacion(*tablas_agregacion, catalogo=catalogo, tardanza_maxima_s=cfg.tardanza_maxima_s)

    publicacion = Publicacion(cfg, metas, metricas, agregacion, reloj)
    guardias = {topicos.EVENTOS: GuardiaDeOrden(), topicos.APORTES: GuardiaDeOrden()}

    async def releer(tp, offset: int) -> None:
        # En el hilo del consumidor de aiokafka: `Consumer.seek` de faust lo llama desde el
        # bucle principal y el fetcher no se entera (medido: la partición no volvía a leer).
        entrega.anotar_relectura(tp)
        await app.consumer._thread.seek_wait({tp: offset})

    async def en_orden(eventos_kafka) -> dict[int, list]:
        """Los registros del lote que se procesan, por partición y en orden de offset.

        Pasa cada registro por la guardia de su partición (`orden.py` explica por qué): si
        falta un offset anterior, relee la partición desde él y no procesa ni confirma nada
        posterior de ella en este lote. Un registro ya procesado que vuelve se confirma sin
        procesarlo otra vez (sus efectos ya están en las tablas y en los agregados enviados).
        """
        grupos: dict[int, list] = {}
        # Primer offset procesado en este lote por partición: un repetido desde ahí es otra
        # copia de un registro del mismo lote (faust volvió al offset confirmado con lo ya
        # leído en la cola) y no se confirma antes de que el lote escriba sus efectos.
        primeros: dict = {}
        pendientes = app.consumer._unacked_messages
        for evento in eventos_kafka:
            mensaje = evento.message
            tp = mensaje.tp
            guardia = guardias[tp.topic]
            antes = guardia.esperado(tp)
            decision = guardia.decidir(tp, mensaje.offset, confirmado=app.consumer._committed_offset.get(tp),
                                       ahora=time.monotonic())
            if decision is Decision.RELEER:
                metricas.relecturas.labels(topico=tp.topic).inc()
                logger.warning("%s[%d]: llegó el offset %d antes que el %d; se relee desde ahí",
                               tp.topic, tp.partition, mensaje.offset, guardia.esperado(tp))
                pendientes.discard(mensaje)
                await releer(tp, guardia.esperado(tp))
            elif decision is Decision.IGNORAR:
                # Se volverá a leer como un mensaje nuevo: faust no debe esperar este (un
                # reequilibrio o una parada se quedarían en `wait_empty`).
                pendientes.discard(mensaje)
            elif decision is Decision.REPETIDO:
                if tp in primeros and mensaje.offset >= primeros[tp]:
                    pendientes.discard(mensaje)
                else:
                    evento.ack()
            elif decision is Decision.PROCESAR:
                primeros.setdefault(tp, mensaje.offset)
                if antes is not None and mensaje.offset > antes:
                    logger.warning("%s[%d]: los offsets %d–%d no existen (releídos %d veces); se siguen",
                                   tp.topic, tp.partition, antes, mensaje.offset - 1, RELECTURAS_PARA_ACEPTAR)
                    await confirmar_hueco(app.consumer, tp, antes, mensaje.offset - 1)
                grupos.setdefault(mensaje.partition, []).append(evento)
        return grupos

    @app.timer(interval=_QUIETUD_S, name="vigilar-particiones-quietas")
    async def vigilar_particiones_quietas():
        if app.rebalancing or app.in_recovery:
            return
        consumidor = app.consumer
        asignadas = [tp for tp in consumidor.assignment() if tp.topic in guardias]
        for topico, guardia in guardias.items():
            propias = [tp for tp in asignadas if tp.topic == topico]
            fines = await fines_de_log(consumidor, propias)
            confirmados = {tp: consumidor._committed_offset.get(tp) for tp in propias}
            sin_confirmar = [tp for tp, offset in confirmados.items() if offset is None and guardia.esperado(tp) is None]
            confirmados.update(await inicios_de_log(consumidor, sin_confirmar))
            for tp, offset in guardia.rezagadas(fines, time.monotonic(), _QUIETUD_S, confirmados):
                logger.warning("%s[%d]: sin avance con el log en %s; se relee desde %d",
                               tp.topic, tp.partition, fines[tp], offset)
                metricas.relecturas.labels(topico=topico).inc()
                await releer(tp, offset)

    async def lotes_en_orden(lotes):
        """Los lotes, ya filtrados (generación vigente, fuera de la recuperación) y pasados
        por la guardia de orden: por partición, lo que se procesa. Lo descartado aquí deja de
        contar como pendiente para faust (se lee de nuevo como mensajes nuevos): si no, como
        los registros que la guardia ignora, un reequilibrio o una parada esperarían por ello
        en `wait_empty` mientras el lote siga en memoria."""
        async for eventos_kafka in lotes:
            if _reequilibrando(app):
                olvidar_entregados(app.consumer, (e.message for e in eventos_kafka))
                continue
            vigentes = _vigentes(app, eventos_kafka)
            if len(vigentes) < len(eventos_kafka):
                quedan = {id(e) for e in vigentes}
                olvidar_entregados(app.consumer, (e.message for e in eventos_kafka if id(e) not in quedan))
            grupos = await en_orden(vigentes)
            if grupos:
                yield grupos

    async def procesar_en_orden(lotes, topico: str, procesar, al_fallar: Callable[[], None] = lambda: None):
        """Pasa a `procesar` los `lotes` (de un agente o de la entrega por lotes). Si uno
        falla, cada partición del lote se relee desde su primer registro: la guardia vuelve a
        esperarlo (si no, lo que ya venía detrás se procesaría y esos registros quedarían sin
        procesar ni confirmar, y sus efectos, los agregados de la etapa por caso, se
        perderían) y se pide la relectura. faust deja de esperar los mensajes entregados que
        ya no se confirmarán (o la parada y el reequilibrio se colgarían). Después el agente
        (o la tarea de la entrega por lotes) vuelve a empezar."""
        async for grupos in lotes_en_orden(lotes):
            try:
                await procesar(grupos)
            except BaseException as error:
                guardia = guardias[topico]
                desde = {grupo[0].message.tp: grupo[0].message.offset for grupo in grupos.values()}
                for tp, offset in desde.items():
                    guardia.releer_desde(tp, offset)
                al_fallar()
                quitados = olvidar_entregados(app.consumer, (e.message for g in grupos.values() for e in g))
                logger.warning("%s: lote interrumpido (%r); sus %d registros sin confirmar se releerán desde %s",
                               topico, error, quitados,
                               ", ".join(f"[{tp.partition}] {offset}" for tp, offset in desde.items()))
                if isinstance(error, Exception):
                    # Con el trabajador deteniéndose (cancelación) no se espera al consumidor:
                    # el vigía de particiones quietas relee si hiciera falta.
                    try:
                        for tp, offset in desde.items():
                            await releer(tp, offset)
                    except Exception as fallo:
                        logger.warning("%s: no se pudo pedir la relectura (%r); el vigía de particiones "
                                       "quietas la pedirá", topico, fallo)
                raise

    topico_aportes = t_aportes.get_topic_name()
    lotes_de_eventos = 0

    async def procesar_lote_de_eventos(grupos: dict[int, list]) -> None:
        nonlocal lotes_de_eventos
        lotes_de_eventos += 1
        inicio = time.perf_counter()
        salidas = []
        for particion, grupo in grupos.items():
            registros = [Registro(particion, e.message.offset, e.message.key, e.message.value,
                                  _cabeceras(e.message)) for e in grupo]
            with en_particion(grupo[-1]):
                salida = etapa.procesar(registros, casos.en(particion))
                casos.escribir(particion, salida.escrituras)
            await casos.enviar(app.producer, particion)
            salidas.append(salida)
        envios = []
        for salida in salidas:
            for agencia, n in salida.aceptados_por_agencia.items():
                metricas.aceptados.labels(agencia=agencia).inc(n)
            metricas.duplicados.inc(salida.duplicados)
            for rechazo in salida.rechazos:
                metricas.rechazados.labels(motivo=rechazo.motivo.split(":")[0],
                                           agencia=rechazo.agencia or AGENCIA_DESCONOCIDA).inc()
                cabeceras = [(topicos.CABECERA_MOTIVO, rechazo.motivo.encode()),
                             (topicos.CABECERA_DETALLE, rechazo.detalle.encode())]
                if rechazo.agencia:
                    cabeceras.append((topicos.CABECERA_AGENCIA, rechazo.agencia.encode()))
                if rechazo.lote:
                    cabeceras.append((topicos.CABECERA_LOTE, b"1"))
                if rechazo.motivo.startswith(ERROR_INTERNO):
                    # Un error nuestro: quien opera debe verlo (el filtro de repetidos lo acota).
                    logger.warning("evento enviado a rechazados por un error inesperado: %s (%s)",
                                   rechazo.motivo, rechazo.detalle)
                envios.append(await t_rechazados.send(key=rechazo.clave, value=rechazo.valor, headers=cabeceras))
        # Regla 1 del exactamente-una-vez: los estados, confirmados antes que sus agregados
        # (`flush` espera también el búfer de changelog de faust: ver `faust_seguro`).
        await app.producer.flush()
        casos.confirmar()
        if lotes_de_eventos == cfg.prueba_fallar_lote:
            raise FalloDePrueba(f"GPR_PRUEBA_FALLAR_LOTE: falla el lote {lotes_de_eventos} con sus estados confirmados")
        for salida in salidas:
            for numero, tanda in enumerate(salida.tandas):
                if numero:
                    await _escritos(envios)
                for lote in tanda:
                    envios.append(await app.producer.send(
                        topico_aportes, f"{lote.agencia_id}|{lote.servicio_id}".encode(), lote.SerializeToString(),
                        particion_de_agencia(lote.agencia_id, cfg.particiones), None, None))
        # Los registros se confirman con sus agregados y rechazos ya escritos: faust solo avisa
        # de un envío fallido en el registro, y confirmar antes perdería ese agregado para
        # siempre (los estados ya constan como vistos). Si uno falla, el lote falla entero.
        await _escritos(envios)
        _confirmar(grupos)
        escrito = max((e.message.timestamp or 0.0 for g in grupos.values() for e in g), default=0.0)
        if escrito:
            publicacion.anotar_retraso(time.time() - escrito)
        metricas.lote_segundos.labels(etapa="casos").observe(time.perf_counter() - inicio)

    # Los eventos no pasan por un agente: llegan en lotes directo del consumidor (ver
    # `entrega_por_lotes.py`). Un lote fallido reinicia la lectura, como faust reinicia un agente.
    entrega = EntregaPorLotes(app, t_eventos)

    @app.task
    async def procesar_eventos():
        while not app.should_stop:
            try:
                await procesar_en_orden(entrega.lotes(cfg.lote_maximo, cfg.lote_espera_s), topicos.EVENTOS,
                                        procesar_lote_de_eventos)
            except Exception:
                logger.exception("etapa por caso: lote fallido; se sigue con lo no confirmado")
                await app.sleep(_PAUSA_TRAS_FALLO_S)

    async def agregar_lote_de_aportes(grupos: dict[int, list]) -> None:
        inicio = time.perf_counter()
        for particion, grupo in grupos.items():
            with en_particion(grupo[-1]):
                publicacion.marcar(agregacion.aplicar_lotes(
                    interno.LoteAportes.FromString(e.message.value) for e in grupo))
            for tabla_agregacion in tablas_agregacion:
                tabla_agregacion.confirmar()
                await tabla_agregacion.enviar(app.producer, particion)
        _confirmar(grupos)
        metricas.lote_segundos.labels(etapa="agregacion").observe(time.perf_counter() - inicio)

    @app.agent(t_aportes, name="agregar-aportes")
    async def agregar_aportes(stream):
        # Un lote fallido pudo dejar en la memoria de la agregación cubos a medio sumar (con su
        # secuencia ya avanzada): se releen del almacén.
        await procesar_en_orden(stream.noack_take(cfg.lote_maximo, within=cfg.lote_espera_s), topicos.APORTES,
                                agregar_lote_de_aportes, agregacion.olvidar_memoria)

    @app.on_partitions_assigned.connect
    async def al_asignar_particiones(app, assigned, **_kwargs):
        # La recuperación de las tablas escribe directo en el almacén, sin pasar por la
        # memoria de la agregación: se descarta para releer del almacén.
        agregacion.olvidar_memoria()
        # faust vuelve al offset confirmado de cada partición tras el reequilibrio.
        for guardia in guardias.values():
            guardia.olvidar()

    @app.on_rebalance_complete.connect
    async def al_completar_recuperacion(app, **_kwargs):
        # Y otra vez al terminar la recuperación: una lectura entre la asignación y el fin de
        # la recuperación pudo dejar en memoria un cubo todavía incompleto.
        agregacion.olvidar_memoria()
        publicacion.republicar_todo()

    topico_indicadores = t_indicadores.get_topic_name()

    async def enviar_indicador(clave: bytes, valor: bytes) -> None:
        # Directo al productor, sin el `Topic.send` de faust (un objeto de mensaje pendiente y
        # sus callbacks por serie): con decenas de miles de pares se publican millones de
        # series y ese envío era la mayor parte de la publicación. Misma partición (por clave).
        await app.producer.send(topico_indicadores, clave, valor, None, None, None)

    @app.task
    async def publicar_indicadores():
        while not app.should_stop:
            await publicacion.hay_pendientes.wait()
            inicio = time.perf_counter()
            if app.rebalancing or app.in_recovery:
                publicacion.republicar_todo()
            else:
                # Un reequilibrio a media pasada la corta: las particiones pudieron cambiar de
                # dueño, y al terminar se republica todo lo local (`al_completar_recuperacion`).
                await publicacion.publicar(lambda: app.should_stop or app.rebalancing, enviar_indicador,
                                           t_cumplimiento)
                metricas.publicacion_segundos.observe(time.perf_counter() - inicio)
            duracion = time.perf_counter() - inicio
            await app.sleep(max(publicacion.espacio_s(duracion) - duracion, 0.0))

    return app


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
                 agregacion: Agregacion, reloj: Callable[[], float]):
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
        self.hay_pendientes = asyncio.Event()
        self.hay_pendientes.set()
        self._retraso_s = 0.0

    def marcar(self, agencias: set[str]) -> None:
        """La agregación tocó estas agencias (lo que cambió lo anota ella misma)."""
        if agencias:
            self.hay_pendientes.set()

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

    async def publicar(self, detenerse: Callable[[], bool], enviar_indicador, t_cumplimiento) -> None:
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
                await self._publicar_serie(agencia_id, inst, recibiendo, ahora, instantes, enviar_indicador,
                                           t_cumplimiento)
            # Cede el bucle entre agencia y agencia: enviar al productor no lo cede, y una
            # pasada con muchas agencias retenía los lotes de las dos etapas hasta terminar.
            await asyncio.sleep(0)
        if self._con_rango_pendiente:
            self.hay_pendientes.set()

    async def _publicar_serie(self, agencia_id, inst, recibiendo, ahora, instantes, enviar_indicador,
                              t_cumplimiento) -> None:
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
        )
        await enviar_indicador(clave.encode(), indicador.SerializeToString())
        self._publicado[clave] = (firma, rango, ahora)
        self.metricas.instantaneas.inc()
        if meta is not None and self._estado_meta.get(clave) != estado:
            cambio = ipb.CambioCumplimiento(
                indicador=indicador, estado=estado,
                estado_anterior=self._estado_meta.get(clave, ipb.ESTADO_CUMPLIMIENTO_NO_ESPECIFICADO),
            )
            await t_cumplimiento.send(key=clave.encode(), value=cambio.SerializeToString())
            self._estado_meta[clave] = estado
