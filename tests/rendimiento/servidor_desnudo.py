"""Línea base «servidor gRPC desnudo»: grpc.aio sirviendo `gpr.v1.Indicadores/ObtenerIndicador`
con un `Indicador` constante, sin vista, sin validación y sin nada más. Es el techo de
peticiones/s y el suelo de latencia de grpcio en esta máquina, con el mismo cliente.

`python tests/rendimiento/servidor_desnudo.py PUERTO INDICADOR_BASE64`; corre hasta SIGTERM.
"""

from __future__ import annotations

import asyncio
import base64
import signal
import sys

import grpc

from gpr.v1 import indicadores_pb2 as ipb
from gpr.v1 import indicadores_pb2_grpc as ipb_grpc


class Constante(ipb_grpc.IndicadoresServicer):
    def __init__(self, respuesta: ipb.Indicador):
        self._respuesta = respuesta

    async def ObtenerIndicador(self, request, context):
        return self._respuesta


async def servir(puerto: int, respuesta: ipb.Indicador) -> None:
    servidor = grpc.aio.server()
    ipb_grpc.add_IndicadoresServicer_to_server(Constante(respuesta), servidor)
    servidor.add_insecure_port(f"127.0.0.1:{puerto}")
    await servidor.start()
    parar = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, parar.set)
    await parar.wait()
    await servidor.stop(1)


if __name__ == "__main__":
    asyncio.run(servir(int(sys.argv[1]), ipb.Indicador.FromString(base64.b64decode(sys.argv[2]))))
