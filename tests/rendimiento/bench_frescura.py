"""Banco 2 — frescura: del envío de un evento a ver su efecto en `ObtenerIndicador`, con carga.

Un hilo publica eventos realistas a tasa constante (por defecto 2 000/s, en tandas cada
100 ms); mientras, cadenas de marcadores (una por servicio de la agencia de control, sin
otra carga) envían una SOLICITUD_RECIBIDA y consultan por gRPC, cada 20 ms, las
`solicitudes` 24h de su servicio hasta verla contada; entonces envían la siguiente. La
consulta es el servicio real (`python -m servicios.consulta`), con el procesador real y su
intervalo de publicación por omisión.

La tasa objetivo solo se usa si el banco de caudal de esta misma ejecución mostró que un
trabajador la sostiene (con un 25 % de margen), en registros sueltos o, si no, en lotes;
si no la sostiene ninguno, se mide al 60 % del mejor caudal medido y se informa. Antes de la
carga se mide la frescura sin carga (el suelo: intervalo de publicación y tubería). Al final
se para la carga y se mide cuánto tarda en verse entera (vaciado): si tarda mucho más que un
marcador, o la frescura crece durante la carga, no se sostuvo.
"""

from __future__ import annotations

import os
import threading
import time

import grpc
import pytest

from servicios.comun.eventos import clave_kafka
from gpr.v1 import indicadores_pb2 as ipb
from gpr.v1 import indicadores_pb2_grpc as ipb_grpc
from rendimiento import instrumentos as ins
from rendimiento.bench_consulta import esperar_serving_en
from servicios.comun.broker import puerto_libre
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.topicos import CABECERA_LOTE, EVENTOS
from servicios.procesador.config import leer as leer_config_procesador

# El del procesador por omisión (o el de GPR_INTERVALO_PUBLICACION, que llega al trabajador).
INTERVALO_PUBLICACION_S = leer_config_procesador({**os.environ, "GPR_KAFKA_BOOTSTRAP": "-"}).intervalo_publicacion_s
CALENTAMIENTO_S = 10
SIN_CARGA_S = 8
TANDA_S = 0.1
SONDEO_S = 0.02
# Los servicios de control 0 y 1 son del calentamiento de los trabajadores.
CADENAS = ins.SERVICIOS_CONTROL[2:]


def _cifra(x: float) -> str:
    return f"{x:,.0f}".replace(",", " ")


def elegir_tasa(objetivo: int, resultados: ins.Resultados) -> tuple[int, str, str]:
    """(tasa, formato, motivo) según el caudal de un trabajador medido en esta ejecución, o el
    formato de GPR_BENCH_FRESCURA_FORMATO (`evento` o `lote`) a la tasa objetivo."""
    forzado = os.environ.get("GPR_BENCH_FRESCURA_FORMATO")
    if forzado:
        assert forzado in ("evento", "lote"), f"GPR_BENCH_FRESCURA_FORMATO={forzado!r}: debe ser evento o lote"
        return objetivo, forzado, f"Formato fijado por GPR_BENCH_FRESCURA_FORMATO={forzado}."
    caudal = {f: resultados.obtener("caudal", f, {}).get("procesador_1", {}).get("eventos_s") for f in ("evento", "lote")}
    for formato in ("evento", "lote"):
        if caudal[formato] and caudal[formato] >= 1.25 * objetivo:
            return objetivo, formato, f"Un trabajador sostiene {_cifra(caudal[formato])} eventos/s en «{formato}»."
    medidos = {f: v for f, v in caudal.items() if v}
    if not medidos:
        return objetivo, "lote", "Sin medida de caudal en esta ejecución: se usa la tasa objetivo."
    formato = max(medidos, key=medidos.get)
    tasa = max(10, int(0.6 * medidos[formato]) // 10 * 10)
    return tasa, formato, (f"Un trabajador no sostiene {_cifra(objetivo)} eventos/s (caudal medido: "
                           + ", ".join(f"{_cifra(v)} en «{f}»" for f, v in medidos.items())
                           + f"): se mide al 60 % del mejor, {_cifra(tasa)} eventos/s.")


class Carga(threading.Thread):
    """Publica `eventos` a `tasa` eventos/s, en tandas cada 100 ms, hasta agotarlos o parar."""

    def __init__(self, bootstrap: str, eventos, tasa: int, formato: str):
        super().__init__(name="carga", daemon=True)
        from kafka import KafkaProducer

        self._productor = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                        max_request_size=16 << 20)
        self._eventos = eventos
        self._tasa = tasa
        self._formato = formato
        self.parar = threading.Event()
        self.enviados = 0
        self.segundos = 0.0
        self.retrasada = 0  # tandas que salieron más de una tanda tarde

    def run(self) -> None:
        por_tanda = max(1, round(self._tasa * TANDA_S))
        inicio = time.perf_counter()
        for n, i in enumerate(range(0, len(self._eventos), por_tanda)):
            if self.parar.is_set():
                break
            espera = inicio + n * TANDA_S - time.perf_counter()
            if espera > 0:
                time.sleep(espera)
            elif espera < -TANDA_S:
                self.retrasada += 1
            tanda = self._eventos[i:i + por_tanda]
            if self._formato == "evento":
                for r in ins.registros_simples(tanda):
                    self._productor.send(EVENTOS, r.valor, key=r.clave, partition=r.particion)
            else:
                for r in ins.registros_en_lotes(tanda, len(tanda)):
                    self._productor.send(EVENTOS, r.valor, partition=r.particion, headers=[(CABECERA_LOTE, b"1")])
            self.enviados += len(tanda)
        self._productor.flush()
        self.segundos = time.perf_counter() - inicio
        self._productor.close()


