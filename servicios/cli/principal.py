"""Órdenes de `gpr` (typer): `local` (la pila de `make run`), `publicar`, `indicadores`,
`tablero`, `vigilar`, `metas` (validar, reglas), `rechazados` (listar, reprocesar),
`alertmanager` (configurar) y `runbooks`. Las órdenes importan lo pesado al
ejecutarse, no al cargar `gpr`. La ayuda y los errores de uso salen en español
(`servicios/terceros/typer_es.py`).

Códigos de salida comunes: 0 bien; 1 rechazos o error de la consulta; 2 uso incorrecto
(opción desconocida, falta un argumento, valor inválido); 3 servicio no disponible.
"""

from __future__ import annotations

import typer

from servicios.cli import alertmanager, consultas, metas, publicar, rechazados
from servicios.terceros.typer_es import TyperGpr

app = TyperGpr(
    help="GpR Monitor: monitoreo de resultados para la administración pública.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _principal() -> None:
    """GpR Monitor: monitoreo de resultados para la administración pública."""


app.command()(publicar.publicar)
app.command()(consultas.indicadores)
app.command()(consultas.tablero)
app.command()(consultas.vigilar)
app.add_typer(metas.app, name="metas")
app.add_typer(alertmanager.app, name="alertmanager")
app.add_typer(rechazados.app, name="rechazados")


@app.command()
def runbooks(
    carpeta: str = typer.Option("despliegue/runbooks", help="Carpeta de los runbooks (*.md)."),
    host: str = typer.Option("127.0.0.1", help="Dirección en la que escuchar (0.0.0.0 en un contenedor)."),
    puerto: int = typer.Option(8099, help="Puerto HTTP."),
) -> None:
    """Sirve los runbooks como páginas HTML en /runbooks/ (destino por omisión de runbook_url)."""
    from servicios.cli.runbooks import ServidorRunbooks

    servidor = ServidorRunbooks(carpeta, host, puerto)
    typer.echo(f"runbooks de {carpeta} en {servidor.url}")
    try:
        servidor.servir()
    except KeyboardInterrupt:
        pass


@app.command()
def local(
    grpc_puerto: int = typer.Option(50051, help="Puerto gRPC del servicio de consulta."),
    metricas_puerto: int = typer.Option(9464, help="Puerto de /metrics del servicio de consulta."),
    tasa: int = typer.Option(200, help="Eventos por segundo del simulador."),
    particiones: int = typer.Option(4, help="Particiones de los tópicos."),
    directorio: str = typer.Option("datos/local", help="Registros y estado de esta ejecución."),
    procesador_metricas_puerto: int = typer.Option(9465, help="Puerto de /metrics del procesador."),
    prometheus_puerto: int = typer.Option(9090, help="Puerto de Prometheus."),
    alertmanager_puerto: int = typer.Option(9093, help="Puerto de Alertmanager."),
    ingesta_puerto: int = typer.Option(50052, help="Puerto gRPC de la Ingesta."),
    ingesta_metricas_puerto: int = typer.Option(9466, help="Puerto de /metrics de la Ingesta."),
    portal_puerto: int = typer.Option(8080, help="Puerto HTTP del portal público."),
    runbooks_puerto: int = typer.Option(8099, help="Puerto de los runbooks (gpr runbooks)."),
    buzon_puerto: int = typer.Option(8025, help="Puerto HTTP del buzón local de notificaciones (webhooks y lista)."),
) -> None:
    """Arranca broker embebido, procesador, consulta, simulador, Prometheus, Alertmanager, un
    buzón local de notificaciones y los runbooks, y muestra los indicadores en vivo.

    Usa el broker de GPR_KAFKA_BOOTSTRAP si está definido. Ctrl-C lo detiene todo.
    """
    from servicios.cli.local import PilaLocal, mostrar_en_vivo

    with PilaLocal(grpc_puerto, metricas_puerto, tasa, particiones, directorio,
                   procesador_metricas_puerto, prometheus_puerto, alertmanager_puerto,
                   ingesta_puerto, ingesta_metricas_puerto, runbooks_puerto, buzon_puerto,
                   portal_puerto=portal_puerto) as pila:
        mostrar_en_vivo(pila)
