"""Publicar eventos por la Ingesta gRPC (`gpr.v1.Ingesta`), para sistemas sin cliente de Kafka.

La Ingesta autentica el token de la agencia, valida cada evento con la misma función que el
procesador, agrupa los aceptados en registros `LoteEventos` por partición y responde cuando
Kafka los confirmó. Este publicador:

- parte la lista en peticiones de hasta `eventos_por_peticion` (el máximo del servidor es
  `GPR_INGESTA_LOTE_MAXIMO`, 500 por omisión);
- con `catalogo`, no envía lo que la Ingesta rechazaría (el resultado lleva el mismo motivo);
- reintenta una petición entera, con los mismos eventos (el mismo `evento_id`), cuando la
  Ingesta responde UNAVAILABLE (Kafka no confirmó a tiempo, o no hay conexión), RESOURCE_EXHAUSTED
  (atiende demasiadas peticiones) o DEADLINE_EXCEEDED: lo que sí se hubiera escrito, el
  procesador lo descarta como repetido;
- contrapresión: es síncrono, una petición en curso por publicador; `publicar` vuelve cuando la
  Ingesta respondió (o se agotaron los reintentos).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc

from gpr.v1 import eventos_pb2 as pb
from gpr.v1 import ingesta_pb2, ingesta_pb2_grpc
from gpr_cliente.canal import abrir_canal
from gpr_cliente.catalogo import Catalogo
from gpr_cliente.resultados import ResultadoEvento, Resumen
from gpr_cliente.validacion import validar

log = logging.getLogger("gpr_cliente.ingesta")

REINTENTABLES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED,
                           grpc.StatusCode.DEADLINE_EXCEEDED})


class ErrorIngesta(Exception):
    """La Ingesta rechazó una petición entera (p. ej. UNAUTHENTICATED, PERMISSION_DENIED por un
    evento de otra agencia, INVALID_ARGUMENT) o siguió sin responder tras los reintentos.

    `resultados`: los de los eventos ya resueltos antes de esa petición (en orden, desde el
    primero); los demás no se publicaron por esta llamada."""

    def __init__(self, codigo: grpc.StatusCode, detalle: str, resultados: tuple[ResultadoEvento | None, ...]):
        super().__init__(f"{codigo.name}: {detalle}")
        self.codigo = codigo
        self.detalle = detalle
        self.resultados = resultados


class PublicadorIngesta:
    """Publica por la Ingesta en `destino` (`host:puerto`) con el `token` de la agencia.

    TLS: `tls_ca` (el PEM o su ruta) confía solo en esa CA; `tls=True` en las del sistema; sin
    ninguno, el canal va en claro (solo en desarrollo). `plazo_s`: plazo de cada petición.
    Úselo con `with` o llame a `cerrar()`.
    """

    def __init__(self, destino: str, *, token: str, tls: bool = False, tls_ca: bytes | str | Path | None = None,
                 catalogo: Catalogo | None = None, reloj: Callable[[], float] = time.time,
                 eventos_por_peticion: int = 500, reintentos: int = 3, espera_reintento_s: float = 0.5,
                 plazo_s: float = 60.0):
        if isinstance(eventos_por_peticion, bool) or not isinstance(eventos_por_peticion, int) or eventos_por_peticion < 1:
            raise ValueError(f"eventos_por_peticion: {eventos_por_peticion!r} debe ser un entero mayor que 0")
        self.catalogo = catalogo
        self.reloj = reloj
        self.eventos_por_peticion = eventos_por_peticion
        self.reintentos = reintentos
        self.espera_reintento_s = espera_reintento_s
        self.plazo_s = plazo_s
        self._canal = abrir_canal(destino, token=token, tls=tls, tls_ca=tls_ca)
        self._stub = ingesta_pb2_grpc.IngestaStub(self._canal)

    def publicar(self, eventos: Sequence[pb.Evento], *, al_avanzar: Callable[[int], None] | None = None,
                 al_reintentar: Callable[[int, int, grpc.RpcError], None] | None = None) -> Resumen:
        """Publica y devuelve un `ResultadoEvento` por evento, en el orden dado (aceptado = Kafka
        lo confirmó). Lanza `ErrorIngesta` si una petición se rechaza entera o se agotan los
        reintentos. `al_avanzar(n)`: n eventos más resueltos; `al_reintentar(ronda, eventos,
        error)`: antes de reenviar una petición."""
        eventos = list(eventos)
        resultados: list[ResultadoEvento | None] = [None] * len(eventos)
        por_enviar: list[int] = []
        ahora = self.reloj()
        for i, evento in enumerate(eventos):
            motivo = validar(evento, self.catalogo, ahora) if self.catalogo is not None else None
            if motivo is None:
                por_enviar.append(i)
            else:
                resultados[i] = ResultadoEvento(evento.evento_id, False, motivo)
        locales = len(eventos) - len(por_enviar)
        if al_avanzar is not None and locales:
            al_avanzar(locales)
        for inicio in range(0, len(por_enviar), self.eventos_por_peticion):
            trozo = por_enviar[inicio:inicio + self.eventos_por_peticion]
            respuesta = self._pedir([eventos[i] for i in trozo], resultados, al_reintentar)
            for i, r in zip(trozo, respuesta.resultados):
                resultados[i] = ResultadoEvento(eventos[i].evento_id, r.aceptado, r.motivo)
            if al_avanzar is not None:
                al_avanzar(len(trozo))
        return Resumen(tuple(resultados))

    def _pedir(self, eventos: list[pb.Evento], resultados: list, al_reintentar) -> ingesta_pb2.RespuestaPublicar:
        solicitud = ingesta_pb2.SolicitudPublicar(eventos=eventos)
        ronda = 0
        while True:
            try:
                respuesta = self._stub.Publicar(solicitud, timeout=self.plazo_s)
            except grpc.RpcError as error:
                codigo = error.code()
                if codigo not in REINTENTABLES or ronda >= self.reintentos:
                    raise ErrorIngesta(codigo, error.details() or "", tuple(resultados)) from None
                ronda += 1
                if al_reintentar is not None:
                    al_reintentar(ronda, len(eventos), error)
                log.warning("reintento %d de una petición de %d eventos tras %s: %s", ronda, len(eventos),
                            codigo.name, error.details())
                time.sleep(self.espera_reintento_s * 2 ** (ronda - 1))
                continue
            if len(respuesta.resultados) != len(eventos):
                raise ErrorIngesta(grpc.StatusCode.INTERNAL, f"la Ingesta respondió {len(respuesta.resultados)} "
                                   f"resultados para {len(eventos)} eventos", tuple(resultados))
            return respuesta

    def cerrar(self) -> None:
        self._canal.close()

    def __enter__(self) -> PublicadorIngesta:
        return self

    def __exit__(self, *_exc) -> None:
        self.cerrar()
