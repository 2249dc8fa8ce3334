"""La pila local de `make run`: broker embebido y servicios como subprocesos, más una tabla
de indicadores en vivo leída por gRPC, como la leería cualquier cliente."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
from rich.live import Live
from rich.table import Table

from gpr.v1 import indicadores_pb2 as ipb
from gpr.v1 import indicadores_pb2_grpc as ipb_grpc
from servicios.cli.formato import en_unidad
from servicios.cli.salida import consola
from servicios.comun.broker import BrokerEmbebido, morir_con_el_padre
from servicios.comun import kafka_conexion
from servicios.comun.topicos import crear_topicos


# Columnas de la tabla en vivo: (título, indicador). Una fila por servicio; cada valor se
# escribe en la unidad que trae de la API.
_COLUMNAS = [
    ("Solicitudes", "solicitudes"),
    ("Entregas", "entregas"),
    ("En plazo", "cumplimiento_plazo"),
    ("Atención p50", "tiempo_atencion_p50"),
    ("Vencidos", "casos_vencidos"),
    ("Reproceso", "tasa_reproceso"),
    ("Satisfacción", "satisfaccion_top2"),
    ("Digital", "adopcion_digital"),
    ("Costo/trámite", "costo_por_tramite"),
]


RAIZ = Path(__file__).resolve().parents[2]


def _binario(*nombres: str) -> str:
    for nombre in nombres:
        ruta = shutil.which(nombre)
        if ruta:
            return ruta
    raise SystemExit(
        f"falta {nombres[0]}: instálelo con `sudo bash despliegue/instalar-herramientas.sh` "
        "(paquetes Debian prometheus y prometheus-alertmanager)"
    )


def _configuracion_prometheus(consulta_metricas: int, procesador_metricas: int, ingesta_metricas: int,
                              alertmanager: int, prometheus: int, reglas: Path, portal: int | None = None) -> str:
    """Como despliegue/prometheus/prometheus.yml, con direcciones locales e intervalos cortos: los
    mismos trabajos (la vigilancia avisa de los que falten)."""
    return f"""# Generado por `gpr local`: Prometheus de la pila local.
