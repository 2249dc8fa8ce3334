"""`gpr rechazados`: ver y volver a publicar los eventos del tópico de rechazados.

`gpr rechazados listar [--agencia A] [--motivo M] [--fuente F] [--desde D]` lee
`gpr.eventos.rechazados.v1` entero y muestra cada evento decodificado (un `gpr.v1.Evento`, o
los de un `LoteEventos` si el registro lleva la cabecera `gpr-lote: 1`) con su motivo
(`gpr-motivo`) y su detalle (`gpr-detalle`). Lo que no se puede decodificar se muestra como tal,
con su tamaño: nunca sus bytes. `--json` da una línea JSON por evento, para scripts.

`gpr rechazados reprocesar` (mismos filtros) vuelve a publicar en `gpr.eventos.v1` los eventos
elegidos, una vez corregida la causa (un servicio añadido al catálogo, un productor arreglado).
Publica por el mismo camino que `gpr publicar` (valida con el catálogo, registros `LoteEventos`
por partición): lo que todavía se rechazaría no se publica y se lista con su motivo. Repetirlo
no cuenta nada dos veces: el procesador descarta los repetidos por (`fuente`, `evento_id`).
`--simular` dice qué publicaría sin publicar.

El tópico se lee sin grupo de consumidores (asignando todas sus particiones, hasta la marca de
agua alta de cada una): no deja offsets confirmados ni interfiere con nadie.

Códigos de salida: 0 bien; 1 algún evento elegido no pasa la validación (reprocesar); 2 uso
incorrecto; 3 Kafka no disponible.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import typer

from servicios.terceros.typer_es import TyperGpr
from servicios.cli.salida import consola, consola_errores, imprimir_tabla

app = TyperGpr(
    help="Eventos rechazados: listarlos decodificados y volver a publicarlos tras corregir la causa.",
    no_args_is_help=True,
    add_completion=False,
)

DESCONOCIDA = "desconocida"
CABECERA_DETALLE = "gpr-detalle"
CABECERA_AGENCIA = "gpr-agencia"
CABECERA_ORIGEN = "gpr-origen"
# Un detalle o un motivo largos (p. ej. con texto del emisor) no deben inundar la salida.
TEXTO_MAXIMO = 200
ESPERA_LECTURA_S = 60.0


@dataclass
class Rechazado:
    """Un evento del tópico de rechazados (o un registro que no se pudo decodificar)."""

    particion: int
    offset: int
    instante_s: float          # cuándo se escribió en el tópico de rechazados
    motivo: str
    detalle: str
    agencia: str               # de la cabecera gpr-agencia o del evento; "" si no se sabe
    origen: str                # quién lo rechazó (gpr-origen: ingesta), o ""
    tamano: int
    evento: object | None = None  # gpr.v1.Evento; None si el registro no se pudo decodificar
    error: str = ""

    @property
    def clase(self) -> str:
        return self.motivo.split(":", 1)[0]


def _texto(valor: bytes | None) -> str:
    texto = (valor or b"").decode("utf-8", errors="replace").strip()
    return texto if len(texto) <= TEXTO_MAXIMO else texto[:TEXTO_MAXIMO] + "…"


def decodificar_registro(particion: int, offset: int, instante_ms: int, valor: bytes | None,
                         cabeceras) -> list[Rechazado]:
    """Los eventos de un registro del tópico de rechazados (puro: sin E/S)."""
    from servicios.comun.eventos import RegistroInvalido, decodificar
    from servicios.comun.topicos import CABECERA_MOTIVO

    propias = {nombre: valor_cabecera for nombre, valor_cabecera in (cabeceras or ())}
    comun = dict(particion=particion, offset=offset, instante_s=instante_ms / 1000,
                 motivo=_texto(propias.get(CABECERA_MOTIVO)) or "sin_motivo",
                 detalle=_texto(propias.get(CABECERA_DETALLE)), origen=_texto(propias.get(CABECERA_ORIGEN)),
                 tamano=len(valor or b""))
    agencia_cabecera = _texto(propias.get(CABECERA_AGENCIA))
    try:
        eventos = decodificar(valor, list(cabeceras or ()))
    except RegistroInvalido as error:
        return [Rechazado(**comun, agencia=agencia_cabecera, error=str(error))]
    if not eventos:
        return [Rechazado(**comun, agencia=agencia_cabecera, error="lote sin eventos")]
    return [Rechazado(**comun, agencia=agencia_cabecera or e.agencia_id, evento=e) for e in eventos]


def leer_rechazados(bootstrap: str, limite_s: float = ESPERA_LECTURA_S) -> list[Rechazado]:
    """Todo el tópico de rechazados, de cada partición hasta su marca de agua alta."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    from servicios.comun.topicos import RECHAZADOS

    async def leer() -> list[Rechazado]:
        consumidor = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                      auto_offset_reset="earliest", client_id="gpr-cli-rechazados",
                                      request_timeout_ms=15000)
        await asyncio.wait_for(consumidor.start(), limite_s)
        try:
            particiones = consumidor.partitions_for_topic(RECHAZADOS)
            if not particiones:
                await consumidor.force_metadata_update()
                particiones = consumidor.partitions_for_topic(RECHAZADOS) or set()
            tps = [TopicPartition(RECHAZADOS, p) for p in sorted(particiones)]
            if not tps:
                return []
            consumidor.assign(tps)
            await consumidor.seek_to_beginning(*tps)
            resultado: list[Rechazado] = []
            fin = time.monotonic() + limite_s
            while True:
                lotes = await consumidor.getmany(timeout_ms=300, max_records=10_000)
                for registros in lotes.values():
                    for r in registros:
                        resultado.extend(decodificar_registro(r.partition, r.offset, r.timestamp, r.value, r.headers))
                # La marca de agua del Fetch (no end_offsets: ver docs/decisiones.md) dice dónde acaba cada partición.
                al_final = True
                for tp in tps:
                    marca = consumidor.highwater(tp)
                    if marca is None or await consumidor.position(tp) < marca:
                        al_final = False
                if al_final:
                    return resultado
                if time.monotonic() > fin:
                    raise TimeoutError(f"no se llegó al final de {RECHAZADOS} en {limite_s:.0f} s")
        finally:
            await consumidor.stop()

    return asyncio.run(leer())


