"""`gpr publicar ARCHIVO.jsonl`: publica eventos escritos como JSON (mapeo JSON de protobuf),
por Kafka (por defecto) o por la Ingesta gRPC (`--grpc`), con barra de progreso y un resumen
de aceptados y rechazados con sus motivos.

Si la Ingesta sirve con TLS (`GPR_TLS_CERT`/`GPR_TLS_KEY`), `--tls-ca ca.pem` (o `GPR_TLS_CA`)
confía en esa CA (privada o el mismo certificado autofirmado) y `--tls` en las CA del sistema.

Cada línea es un `gpr.v1.Evento` en el mapeo JSON de protobuf, p. ej.
`{"eventoId": "e1", "tipo": "TIPO_EVENTO_SOLICITUD_RECIBIDA", "ocurridoEn": "2026-11-28T10:00:00Z", ...}`
(también se aceptan los nombres con guion bajo). Por Kafka cada evento se valida antes con el
mismo validador que el procesador y el catálogo (`--catalogo`); por gRPC valida la Ingesta.

Publica con la biblioteca cliente (`gpr_cliente`, clientes/python/): por Kafka los eventos
van, como en la Ingesta, en registros `LoteEventos` por partición (cabecera `gpr-lote: 1`, la
partición que el particionador por defecto daría a cada caso): el procesador rinde varias veces
más que con un registro por evento y calcula lo mismo. `--sin-lotes` publica un registro
`Evento` por evento. Lo que falla por una causa pasajera se reenvía con el mismo `evento_id`
(`REINTENTOS` veces): el procesador descarta los repetidos.

Códigos de salida: 0 todos aceptados; 1 alguno rechazado; 2 uso o archivo ilegible;
3 Kafka o la Ingesta no disponibles.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import typer
from google.protobuf import json_format
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from gpr.v1 import eventos_pb2 as pb
from servicios.cli.salida import consola, consola_errores, imprimir_tabla

TAMANO_LOTE_GRPC = 500
# Reenvíos (con el mismo evento_id) de lo que falla por una causa pasajera: Kafka sin líder o
# sin acuse, la Ingesta UNAVAILABLE o saturada. Un repetido que sí había llegado no se cuenta.
REINTENTOS = 2
PLAZO_KAFKA_S = 300.0


def leer_eventos(ruta: Path) -> tuple[list[tuple[int, pb.Evento]], list[tuple[int, str]]]:
    """Eventos con su número de línea, y las líneas ilegibles con el motivo."""
    eventos, errores = [], []
    with ruta.open(encoding="utf-8") as archivo:
        for numero, linea in enumerate(archivo, start=1):
            if not linea.strip():
                continue
            try:
                eventos.append((numero, json_format.Parse(linea, pb.Evento())))
            except json_format.ParseError as error:
                errores.append((numero, f"json_invalido: {error}"))
    return eventos, errores


def _resumen(total: int, rechazos: list[tuple[int, str, str]]) -> None:
    aceptados = total - len(rechazos)
    consola.print(f"[bold]{aceptados}[/bold] aceptados, [bold]{len(rechazos)}[/bold] rechazados de {total}.")
    if rechazos:
        por_motivo = Counter(motivo.split(":")[0] for _, _, motivo in rechazos)
        tabla = Table(title="Rechazados")
        for columna in ("Línea", "evento_id", "Motivo"):
            tabla.add_column(columna)
        for numero, evento_id, motivo in rechazos[:50]:
            tabla.add_row(str(numero), evento_id, motivo)
        imprimir_tabla(tabla)
        consola.print("Por motivo: " + ", ".join(f"{m} {n}" for m, n in por_motivo.most_common()))


def publicar(
    archivo: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                   help="Eventos en JSON, uno por línea."),
    grpc_destino: str = typer.Option("", "--grpc", help="Publicar por la Ingesta gRPC en esta dirección (host:puerto)."),
    token: str = typer.Option("", envvar="GPR_TOKEN", help="Token de la agencia para la Ingesta (o GPR_TOKEN)."),
    tls: bool = typer.Option(False, "--tls", help="Conectar a la Ingesta con TLS confiando en las CA del sistema."),
    tls_ca: Path | None = typer.Option(None, "--tls-ca", envvar="GPR_TLS_CA", exists=True, dir_okay=False,
                                       readable=True, help="Conectar a la Ingesta con TLS confiando en esta CA "
                                       "(PEM; p. ej. una CA privada o el certificado autofirmado del servidor)."),
    kafka: str = typer.Option("", envvar="GPR_KAFKA_BOOTSTRAP", help="Broker Kafka (o GPR_KAFKA_BOOTSTRAP)."),
    catalogo: Path = typer.Option(Path("despliegue/catalogo.yaml"), envvar="GPR_CATALOGO",
                                  help="Catálogo para validar antes de publicar por Kafka."),
    sin_lotes: bool = typer.Option(False, "--sin-lotes", help="Por Kafka, un registro por evento en vez de "
                                   "registros LoteEventos por partición."),
) -> None:
    """Publica eventos de un archivo JSON Lines por Kafka o por la Ingesta gRPC."""
    eventos, ilegibles = leer_eventos(archivo)
    rechazos = [(n, "", motivo) for n, motivo in ilegibles]
    if (tls or tls_ca) and not grpc_destino:
        # Un aviso y no un error: GPR_TLS_CA puede estar en el entorno para otras llamadas.
        consola_errores.print("[yellow]aviso[/yellow]: --tls y --tls-ca (GPR_TLS_CA) solo se usan con --grpc; "
                      "se publica por Kafka sin TLS")
    if grpc_destino:
        rechazos += _por_grpc(eventos, grpc_destino, token, tls, tls_ca)
    else:
        if not kafka:
            consola_errores.print("[red]falta el broker[/red]: use --kafka host:puerto o GPR_KAFKA_BOOTSTRAP, o --grpc")
            raise typer.Exit(2)
        rechazos += _por_kafka(eventos, kafka, catalogo, lotes=not sin_lotes)
    rechazos.sort()
    _resumen(len(eventos) + len(ilegibles), rechazos)
    raise typer.Exit(1 if rechazos else 0)


def _por_kafka(eventos, bootstrap: str, ruta_catalogo: Path, lotes: bool = True) -> list[tuple[int, str, str]]:
    from gpr_cliente.kafka import KafkaNoDisponible, PublicadorKafka
    from gpr_cliente.validacion import validar

    from servicios.comun import kafka_conexion
    from servicios.comun.catalogo import cargar_catalogo
    from servicios.comun.config import ConfiguracionInvalida
    from servicios.comun.yaml_lineas import ArchivoInvalido

    try:
        catalogo = cargar_catalogo(ruta_catalogo)
    except ArchivoInvalido as error:
        consola_errores.print(f"[red]catálogo inválido[/red]:\n{error}")
        raise typer.Exit(2) from None
    try:
        # TLS y SASL de GPR_KAFKA_* (docs/seguridad-kafka.md); el broker, el de --kafka.
        conexion = kafka_conexion.leer(os.environ, bootstrap=bootstrap)
    except ConfiguracionInvalida as error:
        consola_errores.print(f"[red]configuración de Kafka inválida[/red]: {error}")
        raise typer.Exit(2) from None
    rechazos, validos = [], []
    ahora = time.time()
    for numero, evento in eventos:
        motivo = validar(evento, catalogo, ahora)
        if motivo:
            rechazos.append((numero, evento.evento_id, motivo))
        else:
            # La plataforma sella la recepción, como la Ingesta.
            evento.recibido_en.GetCurrentTime()
            validos.append((numero, evento))
    if not validos:
        return rechazos
    opciones = conexion.para_kafka_python()
    try:
        # La biblioteca cliente agrupa en LoteEventos por partición y reenvía con el mismo
        # evento_id lo que falla de paso.
        publicador = PublicadorKafka(opciones.pop("bootstrap_servers"), lotes=lotes,
                                     client_id="gpr-publicar", request_timeout_ms=15000, max_block_ms=30000,
                                     bootstrap_timeout_ms=30000, **opciones)
    except KafkaNoDisponible as error:
        consola_errores.print("[red]Kafka no disponible[/red] en "
                              + escape(kafka_conexion.explicar(conexion, error.__cause__ or error)))
        raise typer.Exit(3) from None
    with Progress(console=consola) as progreso:
        tarea = progreso.add_task("Publicando por Kafka", total=len(validos))
        try:
            resumen = publicador.publicar([e for _, e in validos], reintentos=REINTENTOS, plazo_s=PLAZO_KAFKA_S,
                                          al_avanzar=lambda n: progreso.advance(tarea, n))
        finally:
            publicador.cerrar()
    rechazos += [(validos[i][0], r.evento_id, r.motivo) for i, r in resumen.rechazados]
    if not resumen.aceptados:
        consola_errores.print("[red]Kafka no confirmó ningún envío[/red]")
        raise typer.Exit(3)
    return rechazos


def credenciales_tls(tls: bool, tls_ca: Path | None):
    """Credenciales del canal: None sin TLS; con `--tls-ca`, solo esa CA."""
    from gpr_cliente import canal

    try:
        return canal.credenciales_tls(tls=tls, tls_ca=leer_ca(tls_ca))
    except ValueError:
        # gRPC no valida el PEM hasta el primer intento de conexión y entonces solo dice
        # UNAVAILABLE: un archivo equivocado se rechaza aquí, como error de uso.
        consola_errores.print(f"[red]--tls-ca {tls_ca}[/red]: no contiene un certificado PEM (-----BEGIN CERTIFICATE-----)")
        raise typer.Exit(2) from None


def leer_ca(tls_ca: Path | None) -> bytes | None:
    return tls_ca.read_bytes() if tls_ca is not None else None


def _por_grpc(eventos, destino: str, token: str, tls: bool = False, tls_ca: Path | None = None) -> list[tuple[int, str, str]]:
    import grpc

    from gpr_cliente.ingesta import ErrorIngesta, PublicadorIngesta

    credenciales_tls(tls, tls_ca)  # un --tls-ca que no es un PEM es un error de uso (código 2)
    rechazos = []
    with PublicadorIngesta(destino, token=token, tls=tls, tls_ca=leer_ca(tls_ca), eventos_por_peticion=TAMANO_LOTE_GRPC,
                           reintentos=REINTENTOS) as publicador, Progress(console=consola) as progreso:
        tarea = progreso.add_task("Publicando por la Ingesta", total=len(eventos))
        try:
            resumen = publicador.publicar([e for _, e in eventos], al_avanzar=lambda n: progreso.advance(tarea, n))
        except ErrorIngesta as error:
            consola_errores.print(f"[red]error {error.codigo.name}[/red]: {escape(error.detalle)}")
            raise typer.Exit(3 if error.codigo == grpc.StatusCode.UNAVAILABLE else 1) from None
    for i, resultado in resumen.rechazados:
        rechazos.append((eventos[i][0], resultado.evento_id, resultado.motivo))
    return rechazos
