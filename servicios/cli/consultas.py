"""Órdenes de consulta de `gpr`: `indicadores`, `tablero` y `vigilar`, como un cliente gRPC más.

Códigos de salida: 0 bien; 1 la consulta respondió con un error (p. ej. NOT_FOUND); 2 uso
incorrecto (typer); 3 la consulta no está disponible (UNAVAILABLE o sin conexión).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import grpc
import typer
from rich.live import Live
from rich.table import Table
from rich.text import Text

from gpr.v1 import indicadores_pb2 as ipb
from gpr.v1 import indicadores_pb2_grpc as ipb_grpc
from gpr_cliente.canal import abrir_canal
from servicios.cli.formato import en_unidad
from servicios.cli.publicar import credenciales_tls, leer_ca
from servicios.cli.salida import consola, consola_errores, imprimir_tabla

SIN_CONSULTA = 3

_ESTADOS = {ipb.ESTADO_CUMPLIMIENTO_CUMPLE: "[green]cumple[/green]", ipb.ESTADO_CUMPLIMIENTO_INCUMPLE: "[red]incumple[/red]",
            ipb.ESTADO_CUMPLIMIENTO_SIN_DATOS: "[yellow]sin datos[/yellow]"}

OPCION_DIRECCION = typer.Option("127.0.0.1:50051", "--consulta", envvar="GPR_CONSULTA",
                                help="Dirección gRPC del servicio de consulta.")
OPCION_TOKEN = typer.Option("", "--token", envvar="GPR_CONSULTA_TOKEN",
                            help="Token de lectura de la consulta (si la consulta pide tokens).")
OPCION_TLS_CA = typer.Option(None, "--tls-ca", envvar="GPR_CONSULTA_TLS_CA", exists=True, dir_okay=False,
                             help="CA (PEM) con que verificar el TLS de la consulta; sin ella, el canal va en claro.")


def _stub(direccion: str, token: str = "", tls_ca: Path | None = None) -> ipb_grpc.IndicadoresStub:
    # El canal de la biblioteca cliente (token en cada llamada, TLS con la CA dada); un --tls-ca
    # que no es un PEM sale antes, como error de uso.
    credenciales_tls(False, tls_ca)
    return ipb_grpc.IndicadoresStub(abrir_canal(direccion, token=token, tls_ca=leer_ca(tls_ca)))


def _fallar(error: grpc.RpcError) -> None:
    codigo = error.code()
    consola_errores.print(f"[red]error {codigo.name}[/red]: {error.details()}")
    sin_servicio = codigo in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    raise typer.Exit(SIN_CONSULTA if sin_servicio else 1)


def valor_legible(i: ipb.Indicador) -> str:
    """El valor en la unidad que dice la API (`Indicador.unidad`)."""
    return "sin datos" if i.sin_datos else en_unidad(i.valor, i.unidad)


def _meta(i: ipb.Indicador) -> tuple[str, str]:
    """(objetivo en la unidad de la serie, estado con color), o vacíos sin meta."""
    if not i.HasField("meta"):
        return "", ""
    m = i.meta
    return f"{m.operador} {en_unidad(m.valor, i.unidad)}", _ESTADOS.get(m.estado, "")


def tabla_indicadores(indicadores, titulo: str) -> Table:
    tabla = Table(title=titulo)
    for columna in ("Agencia", "Servicio", "Indicador", "Ventana", "Etapa", "Valor", "Muestras", "Meta", "Estado"):
        tabla.add_column(columna)
    for i in indicadores:
        objetivo, estado = _meta(i)
        tabla.add_row(i.agencia_id, i.servicio_id, i.indicador, i.ventana, i.etapa_id,
                      valor_legible(i), str(i.muestras), objetivo, estado)
    return tabla


def indicadores(
    agencia: str = typer.Option("", help="Solo esta agencia."),
    servicio: str = typer.Option("", help="Solo este servicio."),
    indicador: str = typer.Option("", help="Solo este indicador."),
    ventana: str = typer.Option("24h", help="Ventana: 1h, 24h, 7d, 30d, total o mes:AAAA-MM (vacía: todas)."),
    direccion: str = OPCION_DIRECCION,
    token_lectura: str = OPCION_TOKEN,
    tls_ca: Path | None = OPCION_TLS_CA,
) -> None:
    """Lista los indicadores actuales (con su meta y estado) en una tabla."""
    stub, todos, token = _stub(direccion, token_lectura, tls_ca), [], ""
    try:
        while True:
            pagina = stub.ListarIndicadores(ipb.FiltroIndicadores(
                agencia_id=agencia, servicio_id=servicio, indicador=indicador, ventana=ventana,
                tamano_pagina=1000, token_pagina=token), timeout=10)
            todos.extend(pagina.indicadores)
            token = pagina.siguiente_pagina
            if not token:
                break
    except grpc.RpcError as error:
        _fallar(error)
    imprimir_tabla(tabla_indicadores(todos, f"Indicadores ({len(todos)})"))


def tablero(
    agencia: str = typer.Argument(..., help="Agencia del tablero."),
    ventana: str = typer.Option("24h", help="Ventana del tablero."),
    direccion: str = OPCION_DIRECCION,
    token_lectura: str = OPCION_TOKEN,
    tls_ca: Path | None = OPCION_TLS_CA,
) -> None:
    """Tablero de una agencia: cada servicio, sus indicadores frente a su meta y el cuello de botella."""
    try:
        t = _stub(direccion, token_lectura, tls_ca).ObtenerTablero(ipb.SolicitudTablero(agencia_id=agencia, ventana=ventana), timeout=10)
    except grpc.RpcError as error:
        _fallar(error)
    consola.print(f"[bold]Tablero de {t.agencia_id}[/bold] · ventana {t.ventana} · "
                  f"{t.incumplimientos} meta(s) incumplida(s)")
    for servicio in t.servicios:
        imprimir_tabla(tabla_indicadores(
            servicio.indicadores,
            f"{servicio.servicio_id} — cuello de botella: {servicio.etapa_cuello_botella or '—'}"))


def _linea(i: ipb.Indicador) -> str:
    """Una actualización en una línea, para cuando la salida no es una terminal."""
    objetivo, estado = _meta(i)
    partes = [time.strftime("%H:%M:%S"), i.agencia_id, i.servicio_id, i.indicador, i.ventana]
    if i.etapa_id:
        partes.append(f"etapa={i.etapa_id}")
    partes += [f"valor={valor_legible(i)}", f"muestras={i.muestras}"]
    if objetivo:
        partes += [f"meta={objetivo}", Text.from_markup(estado).plain]
    return " ".join(partes)


def vigilar(
    agencia: str = typer.Option("", help="Solo esta agencia."),
    servicio: str = typer.Option("", help="Solo este servicio."),
    indicador: str = typer.Option("", help="Solo este indicador."),
    ventana: str = typer.Option("24h", help="Ventana."),
    maximo: int = typer.Option(0, "--maximo", min=0,
                               help="Terminar (con código 0) tras recibir este número de actualizaciones; 0: sin límite."),
    duracion: str = typer.Option("", "--duracion",
                                 help="Terminar (con código 0) tras este tiempo, p. ej. 30s o 5m; vacío: sin límite."),
    direccion: str = OPCION_DIRECCION,
    token_lectura: str = OPCION_TOKEN,
    tls_ca: Path | None = OPCION_TLS_CA,
) -> None:
    """Vista en vivo de las actualizaciones (SuscribirIndicadores). Ctrl-C para salir.

    Primero llega el estado actual de las series del filtro y luego cada cambio. En una
    terminal se muestra una tabla que se refresca; si la salida va a un archivo o a otra
    orden, una línea por actualización.
    """
    plazo_s = None
    if duracion:
        from servicios.comun.tiempo import DuracionInvalida, parsear_duracion

        try:
            plazo_s = parsear_duracion(duracion)
        except DuracionInvalida as error:
            raise typer.BadParameter(str(error), param_hint="'--duracion'") from None
        if plazo_s < 1:
            raise typer.BadParameter("debe ser de al menos 1s", param_hint="'--duracion'")
    series: dict[tuple, ipb.Indicador] = {}
    flujo = _stub(direccion, token_lectura, tls_ca).SuscribirIndicadores(ipb.FiltroIndicadores(
        agencia_id=agencia, servicio_id=servicio, indicador=indicador, ventana=ventana), timeout=plazo_s)
    recibidas = 0
    try:
        with contextlib.ExitStack() as pila:
            vivo = None
            if consola.is_terminal:
                vivo = pila.enter_context(Live(tabla_indicadores([], "esperando actualizaciones…"), console=consola,
                                               refresh_per_second=4))
            for i in flujo:
                recibidas += 1
                if vivo is None:
                    consola.print(_linea(i), markup=False, highlight=False, soft_wrap=True)
                else:
                    series[(i.agencia_id, i.servicio_id, i.indicador, i.ventana, i.etapa_id)] = i
                    vivo.update(tabla_indicadores([series[k] for k in sorted(series)],
                                                  f"En vivo · {time.strftime('%H:%M:%S')} · {len(series)} series"))
                if maximo and recibidas >= maximo:
                    flujo.cancel()
                    break
    except KeyboardInterrupt:
        flujo.cancel()
    except grpc.RpcError as error:
        # El plazo de --duracion vence como DEADLINE_EXCEEDED: es el final pedido, no un error.
        if not (plazo_s is not None and error.code() == grpc.StatusCode.DEADLINE_EXCEEDED):
            _fallar(error)
