"""La ruta exactamente-una-vez del procesador, de principio a fin, sin faust.

Tres etapas unidas por los tópicos internos gpr.eventos.agencias.v1 y gpr.aportes.v1, todas
por lotes de registros:

0. **Reparto** (`repartir_lote_de_eventos`, registros de gpr.eventos.v1): cada registro a la
   partición de su agencia en gpr.eventos.agencias.v1 (`dominio/reparto.py`), para que la
   deduplicación por agencia vea todos sus eventos. Sin estado: confirma lo leído cuando lo
   repartido está escrito; lo que se reparte dos veces tras un corte, la etapa por caso lo
   reconoce como ya visto.
1. **Etapa por caso** (`procesar_lote_de_eventos`, registros de gpr.eventos.agencias.v1): por cada
   partición del lote, `dominio/etapa_casos.py` decodifica, valida, deduplica, actualiza el
   estado de los casos y suma los aportes por (agencia, servicio); lo inválido va a
   gpr.eventos.rechazados.v1 con su motivo. Luego, en este orden:
   a. los estados se escriben en la tabla `casos` y se mandan a su changelog;
   b. **regla 1**: se espera a que Kafka los tenga (`vaciar`) *antes* de enviar un solo
      agregado: si un agregado llegó, sus eventos constan como vistos y un reproceso no los
      vuelve a sumar (la regla 2, los reenvíos dentro del agregado, está en la etapa pura);
   c. los agregados van a la partición de su agencia, una tanda tras otra (una tanda solo con
      la anterior ya escrita);
   d. los registros se confirman solo con sus agregados y rechazos escritos: confirmar antes
      perdería un agregado fallido para siempre (sus estados ya constan como vistos).
2. **Agregación** (`agregar_lote_de_aportes`, registros de gpr.aportes.v1): suma los agregados
   en los cubos (`dominio/agregacion.py`, idempotente por secuencia), manda sus tablas al
   changelog y confirma.

Antes de cada etapa, la **guardia de orden** (`orden.py`): cada partición se procesa en orden
de offset y sin huecos, o se relee. Un lote que falla se relee entero desde su primer registro
de cada partición (`procesar_en_orden`). La publicación de instantáneas está en
`publicacion.py`.

Todo lo que toca Kafka pasa por el `Puerto` (`puerto.py`); el adaptador de faust lo implementa
(`servicios/terceros/faust/`) y las pruebas, uno en memoria que modela los cortes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from gpr.v1 import interno_pb2 as interno
from servicios.comun import topicos
from servicios.comun.trazas import APAGADAS, Trazas
from servicios.procesador.dominio.agregacion import Agregacion
from servicios.procesador.dominio.etapa_casos import ERROR_INTERNO, EtapaCasos, Registro
from servicios.procesador.dominio.reparto import Reparto, origen, particion_de_agencia
from servicios.procesador.metricas import AGENCIA_DESCONOCIDA, MetricasProcesador
from servicios.procesador.orden import RELECTURAS_PARA_ACEPTAR, Decision, GuardiaDeOrden
from servicios.procesador.puerto import Puerto, Tabla
from servicios.procesador.publicacion import Publicacion

logger = logging.getLogger("gpr.procesador")


class FalloDePrueba(RuntimeError):
    """El fallo que pide `GPR_PRUEBA_FALLAR_LOTE` (pruebas de cortes)."""


def _cabeceras(mensaje) -> list[tuple[str, bytes]] | tuple:
    cabeceras = mensaje.headers
    if not cabeceras:
        return ()
    return list(cabeceras.items()) if isinstance(cabeceras, dict) else list(cabeceras)


async def _escritos(envios: list) -> None:
    """Espera a que Kafka confirme cada envío; lanza el error del primero que falló."""
    if envios:
        await asyncio.gather(*envios)


def _confirmar(grupos: dict[int, list]) -> None:
    """Marca como procesados los registros del lote (faust confirma su offset después)."""
    for grupo in grupos.values():
        for evento in grupo:
            evento.ack()


class Ruta:
    """Las dos etapas y la guardia de orden sobre un `Puerto`.

    `casos`: la tabla de estados por caso (y marcas de agua por partición); `tablas_agregacion`:
    las tres de la agregación (cubos, vencimientos, agencias), las mismas que usa `agregacion`.
    """

    def __init__(self, puerto: Puerto, etapa: EtapaCasos, casos: Tabla, agregacion: Agregacion,
                 tablas_agregacion: list[Tabla], publicacion: Publicacion, metricas: MetricasProcesador,
                 particiones: int, prueba_fallar_lote: int = 0,
                 reloj: Callable[[], float] = time.time, reloj_monotono: Callable[[], float] = time.monotonic,
                 trazas: Trazas = APAGADAS):
        self.puerto = puerto
        self.etapa = etapa
        self.casos = casos
        self.agregacion = agregacion
        self.tablas_agregacion = tablas_agregacion
        self.publicacion = publicacion
        self.metricas = metricas
        self.particiones = particiones
        self.prueba_fallar_lote = prueba_fallar_lote
        self.reloj = reloj
        self.reloj_monotono = reloj_monotono
        # Con trazas, un tramo por lote de cada etapa (docs/trazas.md); apagadas, nada por registro.
        self.trazas = trazas
        self.guardias = {topico: GuardiaDeOrden() for topico in (topicos.EVENTOS, *topicos.INTERNOS)}
        self.lotes_de_eventos = 0

    # --- guardia de orden y lotes fallidos ---------------------------------------------------

    async def en_orden(self, eventos_kafka) -> dict[int, list]:
        """Los registros del lote que se procesan, por partición y en orden de offset.

        Pasa cada registro por la guardia de su partición (`orden.py` explica por qué): si
        falta un offset anterior, relee la partición desde él y no procesa ni confirma nada
        posterior de ella en este lote. Un registro ya procesado que vuelve se confirma sin
        procesarlo otra vez (sus efectos ya están en las tablas y en los agregados enviados).
        """
        puerto = self.puerto
        grupos: dict[int, list] = {}
        # Primer offset procesado en este lote por partición: un repetido desde ahí es otra
        # copia de un registro del mismo lote (faust volvió al offset confirmado con lo ya
        # leído en la cola) y no se confirma antes de que el lote escriba sus efectos.
        primeros: dict = {}
        for evento in eventos_kafka:
            mensaje = evento.message
            tp = mensaje.tp
            guardia = self.guardias[tp.topic]
            antes = guardia.esperado(tp)
            decision = guardia.decidir(tp, mensaje.offset, confirmado=puerto.offset_confirmado(tp),
                                       ahora=self.reloj_monotono())
            if decision is Decision.RELEER:
                self.metricas.relecturas.labels(topico=tp.topic).inc()
                logger.warning("%s[%d]: llegó el offset %d antes que el %d; se relee desde ahí",
                               tp.topic, tp.partition, mensaje.offset, guardia.esperado(tp))
                puerto.olvidar([mensaje])
                await puerto.releer(tp, guardia.esperado(tp))
            elif decision is Decision.IGNORAR:
                # Se volverá a leer como un mensaje nuevo: no hay que esperarlo (un reequilibrio
                # o una parada se quedarían esperándolo).
                puerto.olvidar([mensaje])
            elif decision is Decision.REPETIDO:
                if tp in primeros and mensaje.offset >= primeros[tp]:
                    puerto.olvidar([mensaje])
                else:
                    evento.ack()
            elif decision is Decision.PROCESAR:
                primeros.setdefault(tp, mensaje.offset)
                if antes is not None and mensaje.offset > antes:
                    logger.warning("%s[%d]: los offsets %d–%d no existen (releídos %d veces); se siguen",
                                   tp.topic, tp.partition, antes, mensaje.offset - 1, RELECTURAS_PARA_ACEPTAR)
                    await puerto.confirmar_hueco(tp, antes, mensaje.offset - 1)
                grupos.setdefault(mensaje.partition, []).append(evento)
        return grupos

    def _vigentes(self, eventos) -> list:
        """Los registros del lote leídos en la generación vigente del grupo.

        Tras un reequilibrio faust vuelve al último offset confirmado, pero los registros que ya
        estaban en el búfer del lote llegarían igual, *antes* que los mismos offsets leídos de
        nuevo: la agregación aplicaría un agregado posterior antes que uno anterior y, al
        comparar secuencias, descartaría el anterior. Se descartan sin confirmarlos (se leen
        otra vez)."""
        generacion = self.puerto.generacion()
        vigentes = [e for e in eventos if e.message.generation_id == generacion]
        if len(vigentes) < len(eventos):
            logger.info("%d registros de una generación anterior descartados; se leerán de nuevo",
                        len(eventos) - len(vigentes))
        return vigentes

    async def lotes_en_orden(self, lotes) -> AsyncIterator[dict[int, list]]:
        """Los lotes, ya filtrados (generación vigente, fuera de la recuperación) y pasados por
        la guardia de orden: por partición, lo que se procesa. Lo descartado aquí deja de
        esperarse (se lee de nuevo como mensajes nuevos)."""
        puerto = self.puerto
        async for eventos_kafka in lotes:
            if puerto.recuperando():
                # Las tablas aún no están completas, y al terminar la recuperación se vuelve al
                # último offset confirmado: estos registros llegan otra vez.
                logger.info("lote descartado durante la recuperación de las tablas; se leerá de nuevo")
                puerto.olvidar(e.message for e in eventos_kafka)
                continue
            vigentes = self._vigentes(eventos_kafka)
            if len(vigentes) < len(eventos_kafka):
                quedan = {id(e) for e in vigentes}
                puerto.olvidar(e.message for e in eventos_kafka if id(e) not in quedan)
            grupos = await self.en_orden(vigentes)
            if grupos:
                yield grupos

    async def procesar_en_orden(self, lotes, topico: str, procesar: Callable[[dict], Awaitable[None]],
                                al_fallar: Callable[[], None] = lambda: None) -> None:
        """Pasa a `procesar` los `lotes` de `topico`. Si uno falla, cada partición del lote se
        relee desde su primer registro: la guardia vuelve a esperarlo (si no, lo que ya venía
        detrás se procesaría y esos registros quedarían sin procesar ni confirmar) y se pide la
        relectura; sus mensajes dejan de esperarse (no se confirmarán nunca: se leen de nuevo).
        Después el error sigue hacia quien llama, que vuelve a empezar."""
        async for grupos in self.lotes_en_orden(lotes):
            try:
                await procesar(grupos)
            except BaseException as error:
                guardia = self.guardias[topico]
                desde = {grupo[0].message.tp: grupo[0].message.offset for grupo in grupos.values()}
                for tp, offset in desde.items():
                    guardia.releer_desde(tp, offset)
                al_fallar()
                quitados = self.puerto.olvidar(e.message for g in grupos.values() for e in g)
                logger.warning("%s: lote interrumpido (%r); sus %d registros sin confirmar se releerán desde %s",
                               topico, error, quitados,
                               ", ".join(f"[{tp.partition}] {offset}" for tp, offset in desde.items()))
                if isinstance(error, Exception):
                    # Con el trabajador deteniéndose (cancelación) no se espera al consumidor:
                    # el vigía de particiones quietas relee si hiciera falta.
                    try:
                        for tp, offset in desde.items():
                            await self.puerto.releer(tp, offset)
                    except Exception as fallo:
                        logger.warning("%s: no se pudo pedir la relectura (%r); el vigía de particiones "
                                       "quietas la pedirá", topico, fallo)
                raise

    async def vigilar_particiones_quietas(self, quietud_s: float) -> None:
        """Relee una partición que no avanza con el log por delante: su último registro pudo
        descartarse sin que otro posterior delate el hueco."""
        puerto = self.puerto
        if puerto.reequilibrando() or puerto.recuperando():
            return
        asignadas = [tp for tp in puerto.asignadas() if tp.topic in self.guardias]
        for topico, guardia in self.guardias.items():
            propias = [tp for tp in asignadas if tp.topic == topico]
            fines = await puerto.fines_de_log(propias)
            confirmados = {tp: puerto.offset_confirmado(tp) for tp in propias}
            sin_confirmar = [tp for tp, offset in confirmados.items() if offset is None and guardia.esperado(tp) is None]
            confirmados.update(await puerto.inicios_de_log(sin_confirmar))
            for tp, offset in guardia.rezagadas(fines, self.reloj_monotono(), quietud_s, confirmados):
                logger.warning("%s[%d]: sin avance con el log en %s; se relee desde %d",
                               tp.topic, tp.partition, fines[tp], offset)
                self.metricas.relecturas.labels(topico=topico).inc()
                await puerto.releer(tp, offset)

    def al_asignar_particiones(self) -> None:
        # La recuperación de las tablas escribe directo en el almacén, sin pasar por la memoria
        # de la agregación: se descarta para releer del almacén. Y se vuelve al offset
        # confirmado de cada partición.
        self.agregacion.olvidar_memoria()
        for guardia in self.guardias.values():
            guardia.olvidar()

    def al_completar_recuperacion(self) -> None:
        # Una lectura entre la asignación y el fin de la recuperación pudo dejar en memoria un
        # cubo todavía incompleto; y lo local se republica entero.
        self.agregacion.olvidar_memoria()
        self.publicacion.republicar_todo()

    # --- reparto ------------------------------------------------------------------------------

    async def repartir_lote_de_eventos(self, grupos: dict[int, list]) -> None:
        """Reparte los registros del lote por agencia (`dominio/reparto.py`); los confirma con
        todo ya escrito (si un envío falla, el lote falla entero y se relee: repartir dos veces
        no cambia nada)."""
        inicio = time.perf_counter()
        mensajes = [evento.message for grupo in grupos.values() for evento in grupo]
        with self.trazas.consumo(topicos.EVENTOS, mensajes) as tramo:
            reparto = Reparto(self.particiones)
            for mensaje in mensajes:
                reparto.agregar(mensaje.key, mensaje.value, _cabeceras(mensaje), mensaje.partition, mensaje.timestamp)
            por_particion: dict[int, list] = {}
            # Cada paquete lleva el contexto del tramo: la etapa por caso sigue la traza.
            for repartido in reparto.registros(tramo.cabeceras or ()):
                por_particion.setdefault(repartido.particion, []).append(
                    (repartido.clave, repartido.valor, repartido.cabeceras, repartido.instante))
            envios = [await self.puerto.enviar_lote(topicos.EVENTOS_POR_AGENCIA, particion, registros)
                      for particion, registros in por_particion.items()]
            await _escritos(envios)
            _confirmar(grupos)
        self.metricas.lote_segundos.labels(etapa="reparto").observe(time.perf_counter() - inicio)

    # --- etapa por caso ---------------------------------------------------------------------

    async def procesar_lote_de_eventos(self, grupos: dict[int, list]) -> None:
        with self.trazas.consumo(topicos.EVENTOS_POR_AGENCIA, (e.message for g in grupos.values() for e in g)) as tramo:
            await self._procesar_lote_de_eventos(grupos, tramo)

    async def _procesar_lote_de_eventos(self, grupos: dict[int, list], tramo) -> None:
        puerto, metricas = self.puerto, self.metricas
        self.lotes_de_eventos += 1
        inicio = time.perf_counter()
        salidas = []
        for particion, grupo in grupos.items():
            registros = []
            for e in grupo:
                cabeceras = _cabeceras(e.message)
                registros.append(Registro(particion, e.message.offset, e.message.key, e.message.value, cabeceras,
                                          origen(cabeceras)))
            with puerto.en_particion(grupo[-1]):
                salida = self.etapa.procesar(registros, self.casos.en(particion))
                self.casos.escribir(particion, salida.escrituras)
            await self.casos.enviar(particion)
            salidas.append(salida)
        envios = []
        for salida in salidas:
            for agencia, n in salida.aceptados_por_agencia.items():
                metricas.aceptados.labels(agencia=agencia).inc(n)
            metricas.duplicados.inc(salida.duplicados)
            for rechazo in salida.rechazos:
                envios.append(await self._rechazar(rechazo))
        # Regla 1: los estados, en Kafka antes que sus agregados.
        await puerto.vaciar()
        self.casos.confirmar()
        if self.lotes_de_eventos == self.prueba_fallar_lote:
            raise FalloDePrueba(f"GPR_PRUEBA_FALLAR_LOTE: falla el lote {self.lotes_de_eventos} "
                                "con sus estados confirmados")
        for salida in salidas:
            for numero, tanda in enumerate(salida.tandas):
                if numero:
                    await _escritos(envios)
                for lote in tanda:
                    envios.append(await puerto.enviar(
                        topicos.APORTES, f"{lote.agencia_id}|{lote.servicio_id}".encode(), lote.SerializeToString(),
                        particion_de_agencia(lote.agencia_id, self.particiones), tramo.cabeceras))
        # Los registros se confirman con sus agregados y rechazos ya escritos; si uno falla, el
        # lote falla entero.
        await _escritos(envios)
        _confirmar(grupos)
        escrito = max((e.message.timestamp or 0.0 for g in grupos.values() for e in g), default=0.0)
        if escrito:
            self.publicacion.anotar_retraso(self.reloj() - escrito)
        if tramo.activo:
            tramo.anotar(eventos_aceptados=sum(n for s in salidas for n in s.aceptados_por_agencia.values()),
                         eventos_duplicados=sum(s.duplicados for s in salidas),
                         eventos_rechazados=sum(len(s.rechazos) for s in salidas))
        metricas.lote_segundos.labels(etapa="casos").observe(time.perf_counter() - inicio)

    async def _rechazar(self, rechazo) -> Awaitable:
        self.metricas.rechazados.labels(motivo=rechazo.motivo.split(":")[0],
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
        return await self.puerto.enviar(topicos.RECHAZADOS, rechazo.clave, rechazo.valor, cabeceras=cabeceras)

    # --- agregación ---------------------------------------------------------------------------

    async def agregar_lote_de_aportes(self, grupos: dict[int, list]) -> None:
        inicio = time.perf_counter()
        with self.trazas.consumo(topicos.APORTES, (e.message for g in grupos.values() for e in g)) as tramo:
            for particion, grupo in grupos.items():
                with self.puerto.en_particion(grupo[-1]):
                    self.publicacion.marcar(self.agregacion.aplicar_lotes(
                        interno.LoteAportes.FromString(e.message.value) for e in grupo), tramo.contexto)
                for tabla in self.tablas_agregacion:
                    tabla.confirmar()
                    await tabla.enviar(particion)
            _confirmar(grupos)
        self.metricas.lote_segundos.labels(etapa="agregacion").observe(time.perf_counter() - inicio)