global:
  scrape_interval: 5s
  evaluation_interval: 5s
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:{alertmanager}"]
rule_files:
  - {reglas}/*.yml
scrape_configs:
  - job_name: gpr-consulta
    static_configs:
      - targets: ["127.0.0.1:{consulta_metricas}"]
  - job_name: gpr-procesador
    static_configs:
      - targets: ["127.0.0.1:{procesador_metricas}"]
  - job_name: gpr-ingesta
    static_configs:
      - targets: ["127.0.0.1:{ingesta_metricas}"]
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:{prometheus}"]
  - job_name: alertmanager
    static_configs:
      - targets: ["127.0.0.1:{alertmanager}"]
""" + (f"""  - job_name: gpr-portal
    static_configs:
      - targets: ["127.0.0.1:{portal}"]
""" if portal else "")


def _canales_locales(buzon) -> dict[str, str]:
    """Canales de Alertmanager de la pila local: todo al buzón local, salvo que el entorno ya
    defina los suyos (GPR_ALERTAS_*, GPR_SMTP_*)."""
    propios = {k: v for k, v in os.environ.items() if k.startswith(("GPR_ALERTAS_", "GPR_SMTP_"))}
    if propios:
        return propios
    return {"GPR_ALERTAS_WEBHOOK_TODOS": buzon.url("alertas"), "GPR_ALERTAS_WEBHOOK_LATIDO": buzon.url("latido"),
            "GPR_ALERTAS_CORREO_TODOS": "operaciones@gpr.local", "GPR_SMTP_SERVIDOR": buzon.smtp,
            "GPR_SMTP_REMITENTE": "gpr-monitor@gpr.local", "GPR_SMTP_TLS": "no"}


class PilaLocal:
    def __init__(self, grpc_puerto: int, metricas_puerto: int, tasa: int, particiones: int, directorio: str,
                 procesador_metricas_puerto: int = 9465, prometheus_puerto: int = 9090,
                 alertmanager_puerto: int = 9093, ingesta_puerto: int = 50052,
                 ingesta_metricas_puerto: int = 9466, runbooks_puerto: int = 8099, buzon_puerto: int = 8025,
                 portal_puerto: int = 8080):
        self.grpc_puerto = grpc_puerto
        self.metricas_puerto = metricas_puerto
        self.procesador_metricas_puerto = procesador_metricas_puerto
        self.prometheus_puerto = prometheus_puerto
        self.alertmanager_puerto = alertmanager_puerto
        self.ingesta_puerto = ingesta_puerto
        self.ingesta_metricas_puerto = ingesta_metricas_puerto
        self.portal_puerto = portal_puerto
        self.tasa = tasa
        self.particiones = particiones
        self.directorio = Path(directorio)
        self.runbooks_puerto = runbooks_puerto
        self.buzon_puerto = buzon_puerto
        self._broker: BrokerEmbebido | None = None
        self._procesos: list[tuple[str, subprocess.Popen]] = []
        self._hilos: list = []  # buzón y runbooks, en este proceso

    def __enter__(self) -> "PilaLocal":
        # Cerrar la terminal (SIGHUP) o un SIGTERM detienen la pila igual que Ctrl-C. SIGINT también
        # se fija: un shell sin control de trabajos arranca con SIGINT ignorado lo que lanza en
        # segundo plano (`make run &` desde un guion), y Python lo deja ignorado.
        for senal in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
            signal.signal(senal, signal.default_int_handler)
        if self.directorio.exists():
            # El broker embebido es solo memoria: el estado local de otra ejecución ya no vale.
            shutil.rmtree(self.directorio)
        self.directorio.mkdir(parents=True)
        bootstrap = os.environ.get("GPR_KAFKA_BOOTSTRAP")
        comun = {"GPR_PARTICIONES": str(self.particiones)}
        if bootstrap:
            # Un broker propio: con la seguridad de GPR_KAFKA_* (que heredan los servicios).
            conexion = kafka_conexion.leer(os.environ)
        else:
            self._broker = BrokerEmbebido(registro=self.directorio / "broker.log")
            bootstrap = self._broker.iniciar()
            conexion = kafka_conexion.ConexionKafka(bootstrap)
            # El embebido no habla TLS ni SASL: nada de GPR_KAFKA_* del entorno les llega.
            comun |= {variable: "" for variable in kafka_conexion.VARIABLES_SEGURIDAD}
        self.bootstrap = bootstrap
        crear_topicos(conexion, self.particiones)
        comun["GPR_KAFKA_BOOTSTRAP"] = bootstrap
        metas = os.environ.get("GPR_METAS") or str(RAIZ / "despliegue" / "metas")
        self._lanzar("procesador", {**comun, "GPR_DIRECTORIO_DATOS": str(self.directorio / "procesador"),
                                    "GPR_METRICAS_PUERTO": str(self.procesador_metricas_puerto),
                                    "GPR_METAS": metas})
        self._lanzar("consulta", {**comun, "GPR_GRPC_PUERTO": str(self.grpc_puerto),
                                  "GPR_METRICAS_PUERTO": str(self.metricas_puerto)})
        # Portal público: cliente de la consulta por gRPC, como en producción (sin Kafka).
        self._lanzar("portal", {"GPR_PORTAL_CONSULTA": f"127.0.0.1:{self.grpc_puerto}",
                                "GPR_PORTAL_HOST": "127.0.0.1", "GPR_PORTAL_PUERTO": str(self.portal_puerto)})
        self._lanzar("simulador", {**comun, "GPR_SIMULADOR_TASA": str(self.tasa)})
        # Credenciales de ejemplo: tokens públicos de demostración, solo para la pila local.
        self._lanzar("ingesta", {**comun, "GPR_GRPC_PUERTO": str(self.ingesta_puerto),
                                 "GPR_METRICAS_PUERTO": str(self.ingesta_metricas_puerto),
                                 "GPR_INGESTA_CREDENCIALES": str(RAIZ / "despliegue" / "ingesta" / "credenciales.ejemplo.yaml")})
        # Runbooks y buzón de notificaciones, en este proceso.
        from servicios.cli.alertmanager import generar as generar_alertmanager
        from servicios.cli.buzon import Buzon
        from servicios.cli.runbooks import ServidorRunbooks
        from servicios.comun.catalogo import cargar_catalogo
        from servicios.comun.metas import archivos_de, cargar_metas
        from servicios.comun.reglas import generar_yaml

        runbooks = ServidorRunbooks(RAIZ / "despliegue" / "runbooks", "127.0.0.1", self.runbooks_puerto).iniciar()
        self.buzon = Buzon(self.directorio / "buzon", puerto_http=self.buzon_puerto).iniciar()
        self._hilos += [runbooks, self.buzon]
        self.runbooks_url = os.environ.get("GPR_RUNBOOKS_URL") or runbooks.url
        # Reglas de las mismas metas que lee el procesador, con enlaces a estos runbooks.
        catalogo = cargar_catalogo(os.environ.get("GPR_CATALOGO") or RAIZ / "despliegue" / "catalogo.yaml")
        reglas = self.directorio / "reglas"
        reglas.mkdir()
        (reglas / "metas.yml").write_text(generar_yaml(cargar_metas(archivos_de(metas), catalogo), catalogo,
                                                       runbooks=self.runbooks_url), encoding="utf-8")
        configuracion_am = self.directorio / "alertmanager.yml"
        generar_alertmanager(RAIZ / "despliegue" / "alertmanager" / "alertmanager.yml", configuracion_am,
                             _canales_locales(self.buzon))
        configuracion = self.directorio / "prometheus.yml"
        configuracion.write_text(_configuracion_prometheus(
            self.metricas_puerto, self.procesador_metricas_puerto, self.ingesta_metricas_puerto,
            self.alertmanager_puerto, self.prometheus_puerto, reglas, self.portal_puerto))
        self._lanzar("prometheus", {}, [
            _binario("prometheus"), f"--config.file={configuracion}",
            f"--storage.tsdb.path={self.directorio / 'prometheus'}",
            f"--web.listen-address=127.0.0.1:{self.prometheus_puerto}",
            # Una alerta que dispara antes de descubrir a Alertmanager se reenvía pronto.
            "--rules.alert.resend-delay=5s",
        ])
        self._lanzar("alertmanager", {}, [
            _binario("prometheus-alertmanager", "alertmanager"),
            f"--config.file={configuracion_am}",
            f"--storage.path={self.directorio / 'alertmanager'}",
            f"--web.listen-address=127.0.0.1:{self.alertmanager_puerto}",
            "--cluster.listen-address=",
        ])
        return self

    def _lanzar(self, nombre: str, env: dict[str, str], orden: list[str] | None = None) -> None:
        registro = open(self.directorio / f"{nombre}.log", "ab")
        proceso = subprocess.Popen(
            orden or [sys.executable, "-m", f"servicios.{nombre}"],
            env={**os.environ, **env}, stdout=registro, stderr=subprocess.STDOUT,
            # Su propio grupo de procesos: el Ctrl-C de la terminal lo recibe solo `gpr local`,
            # que detiene a cada servicio en orden; y si `gpr local` muere, mueren con él.
            start_new_session=True,
            preexec_fn=morir_con_el_padre(),
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
        for hilo in self._hilos:
            # Acotado: un servidor de este proceso que no para no debe dejar la pila sin detener.
            parada = threading.Thread(target=hilo.detener, daemon=True)
            parada.start()
            parada.join(10)
            if parada.is_alive():
                consola.print(f"{type(hilo).__name__} no se detuvo a tiempo: se abandona")
        if self._broker:
            self._broker.detener()
        consola.print("Pila local detenida.")


def _tabla(indicadores: list[ipb.Indicador], estado: str) -> Table:
    tabla = Table(title=f"GpR Monitor — indicadores de las últimas 24 h · {estado}", expand=True)
    tabla.add_column("Agencia / servicio")
    for titulo, _ in _COLUMNAS:
        tabla.add_column(titulo, justify="right")
    tabla.add_column("Cuello de botella")
    tabla.add_column("Hasta (UTC)")
    filas: dict[tuple[str, str], dict[str, ipb.Indicador]] = {}
    for i in indicadores:
        if not i.etapa_id:
            filas.setdefault((i.agencia_id, i.servicio_id), {})[i.indicador] = i
    for (agencia, servicio), valores in sorted(filas.items()):
        celdas = []
        for _, nombre in _COLUMNAS:
            i = valores.get(nombre)
            celdas.append("—" if i is None or i.sin_datos else en_unidad(i.valor, i.unidad))
        cualquiera = next(iter(valores.values()))
        hasta = time.strftime("%Y-%m-%d %H:%M", time.gmtime(cualquiera.hasta.seconds))
        tabla.add_row(f"{agencia} / {servicio}", *celdas, cualquiera.etapa_cuello_botella or "—", hasta)
    return tabla


def _listar_24h(stub) -> list[ipb.Indicador]:
    resultado, token = [], ""
    while True:
        pagina = stub.ListarIndicadores(
            ipb.FiltroIndicadores(ventana="24h", tamano_pagina=1000, token_pagina=token), timeout=2)
        resultado.extend(pagina.indicadores)
        token = pagina.siguiente_pagina
        if not token:
            return resultado


def mostrar_en_vivo(pila: PilaLocal) -> None:
    direccion = f"127.0.0.1:{pila.grpc_puerto}"
    consola.print(f"Broker Kafka:      [cyan]{pila.bootstrap}[/cyan]")
    consola.print(f"gRPC Indicadores:  [cyan]{direccion}[/cyan]")
    consola.print(f"Métricas:          [cyan]http://127.0.0.1:{pila.metricas_puerto}/metrics[/cyan]")
    consola.print(f"Portal público:    [cyan]http://127.0.0.1:{pila.portal_puerto}/[/cyan] (datos abiertos: /datos/)")
    consola.print(f"gRPC Ingesta:      [cyan]127.0.0.1:{pila.ingesta_puerto}[/cyan] "
                  "(token de demostración: gpr_demo_reniec_SOLO_DESARROLLO_LOCAL)")
    consola.print(f"Prometheus:        [cyan]http://127.0.0.1:{pila.prometheus_puerto}[/cyan] (alertas: /alerts)")
    consola.print(f"Alertmanager:      [cyan]http://127.0.0.1:{pila.alertmanager_puerto}[/cyan]")
    consola.print(f"Notificaciones:    [cyan]{pila.buzon.url()}[/cyan] (buzón local: correo SMTP {pila.buzon.smtp} "
                  f"y webhooks; cada una también en {pila.directorio}/buzon/)")
    consola.print(f"Runbooks:          [cyan]{pila.runbooks_url}[/cyan]")
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
                    vivo.update(_tabla(_listar_24h(stub), time.strftime("%H:%M:%S")))
                except grpc.RpcError as error:
                    vivo.update(_tabla([], f"esperando a la consulta ({error.code().name})"))
                time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        canal.close()
