"""La pila local de `make run`: broker embebido y servicios como subprocesos, más una tabla
de indicadores en vivo leída por gRPC, como la leería cualquier cliente."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from rich.console import Console
from rich.live import Live
from rich.table import Table

from gpr.v1 import indicadores_pb2 as ipb
from gpr.v1 import indicadores_pb2_grpc as ipb_grpc
from servicios.comun.broker import BrokerEmbebido
from servicios.comun.topicos import crear_topicos

consola = Console()

_FORMATO = {
    "solicitudes": lambda v: f"{v:,.0f}",
    "cumplimiento_plazo": lambda v: f"{v:.1%}",
}


class PilaLocal:
    def __init__(self, grpc_puerto: int, metricas_puerto: int, tasa: int, particiones: int, directorio: str):
        self.grpc_puerto = grpc_puerto
        self.metricas_puerto = metricas_puerto
        self.tasa = tasa
        self.particiones = particiones
        self.directorio = Path(directorio)
        self._broker: BrokerEmbebido | None = None
        self._procesos: list[tuple[str, subprocess.Popen]] = []

    def __enter__(self) -> "PilaLocal":
        if self.directorio.exists():
            # El broker embebido es solo memoria: el estado local de otra ejecución ya no vale.
            shutil.rmtree(self.directorio)
        self.directorio.mkdir(parents=True)
        bootstrap = os.environ.get("GPR_KAFKA_BOOTSTRAP")
        if not bootstrap:
            self._broker = BrokerEmbebido(registro=self.directorio / "broker.log")
            bootstrap = self._broker.iniciar()
        self.bootstrap = bootstrap
        crear_topicos(bootstrap, self.particiones)
        comun = {"GPR_KAFKA_BOOTSTRAP": bootstrap, "GPR_PARTICIONES": str(self.particiones)}
        self._lanzar("procesador", {**comun, "GPR_DIRECTORIO_DATOS": str(self.directorio / "procesador"),
                                    "GPR_METRICAS_PUERTO": "9465"})
        self._lanzar("consulta", {**comun, "GPR_GRPC_PUERTO": str(self.grpc_puerto),
                                  "GPR_METRICAS_PUERTO": str(self.metricas_puerto)})
        self._lanzar("simulador", {**comun, "GPR_SIMULADOR_TASA": str(self.tasa)})
        return self

    def _lanzar(self, nombre: str, env: dict[str, str]) -> None:
        registro = open(self.directorio / f"{nombre}.log", "ab")
        proceso = subprocess.Popen(
            [sys.executable, "-m", f"servicios.{nombre}"],
            env={**os.environ, **env}, stdout=registro, stderr=subprocess.STDOUT,
            # Su propio grupo de procesos: el Ctrl-C de la terminal lo recibe solo `gpr local`,
            # que detiene a cada servicio en orden.
            start_new_session=True,
        )
        self._procesos.append((nombre, proceso))

    def caidos(self) -> list[str]:
        return [n for n, p in self._procesos if p.poll() is not None]

    def __exit__(self, *_exc) -> None:
        consola.print("[bold]Deteniendo la pila local…[/bold]")
        for _, proceso in reversed(self._procesos):
            if proceso.poll() is None:
                proceso.send_signal(signal.SIGTERM)
        for nombre, proceso in self._procesos:
            try:
                proceso.wait(15)
            except subprocess.TimeoutExpired:
                consola.print(f"{nombre} no terminó a tiempo: se mata")
                proceso.kill()
                proceso.wait()
        if self._broker:
            self._broker.detener()
        consola.print("Pila local detenida.")


def _tabla(indicadores: list[ipb.Indicador], estado: str) -> Table:
    tabla = Table(title=f"GpR Monitor — indicadores en vivo (ventana 24h) · {estado}", expand=True)
    for columna in ("Agencia", "Servicio", "Indicador", "Valor", "Muestras", "Hasta (UTC)"):
        tabla.add_column(columna)
    for i in indicadores:
        valor = "sin datos" if i.sin_datos else _FORMATO.get(i.indicador, lambda v: f"{v:.3g}")(i.valor)
        hasta = time.strftime("%Y-%m-%d %H:%M", time.gmtime(i.hasta.seconds))
        tabla.add_row(i.agencia_id, i.servicio_id, i.indicador, valor, str(i.muestras), hasta)
    return tabla


def mostrar_en_vivo(pila: PilaLocal) -> None:
    direccion = f"127.0.0.1:{pila.grpc_puerto}"
    consola.print(f"Broker Kafka:      [cyan]{pila.bootstrap}[/cyan]")
    consola.print(f"gRPC Indicadores:  [cyan]{direccion}[/cyan]")
    consola.print(f"Métricas:          [cyan]http://127.0.0.1:{pila.metricas_puerto}/metrics[/cyan]")
    consola.print(f"Registros:         {pila.directorio}/*.log")
    consola.print("Ctrl-C para detener.\n")
    canal = grpc.insecure_channel(direccion)
    stub = ipb_grpc.IndicadoresStub(canal)
    try:
        with Live(_tabla([], "arrancando…"), console=consola, refresh_per_second=2) as vivo:
            while True:
                caidos = pila.caidos()
                if caidos:
                    raise SystemExit(f"se detuvo: {', '.join(caidos)} (ver {pila.directorio}/*.log)")
                try:
                    lista = stub.ListarIndicadores(ipb.FiltroIndicadores(ventana="24h", tamano_pagina=1000), timeout=2)
                    vivo.update(_tabla(list(lista.indicadores), time.strftime("%H:%M:%S")))
                except grpc.RpcError as error:
                    vivo.update(_tabla([], f"esperando a la consulta ({error.code().name})"))
                time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        canal.close()
