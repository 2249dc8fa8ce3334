"""Canales gRPC hacia la Ingesta y la consulta: TLS (con una CA privada o las del sistema) y el
token de la agencia en cada llamada (`authorization: Bearer <token>`)."""

from __future__ import annotations

from pathlib import Path

import grpc

_PEM = b"-----BEGIN CERTIFICATE-----"


class _ConToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Pone `authorization: Bearer <token>` en cada llamada (también en un canal sin TLS, en
    desarrollo: las credenciales de llamada de gRPC exigen TLS)."""

    def __init__(self, token: str):
        self.metadatos = (("authorization", f"Bearer {token}"),)

    def _con_token(self, detalles):
        return detalles._replace(metadata=tuple(detalles.metadata or ()) + self.metadatos)

    def intercept_unary_unary(self, continuar, detalles, peticion):
        return continuar(self._con_token(detalles), peticion)

    def intercept_unary_stream(self, continuar, detalles, peticion):
        return continuar(self._con_token(detalles), peticion)

    def intercept_stream_unary(self, continuar, detalles, peticiones):
        return continuar(self._con_token(detalles), peticiones)

    def intercept_stream_stream(self, continuar, detalles, peticiones):
        return continuar(self._con_token(detalles), peticiones)


def credenciales_tls(*, tls: bool = False, tls_ca: bytes | str | Path | None = None) -> grpc.ChannelCredentials | None:
    """None sin TLS; con `tls_ca` (el PEM, o la ruta a él), solo esa CA; con `tls=True` y sin
    CA, las CA del sistema. Un archivo que no es un certificado PEM se rechaza aquí
    (`ValueError`): gRPC no lo miraría hasta conectar, y entonces solo diría UNAVAILABLE."""
    if tls_ca is None:
        return grpc.ssl_channel_credentials() if tls else None
    if isinstance(tls_ca, bytes):
        contenido = tls_ca
    else:
        try:
            contenido = Path(tls_ca).read_bytes()
        except OSError as error:
            raise ValueError(f"tls_ca {tls_ca}: no se puede leer ({error.strerror})") from None
    if _PEM not in contenido:
        raise ValueError(f"tls_ca{'' if isinstance(tls_ca, bytes) else ' ' + str(tls_ca)}: no contiene un "
                         f"certificado PEM ({_PEM.decode()})")
    return grpc.ssl_channel_credentials(root_certificates=contenido)


def abrir_canal(destino: str, *, token: str = "", tls: bool = False, tls_ca: bytes | str | Path | None = None,
                opciones: tuple = ()) -> grpc.Channel:
    """Un canal a `destino` (`host:puerto`): con TLS si se da `tls_ca` o `tls=True`, y con el
    token en cada llamada si se da `token`."""
    credenciales = credenciales_tls(tls=tls, tls_ca=tls_ca)
    canal = (grpc.secure_channel(destino, credenciales, options=opciones) if credenciales is not None
             else grpc.insecure_channel(destino, options=opciones))
    if token:
        canal = grpc.intercept_channel(canal, _ConToken(token))
    return canal
