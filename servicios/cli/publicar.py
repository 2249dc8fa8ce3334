"""`gpr publicar ARCHIVO.jsonl`: publica eventos escritos como JSON (mapeo JSON de protobuf),
por Kafka (por defecto) o por la Ingesta gRPC (`--grpc`), con barra de progreso y un resumen
de aceptados y rechazados con sus motivos.

Si la Ingesta sirve con TLS (`GPR_TLS_CERT`/`GPR_TLS_KEY`), `--tls-ca ca.pem` (o `GPR_TLS_CA`)
confía en esa CA (privada o el mismo certificado autofirmado) y `--tls` en las CA del sistema.

Cada línea es un `gpr.v1.Evento` en el mapeo JSON de protobuf, p. ej.
`{"eventoId": "e1", "tipo": "TIPO_EVENTO_SOLICITUD_RECIBIDA", "ocurridoEn": "2026-11-28T10:00:00Z", ...}`
(también se aceptan los nombres con guion bajo). Por Kafka cada evento se valida antes con el
mismo validador que el procesador y el catálogo (`--catalogo`); por gRPC valida la Ingesta.

Por Kafka los eventos van, como en la Ingesta, en registros `LoteEventos` por partición
(cabecera `gpr-lote: 1`, la partición que el particionador por defecto daría a cada caso):
el procesador rinde varias veces más que con un registro por evento y calcula lo mismo.
`--sin-lotes` publica un registro `Evento` por evento.

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
        rechazos += _por_grpc(eventos, grpc_destino, token, credenciales_tls(tls, tls_ca))
    else:
        if not kafka:
            consola_errores.print("[red]falta el broker[/red]: use --kafka host:puerto o GPR_KAFKA_BOOTSTRAP, o --grpc")
            raise typer.Exit(2)
        rechazos += _por_kafka(eventos, kafka, catalogo, lotes=not sin_lotes)
    rechazos.sort()
    _resumen(len(eventos) + len(ilegibles), rechazos)
    raise typer.Exit(1 if rechazos else 0)


def _por_kafka(eventos, bootstrap: str, ruta_catalogo: Path, lotes: bool = True) -> list[tuple[int, str, str]]:
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    from servicios.comun.catalogo import cargar_catalogo
    from servicios.comun.eventos import validar
    from servicios.comun.lotes import registros_aceptados
    from servicios.comun.topicos import EVENTOS
    from servicios.comun.yaml_lineas import ArchivoInvalido

    try:
        catalogo = cargar_catalogo(ruta_catalogo)
    except ArchivoInvalido as error:
        consola_errores.print(f"[red]catálogo inválido[/red]:\n{error}")
        raise typer.Exit(2) from None
    rechazos, validos = [], []
    for numero, evento in eventos:
        motivo = validar(evento, catalogo, time.time())
        if motivo:
            rechazos.append((numero, evento.evento_id, motivo))
        else:
            evento.recibido_en.GetCurrentTime()
            validos.append((numero, evento))
    if not validos:
        return rechazos
    from servicios.comun import kafka_conexion
    from servicios.comun.config import ConfiguracionInvalida

    try:
        # TLS y SASL de GPR_KAFKA_* (docs/seguridad-kafka.md); el broker, el de --kafka.
        conexion = kafka_conexion.leer(os.environ, bootstrap=bootstrap)
    except ConfiguracionInvalida as error:
        consola_errores.print(f"[red]configuración de Kafka inválida[/red]: {error}")
        raise typer.Exit(2) from None
    try:
        kafka_conexion.comprobar_saludo_tls(conexion, 15)
        productor = KafkaProducer(**conexion.para_kafka_python(), acks="all", enable_idempotence=True,
                                  linger_ms=5, request_timeout_ms=15000, max_block_ms=30000,
                                  bootstrap_timeout_ms=30000)
        # Repartir en lotes por partición pide los metadatos del tópico.
        particiones = len(productor.partitions_for(EVENTOS) or ()) if lotes else 0
    except (KafkaError, kafka_conexion.KafkaInalcanzable) as error:
        consola_errores.print("[red]Kafka no disponible[/red] en " + escape(kafka_conexion.explicar(conexion, error)))
        raise typer.Exit(3) from None
    registros = registros_aceptados([evento for _, evento in validos], EVENTOS, particiones or None)
    pendientes = []
    with Progress(console=consola) as progreso:
        tarea = progreso.add_task("Publicando por Kafka", total=len(validos))
        def fallido(registro, error) -> None:
            # Un registro fallido no publicó ninguno de sus eventos.
            rechazos.extend((validos[i][0], validos[i][1].evento_id, f"kafka: {error}") for i in registro.posiciones)
            progreso.advance(tarea, len(registro.posiciones))

        for registro in registros:
            try:
                futuro = productor.send(registro.topico, registro.valor, key=registro.clave,
                                        headers=registro.cabeceras or None, partition=registro.particion)
            except KafkaError as error:
                # kafka-python rechaza al instante un registro demasiado grande o sin metadatos.
                fallido(registro, error)
                continue
            pendientes.append((registro, futuro))
        for registro, futuro in pendientes:
            try:
                futuro.get(timeout=30)
            except KafkaError as error:
                fallido(registro, error)
                continue
            progreso.advance(tarea, len(registro.posiciones))
    productor.close(timeout=5)
    fallidos_kafka = sum(1 for _, _, motivo in rechazos if motivo.startswith("kafka:"))
    if fallidos_kafka == len(validos):
        consola_errores.print("[red]Kafka no confirmó ningún envío[/red]")
        raise typer.Exit(3)
    return rechazos


def credenciales_tls(tls: bool, tls_ca: Path | None):
    """Credenciales del canal: None sin TLS; con `--tls-ca`, solo esa CA."""
    if not tls and tls_ca is None:
        return None
    import grpc

    if tls_ca is None:
        return grpc.ssl_channel_credentials()
    contenido = tls_ca.read_bytes()
    # gRPC no valida el PEM hasta el primer intento de conexión y entonces solo dice
    # UNAVAILABLE: un archivo equivocado se rechaza aquí, como error de uso.
    if b"-----BEGIN CERTIFICATE-----" not in contenido:
        consola_errores.print(f"[red]--tls-ca {tls_ca}[/red]: no contiene un certificado PEM (-----BEGIN CERTIFICATE-----)")
        raise typer.Exit(2)
    return grpc.ssl_channel_credentials(root_certificates=contenido)


def _por_grpc(eventos, destino: str, token: str, credenciales_tls=None) -> list[tuple[int, str, str]]:
    import grpc

    from gpr.v1 import ingesta_pb2, ingesta_pb2_grpc

    canal = (grpc.secure_channel(destino, credenciales_tls) if credenciales_tls is not None
             else grpc.insecure_channel(destino))
    stub = ingesta_pb2_grpc.IngestaStub(canal)
    metadatos = [("authorization", f"Bearer {token}")] if token else []
    rechazos = []
    with Progress(console=consola) as progreso:
        tarea = progreso.add_task("Publicando por la Ingesta", total=len(eventos))
        for inicio in range(0, len(eventos), TAMANO_LOTE_GRPC):
            trozo = eventos[inicio:inicio + TAMANO_LOTE_GRPC]
            try:
                respuesta = stub.Publicar(ingesta_pb2.SolicitudPublicar(eventos=[e for _, e in trozo]),
                                          metadata=metadatos, timeout=60)
            except grpc.RpcError as error:
                consola_errores.print(f"[red]error {error.code().name}[/red]: {error.details()}")
                raise typer.Exit(3 if error.code() == grpc.StatusCode.UNAVAILABLE else 1) from None
            for (numero, evento), resultado in zip(trozo, respuesta.resultados):
                if not resultado.aceptado:
                    rechazos.append((numero, evento.evento_id, resultado.motivo))
            progreso.advance(tarea, len(trozo))
    return rechazos
