"""Caché corta con una sola carga en vuelo por clave (asyncio).

Una ráfaga de visitas nunca es una ráfaga de llamadas: dentro de `ttl_s` cada clave se carga
una vez, y las peticiones que llegan mientras se carga esperan esa misma carga. Un fallo
también se recuerda durante `ttl_s` (si no, con la consulta caída cada visita sería una
llamada más contra ella). El reloj es inyectable: las pruebas lo fijan.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any


class CacheCorta:
    def __init__(self, ttl_s: float, reloj: Callable[[], float] = time.monotonic, maximo: int = 10_000,
                 al_acertar: Callable[[], None] | None = None, al_fallar: Callable[[], None] | None = None):
        self._ttl = ttl_s
        self._reloj = reloj
        self._maximo = maximo
        self._entradas: dict[Hashable, tuple[float, bool, Any]] = {}
        self._en_vuelo: dict[Hashable, asyncio.Future] = {}
        self._al_acertar = al_acertar or (lambda: None)
        self._al_fallar = al_fallar or (lambda: None)
        self.cargas = 0

    async def obtener(self, clave: Hashable, cargar: Callable[[], Awaitable[Any]]) -> Any:
        entrada = self._entradas.get(clave)
        if entrada is not None and entrada[0] > self._reloj():
            self._al_acertar()
            return _resultado(entrada[1], entrada[2])
        tarea = self._en_vuelo.get(clave)
        if tarea is not None:
            self._al_acertar()
        else:
            # La carga es una tarea propia: si se cancela la petición que la empezó (el
            # cliente se fue), las demás que la esperan no pierden su resultado.
            self._al_fallar()
            self.cargas += 1
            tarea = asyncio.ensure_future(self._cargar(clave, cargar))
            self._en_vuelo[clave] = tarea
            # Leída aquí, una excepción sin nadie que la espere no ensucia el registro.
            tarea.add_done_callback(lambda t: t.cancelled() or t.exception())
        return await asyncio.shield(tarea)

    async def _cargar(self, clave: Hashable, cargar: Callable[[], Awaitable[Any]]) -> Any:
        try:
            valor = await cargar()
        except Exception as error:
            self._guardar(clave, False, error)
            raise
        else:
            self._guardar(clave, True, valor)
            return valor
        finally:
            self._en_vuelo.pop(clave, None)

    def _guardar(self, clave: Hashable, bien: bool, valor: Any) -> None:
        ahora = self._reloj()
        if len(self._entradas) >= self._maximo:
            for vieja in [k for k, (vence, _, _) in self._entradas.items() if vence <= ahora]:
                del self._entradas[vieja]
            while len(self._entradas) >= self._maximo:
                del self._entradas[next(iter(self._entradas))]
        self._entradas[clave] = (ahora + self._ttl, bien, valor)


def _resultado(bien: bool, valor: Any) -> Any:
    if bien:
        return valor
    raise valor