def medir_marcadores(bootstrap: str, destino: str, segundos: float, enviados: dict[str, int],
                     tramos: list[float] | None = None) -> list[float]:
    """Latencias (s) de envío → visible en ObtenerIndicador de las cadenas de marcadores.

    `enviados` (marcadores ya enviados por servicio) se conserva entre llamadas: el contador
    de solicitudes de cada servicio sigue creciendo. En `tramos`, si se da, la parte de cada
    latencia hasta que el procesador publicó la instantánea (su `actualizado_en`): el resto es
    el viaje por gpr.indicadores.v1 hasta la vista de la consulta.
    """
    from kafka import KafkaProducer

    productor = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    latencias: list[float] = []
    pendiente: dict[str, float] = {}
    canal = grpc.insecure_channel(destino)
    stub = ipb_grpc.IndicadoresStub(canal)
    fin = time.monotonic() + segundos
    try:
        while time.monotonic() < fin or pendiente:
            assert time.monotonic() < fin + 60, f"marcadores sin ver tras 60 s: {pendiente}"
            for servicio in CADENAS:
                if servicio not in pendiente:
                    if time.monotonic() >= fin:
                        continue
                    enviados[servicio] = enviados.get(servicio, 0) + 1
                    evento = ins.evento_control(servicio, f"frescura-{servicio}-{enviados[servicio]}", int(time.time()))
                    pendiente[servicio] = time.time()
                    productor.send(EVENTOS, evento.SerializeToString(), key=clave_kafka(evento))
                    productor.flush()
                    continue
                try:
                    visto = stub.ObtenerIndicador(ipb.SolicitudIndicador(
                        agencia_id=ins.AGENCIA_CONTROL, servicio_id=servicio, indicador="solicitudes", ventana="24h"),
                        timeout=2)
                except grpc.RpcError as error:
                    if error.code() != grpc.StatusCode.NOT_FOUND:
                        raise
                    continue
                if visto.valor >= enviados[servicio]:
                    assert visto.valor == enviados[servicio], f"{servicio}: {visto.valor} > {enviados[servicio]} enviados"
                    enviado = pendiente.pop(servicio)
                    latencias.append(time.time() - enviado)
                    if tramos is not None:
                        tramos.append(visto.actualizado_en.ToNanoseconds() / 1e9 - enviado)
            time.sleep(SONDEO_S)
    finally:
        canal.close()
        productor.close()
    return latencias


