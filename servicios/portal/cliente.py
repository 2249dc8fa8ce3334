"""Cliente de la API gRPC `Indicadores` para el portal, detrás de la caché corta.

El portal lee como cualquier servicio de abajo: `ListarIndicadores` con el filtro de la
agencia, página a página. Con `GPR_PORTAL_CONSULTA_TLS_CA` el canal es TLS y verifica el
certificado de la consulta con esa CA; con `GPR_PORTAL_CONSULTA_TOKEN` cada llamada lleva
`authorization: Bearer <token>`. Sin ninguno, canal en claro y sin token (como `make run`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc

from gpr.v1 import indicadores_pb2 as ipb
from gpr.v1 import indicadores_pb2_grpc as ipb_grpc
from servicios.portal.cache import CacheCorta
from servicios.portal.dominio import DatosAgencia

log = logging.getLogger(__name__)
TAMANO_PAGINA = 1000


class ConsultaNoDisponible(Exception):
    """La API de indicadores no respondió (caída, cargando o rechazó la llamada)."""

    def __init__(self, codigo: grpc.StatusCode | None, detalle: str):
        self.codigo = codigo
        super().__init__(f"{codigo.name if codigo else 'error'}: {detalle}")


def credenciales_canal(tls_ca: bytes | None) -> grpc.ChannelCredentials | None:
    return grpc.ssl_channel_credentials(root_certificates=tls_ca) if tls_ca is not None else None


class ClienteIndicadores:
    """`datos(agencia)`: todas las series de la agencia, a lo más una lectura por `ttl_s`."""

    def __init__(self, destino: str, cache: CacheCorta, *, token: str | None = None,
                 tls_ca: bytes | None = None, plazo_s: float = 5.0,
                 al_llamar: Callable[[str, str], None] | None = None):
        self._destino = destino
        self._cache = cache
        self._metadatos = (("authorization", f"Bearer {token}"),) if token else None
        self._credenciales = credenciales_canal(tls_ca)
        self._plazo_s = plazo_s
        self._al_llamar = al_llamar or (lambda rpc, codigo: None)
        self._canal: grpc.aio.Channel | None = None
        self._stub: ipb_grpc.IndicadoresStub | None = None

    async def abrir(self) -> None:
        # round_robin: con `dns:///` y un Service sin IP, las llamadas se reparten entre las
        # réplicas de la consulta (con una sola dirección es lo mismo que pick_first).
        opciones = [("grpc.max_receive_message_length", 64 * 1024 * 1024), ("grpc.lb_policy_name", "round_robin")]
        if self._credenciales is not None:
            self._canal = grpc.aio.secure_channel(self._destino, self._credenciales, options=opciones)
        else:
            self._canal = grpc.aio.insecure_channel(self._destino, options=opciones)
        self._stub = ipb_grpc.IndicadoresStub(self._canal)

    async def cerrar(self) -> None:
        if self._canal is not None:
            await self._canal.close()
            self._canal = None

    async def datos(self, agencia_id: str) -> DatosAgencia:
        return await self._cache.obtener(("agencia", agencia_id), lambda: self._leer_agencia(agencia_id))

    async def _leer_agencia(self, agencia_id: str) -> DatosAgencia:
        series: list[ipb.Indicador] = []
        token = ""
        while True:
            pagina = await self._llamar(ipb.FiltroIndicadores(
                agencia_id=agencia_id, tamano_pagina=TAMANO_PAGINA, token_pagina=token))
            series.extend(pagina.indicadores)
            token = pagina.siguiente_pagina
            if not token:
                return DatosAgencia(agencia_id, series)

    async def _llamar(self, filtro: ipb.FiltroIndicadores) -> ipb.ListaIndicadores:
        if self._stub is None:
            raise RuntimeError("ClienteIndicadores.abrir() no se llamó")
        try:
            respuesta = await self._stub.ListarIndicadores(filtro, timeout=self._plazo_s, metadata=self._metadatos)
        except grpc.aio.AioRpcError as error:
            self._al_llamar("ListarIndicadores", error.code().name)
            log.warning("ListarIndicadores(%s) falló: %s %s", filtro.agencia_id, error.code().name, error.details())
            raise ConsultaNoDisponible(error.code(), error.details() or "") from None
        self._al_llamar("ListarIndicadores", "OK")
        return respuesta
