"""Leer indicadores como un cliente más: el servicio de consulta real y un canal gRPC real."""

from __future__ import annotations

import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gpr.v1 import indicadores_pb2 as ipb
from gpr.v1 import indicadores_pb2_grpc as ipb_grpc
from servicios.consulta import config as config_consulta
from servicios.consulta.servidor import ConsultaEnHilo


def esperar_serving(canal: grpc.Channel, limite_s: float = 60, quien: str = "el servicio") -> None:
    """Espera a que el servicio de salud gRPC del canal diga SERVING (la consulta lo dice al
    ponerse al día con gpr.indicadores.v1)."""
    salud = health_pb2_grpc.HealthStub(canal)
    fin = time.monotonic() + limite_s
    while time.monotonic() < fin:
        try:
            if salud.Check(health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{quien} no llegó a SERVING en {limite_s:.0f} s")


class ClienteConsulta:
    """Arranca la consulta en este proceso y lista sus indicadores por gRPC."""

    def __init__(self, bootstrap: str, env: dict[str, str] | None = None):
        """`env`: más variables de la consulta (p. ej. GPR_KAFKA_* con TLS o SASL)."""
        cfg = config_consulta.leer({"GPR_KAFKA_BOOTSTRAP": bootstrap, "GPR_GRPC_HOST": "127.0.0.1",
                                    "GPR_GRPC_PUERTO": "0", "GPR_METRICAS_PUERTO": "0", **(env or {})})
        self.consulta = ConsultaEnHilo(cfg).iniciar()
        self.canal = grpc.insecure_channel(f"127.0.0.1:{self.consulta.puerto_grpc}")
        self.stub = ipb_grpc.IndicadoresStub(self.canal)

    def esperar_al_dia(self, limite_s: float = 60) -> None:
        esperar_serving(self.canal, limite_s, "la consulta")

    def listar(self, agencia: str) -> list[ipb.Indicador]:
        resultado, token = [], ""
        while True:
            pagina = self.stub.ListarIndicadores(
                ipb.FiltroIndicadores(agencia_id=agencia, tamano_pagina=1000, token_pagina=token), timeout=10)
            resultado.extend(pagina.indicadores)
            token = pagina.siguiente_pagina
            if not token:
                return resultado

    def cerrar(self) -> None:
        self.canal.close()
        self.consulta.detener()