@pytest.mark.timeout(600)
def test_frescura(config_bench, resultados, tmp_path):
    tasa, formato, motivo = elegir_tasa(config_bench.frescura_tasa, resultados)
    print(f"\n[frescura] {motivo}")
    catalogo = ins.catalogo_con_control(tmp_path)
    eventos = ins.generar_eventos(cargar_catalogo(ins.CATALOGO), tasa * (CALENTAMIENTO_S + config_bench.frescura_s + 5),
                                  semilla=71)
    medida: dict = {"tasa_objetivo": config_bench.frescura_tasa, "tasa": tasa, "formato": formato,
                    "motivo_tasa": motivo, "intervalo_publicacion_s": INTERVALO_PUBLICACION_S, "cadenas": len(CADENAS)}
    procesos = ins.Procesos(tmp_path / "registros")
    try:
        with ins.broker_limpio(tmp_path / "broker") as bootstrap:
            ins.crear_topicos_bench(bootstrap)
            observador = ins.Observador(bootstrap)
            try:
                grupo = ins.lanzar_trabajadores(procesos, bootstrap, tmp_path, catalogo, observador, 1)
                puerto = puerto_libre()
                procesos.lanzar(["-m", "servicios.consulta"], {
                    "GPR_KAFKA_BOOTSTRAP": bootstrap, "GPR_GRPC_HOST": "127.0.0.1",
                    "GPR_GRPC_PUERTO": str(puerto), "GPR_METRICAS_PUERTO": "0"}, "consulta")
                destino = f"127.0.0.1:{puerto}"
                esperar_serving_en(destino)

                # Sin carga primero: el suelo estructural (intervalo de publicación + tubería).
                enviados: dict[str, int] = {}
                sin_carga = medir_marcadores(bootstrap, destino, SIN_CARGA_S, enviados)
                carga = Carga(bootstrap, eventos, tasa, formato)
                carga.start()
                time.sleep(CALENTAMIENTO_S)
                hasta_publicar: list[float] = []
                latencias = medir_marcadores(bootstrap, destino, config_bench.frescura_s, enviados, hasta_publicar)
                carga.parar.set()
                carga.join(30)
                publicados = eventos[:carga.enviados]
                parado = time.time()
                vaciado = ins.esperar_totales(observador, ins.totales_esperados(publicados), 120, vivo=grupo.vivos,
                                              exigir=False)
            finally:
                observador.cerrar()
        tercio = max(1, len(latencias) // 3)
        medida.update({
            "marcadores": len(latencias),
            "p50_s": round(ins.percentil(latencias, 0.5), 3),
            "p99_s": round(ins.percentil(latencias, 0.99), 3),
            "max_s": round(max(latencias), 3),
            "p50_primer_tercio_s": round(ins.percentil(latencias[:tercio], 0.5), 3),
            "p50_ultimo_tercio_s": round(ins.percentil(latencias[-tercio:], 0.5), 3),
            "tasa_real": round(carga.enviados / carga.segundos, 1),
            "tandas_retrasadas": carga.retrasada,
            "vaciado_s": round(vaciado.instante - parado, 2) if vaciado.completa else None,
            # Dónde se va la latencia: hasta que el procesador publica (procesar, agregar y
            # esperar la pasada de publicación) y de ahí hasta la vista de la consulta.
            "hasta_publicar_p50_s": round(ins.percentil(hasta_publicar, 0.5), 3),
            "hasta_publicar_p99_s": round(ins.percentil(hasta_publicar, 0.99), 3),
            "publicado_a_visible_p99_s": round(ins.percentil([t - p for t, p in zip(latencias, hasta_publicar)], 0.99), 3),
            "sin_carga_marcadores": len(sin_carga),
            "sin_carga_p50_s": round(ins.percentil(sin_carga, 0.5), 3),
            "sin_carga_p99_s": round(ins.percentil(sin_carga, 0.99), 3),
        })
        # Sostenida: la frescura no crece durante la carga y, al pararla, lo publicado se ve
        # en lo que tarda un evento (no quedó cola detrás).
        medida["sostenida"] = bool(
            vaciado.completa and medida["vaciado_s"] <= 2 * medida["p50_s"] + 1
            and medida["p50_ultimo_tercio_s"] <= 2 * medida["p50_primer_tercio_s"] + 1)
        print(f"[frescura] {medida}")
    finally:
        procesos.detener_todos()
        resultados.fijar("frescura", medida)