# --- Filtros ---------------------------------------------------------------------------------

_DURACION = re.compile(r"(\d+)([smhd])")
_SEGUNDOS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def instante(texto: str, ahora_s: float) -> float:
    """`--desde`: una duración hacia atrás (`30m`, `2h`, `7d`) o una fecha ISO 8601 (UTC si no la dice)."""
    texto = texto.strip()
    m = _DURACION.fullmatch(texto)
    if m:
        return ahora_s - int(m.group(1)) * _SEGUNDOS[m.group(2)]
    try:
        fecha = datetime.fromisoformat(texto.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--desde {texto!r}: use una duración (30m, 2h, 7d) o una fecha ISO 8601 "
                         "(2026-06-17 o 2026-06-17T15:00:00Z)") from None
    if fecha.tzinfo is None:
        fecha = fecha.replace(tzinfo=timezone.utc)
    return fecha.timestamp()


@dataclass
class Filtro:
    agencia: str | None = None
    motivo: str | None = None
    fuente: str | None = None
    desde_s: float | None = None
    # Agencias del catálogo, para `--agencia desconocida` (las que no están, o sin agencia).
    agencias: set[str] = field(default_factory=set)

    def acepta(self, r: Rechazado) -> bool:
        if self.desde_s is not None and r.instante_s < self.desde_s:
            return False
        if self.motivo is not None and self.motivo not in (r.motivo, r.clase):
            return False
        if self.fuente is not None and (r.evento is None or r.evento.fuente != self.fuente):
            return False
        if self.agencia is not None:
            if self.agencia == DESCONOCIDA:
                return not r.agencia or r.agencia not in self.agencias
            return r.agencia == self.agencia
        return True


def _filtro(agencia, motivo, fuente, desde, catalogo: Path) -> Filtro:
    agencias = set()
    if agencia == DESCONOCIDA:
        from servicios.comun.catalogo import cargar_catalogo
        from servicios.comun.yaml_lineas import ArchivoInvalido

        try:
            agencias = set(cargar_catalogo(catalogo).agencias)
        except (ArchivoInvalido, OSError) as error:
            consola_errores.print(f"--agencia {DESCONOCIDA} necesita el catálogo ({catalogo}): {error}", markup=False)
            raise typer.Exit(2) from None
    try:
        desde_s = instante(desde, time.time()) if desde else None
    except ValueError as error:
        consola_errores.print(str(error), markup=False)
        raise typer.Exit(2) from None
    return Filtro(agencia, motivo, fuente, desde_s, agencias)


