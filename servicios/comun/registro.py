"""Registro (logging) de los servicios: formato común y un filtro de repetidos.

Con el broker caído, los clientes de Kafka (aiokafka, kafka-python) y nuestros bucles de
reintento escriben la misma línea decenas de veces por segundo: el registro crece sin decir
nada nuevo y tapa lo que sí importa. `FiltroRepetidos` deja pasar la primera aparición de cada
mensaje (por registrador, nivel y plantilla, sin los argumentos) y calla las siguientes durante
`intervalo_s`; la primera que pasa después dice cuántas se callaron.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

FORMATO = "%(asctime)s %(levelname)s %(name)s: %(message)s"
INTERVALO_REPETIDOS_S = 30.0
# Plantillas distintas recordadas a la vez: un mensaje con datos en la plantilla (un f-string)
# no hace crecer la memoria sin límite.
_MAXIMO_PLANTILLAS = 2000


class FiltroRepetidos(logging.Filter):
    """Deja pasar un mensaje igual (registrador, nivel, plantilla) a lo más una vez por
    `intervalo_s`. `reloj`: segundos monótonos (inyectable en pruebas)."""

    def __init__(self, intervalo_s: float = INTERVALO_REPETIDOS_S,
                 reloj: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.intervalo_s = intervalo_s
        self.reloj = reloj
        self._vistos: dict[tuple, list] = {}
        self._cerrojo = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        clave = (record.name, record.levelno, str(record.msg))
        ahora = self.reloj()
        with self._cerrojo:
            visto = self._vistos.get(clave)
            if visto is None:
                if len(self._vistos) >= _MAXIMO_PLANTILLAS:
                    self._vistos.clear()
                self._vistos[clave] = [ahora, 0]
                return True
            if ahora - visto[0] < self.intervalo_s:
                visto[1] += 1
                return False
            callados, visto[0], visto[1] = visto[1], ahora, 0
        if callados:
            record.msg = f"{record.msg} (y {callados} veces más en los últimos {self.intervalo_s:.0f} s)"
        return True


def configurar_registro(nivel: int = logging.INFO, intervalo_s: float = INTERVALO_REPETIDOS_S) -> FiltroRepetidos:
    """Registro a stderr con el formato común y el filtro de repetidos en el manejador raíz
    (también para los registros de las bibliotecas)."""
    logging.basicConfig(level=nivel, format=FORMATO)
    filtro = FiltroRepetidos(intervalo_s)
    instalar_filtro(filtro)
    return filtro


def instalar_filtro(filtro: logging.Filter) -> None:
    """Pone `filtro` en cada manejador del registrador raíz (un filtro en el registrador no
    alcanza a los mensajes que suben desde los registradores hijos)."""
    for manejador in logging.getLogger().handlers:
        if filtro not in manejador.filters:
            manejador.addFilter(filtro)
