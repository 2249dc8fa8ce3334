"""Publicar eventos directamente en Kafka (`gpr.eventos.v1`) con kafka-python.

- **Productor idempotente, `acks=all`**: el broker no duplica ni reordena lo que reintenta el
  propio productor. Estas dos opciones no se pueden cambiar.
- **Lotes por partición**: los eventos de cada llamada van en registros `LoteEventos` (cabecera
  `gpr-lote: 1`), uno por partición, con la partición que el particionador por defecto daría a
  cada caso (`gpr_cliente.lotes`, la misma lógica que la Ingesta): el procesador rinde varias
  veces más y calcula lo mismo que con un registro por evento. `lotes=False`: un `Evento` por
  registro, como cualquier cliente de Kafka.
- **Reintentos idempotentes**: `publicar` reenvía los mismos bytes (el mismo `evento_id`) de lo
  que falló por una causa pasajera; si el primer envío sí llegó, el procesador descarta el
  repetido (por agencia, caso, fuente y `evento_id`).
- **Contrapresión**: como mucho `max_en_vuelo` eventos enviados sin acuse. Una llamada que no
  cabe espera hasta `espera_lleno_s` a que se libere lugar (`al_llenarse="bloquear"`) o falla al
  instante (`"error"`); en ambos casos con `PublicadorLleno` y sin haber enviado nada de ella.
- **Validación previa** (con `catalogo`): lo que la plataforma rechazaría no se envía.
- **Productor de repuesto**: tras un lote vencido (`delivery_timeout_ms`), un error del estado
  idempotente o un envío sin acuse pasado `delivery_timeout_ms`, el productor se cierra a la
  fuerza y el siguiente envío crea otro (producer id nuevo). kafka-python 3.0.12, al vencer un
  lote ya enviado, olvida su producer id sin pedir otro y no vuelve a confirmar nada. Lo que
  tenía pendiente falla con un error reintentable (puede haberse escrito: al reenviarlo, el
  procesador descarta el repetido).

Seguridad: las opciones de `KafkaProducer` van tal cual (`security_protocol`, `ssl_context` o
`ssl_cafile`…, `sasl_mechanism`, `sasl_plain_username`, `sasl_plain_password`). Con TLS, antes
de conectar se completa un saludo con plazo (`gpr_cliente.saludo_tls`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from kafka import KafkaProducer
from kafka.errors import (
    IllegalStateError,
    InvalidProducerEpochError,
    KafkaError,
    KafkaTimeoutError,
    OutOfOrderSequenceNumberError,
    ProducerFencedError,
    UnknownProducerIdError,
)

from gpr.v1 import eventos_pb2 as pb
from gpr_cliente import saludo_tls
from gpr_cliente.catalogo import Catalogo
from gpr_cliente.contrato import TOPICO_EVENTOS
from gpr_cliente.eventos import explicar
from gpr_cliente.lotes import Registro, registros_aceptados
from gpr_cliente.resultados import ResultadoEvento, Resumen
from gpr_cliente.validacion import validar

log = logging.getLogger("gpr_cliente.kafka")

BLOQUEAR, ERROR = "bloquear", "error"
_FIJAS = {"acks": ("all", -1), "enable_idempotence": (True,)}
# Errores, en el futuro de un envío, tras los cuales ese productor no vuelve a escribir: un
# lote vencido (ver el docstring del módulo) y los del estado idempotente.
_DEJAN_ROTO = (KafkaTimeoutError, UnknownProducerIdError, OutOfOrderSequenceNumberError, InvalidProducerEpochError,
               ProducerFencedError)
# Margen sobre delivery_timeout_ms antes de dar por trabado a un productor sin acuse ni error.
_MARGEN_ACUSE_S = 5.0
# Como mucho una línea de registro por reemplazo de productor en este intervalo.
_INTERVALO_AVISO_S = 60.0


class KafkaNoDisponible(Exception):
    """No se pudo conectar con Kafka o conocer las particiones del tópico; no se envió nada.
    `reintentable`: la causa puede ser pasajera (el broker arranca, un líder cambia)."""

    def __init__(self, mensaje: str, reintentable: bool = True):
        super().__init__(mensaje)
        self.reintentable = reintentable


class PublicadorLleno(Exception):
    """Hay `max_en_vuelo` eventos sin acuse y la llamada no cabe: no se envió nada de ella."""


def describir_error(error: BaseException) -> str:
    """`Clase: texto` (los errores de kafka-python ya empiezan con su clase)."""
    texto = str(error)
    return texto if texto.startswith(type(error).__name__) else f"{type(error).__name__}: {texto}"


def es_reintentable(error: BaseException) -> bool:
    """Si reenviar lo mismo más tarde puede funcionar."""
    if isinstance(error, KafkaNoDisponible):
        return error.reintentable
    if isinstance(error, PublicadorLleno):
        return True
    return bool(getattr(error, "retriable", False))


class Envio:
    """Un registro enviado: sus eventos y, cuando llegue, el acuse o el error del broker."""

    __slots__ = ("registro", "eventos", "error", "_hecho", "_generacion")

    def __init__(self, registro: Registro, eventos: tuple[pb.Evento, ...], generacion: int = 0):
        self.registro = registro
        self.eventos = eventos
        self.error: BaseException | None = None
        self._hecho = threading.Event()
        # El productor que lo envió: si ese se reemplaza, este envío no tendrá acuse.
        self._generacion = generacion

    @property
    def posiciones(self) -> tuple[int, ...]:
        """Las posiciones de sus eventos en la llamada a `enviar`."""
        return self.registro.posiciones

    @property
    def hecho(self) -> bool:
        return self._hecho.is_set()

    @property
    def confirmado(self) -> bool:
        return self._hecho.is_set() and self.error is None

    def esperar(self, plazo_s: float | None = None) -> bool:
        """Espera el acuse o el error; False si vence el plazo antes."""
        return self._hecho.wait(plazo_s)


AlConfirmar = Callable[[Envio], None]
AlFallar = Callable[[Envio, BaseException], None]


class PublicadorKafka:
    """Publica eventos en `gpr.eventos.v1`. Seguro entre hilos. Úselo con `with` o llame a
    `cerrar()`.

    `bootstrap_servers`: `host:puerto[,host:puerto…]`. `catalogo`: si se da, cada evento se
    valida antes de enviarlo (con `reloj`). `opciones_kafka`: más opciones de `KafkaProducer`
    (seguridad, `client_id`, `linger_ms`, `max_block_ms`…), salvo `acks` y `enable_idempotence`.
    Lanza `KafkaNoDisponible` si no puede conectar.
    """

    def __init__(self, bootstrap_servers: str, *, catalogo: Catalogo | None = None,
                 reloj: Callable[[], float] = time.time, topico: str = TOPICO_EVENTOS, lotes: bool = True,
                 max_en_vuelo: int = 10_000, al_llenarse: str = BLOQUEAR, espera_lleno_s: float = 30.0,
                 plazo_saludo_tls_s: float = 15.0, **opciones_kafka):
        if al_llenarse not in (BLOQUEAR, ERROR):
            raise ValueError(f"al_llenarse: {al_llenarse!r} debe ser {BLOQUEAR!r} o {ERROR!r}")
        if isinstance(max_en_vuelo, bool) or not isinstance(max_en_vuelo, int) or max_en_vuelo < 1:
            raise ValueError(f"max_en_vuelo: {max_en_vuelo!r} debe ser un entero mayor que 0")
        for clave, permitidos in _FIJAS.items():
            if clave in opciones_kafka and opciones_kafka[clave] not in permitidos:
                raise ValueError(f"{clave}={opciones_kafka[clave]!r}: el publicador usa siempre acks='all' y "
                                 "enable_idempotence=True (sin ellos un reintento puede duplicar o perder registros)")
        self.catalogo = catalogo
        self.reloj = reloj
        self.topico = topico
        self.lotes = lotes
        self.max_en_vuelo = max_en_vuelo
        self.al_llenarse = al_llenarse
        self.espera_lleno_s = espera_lleno_s
        opciones = {"linger_ms": 5, "client_id": "gpr-cliente", **opciones_kafka,
                    "bootstrap_servers": bootstrap_servers, "acks": "all", "enable_idempotence": True}
        if opciones.get("security_protocol") in ("SSL", "SASL_SSL"):
            try:
                saludo_tls.comprobar_saludo_tls(bootstrap_servers, saludo_tls.contexto_de_opciones(opciones),
                                                plazo_saludo_tls_s)
            except (saludo_tls.SaludoTlsFallido, OSError) as error:
                raise KafkaNoDisponible(f"sin conexión TLS con Kafka en {bootstrap_servers}: {error}") from error
        self._opciones = opciones
        self._bootstrap = bootstrap_servers
        # Plazo tras el cual un envío sin acuse ni error delata a un productor trabado.
        self._limite_acuse_s = opciones.get("delivery_timeout_ms", 120_000) / 1000 + _MARGEN_ACUSE_S
        # El productor actual y su generación; None tras descartarlo (el próximo envío crea otro).
        self._candado = threading.Lock()
        self._productor: KafkaProducer | None = None
        self._generacion = 0
        self._descartados = 0
        # Productores reemplazados desde que se creó el publicador (para métricas del integrador).
        self.reemplazos = 0
        self._cerrado = False
        self._ultimo_aviso = -_INTERVALO_AVISO_S
        self._cambio = threading.Condition()
        self._en_vuelo = 0
        self._actual()

    # --- envío asíncrono ----------------------------------------------------------------------

    def enviar(self, eventos: Iterable[pb.Evento], *, al_confirmar: AlConfirmar | None = None,
               al_fallar: AlFallar | None = None) -> list[Envio]:
        """Envía los eventos sin esperar el acuse: un `Envio` por registro.

        Antes de enviar nada: con `catalogo`, un evento inválido lanza `EventoInvalido`; sin
        metadatos del tópico, `KafkaNoDisponible`; sin lugar, `PublicadorLleno`. Después, cada
        registro termina por su cuenta: `al_confirmar(envio)` o `al_fallar(envio, error)` se
        llaman desde el hilo de red de kafka-python (deben ser breves), o aquí mismo si el
        registro falla al enviarse (p. ej. demasiado grande).
        """
        eventos = list(eventos)
        if not eventos:
            return []
        if len(eventos) > self.max_en_vuelo:
            raise ValueError(f"{len(eventos)} eventos en una llamada y max_en_vuelo={self.max_en_vuelo}: "
                             "envíelos en tandas (o use publicar, que las arma)")
        if self.catalogo is not None:
            ahora = self.reloj()
            for evento in eventos:
                motivo = validar(evento, self.catalogo, ahora)
                if motivo is not None:
                    raise explicar(motivo, evento)
        return self._enviar(eventos, self.espera_lleno_s, al_confirmar, al_fallar)

    @property
    def pendientes(self) -> int:
        """Eventos enviados que aún no tienen acuse ni error."""
        with self._cambio:
            return self._en_vuelo

    def esperar(self, plazo_s: float | None = None) -> bool:
        """Espera a que todo lo enviado tenga acuse o error; False si vence el plazo antes."""
        fin = None if plazo_s is None else time.monotonic() + plazo_s
        with self._cambio:
            while self._en_vuelo:
                restante = None if fin is None else fin - time.monotonic()
                if restante is not None and restante <= 0:
                    return False
                self._cambio.wait(restante)
        return True

    def cerrar(self, plazo_s: float = 5.0) -> bool:
        """Cierra el productor. Si todo tiene acuse, espera a su hilo de red como mucho `plazo_s`;
        si queda algo pendiente, lo abandona sin esperar (llame antes a `esperar` para no perder
        nada). False si no se esperó al hilo de red (quedaba algo pendiente, o no terminó a
        tiempo): es un hilo demonio, que muere con el proceso."""
        vacio = self.pendientes == 0
        with self._candado:
            productor, self._productor = self._productor, None
            self._cerrado = True
        if productor is None:
            return True
        try:
            # Con envíos pendientes el `flush()` interno de `close()` lanzaría al vencer: plazo 0
            # lanza al momento. Se esperan los acuses propios (`esperar`) y no `flush()`, cuyo
            # plazo vale para cada lote por separado y en total no tiene tope.
            productor.close(timeout=plazo_s if vacio else 0)
        except KafkaTimeoutError:
            return False
        return True

    def __enter__(self) -> PublicadorKafka:
        return self

    def __exit__(self, *_exc) -> None:
        self.esperar(self.espera_lleno_s)
        self.cerrar()

    # --- publicación con espera y reintentos --------------------------------------------------

    def publicar(self, eventos: Sequence[pb.Evento], *, reintentos: int = 3, espera_reintento_s: float = 0.5,
                 plazo_s: float = 120.0, al_avanzar: Callable[[int], None] | None = None,
                 al_reintentar: Callable[[int, int, BaseException], None] | None = None) -> Resumen:
        """Publica y espera: un `ResultadoEvento` por evento, en el orden dado.

        Con `catalogo`, un evento inválido no se envía y su resultado lleva el motivo de la
        plataforma. Lo que falla por una causa pasajera se reenvía tal cual (mismo `evento_id`)
        hasta `reintentos` veces, con esperas de `espera_reintento_s`, el doble, el doble…
        (antes de cada ronda se llama `al_reintentar(ronda, eventos, último error)`). Lo que no
        se confirma queda con motivo `kafka: <error>`. `al_avanzar(n)`: n eventos más resueltos.
        Todo dentro de `plazo_s`.
        """
        eventos = list(eventos)
        fin = time.monotonic() + plazo_s
        resultados: list[ResultadoEvento | None] = [None] * len(eventos)

        def resolver(posiciones: Iterable[int], motivo: str = "") -> None:
            n = 0
            for i in posiciones:
                resultados[i] = ResultadoEvento(eventos[i].evento_id, not motivo, motivo)
                n += 1
            if al_avanzar is not None and n:
                al_avanzar(n)

        pendientes: list[int] = []
        ahora = self.reloj()
        for i, evento in enumerate(eventos):
            motivo = validar(evento, self.catalogo, ahora) if self.catalogo is not None else None
            if motivo is None:
                pendientes.append(i)
            else:
                resolver([i], motivo)
        ronda = 0
        while pendientes:
            reintentables: list[int] = []
            ultimo: BaseException | None = None
            for inicio in range(0, len(pendientes), self.max_en_vuelo):
                trozo = pendientes[inicio:inicio + self.max_en_vuelo]
                try:
                    envios = self._enviar([eventos[i] for i in trozo], max(0.0, fin - time.monotonic()))
                except (KafkaNoDisponible, PublicadorLleno) as error:
                    ultimo = error
                    if es_reintentable(error):
                        reintentables += trozo
                    else:
                        resolver(trozo, f"kafka: {describir_error(error)}")
                    continue
                for envio in envios:
                    posiciones = [trozo[p] for p in envio.posiciones]
                    restante = max(0.0, fin - time.monotonic())
                    if not envio.esperar(min(restante, self._limite_acuse_s)) and restante > self._limite_acuse_s:
                        # Ni acuse ni vencimiento pasado delivery_timeout_ms: el productor está
                        # trabado. Descartarlo hace fallar este envío (reintentable) enseguida.
                        self._descartar(envio._generacion, f"un envío lleva {self._limite_acuse_s:g} s sin acuse "
                                                           "ni error")
                    if not envio.esperar(max(0.0, fin - time.monotonic())):
                        # Sigue en vuelo: puede llegar todavía, así que no se reenvía.
                        resolver(posiciones, f"kafka: sin acuse en {plazo_s:g} s (puede haberse escrito)")
                    elif envio.error is None:
                        resolver(posiciones)
                    elif es_reintentable(envio.error):
                        ultimo = envio.error
                        reintentables += posiciones
                    else:
                        resolver(posiciones, f"kafka: {describir_error(envio.error)}")
            if not reintentables:
                break
            espera = espera_reintento_s * 2 ** ronda
            if ronda >= reintentos or time.monotonic() + espera >= fin:
                resolver(reintentables, f"kafka: {describir_error(ultimo)}")
                break
            ronda += 1
            if al_reintentar is not None:
                al_reintentar(ronda, len(reintentables), ultimo)
            log.warning("reintento %d de %d eventos tras: %s", ronda, len(reintentables), describir_error(ultimo))
            time.sleep(espera)
            pendientes = sorted(reintentables)
        return Resumen(tuple(resultados))

    # --- interno ------------------------------------------------------------------------------

    def _actual(self) -> tuple[KafkaProducer, int]:
        """El productor en uso y su generación; crea uno si el anterior se descartó."""
        with self._candado:
            if self._cerrado:
                raise KafkaNoDisponible("el publicador está cerrado", reintentable=False)
            if self._productor is None:
                try:
                    self._productor = KafkaProducer(**self._opciones)
                except KafkaError as error:
                    raise KafkaNoDisponible(f"no se pudo conectar con Kafka en {self._bootstrap}: "
                                            f"{describir_error(error)}") from error
                self._generacion += 1
            return self._productor, self._generacion

    def _descartar(self, generacion: int, motivo: str) -> None:
        """Deja el productor `generacion` (si sigue en uso) y lo cierra a la fuerza en otro hilo:
        lo que tenía pendiente falla (reintentable) y el próximo envío crea otro productor."""
        with self._candado:
            if generacion != self._generacion or self._productor is None:
                return
            productor, self._productor = self._productor, None
            self.reemplazos += 1
            self._descartados += 1
            ahora = time.monotonic()
            avisar = ahora - self._ultimo_aviso >= _INTERVALO_AVISO_S
            if avisar:
                descartados, self._descartados, self._ultimo_aviso = self._descartados, 0, ahora
        if avisar:
            log.warning("productor de Kafka reemplazado tras: %s (%d reemplazo(s) desde el último aviso); lo que "
                        "tenía sin acuse falla y puede reenviarse con el mismo evento_id", motivo, descartados)
        # No desde aquí: esto corre a menudo en el hilo de red del productor descartado.
        threading.Thread(target=cerrar_productor, args=(productor,), name="gpr-cliente-descarte",
                         daemon=True).start()

    def _descartado(self, generacion: int) -> bool:
        with self._candado:
            return generacion != self._generacion or (self._productor is None and not self._cerrado)

    def _enviar(self, eventos: list[pb.Evento], espera_lleno_s: float, al_confirmar: AlConfirmar | None = None,
                al_fallar: AlFallar | None = None) -> list[Envio]:
        productor, generacion = self._actual()
        # Los metadatos primero, también sin lotes: si faltan, la llamada falla entera y sin
        # enviar nada (send() los esperaría registro a registro).
        try:
            particiones = productor.partitions_for(self.topico)
        except KafkaError as error:
            raise KafkaNoDisponible(f"sin metadatos del tópico {self.topico}: {describir_error(error)}",
                                    bool(getattr(error, "retriable", False))) from error
        if not particiones:
            raise KafkaNoDisponible(f"el tópico {self.topico} no tiene particiones conocidas")
        registros = registros_aceptados(eventos, self.topico, len(particiones) if self.lotes else None)
        self._reservar(len(eventos), espera_lleno_s)
        envios = []
        for registro in registros:
            envio = Envio(registro, tuple(eventos[i] for i in registro.posiciones), generacion)
            envios.append(envio)
            self._mandar(productor, envio, al_confirmar, al_fallar)
        return envios

    def _reservar(self, n: int, espera_s: float) -> None:
        fin = time.monotonic() + espera_s
        with self._cambio:
            while self._en_vuelo + n > self.max_en_vuelo:
                restante = fin - time.monotonic()
                if self.al_llenarse == ERROR or restante <= 0:
                    espero = "" if self.al_llenarse == ERROR else f" tras esperar {espera_s:g} s"
                    raise PublicadorLleno(f"{self._en_vuelo} eventos sin acuse y la llamada trae {n} "
                                          f"(max_en_vuelo={self.max_en_vuelo}){espero}")
                self._cambio.wait(restante)
            self._en_vuelo += n

    def _mandar(self, productor: KafkaProducer, envio: Envio, al_confirmar: AlConfirmar | None,
                al_fallar: AlFallar | None) -> None:
        registro = envio.registro
        try:
            futuro = productor.send(registro.topico, registro.valor, key=registro.clave,
                                    headers=registro.cabeceras or None, partition=registro.particion)
        except Exception as error:  # noqa: BLE001 (un registro que no sale es el fallo de ese registro)
            if isinstance(error, KafkaError) and self._descartado(envio._generacion):
                # Otro hilo descartó este productor entre tomarlo y enviar: pasajero.
                error = self._reemplazado()
            self._terminar(envio, error, al_confirmar, al_fallar)
            return
        # Si el futuro ya está resuelto, la función se llama aquí mismo.
        futuro.add_callback(lambda _metadatos: self._terminar(envio, None, al_confirmar, al_fallar))
        futuro.add_errback(lambda error: self._terminar(envio, self._fallo_del_productor(envio, error),
                                                        al_confirmar, al_fallar))

    def _fallo_del_productor(self, envio: Envio, error: BaseException) -> BaseException:
        """El error que ve quien envió. Uno que deja roto al productor lo hace descartar; el
        cierre forzado de un productor descartado se informa como reintentable."""
        if isinstance(error, _DEJAN_ROTO):
            self._descartar(envio._generacion, describir_error(error))
        elif isinstance(error, IllegalStateError) and self._descartado(envio._generacion):
            return self._reemplazado()
        return error

    @staticmethod
    def _reemplazado() -> KafkaNoDisponible:
        return KafkaNoDisponible("el productor de Kafka se reemplazó antes del acuse (el registro puede haberse "
                                 "escrito); reenvíelo: el procesador descarta el repetido por su evento_id")

    def _terminar(self, envio: Envio, error: BaseException | None, al_confirmar: AlConfirmar | None,
                  al_fallar: AlFallar | None) -> None:
        envio.error = error
        with self._cambio:
            self._en_vuelo -= len(envio.eventos)
            self._cambio.notify_all()
        envio._hecho.set()
        avisar = al_confirmar if error is None else al_fallar
        if avisar is None:
            return
        try:
            if error is None:
                avisar(envio)
            else:
                avisar(envio, error)
        except Exception:  # noqa: BLE001 (un aviso que falla no deja el contador mal)
            log.exception("falló el aviso de un envío")


def cerrar_productor(productor: KafkaProducer, plazo_s: float = 0.0, plazo_emisor_s: float = 5.0) -> bool:
    """Cierra un productor, esperando a lo más `plazo_s` lo pendiente; False si hubo que forzarlo.

    `close()` de kafka-python vacía el búfer y, si eso vence, lanza sin detener su hilo de red;
    con un productor trabado (sus lotes ya no vencen) ese hilo viviría para siempre. Entonces se
    detiene el emisor a la fuerza (`_sender.force_close()`, interior de kafka-python, solo aquí),
    lo que falla lo pendiente con IllegalStateError, y se termina el cierre. Lo usan este
    publicador y la Ingesta de la plataforma.
    """
    try:
        productor.close(timeout=plazo_s)
        return True
    except KafkaError:
        pass
    emisor = getattr(productor, "_sender", None)
    if emisor is not None:
        emisor.force_close()
        emisor.join(plazo_emisor_s)
    try:
        productor.close(timeout=0)
    except KafkaError as error:
        log.info("el productor de Kafka descartado no cerró limpio: %s", describir_error(error))
    return False