def _leer(kafka: str) -> list[Rechazado]:
    from kafka.errors import KafkaError as KafkaErrorSincrono
    from aiokafka.errors import KafkaError

    if not kafka:
        consola_errores.print("falta el broker: use --kafka host:puerto o GPR_KAFKA_BOOTSTRAP", markup=False)
        raise typer.Exit(2)
    try:
        return leer_rechazados(kafka)
    except (KafkaError, KafkaErrorSincrono, OSError, TimeoutError) as error:
        consola_errores.print(f"Kafka no disponible en {kafka}: {error or type(error).__name__}", markup=False)
        raise typer.Exit(3) from None


def _fecha(instante_s: float) -> str:
    return datetime.fromtimestamp(instante_s, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def a_dict(r: Rechazado) -> dict:
    """Un rechazado como JSON (el evento en el mapeo JSON de protobuf, como lo lee `gpr publicar`)."""
    from google.protobuf import json_format

    datos = {"particion": r.particion, "offset": r.offset, "rechazado_en": _fecha(r.instante_s) + "Z",
             "motivo": r.motivo, "detalle": r.detalle, "agencia": r.agencia, "origen": r.origen}
    if r.evento is None:
        datos.update(decodificable=False, bytes=r.tamano, error=r.error)
    else:
        datos.update(decodificable=True, evento=json_format.MessageToDict(r.evento))
    return datos


OPCION_KAFKA = typer.Option("", "--kafka", envvar="GPR_KAFKA_BOOTSTRAP", help="Broker Kafka (o GPR_KAFKA_BOOTSTRAP).")
OPCION_AGENCIA = typer.Option(None, "--agencia", help=f"Solo esta agencia ('{DESCONOCIDA}': las que no están en el catálogo).")
OPCION_MOTIVO = typer.Option(None, "--motivo", help="Solo este motivo (p. ej. servicio_desconocido o campo_requerido:caso_id).")
OPCION_FUENTE = typer.Option(None, "--fuente", help="Solo los eventos de esta fuente (sistema emisor).")
OPCION_DESDE = typer.Option(None, "--desde", help="Solo los rechazados desde hace 30m, 2h, 7d… o desde una fecha ISO 8601.")
OPCION_CATALOGO = typer.Option(Path("despliegue/catalogo.yaml"), "--catalogo", envvar="GPR_CATALOGO",
                               help="Catálogo de agencias y servicios (o GPR_CATALOGO).")


@app.command()
def listar(
    agencia: str = OPCION_AGENCIA,
    motivo: str = OPCION_MOTIVO,
    fuente: str = OPCION_FUENTE,
    desde: str = OPCION_DESDE,
    kafka: str = OPCION_KAFKA,
    catalogo: Path = OPCION_CATALOGO,
    como_json: bool = typer.Option(False, "--json", help="Una línea JSON por evento en vez de la tabla."),
    limite: int = typer.Option(200, "--limite", min=1, help="Filas de la tabla como máximo (los más recientes)."),
) -> None:
    """Lista los eventos rechazados, decodificados, con su motivo y su detalle."""
    from rich.table import Table

    filtro = _filtro(agencia, motivo, fuente, desde, catalogo)
    elegidos = [r for r in _leer(kafka) if filtro.acepta(r)]
    elegidos.sort(key=lambda r: (r.instante_s, r.particion, r.offset))
    if como_json:
        for r in elegidos:
            typer.echo(json.dumps(a_dict(r), ensure_ascii=False))
        return
    tabla = Table(title="Eventos rechazados (gpr.eventos.rechazados.v1)")
    for columna in ("Rechazado (UTC)", "Agencia", "Servicio", "Fuente", "evento_id", "caso_id", "Tipo", "Motivo",
                    "Detalle"):
        tabla.add_column(columna)
    for r in elegidos[-limite:]:
        if r.evento is None:
            tabla.add_row(_fecha(r.instante_s), r.agencia or "—", "—", "—",
                          f"(no decodificable: {r.tamano} bytes)", "—", "—", r.motivo, r.detalle or r.error)
        else:
            from gpr.v1 import eventos_pb2 as pb

            e = r.evento
            tipo = pb.TipoEvento.Name(e.tipo) if e.tipo in pb.TipoEvento.values() else str(e.tipo)
            tabla.add_row(_fecha(r.instante_s), r.agencia or "—", e.servicio_id or "—", e.fuente or "—",
                          e.evento_id or "—", e.caso_id or "—", tipo, r.motivo, r.detalle)
    if elegidos:
        imprimir_tabla(tabla)
    ilegibles = sum(r.evento is None for r in elegidos)
    registros = len({(r.particion, r.offset) for r in elegidos})
    consola.print(f"{len(elegidos)} eventos rechazados en {registros} registros"
                  + (f" ({ilegibles} no decodificables)" if ilegibles else "")
                  + (f"; se muestran los {limite} más recientes" if len(elegidos) > limite else ""),
                  markup=False, highlight=False)
    if elegidos:
        por_motivo = Counter(r.clase for r in elegidos)
        consola.print("Por motivo: " + ", ".join(f"{m} {n}" for m, n in por_motivo.most_common()),
                      markup=False, highlight=False)


@app.command()
def reprocesar(
    agencia: str = OPCION_AGENCIA,
    motivo: str = OPCION_MOTIVO,
    fuente: str = OPCION_FUENTE,
    desde: str = OPCION_DESDE,
    kafka: str = OPCION_KAFKA,
    catalogo: Path = OPCION_CATALOGO,
    simular: bool = typer.Option(False, "--simular", help="Validar y decir qué se publicaría, sin publicar."),
) -> None:
    """Vuelve a publicar en gpr.eventos.v1 los eventos rechazados elegidos (tras corregir la causa)."""
    from servicios.cli.publicar import _por_kafka

    filtro = _filtro(agencia, motivo, fuente, desde, catalogo)
    elegidos = [r for r in _leer(kafka) if filtro.acepta(r)]
    ilegibles = [r for r in elegidos if r.evento is None]
    # Un mismo evento puede estar varias veces (rechazado, reprocesado y rechazado otra vez):
    # se publica una. El procesador descartaría igual los repetidos, pero no hace falta enviarlos.
    unicos, vistos = [], set()
    for r in sorted((r for r in elegidos if r.evento is not None), key=lambda r: (r.instante_s, r.offset)):
        clave = (r.evento.fuente, r.evento.evento_id)
        if clave not in vistos:
            vistos.add(clave)
            unicos.append(r)
    if ilegibles:
        consola_errores.print(f"aviso: {len(ilegibles)} registros no decodificables no se pueden reprocesar "
                              "(véalos con `gpr rechazados listar`)", markup=False)
    if not unicos:
        consola.print("ningún evento rechazado coincide con los filtros", markup=False)
        return
    eventos = [(numero, r.evento) for numero, r in enumerate(unicos, start=1)]
    if simular:
        from servicios.comun.catalogo import cargar_catalogo
        from servicios.comun.eventos import validar

        cat = cargar_catalogo(catalogo)
        ahora = time.time()
        rechazos = [(n, e.evento_id, m) for n, e in eventos if (m := validar(e, cat, ahora))]
    else:
        if not kafka:
            consola_errores.print("falta el broker: use --kafka host:puerto o GPR_KAFKA_BOOTSTRAP", markup=False)
            raise typer.Exit(2)
        rechazos = _por_kafka(eventos, kafka, catalogo)
    publicados = len(eventos) - len(rechazos)
    verbo = "se publicarían" if simular else "publicados en gpr.eventos.v1"
    consola.print(f"{publicados} de {len(eventos)} eventos {verbo}", markup=False, highlight=False)
    if rechazos:
        consola.print(f"{len(rechazos)} siguen sin pasar la validación y no se publicaron:", markup=False)
        por_motivo = Counter(m.split(":")[0] for _, _, m in rechazos)
        for _, evento_id, m in rechazos[:50]:
            consola.print(f"  {evento_id}: {m}", markup=False, highlight=False)
        consola.print("Por motivo: " + ", ".join(f"{m} {n}" for m, n in por_motivo.most_common()),
                      markup=False, highlight=False)
        raise typer.Exit(1)
