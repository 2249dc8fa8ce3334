"""Un `Puerto` del procesador en memoria que modela Kafka y sus cortes, para correr la ruta
exactamente-una-vez real (`servicios/procesador/ruta.py`) sin broker.

- `Kafka`: lo duradero. Un log por (tópico, partición) y los offsets confirmados de cada grupo.
- Lo enviado (registros y changelogs) queda *en vuelo* hasta que algo espera su entrega o se
  vacía el productor. Kafka solo ordena dentro de una partición: esperar un envío entrega lo
  anterior de *su* partición, y un corte entrega de cada partición un prefijo al azar de lo
  que estaba en vuelo (uno cualquiera, independiente de los demás) y pierde el resto.
- Confirmar offsets vacía antes el productor (como faust, con `parches.vaciar_el_bufer_del_todo`)
  y deja en Kafka el prefijo contiguo de lo confirmado. Se confirma a ratos, al azar.
- Un corte (`Corte`) salta en la operación número N del puerto, a mitad de cualquier paso; el
  trabajador siguiente arranca de lo duradero: tablas desde sus changelogs, lectura desde el
  último offset confirmado.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field

from servicios.comun import topicos
from servicios.procesador.dominio.etapa_casos import aplicar_escrituras


class Corte(BaseException):
    """El trabajador muere aquí (como un SIGKILL: nada de lo que haga después cuenta)."""


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


@dataclass
class Mensaje:
    tp: TP
    offset: int
    key: bytes | None
    value: bytes
    headers: list
    timestamp: float = 0.0
    generation_id: int = 1

    @property
    def partition(self) -> int:
        return self.tp.partition


class Evento:
    __slots__ = ("message", "_puerto")

    def __init__(self, mensaje: Mensaje, puerto: PuertoMemoria):
        self.message = mensaje
        self._puerto = puerto

    def ack(self) -> None:
        self._puerto._confirmado(self.message)


@dataclass
class Kafka:
    logs: dict[TP, list[Mensaje]] = field(default_factory=dict)
    # Siguiente offset a leer por (grupo, partición).
    confirmados: dict[tuple[str, TP], int] = field(default_factory=dict)

    def log(self, tp: TP) -> list[Mensaje]:
        return self.logs.setdefault(tp, [])

    def escribir(self, tp: TP, clave, valor, cabeceras) -> None:
        log = self.log(tp)
        log.append(Mensaje(tp, len(log), clave, valor, list(cabeceras or [])))


class TablaMemoria:
    """Una tabla con changelog: el almacén local y lo mandado al changelog (en vuelo hasta
    entregarse). Implementa `Tabla` y, para la agregación, un mapa clave → bytes que escribe en
    la partición en curso del puerto."""

    def __init__(self, nombre: str, puerto: PuertoMemoria):
        self.nombre = nombre
        self.topico = f"changelog-{nombre}"
        self.puerto = puerto
        self.local: dict[int, dict[bytes, bytes]] = {}
        self._pendientes: dict[int, list] = {}
        # Recuperación: el changelog duradero, aplicado en orden.
        for tp, log in puerto.kafka.logs.items():
            if tp.topic == self.topico:
                base = self.local.setdefault(tp.partition, {})
                for m in log:
                    if m.value is None:
                        base.pop(m.key, None)
                    else:
                        base[m.key] = m.value

    def en(self, particion: int) -> dict[bytes, bytes]:
        return self.local.setdefault(particion, {})

    def escribir(self, particion: int, escrituras: dict[bytes, bytes]) -> None:
        self.puerto._operacion()
        aplicar_escrituras(self.en(particion), escrituras)
        self._pendientes.setdefault(particion, []).extend(escrituras.items())

    async def enviar(self, particion: int) -> int:
        pendientes, self._pendientes[particion] = self._pendientes.get(particion, []), []
        for clave, valor in pendientes:
            await self.puerto.enviar(self.topico, clave, valor, particion)
        return len(pendientes)

    def confirmar(self) -> None:
        pass

    # --- como mapa (la agregación), en la partición en curso ---
    def _actual(self) -> dict[bytes, bytes]:
        return self.en(self.puerto.particion_en_curso)

    def get(self, clave, defecto=None):
        # Como el almacén de faust fuera de una partición en curso: busca en todas.
        for base in self.local.values():
            if clave in base:
                return base[clave]
        return defecto

    def __contains__(self, clave) -> bool:
        return any(clave in base for base in self.local.values())

    def keys(self):
        return [k for base in self.local.values() for k in base]

    def __setitem__(self, clave, valor) -> None:
        self.puerto._operacion()
        self._actual()[clave] = valor
        self._pendientes.setdefault(self.puerto.particion_en_curso, []).append((clave, valor))

    def pop(self, clave, defecto=None):
        self.puerto._operacion()
        valor = self._actual().pop(clave, defecto)
        self._pendientes.setdefault(self.puerto.particion_en_curso, []).append((clave, None))
        return valor


class _Entrega:
    """Lo que devuelve `enviar`: esperarlo entrega en Kafka lo enviado a su partición hasta él."""

    def __init__(self, puerto: PuertoMemoria, tp: TP, numero: int):
        self.puerto, self.tp, self.numero = puerto, tp, numero

    def __await__(self):
        self.puerto._entregar_hasta(self.tp, self.numero)
        if False:  # un generador que no cede: la entrega es inmediata
            yield
        return None


class PuertoMemoria:
    """Un trabajador: implementa `Puerto` sobre `kafka` con el grupo `grupo`.

    `corte_en`: número de operación en la que el trabajador muere (None: nunca)."""

    def __init__(self, kafka: Kafka, azar: random.Random, corte_en: int | None = None,
                 grupos: dict[str, str] | None = None):
        self.kafka = kafka
        self.azar = azar
        self.corte_en = corte_en
        self.operaciones = 0
        self.muerto = False
        self.grupos = grupos or {topico: "procesador" for topico in (topicos.EVENTOS, *topicos.INTERNOS)}
        # Por partición: lo enviado, y cuántos de ellos ya se entregaron.
        self.en_vuelo: dict[TP, list[tuple[bytes | None, bytes | None, list]]] = {}
        self.entregados: dict[TP, int] = {}
        self.posicion: dict[TP, int] = {}
        self.confirmados_local: dict[TP, set[int]] = {}
        self.particion_en_curso = 0

    # --- cortes ---
    def _operacion(self) -> None:
        if self.muerto:
            raise Corte()
        self.operaciones += 1
        if self.corte_en is not None and self.operaciones >= self.corte_en:
            self.morir()

    def morir(self) -> None:
        """Muere: de lo que estaba en vuelo en cada partición llega un prefijo al azar."""
        if not self.muerto:
            self.muerto = True
            for tp, lista in self.en_vuelo.items():
                self._entregar_hasta(tp, self.azar.randint(self.entregados.get(tp, 0), len(lista)))
        raise Corte()

    def _entregar_hasta(self, tp: TP, numero: int) -> None:
        hechos = self.entregados.get(tp, 0)
        for clave, valor, cabeceras in self.en_vuelo[tp][hechos:numero]:
            self.kafka.escribir(tp, clave, valor, cabeceras)
        self.entregados[tp] = max(hechos, numero)

    def _entregar_todo(self) -> None:
        for tp, lista in self.en_vuelo.items():
            self._entregar_hasta(tp, len(lista))

    # --- lectura ---
    def _grupo(self, tp: TP) -> str:
        return self.grupos[tp.topic]

    def offset_confirmado(self, tp) -> int | None:
        return self.kafka.confirmados.get((self._grupo(tp), tp))

    def generacion(self) -> int:
        return 1

    def recuperando(self) -> bool:
        return False

    def reequilibrando(self) -> bool:
        return False

    def olvidar(self, mensajes) -> int:
        return len(list(mensajes))

    async def releer(self, tp, offset: int) -> None:
        self.posicion[tp] = offset

    async def confirmar_hueco(self, tp, desde: int, hasta: int) -> None:
        raise AssertionError("en memoria no hay huecos de offsets")

    def asignadas(self) -> list:
        return list(self.kafka.logs)

    async def fines_de_log(self, particiones) -> dict:
        return {tp: len(self.kafka.log(tp)) for tp in particiones}

    async def inicios_de_log(self, particiones) -> dict:
        return {tp: 0 for tp in particiones}

    def lote(self, topico: str, particiones: int, maximo: int) -> list[Evento]:
        """Un lote de hasta `maximo` registros de `topico`, de particiones al azar, en orden en
        cada una, desde la posición de lectura (al principio, el offset confirmado)."""
        eventos = []
        for p in self.azar.sample(range(particiones), particiones):
            tp = TP(topico, p)
            log = self.kafka.log(tp)
            desde = self.posicion.get(tp, self.offset_confirmado(tp) or 0)
            hasta = min(len(log), desde + self.azar.randint(0, maximo))
            eventos += [Evento(m, self) for m in log[desde:hasta]]
            self.posicion[tp] = hasta
        return eventos

    def _confirmado(self, mensaje: Mensaje) -> None:
        self._operacion()
        self.confirmados_local.setdefault(mensaje.tp, set()).add(mensaje.offset)

    def confirmar_offsets(self) -> None:
        """Confirma en Kafka el prefijo contiguo de lo procesado; antes vacía el productor."""
        self._operacion()
        self._entregar_todo()
        for tp, hechos in self.confirmados_local.items():
            clave = (self._grupo(tp), tp)
            siguiente = self.kafka.confirmados.get(clave, 0)
            while siguiente in hechos:
                siguiente += 1
            self.kafka.confirmados[clave] = siguiente

    # --- escritura ---
    @contextlib.contextmanager
    def en_particion(self, evento):
        anterior, self.particion_en_curso = self.particion_en_curso, evento.message.partition
        try:
            yield
        finally:
            self.particion_en_curso = anterior

    async def enviar(self, topico: str, clave, valor, particion: int | None = None, cabeceras=None):
        self._operacion()
        tp = TP(topico, 0 if particion is None else particion)
        lista = self.en_vuelo.setdefault(tp, [])
        lista.append((clave, valor, cabeceras))
        return _Entrega(self, tp, len(lista))

    async def enviar_lote(self, topico: str, particion: int, registros):
        self._operacion()
        tp = TP(topico, particion)
        lista = self.en_vuelo.setdefault(tp, [])
        lista.extend((clave, valor, cabeceras) for clave, valor, cabeceras, _ in registros)
        return _Entrega(self, tp, len(lista))

    async def vaciar(self) -> None:
        self._operacion()
        self._entregar_todo()
