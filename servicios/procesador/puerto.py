"""El puerto del procesador: lo que la ruta exactamente-una-vez (`ruta.py`) necesita de Kafka.

Dos implementaciones: la de faust (`servicios/terceros/faust/`, la única parte del proyecto que
toca el interior de faust, mode y aiokafka) y una en memoria para las pruebas
(`tests/apoyo/puerto_memoria.py`), que modela los cortes de Kafka: prefijos de lo enviado y de
los changelogs, y la vuelta al último offset confirmado.

Un registro de entrada es lo que entrega faust (un evento con `message` y `ack()`): `message`
trae `tp` (tópico y partición), `partition`, `offset`, `key`, `value`, `headers`, `timestamp`
y `generation_id`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol


class Tabla(Protocol):
    """Una tabla con changelog, escrita en bloque (ver `servicios/terceros/faust/tablas.py`)."""

    def en(self, particion: int) -> Mapping[bytes, bytes]:
        """Lo que se lee de `particion` (solo `get`)."""

    def escribir(self, particion: int, escrituras: dict[bytes, bytes | None]) -> None:
        """Escribe en el almacén local y anota para el changelog (None: borra la clave)."""

    async def enviar(self, particion: int) -> int:
        """Manda al changelog lo anotado desde el último envío."""

    def confirmar(self) -> None:
        """Anota en el almacén el último offset del changelog ya confirmado."""


class Puerto(Protocol):
    # --- lectura y confirmación de los registros de entrada ---
    def offset_confirmado(self, tp: Any) -> int | None:
        """El último offset confirmado en Kafka del grupo para `tp`, si se conoce."""

    def generacion(self) -> int:
        """La generación vigente del grupo de consumidores."""

    def recuperando(self) -> bool:
        """Las tablas se están recuperando de sus changelogs."""

    def reequilibrando(self) -> bool:
        """El grupo se está reequilibrando."""

    def olvidar(self, mensajes: Iterable[Any]) -> int:
        """Deja de esperar la confirmación de `mensajes` (se leerán de nuevo); cuántos quitó."""

    async def releer(self, tp: Any, offset: int) -> None:
        """Vuelve a leer `tp` desde `offset`."""

    async def confirmar_hueco(self, tp: Any, desde: int, hasta: int) -> None:
        """Da por procesados los offsets `desde`..`hasta`, que no existen."""

    def asignadas(self) -> list[Any]:
        """Las particiones asignadas a este trabajador."""

    async def fines_de_log(self, particiones: list[Any]) -> dict:
        """El fin del log de cada partición (None si no se pudo saber)."""

    async def inicios_de_log(self, particiones: list[Any]) -> dict:
        """El primer offset del log de cada partición ({} si el broker no responde)."""

    # --- escritura ---
    def en_particion(self, evento: Any) -> AbstractContextManager:
        """Mientras dure, las escrituras de tablas van a la partición de `evento`."""

    async def enviar(self, topico: str, clave: bytes | None, valor: bytes, particion: int | None = None,
                     cabeceras: list[tuple[str, bytes]] | None = None) -> Awaitable:
        """Manda un registro; devuelve lo que se espera para saberlo escrito en Kafka."""

    async def enviar_lote(self, topico: str, particion: int,
                          registros: list[tuple[bytes | None, bytes | None, Any, float | None]]) -> Awaitable:
        """Manda a una partición varios registros (clave, valor, cabeceras, instante en segundos
        o None) de una vez; devuelve lo que se espera para saberlos escritos en Kafka."""

    async def vaciar(self) -> None:
        """Espera a que todo lo enviado (también los changelogs) esté escrito en Kafka."""
