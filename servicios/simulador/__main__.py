"""`python -m servicios.simulador`: publica en gpr.eventos.v1 los eventos del generador.

Lee la configuración, crea los tópicos que falten y publica con el publicador Kafka de la
biblioteca cliente (`gpr_cliente.kafka`: kafka-python idempotente, `acks=all`, un `Evento` por
registro, con la clave del contrato) al ritmo que marca el `Reloj`: primero la historia (desde
ahora menos `GPR_SIMULADOR_HISTORIA`) a `GPR_SIMULADOR_TASA` eventos/s, luego en tiempo real.
Cada pocos segundos escribe una línea de progreso.

Cierre: con SIGTERM o SIGINT, lleguen cuando lleguen (también durante el arranque), deja de
generar, espera el acuse de lo enviado y termina con código 0. Cada fase tiene plazo: el envío
en curso espera metadatos como mucho `ESPERA_ENVIO_S`, los acuses `PLAZO_ACUSES_S` y el
cierre del productor `PLAZO_CIERRE_S`; lo no confirmado a tiempo se abandona y el código es 1.
Como red de seguridad, si el proceso sigue vivo `PLAZO_SALIDA_S` después de la señal (p. ej.
arrancando contra un broker que no responde) vuelca la pila de cada hilo y sale con código 1.
"Publicados" en la línea final son solo los eventos que el broker confirmó. Con SIGUSR1 vuelca
la pila de cada hilo en stderr sin detenerse, para diagnosticar un proceso que no avanza.

Si `GPR_SIMULADOR_CONTROL` nombra un archivo, se lee al arrancar (si existe) y cada vez que
cambia, y su contenido (mismo formato que `GPR_SIMULADOR_LENTOS`) pasa a ser la lista de
servicios lentos: escribir `sunarp/certificado-literal:emision` lo degrada, vaciar el archivo
lo recupera. El cambio vale para las etapas que empiezan desde ese instante simulado; mientras
se repite la historia el reloj simulado corre deprisa y el efecto se ve en segundos, en tiempo
real tarda lo que tarde la etapa (días).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import threading
import time
from datetime import datetime, timezone

from gpr_cliente.kafka import KafkaNoDisponible, PublicadorKafka, PublicadorLleno
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.config import ConfiguracionInvalida, entorno
from servicios.comun.kafka_conexion import KafkaInalcanzable
from servicios.comun.topicos import EVENTOS, crear_topicos
from servicios.comun.yaml_lineas import ArchivoInvalido
from servicios.simulador import config
from servicios.simulador.generador import Generador, LentosInvalidos, Reloj, parsear_lentos

registro = logging.getLogger("gpr.simulador")

INFORME_CADA_S = 5.0
CONTROL_CADA_S = 1.0

SENALES_DE_CIERRE = {signal.SIGTERM, signal.SIGINT}
# Plazos del cierre, desde la señal: envío en curso + acuses + cierre = 2 + 5 + 2 = 9 s como
# mucho. PLAZO_SALIDA_S los cubre con margen; solo se llega a él si algo se bloquea fuera de
# esas fases (crear los tópicos o conectar el productor contra un broker que no responde).
ESPERA_ENVIO_S = 2.0
PLAZO_ACUSES_S = 5.0
PLAZO_CIERRE_S = 2.0
PLAZO_SALIDA_S = 12.0


class Control:
    """Archivo de servicios lentos que se aplica al generador cada vez que cambia."""

    def __init__(self, ruta: str, generador: Generador):
        self.ruta = ruta
        self.generador = generador
        self._firma: tuple[int, int] | None = None

    def revisar(self) -> None:
        try:
            estado = os.stat(self.ruta)
        except FileNotFoundError:
            if self._firma is not None:
                registro.warning("el archivo de control %s ya no existe; se mantienen los lentos actuales", self.ruta)
                self._firma = None
            return
        firma = (estado.st_mtime_ns, estado.st_size)
        if firma == self._firma:
            return
        self._firma = firma
        try:
            with open(self.ruta, encoding="utf-8") as archivo:
                lentos = parsear_lentos(archivo.read())
            self.generador.fijar_lentos(lentos)
        except (OSError, LentosInvalidos) as error:
            registro.error("archivo de control %s inválido, se ignora: %s", self.ruta, error)
            return
        descripcion = ", ".join(f"{a}/{s}:{e}" for (a, s), e in sorted(lentos.items())) or "ninguno"
        registro.info("servicios lentos desde ahora: %s", descripcion)


class Senales:
    """SIGTERM y SIGINT atendidas por un hilo propio con `sigwait`, nunca por un manejador.

    Un manejador de Python corre en el hilo principal entre dos instrucciones cualesquiera. El
    anterior hacía `parar.set()`, y si la señal llegaba mientras el hilo principal estaba
    dentro de `parar.wait()` con el candado interno del Event tomado, `set()` esperaba ese
    mismo candado (no reentrante) y el proceso quedaba colgado para siempre (reproducido, con
    py-spy: Event.set ← manejador ← Condition.wait ← Event.wait). Bloqueadas las señales en
    todos los hilos, el núcleo las deja pendientes hasta que este hilo las recoge, y lo que
    haga después (registrar, `set()`) no interrumpe a nadie.
    """

    def __init__(self):
        self.parar = threading.Event()

    @staticmethod
    def bloquear() -> None:
        # Antes de crear ningún hilo: los que se creen después heredan la máscara, y así la
        # señal no puede ir a parar a uno con la acción por defecto (matar el proceso).
        signal.pthread_sigmask(signal.SIG_BLOCK, SENALES_DE_CIERRE)

    def atender(self) -> None:
        threading.Thread(target=self._vigilar, name="gpr-senales", daemon=True).start()

    @staticmethod
    def terminar() -> None:
        """El cierre acabó por su cuenta: la red de seguridad ya no hace falta."""
        faulthandler.cancel_dump_traceback_later()

    def _vigilar(self) -> None:
        numero = signal.sigwait(SENALES_DE_CIERRE)
        registro.info("señal %s recibida: se deja de generar (si en %g s no ha terminado, sale a la fuerza)",
                      signal.Signals(numero).name, PLAZO_SALIDA_S)
        # La red de seguridad es el vigilante de faulthandler, un hilo en C que no necesita el
        # GIL: aunque el hilo principal se quede bloqueado donde sea (incluso sin soltar el GIL),
        # vuelca la pila de cada hilo («Timeout (0:00:12)!») y sale con código 1.
        faulthandler.dump_traceback_later(PLAZO_SALIDA_S, exit=True)
        self.parar.set()


def _instante(segundos: float) -> str:
    return datetime.fromtimestamp(segundos, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _duracion(segundos: float) -> str:
    dias, resto = divmod(int(segundos), 86400)
    horas, resto = divmod(resto, 3600)
    return f"{dias}d {horas}h {resto // 60}m" if dias else f"{horas}h {resto // 60}m"


class Publicador:
    """Lleva los eventos del reloj al productor y cuenta envíos, acuses y fallos.

    Los acuses y fallos llegan por el hilo de red del productor (también los tardíos); solo
    lo confirmado cuenta como publicado.
    """

    def __init__(self, productor, reloj: Reloj):
        self.productor = productor
        self.reloj = reloj
        self.enviados = 0
        self.confirmados = 0
        self.fallidos = 0
        self._cambio = threading.Condition()
        self._avisos_sin_metadatos = 0

    @property
    def pendientes(self) -> int:
        return self.enviados - self.confirmados - self.fallidos

    def resumen(self) -> tuple[int, int, int]:
        """(confirmados, fallidos, sin confirmar), leídos a la vez."""
        with self._cambio:
            return self.confirmados, self.fallidos, self.pendientes

    def _al_confirmar(self, envio) -> None:
        with self._cambio:
            self.confirmados += len(envio.eventos)
            if not self.pendientes:
                self._cambio.notify_all()

    def _al_fallar(self, envio, error: BaseException) -> None:
        with self._cambio:
            self.fallidos += len(envio.eventos)
            fallidos = self.fallidos
            if not self.pendientes:
                self._cambio.notify_all()
        # Un broker caído hace fallar miles de envíos: bastan los primeros para diagnosticar.
        if fallidos <= 5:
            registro.error("envío fallido: %s", error)

    def _enviar(self, eventos, parar: threading.Event) -> bool:
        """Envía los eventos (un `Evento` por registro); False si se pidió parar antes de que salieran.

        Sin metadatos del tópico (al empezar, o con el broker caído) o sin lugar para más envíos
        sin acuse, `enviar` no envía nada y vuelve como mucho en ESPERA_ENVIO_S: entre intento
        e intento se mira `parar`.
        """
        while not parar.is_set():
            # Se cuentan antes de enviar: el acuse (o el fallo) puede llegar antes de que
            # `enviar` vuelva, desde el hilo de red.
            with self._cambio:
                self.enviados += len(eventos)
            try:
                self.productor.enviar(eventos, al_confirmar=self._al_confirmar, al_fallar=self._al_fallar)
                return True
            except (KafkaNoDisponible, PublicadorLleno) as error:
                with self._cambio:
                    self.enviados -= len(eventos)
                self._avisos_sin_metadatos += 1
                if self._avisos_sin_metadatos <= 5:
                    registro.warning("no se pudo enviar a %s en %g s, se reintenta: %s", EVENTOS, ESPERA_ENVIO_S, error)
        return False

    def ejecutar(self, parar: threading.Event, maximo: int = 0, control: Control | None = None) -> None:
        """Publica hasta que se pida `parar` o se llegue a `maximo` eventos (0: sin límite)."""
        proximo_control = time.monotonic()
        ultimo_informe = (time.monotonic(), 0)
        while not parar.is_set():
            ahora_m = time.monotonic()
            if control is not None and ahora_m >= proximo_control:
                control.revisar()
                proximo_control = ahora_m + CONTROL_CADA_S
            ahora = time.time()
            eventos, espera = self.reloj.paso(ahora, maximo - self.enviados if maximo else None)
            # Los eventos generados que no llegan a salir no cuentan en ninguna parte.
            tanda = self.productor.max_en_vuelo
            for inicio in range(0, len(eventos), tanda):
                if not self._enviar(eventos[inicio:inicio + tanda], parar):
                    return
            if ahora_m - ultimo_informe[0] >= INFORME_CADA_S:
                self._informar(ahora, (self.enviados - ultimo_informe[1]) / (ahora_m - ultimo_informe[0]))
                ultimo_informe = (ahora_m, self.enviados)
            if maximo and self.enviados >= maximo:
                return
            if espera > 0:
                parar.wait(espera)

    def esperar_acuses(self, limite_s: float) -> bool:
        """Espera a que el broker confirme (o rechace) todo lo enviado; False si vence el plazo."""
        fin = time.monotonic() + limite_s
        with self._cambio:
            while self.pendientes:
                restante = fin - time.monotonic()
                if restante <= 0:
                    return False
                self._cambio.wait(restante)
        return True

    def _informar(self, ahora: float, ritmo: float) -> None:
        retraso = self.reloj.retraso_s(ahora)
        fase = f"repitiendo historia, {_duracion(retraso)} por detrás" if retraso > 60 else "tiempo real"
        generador = self.reloj.generador
        registro.info(
            "%d eventos enviados (%.0f/s), reloj simulado %s (%s), %d casos abiertos, %d envíos fallidos",
            self.enviados, ritmo, _instante(generador.instante_actual), fase, generador.casos_abiertos, self.fallidos,
        )


def _cerrar(productor: PublicadorKafka, publicador: Publicador) -> None:
    """Vacía y cierra el productor en como mucho PLAZO_ACUSES_S + PLAZO_CIERRE_S."""
    inicio = time.monotonic()
    registro.info("vaciando el productor: %d envíos por confirmar", publicador.pendientes)
    # Con linger_ms=5 no hace falta forzar nada: basta esperar los acuses.
    vacio = publicador.esperar_acuses(PLAZO_ACUSES_S)
    if vacio:
        registro.info("productor vacío en %.2f s", time.monotonic() - inicio)
    else:
        registro.error("el broker no confirmó %d envíos en %g s; se abandonan",
                       publicador.pendientes, PLAZO_ACUSES_S)
    inicio = time.monotonic()
    # Vacío, solo espera al hilo de red (y si no acaba en el plazo, lo corta); con envíos
    # pendientes no espera nada: el hilo de red, que es demonio, muere con el proceso.
    if not productor.cerrar(PLAZO_CIERRE_S):
        registro.error("productor cerrado sin esperar a su hilo de red")
        return
    registro.info("productor cerrado en %.2f s", time.monotonic() - inicio)


def main() -> int:
    Senales.bloquear()
    try:
        cfg = config.leer(entorno())
        catalogo = cargar_catalogo(cfg.catalogo)
        config.comprobar_con_catalogo(cfg, catalogo)
    except (ConfiguracionInvalida, ArchivoInvalido) as error:
        print(f"gpr-simulador: configuración inválida:\n{error}", file=sys.stderr)
        return 2

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # kafka-python anuncia cada conexión en INFO: taparía la línea de progreso.
    logging.getLogger("kafka").setLevel(logging.WARNING)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    senales = Senales()
    senales.atender()
    parar = senales.parar

    # `crear_topicos` no mira `parar`: contra un broker sano tarda milésimas, y contra uno que
    # no responde lo acota la red de seguridad. Si al volver ya se pidió parar, ni se conecta.
    registro.info("creando los tópicos que falten en %s", cfg.kafka.describir())
    try:
        crear_topicos(cfg.kafka, cfg.particiones)
    except KafkaInalcanzable as error:
        registro.error("%s", error)
        senales.terminar()
        return 3
    if parar.is_set():
        registro.info("terminado: 0 eventos publicados, 0 envíos fallidos (se pidió parar durante el arranque)")
        senales.terminar()
        return 0

    inicio_s = int(time.time()) - cfg.historia_s
    generador = Generador(catalogo, cfg.semilla, inicio_s, lentos=cfg.lentos, casos_por_hora=cfg.casos_por_hora)
    reloj = Reloj(generador, cfg.tasa)
    control = Control(cfg.control, generador) if cfg.control else None
    lentos = ", ".join(f"{a}/{s}:{e}" for (a, s), e in sorted(generador.lentos.items())) or "ninguno"
    registro.info(
        "simulando desde %s (historia %s) a %g eventos/s, semilla %d, servicios lentos: %s",
        _instante(inicio_s), _duracion(cfg.historia_s), cfg.tasa, cfg.semilla, lentos,
    )

    # El publicador de la biblioteca cliente: idempotente, acks=all, con tope de envíos sin acuse.
    # Sin lotes: el simulador publica como cualquier sistema de agencia, un Evento por registro.
    opciones = cfg.kafka.para_kafka_python()
    try:
        productor = PublicadorKafka(
            opciones.pop("bootstrap_servers"), lotes=False, client_id="gpr-simulador", linger_ms=5,
            max_block_ms=int(ESPERA_ENVIO_S * 1000), espera_lleno_s=ESPERA_ENVIO_S, plazo_saludo_tls_s=ESPERA_ENVIO_S,
            **opciones)
    except KafkaNoDisponible as error:
        registro.error("%s", error)
        senales.terminar()
        return 3
    publicador = Publicador(productor, reloj)
    try:
        publicador.ejecutar(parar, cfg.maximo, control)
    finally:
        _cerrar(productor, publicador)
    confirmados, fallidos, pendientes = publicador.resumen()
    sin_confirmar = f", {pendientes} sin confirmar (pueden estar o no en el tópico)" if pendientes else ""
    registro.info("terminado: %d eventos publicados, %d envíos fallidos%s", confirmados, fallidos, sin_confirmar)
    senales.terminar()
    return 1 if fallidos or pendientes else 0


if __name__ == "__main__":
    sys.exit(main())
