"""`python -m servicios.simulador`: publica en gpr.eventos.v1 los eventos del generador.

Lee la configuración, crea los tópicos que falten y publica con un productor idempotente de
kafka-python (un `Evento` por registro, clave = caso) al ritmo que marca el `Reloj`: primero
la historia (desde ahora menos `GPR_SIMULADOR_HISTORIA`) a `GPR_SIMULADOR_TASA` eventos/s,
luego en tiempo real. Cada pocos segundos escribe una línea de progreso. Con SIGTERM o SIGINT
deja de generar, espera el acuse de lo enviado y termina con código 0.

Si `GPR_SIMULADOR_CONTROL` nombra un archivo, se lee al arrancar (si existe) y cada vez que
cambia, y su contenido (mismo formato que `GPR_SIMULADOR_LENTOS`) pasa a ser la lista de
servicios lentos: escribir `sunarp/certificado-literal:emision` lo degrada, vaciar el archivo
lo recupera. El cambio vale para las etapas que empiezan desde ese instante simulado; mientras
se repite la historia el reloj simulado corre deprisa y el efecto se ve en segundos, en tiempo
real tarda lo que tarde la etapa (días).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from datetime import datetime, timezone

from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.config import ConfiguracionInvalida, entorno
from servicios.comun.eventos import clave_kafka
from servicios.comun.topicos import EVENTOS, crear_topicos
from servicios.comun.yaml_lineas import ArchivoInvalido
from servicios.simulador import config
from servicios.simulador.generador import Generador, LentosInvalidos, Reloj, parsear_lentos

registro = logging.getLogger("gpr.simulador")

INFORME_CADA_S = 5.0
CONTROL_CADA_S = 1.0


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


def _instante(segundos: float) -> str:
    return datetime.fromtimestamp(segundos, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _duracion(segundos: float) -> str:
    dias, resto = divmod(int(segundos), 86400)
    horas, resto = divmod(resto, 3600)
    return f"{dias}d {horas}h {resto // 60}m" if dias else f"{horas}h {resto // 60}m"


class Publicador:
    """Lleva los eventos del reloj al productor y cuenta envíos y fallos (también los tardíos)."""

    def __init__(self, productor, reloj: Reloj):
        self.productor = productor
        self.reloj = reloj
        self.enviados = 0
        self.fallidos = 0

    def _al_fallar(self, error: Exception) -> None:
        self.fallidos += 1
        # Un broker caído hace fallar miles de envíos: bastan los primeros para diagnosticar.
        if self.fallidos <= 5:
            registro.error("envío fallido: %s", error)

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
            for evento in eventos:
                futuro = self.productor.send(EVENTOS, evento.SerializeToString(), key=clave_kafka(evento))
                futuro.add_errback(self._al_fallar)
            self.enviados += len(eventos)
            if ahora_m - ultimo_informe[0] >= INFORME_CADA_S:
                self._informar(ahora, (self.enviados - ultimo_informe[1]) / (ahora_m - ultimo_informe[0]))
                ultimo_informe = (ahora_m, self.enviados)
            if maximo and self.enviados >= maximo:
                return
            if espera > 0:
                parar.wait(espera)

    def _informar(self, ahora: float, ritmo: float) -> None:
        retraso = self.reloj.retraso_s(ahora)
        fase = f"repitiendo historia, {_duracion(retraso)} por detrás" if retraso > 60 else "tiempo real"
        generador = self.reloj.generador
        registro.info(
            "%d eventos enviados (%.0f/s), reloj simulado %s (%s), %d casos abiertos, %d envíos fallidos",
            self.enviados, ritmo, _instante(generador.instante_actual), fase, generador.casos_abiertos, self.fallidos,
        )


def main() -> int:
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
    from kafka import KafkaProducer
    from kafka.errors import KafkaTimeoutError

    parar = threading.Event()

    def al_recibir_senal(numero, _marco) -> None:
        registro.info("señal %s recibida: se deja de generar y se vacía el productor", signal.Signals(numero).name)
        parar.set()

    signal.signal(signal.SIGTERM, al_recibir_senal)
    signal.signal(signal.SIGINT, al_recibir_senal)

    crear_topicos(cfg.bootstrap, cfg.particiones)
    inicio_s = int(time.time()) - cfg.historia_s
    generador = Generador(catalogo, cfg.semilla, inicio_s, lentos=cfg.lentos, casos_por_hora=cfg.casos_por_hora)
    reloj = Reloj(generador, cfg.tasa)
    control = Control(cfg.control, generador) if cfg.control else None
    lentos = ", ".join(f"{a}/{s}:{e}" for (a, s), e in sorted(generador.lentos.items())) or "ninguno"
    registro.info(
        "simulando desde %s (historia %s) a %g eventos/s, semilla %d, servicios lentos: %s",
        _instante(inicio_s), _duracion(cfg.historia_s), cfg.tasa, cfg.semilla, lentos,
    )

    productor = KafkaProducer(
        bootstrap_servers=cfg.bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
        client_id="gpr-simulador",
    )
    publicador = Publicador(productor, reloj)
    try:
        publicador.ejecutar(parar, cfg.maximo, control)
    finally:
        # Con plazo: si el broker ya no está, esperar para siempre no salva nada.
        try:
            productor.flush(timeout=10)
        except KafkaTimeoutError:
            registro.error("el broker no confirmó los últimos envíos en 10 s; se abandonan")
        productor.close(timeout=5)
    registro.info("terminado: %d eventos publicados, %d envíos fallidos",
                  publicador.enviados - publicador.fallidos, publicador.fallidos)
    return 1 if publicador.fallidos else 0


if __name__ == "__main__":
    sys.exit(main())
