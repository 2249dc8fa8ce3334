"""Cliente tipado de la consulta de indicadores (`gpr.v1.Indicadores`).

Devuelve los mensajes del contrato (`gpr.v1.Indicador`, `Tablero`): `valor` en la `unidad`
del indicador (`segundos`, `proporcion`, `conteo`, `por_mil` o la moneda), `sin_datos` cuando no
hay valor, y la `meta` con su estado. Un error de la consulta llega como `grpc.RpcError`
(`code()`: UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND, INVALID_ARGUMENT, UNAVAILABLE…).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from gpr.v1 import indicadores_pb2 as ipb
from gpr.v1 import indicadores_pb2_grpc as ipb_grpc
from gpr_cliente.canal import abrir_canal

# Tamaño de página al listar (el máximo que acepta la consulta).
PAGINA = 1000


class Suscripcion:
    """Un flujo de `Indicador` en vivo: se itera, y `cancelar()` lo corta (desde otro hilo
    también). Con `with`, se cancela al salir."""

    def __init__(self, llamada):
        self._llamada = llamada

    def __iter__(self) -> Iterator[ipb.Indicador]:
        return iter(self._llamada)

    def cancelar(self) -> None:
        self._llamada.cancel()

    def __enter__(self) -> Suscripcion:
        return self

    def __exit__(self, *_exc) -> None:
        self.cancelar()


class ClienteIndicadores:
    """Consulta los indicadores en `destino` (`host:puerto`).

    `token`: token de lectura (si la consulta pide tokens, solo ve las agencias de su alcance).
    TLS: `tls_ca` (el PEM o su ruta) o `tls=True` (CA del sistema). `plazo_s`: de cada llamada,
    salvo la suscripción. Úselo con `with` o llame a `cerrar()`.
    """

    def __init__(self, destino: str, *, token: str = "", tls: bool = False,
                 tls_ca: bytes | str | Path | None = None, plazo_s: float = 10.0):
        self.plazo_s = plazo_s
        self._canal = abrir_canal(destino, token=token, tls=tls, tls_ca=tls_ca)
        self._stub = ipb_grpc.IndicadoresStub(self._canal)

    def indicador(self, agencia_id: str, servicio_id: str, indicador: str, ventana: str = "24h", *,
                  etapa_id: str = "") -> ipb.Indicador:
        """El valor actual de una serie (NOT_FOUND si aún no existe)."""
        return self._stub.ObtenerIndicador(ipb.SolicitudIndicador(
            agencia_id=agencia_id, servicio_id=servicio_id, indicador=indicador, ventana=ventana, etapa_id=etapa_id),
            timeout=self.plazo_s)

    def listar(self, *, agencia_id: str = "", servicio_id: str = "", indicador: str = "",
               ventana: str = "") -> Iterator[ipb.Indicador]:
        """Los indicadores actuales que cumplen el filtro (vacío: todos), página a página."""
        token = ""
        while True:
            pagina = self._stub.ListarIndicadores(ipb.FiltroIndicadores(
                agencia_id=agencia_id, servicio_id=servicio_id, indicador=indicador, ventana=ventana,
                tamano_pagina=PAGINA, token_pagina=token), timeout=self.plazo_s)
            yield from pagina.indicadores
            token = pagina.siguiente_pagina
            if not token:
                return

    def tablero(self, agencia_id: str, ventana: str = "24h") -> ipb.Tablero:
        """Cada servicio de la agencia con sus indicadores, su meta y el cuello de botella."""
        return self._stub.ObtenerTablero(ipb.SolicitudTablero(agencia_id=agencia_id, ventana=ventana),
                                         timeout=self.plazo_s)

    def historial(self, agencia_id: str, servicio_id: str, indicador: str, ventana: str = "24h", *,
                  etapa_id: str = "", maximo: int = 0) -> list[ipb.Indicador]:
        """Instantáneas de una serie, de la más antigua a la más reciente (`maximo`: las últimas)."""
        respuesta = self._stub.ObtenerHistorial(ipb.SolicitudHistorial(
            agencia_id=agencia_id, servicio_id=servicio_id, indicador=indicador, ventana=ventana,
            etapa_id=etapa_id, maximo=maximo), timeout=self.plazo_s)
        return list(respuesta.instantaneas)

    def incumplimientos(self, *, agencia_id: str = "", servicio_id: str = "") -> list[ipb.Indicador]:
        """Las series que hoy incumplen su meta."""
        respuesta = self._stub.ListarIncumplimientos(ipb.FiltroIncumplimientos(
            agencia_id=agencia_id, servicio_id=servicio_id), timeout=self.plazo_s)
        return list(respuesta.indicadores)

    def suscribir(self, *, agencia_id: str = "", servicio_id: str = "", indicador: str = "",
                  ventana: str = "", plazo_s: float | None = None) -> Suscripcion:
        """Primero el estado actual de las series del filtro y después cada cambio, hasta
        `cancelar()` o `plazo_s` (DEADLINE_EXCEEDED al vencer)."""
        return Suscripcion(self._stub.SuscribirIndicadores(ipb.FiltroIndicadores(
            agencia_id=agencia_id, servicio_id=servicio_id, indicador=indicador, ventana=ventana), timeout=plazo_s))

    def cerrar(self) -> None:
        self._canal.close()

    def __enter__(self) -> ClienteIndicadores:
        return self

    def __exit__(self, *_exc) -> None:
        self.cerrar()
