"""Alertas de punta a punta con los binarios reales: eventos → procesador → consulta /metrics →
Prometheus (reglas versionadas) → Alertmanager (API v2) → notificaciones reales: un receptor
HTTP de webhooks y un servidor SMTP local (aiosmtpd), con los canales configurados desde el
entorno por el mismo generador que usa docker-compose.yml.

Pila: broker embebido, procesador, consulta e ingesta como procesos, `prometheus` y
`prometheus-alertmanager` de Debian en puertos libres del loopback, y dos simuladores:

* **SUNARP** (solo `certificado-literal`, plazo 2 días) repite 30 días de historia con el
  reloj simulado deprisa (unas 3 h simuladas por segundo), con una etapa lenta desde el
  principio: su `cumplimiento_plazo` de 24h cae muy por debajo de la meta de 90 %. La
  alerta `MetaIncumplida` debe llegar a Alertmanager con las etiquetas de la meta y con la
  etapa lenta como `cuello_botella`. Luego el archivo de control del simulador la recupera
  y la alerta debe resolverse. Las ventanas de las metas son de tiempo de evento: mientras
  se repite la historia, un día simulado pasa en unos ocho segundos.
* **MINSA** publica en tiempo real hasta que se detiene: su `AgenciaSinEventos` no está
  activa mientras publica y se dispara después.
* La alerta de SUNARP llega como **notificación** al webhook y al correo del equipo de la meta,
  agrupada como dice Alertmanager, con agencia, servicio, indicador, valor frente a la meta,
  etapa cuello de botella y un enlace a su runbook que abre (servido por `gpr runbooks`); su
  resolución llega después. Watchdog llega al receptor de latidos.
* Al final se **mata la consulta**: `ServicioCaido` de su trabajo llega a plataforma.

Lo esperado sale de los archivos de metas leídos aquí con yaml (no del código de metas) y
del escenario que la prueba elige (qué etapa se vuelve lenta); las esperas (`for:`) y el
umbral de «sin eventos» se acortan para que la prueba dure minutos (ver
`apoyo/observabilidad.py`).
"""

from __future__ import annotations

import re
import signal
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import grpc
import pytest
import yaml

from apoyo import tableros
from apoyo.observabilidad import (ALERTMANAGER, Binarios, ErrorPromQL, alertas_alertmanager, alertas_prometheus,
                                  alertmanager_de_prueba, binario, coinciden, configuracion_prometheus, consultar,
                                  esperar, escalar, listo, obtener_json, reglas_de_prueba)
from conftest import CATALOGO, RAIZ, Procesos
from gpr.v1 import eventos_pb2 as pb
from gpr.v1 import ingesta_pb2, ingesta_pb2_grpc
from servicios.cli.buzon import Buzon
from servicios.cli.runbooks import ServidorRunbooks
from servicios.comun.broker import broker_kafka, puerto_libre
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.topicos import crear_topicos
from servicios.simulador.generador import Generador

pytestmark = pytest.mark.integracion

METAS = RAIZ / "despliegue" / "metas"
PARTICIONES = 2
# Esperas cortas: con evaluación cada segundo, dos evaluaciones seguidas en falta.
ESPERA = "2s"
# Umbral de AgenciaSinEventos de la prueba (en producción, una hora).
SIN_EVENTOS_S = 30

AGENCIA, SERVICIO, INDICADOR = "sunarp", "certificado-literal", "cumplimiento_plazo"
# Escenario del simulador de SUNARP. Con esta semilla el perfil sano del servicio cumple el
# plazo en ~97 % de los casos (calculado fuera de línea con el generador: las ventanas de 24h
# quedan casi siempre sobre 90 %, con alguna caída breve) y a 4 casos por hora cada ventana
# tiene ~90 entregas, bastante más que la muestra mínima.
SEMILLA = 1
CASOS_POR_HORA = 4
# ~30 eventos por hora simulada: 100 eventos/s son ~3 h simuladas por segundo. La alerta
# aparece hacia las 60 h simuladas (~20 s) y la recuperación tarda 4-6 días simulados (los
# casos que ya estaban en la etapa lenta se siguen entregando tarde): ~40 s. La tasa queda
# bien por debajo de lo que el procesador aguanta en una máquina de 2 núcleos cargada (~150
# eventos/s medidos así): si se atrasara, además de alargar la prueba, más de 10 000
# registros pendientes dispararían ProcesadorRetrasado, que inhibe AgenciaSinEventos.
TASA = 100
AGENCIA_CALLADA = "minsa"

PLAZOS = {
    "pila": 120,           # hasta que los eventos de MINSA se ven en Prometheus
    "alerta": 150,         # hasta que la meta incumplida llega a Alertmanager
    "sin_eventos": SIN_EVENTOS_S + 90,
    "resolucion": 240,     # hasta que la meta recuperada deja de estar activa
    "notificacion": 60,    # de Alertmanager al webhook y al correo (group_wait y group_interval: 1 s)
    "caida": 90,           # de matar la consulta a la notificación de ServicioCaido
}
# Correo del equipo de la meta de SUNARP (lo que pondría el operador en GPR_ALERTAS_CORREO_<EQUIPO>).
CORREO_EQUIPO = "guardia@sunarp.ejemplo.gob"


def _metas_de(agencia: str) -> list[dict]:
    return [m for archivo in sorted(METAS.glob("*.yaml"))
            for m in (yaml.safe_load(archivo.read_text(encoding="utf-8")) or {}).get("metas", [])
            if m["agencia"] == agencia]


def _catalogo_parcial(destino: Path, agencia: str, servicio: str | None = None) -> Path:
    """El catálogo versionado reducido a una agencia (y un servicio): cada simulador genera
    solo lo que su papel en la prueba necesita; el procesador usa el catálogo completo."""
    datos = yaml.safe_load(CATALOGO.read_text(encoding="utf-8"))
    datos["agencias"] = [a for a in datos["agencias"] if a["id"] == agencia]
    datos["servicios"] = [s for s in datos["servicios"]
                          if s["agencia"] == agencia and (servicio is None or s["id"] == servicio)]
    destino.write_text(yaml.safe_dump(datos, allow_unicode=True), encoding="utf-8")
    return destino


def _etapa_a_degradar(catalogo: Path) -> tuple[str, str]:
    """(etapa que se vuelve lenta, cuello de botella del perfil sano).

    Se degrada la etapa que en el perfil sano NO es el cuello de botella (la de menor
    mediana): así, que la alerta nombre esa etapa prueba que la etiqueta sigue a la causa y
    no a la etapa que de todos modos es la más lenta. El perfil es el del simulador con la
    misma semilla y catálogo; no interviene código del procesador ni de las reglas."""
    perfil = Generador(cargar_catalogo(catalogo), SEMILLA, 0, lentos={}).perfil(AGENCIA, SERVICIO)
    medianas = {etapa: t.mediana_s for etapa, t in perfil.etapas.items()}
    ordenadas = sorted(medianas, key=medianas.get)
    assert len(ordenadas) >= 2 and medianas[ordenadas[-1]] > 1.2 * medianas[ordenadas[0]], medianas
    return ordenadas[0], ordenadas[-1]


@dataclass
class Pila:
    prometheus: str
    alertmanager: str
    procesos: Procesos
    binarios: Binarios
    directorio: Path
    control: Path
    etapa_lenta: str
    simulador_callado: object
    ingesta: str
    buzon: Buzon
    runbooks: str
    consulta: object

    def registros(self, *nombres: str) -> str:
        partes = []
        for nombre in nombres:
            ruta = self.directorio / f"{nombre}.log"
            texto = ruta.read_text(errors="replace") if ruta.exists() else "(sin registro)"
            partes.append(f"--- {nombre}.log (final) ---\n{texto[-3000:]}")
        return "\n".join(partes)

    def diagnostico(self) -> str:
        caidos = self.binarios.caidos()
        texto = f"procesos externos caídos: {caidos}\n" if caidos else ""
        try:
            texto += "alertas en Alertmanager: " + "; ".join(
                f"{a['labels']} {a['status']['state']}" for a in alertas_alertmanager(self.alertmanager)) + "\n"
        except OSError as error:
            texto += f"Alertmanager no responde: {error}\n"
        return texto + self.registros("procesador", "consulta", "simulador-sunarp", "prometheus", "alertmanager")


@pytest.fixture(scope="module")
def pila(tmp_path_factory):
    directorio = tmp_path_factory.mktemp("alertas")
    prometheus_bin = binario("prometheus")
    alertmanager_bin = binario("prometheus-alertmanager", "alertmanager")
    puertos = {n: puerto_libre() for n in ("grpc", "metricas", "procesador", "ingesta", "ingesta_metricas",
                                           "prometheus", "alertmanager")}
    catalogo_sunarp = _catalogo_parcial(directorio / "catalogo-sunarp.yaml", AGENCIA, SERVICIO)
    catalogo_minsa = _catalogo_parcial(directorio / "catalogo-minsa.yaml", AGENCIA_CALLADA)
    etapa_lenta, _ = _etapa_a_degradar(catalogo_sunarp)
    lenta = f"{AGENCIA}/{SERVICIO}:{etapa_lenta}"
    control = directorio / "control-sunarp.txt"
    control.write_text(lenta + "\n", encoding="utf-8")

    buzon = Buzon(directorio / "buzon").iniciar()
    servidor_runbooks = ServidorRunbooks(RAIZ / "despliegue" / "runbooks", puerto=0).iniciar()
    reglas = directorio / "reglas.yml"
    reglas.write_text(reglas_de_prueba(ESPERA, SIN_EVENTOS_S, runbooks=servidor_runbooks.url), encoding="utf-8")
    configuracion_am = directorio / "alertmanager.yml"
    equipo = next(m["equipo"] for m in _metas_de(AGENCIA) if (m["servicio"], m["indicador"]) == (SERVICIO, INDICADOR))
    configuracion_am.write_text(alertmanager_de_prueba(canales={
        # Como lo pondría un operador: el equipo de la meta con webhook y correo; plataforma y
        # el latido, con webhook.
        f"GPR_ALERTAS_WEBHOOK_{equipo.upper().replace('-', '_')}": buzon.url("equipo"),
        f"GPR_ALERTAS_CORREO_{equipo.upper().replace('-', '_')}": CORREO_EQUIPO,
        "GPR_ALERTAS_WEBHOOK_PLATAFORMA": buzon.url("plataforma"),
        "GPR_ALERTAS_WEBHOOK_LATIDO": buzon.url("latido"),
        "GPR_SMTP_SERVIDOR": buzon.smtp, "GPR_SMTP_REMITENTE": "gpr-monitor@ejemplo.gob", "GPR_SMTP_TLS": "no",
    }), encoding="utf-8")
    configuracion_prom = directorio / "prometheus.yml"
    configuracion_prom.write_text(configuracion_prometheus(
        {"gpr-consulta": f"127.0.0.1:{puertos['metricas']}",
         "gpr-procesador": f"127.0.0.1:{puertos['procesador']}",
         "gpr-ingesta": f"127.0.0.1:{puertos['ingesta_metricas']}",
         "prometheus": f"127.0.0.1:{puertos['prometheus']}",
         "alertmanager": f"127.0.0.1:{puertos['alertmanager']}"},
        f"127.0.0.1:{puertos['alertmanager']}", reglas), encoding="utf-8")

    binarios = Binarios(directorio)
    procesos = Procesos(directorio)
    with broker_kafka(None, registro=directorio / "broker.log") as bootstrap:
        try:
            crear_topicos(bootstrap, PARTICIONES)
            binarios.lanzar("alertmanager", [
                alertmanager_bin, f"--config.file={configuracion_am}", f"--storage.path={directorio / 'am'}",
                f"--web.listen-address=127.0.0.1:{puertos['alertmanager']}", "--cluster.listen-address="])
            binarios.lanzar("prometheus", [
                prometheus_bin, f"--config.file={configuracion_prom}", f"--storage.tsdb.path={directorio / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{puertos['prometheus']}",
                # Una alerta que dispara antes de descubrir a Alertmanager se reenvía al segundo.
                "--rules.alert.resend-delay=1s"])
            comun = {"GPR_KAFKA_BOOTSTRAP": bootstrap, "GPR_PARTICIONES": str(PARTICIONES),
                     "GPR_CATALOGO": str(CATALOGO)}
            procesos.lanzar("servicios.procesador", {
                **comun, "GPR_METAS": str(METAS), "GPR_ALMACEN": "memoria",
                "GPR_DIRECTORIO_DATOS": str(directorio / "procesador"),
                "GPR_METRICAS_PUERTO": str(puertos["procesador"])})
            consulta = procesos.lanzar("servicios.consulta", {
                **comun, "GPR_GRPC_HOST": "127.0.0.1", "GPR_GRPC_PUERTO": str(puertos["grpc"]),
                "GPR_METRICAS_HOST": "127.0.0.1", "GPR_METRICAS_PUERTO": str(puertos["metricas"]),
                "GPR_INTERVALO_RETRASO": "2s"})
            procesos.lanzar("servicios.ingesta", {
                **comun, "GPR_GRPC_HOST": "127.0.0.1", "GPR_GRPC_PUERTO": str(puertos["ingesta"]),
                "GPR_METRICAS_HOST": "127.0.0.1", "GPR_METRICAS_PUERTO": str(puertos["ingesta_metricas"]),
                "GPR_INGESTA_CREDENCIALES": str(RAIZ / "despliegue" / "ingesta" / "credenciales.ejemplo.yaml")})
            callado = procesos.lanzar("servicios.simulador", {
                **comun, "GPR_CATALOGO": str(catalogo_minsa), "GPR_SIMULADOR_SEMILLA": "2",
                # Tiempo real casi desde el principio y ~10 solicitudes por segundo: aun en la
                # hora más tranquila (domingo de madrugada) sale un evento cada pocos segundos.
                "GPR_SIMULADOR_HISTORIA": "10s", "GPR_SIMULADOR_CASOS_HORA": "36000",
                "GPR_SIMULADOR_TASA": "500", "GPR_SIMULADOR_LENTOS": "ninguno"}, nombre="simulador-minsa")
            procesos.lanzar("servicios.simulador", {
                **comun, "GPR_CATALOGO": str(catalogo_sunarp), "GPR_SIMULADOR_SEMILLA": str(SEMILLA),
                "GPR_SIMULADOR_CASOS_HORA": str(CASOS_POR_HORA), "GPR_SIMULADOR_TASA": str(TASA),
                # Historia de sobra: el escenario entero cabe en ~10 días simulados y no debe
                # alcanzar el tiempo real (ahí el reloj simulado ya no corre deprisa).
                "GPR_SIMULADOR_HISTORIA": "30d", "GPR_SIMULADOR_LENTOS": lenta,
                "GPR_SIMULADOR_CONTROL": str(control)}, nombre="simulador-sunarp")
            prometheus = f"http://127.0.0.1:{puertos['prometheus']}"
            alertmanager = f"http://127.0.0.1:{puertos['alertmanager']}"
            pila = Pila(prometheus, alertmanager, procesos, binarios, directorio, control, etapa_lenta, callado,
                        f"127.0.0.1:{puertos['ingesta']}", buzon, servidor_runbooks.url, consulta)
            esperar(lambda: listo(f"{alertmanager}/-/ready") and listo(f"{prometheus}/-/ready"), 30,
                    "Prometheus y Alertmanager listos", pila.diagnostico)
            yield pila
        finally:
            procesos.detener_todos()
            binarios.detener_todos()
            servidor_runbooks.detener()
            buzon.detener()


def _antiguedad(pila: Pila, agencia: str) -> float | None:
    """Segundos desde el último evento de la agencia, según lo que Prometheus raspó."""
    return escalar(pila.prometheus,
                   f'time() - max(gpr_eventos_ultimo_timestamp_seconds{{agencia="{agencia}"}})')


def _instante(rfc3339: str) -> float:
    """Segundos Unix de un instante de la API de Alertmanager (con nanosegundos y «Z»)."""
    sin_nanos = re.sub(r"(\.\d{6})\d*", r"\1", rfc3339).replace("Z", "+00:00")
    return datetime.fromisoformat(sin_nanos).timestamp()


def _activas(pila: Pila, **etiquetas: str) -> list[dict]:
    return [a for a in alertas_alertmanager(pila.alertmanager)
            if a["status"]["state"] == "active" and coinciden(a["labels"], **etiquetas)]


def _con_la_serie(pila: Pila, ruta: str, estado: str, serie: dict) -> list:
    """Webhooks recibidos en `ruta` con una alerta de la serie en `estado` (firing, resolved)."""
    return [w for w in pila.buzon.webhooks(ruta)
            if any(a["status"] == estado and coinciden(a["labels"], **serie) for a in w.cuerpo["alerts"])]


def _comprobar_notificacion(pila: Pila, meta: dict, serie: dict) -> str:
    """El webhook y el correo del equipo reciben la alerta con lo que una persona necesita para
    actuar; devuelve el enlace al runbook."""
    # `cuello_botella` es una etiqueta de la alerta: si la etapa cuello de botella cambia, la alerta
    # con la etapa anterior se resuelve y nace otra (en el mismo grupo). Se busca la de la etapa lenta.
    con_etapa = {**serie, "cuello_botella": pila.etapa_lenta}
    recibido = esperar(lambda: _con_la_serie(pila, "equipo", "firing", con_etapa), PLAZOS["notificacion"],
                       f"notificación de {con_etapa} en el webhook del equipo", pila.diagnostico)[0]
    cuerpo = recibido.cuerpo
    # El receptor de guardia del equipo de la meta (crítica) y agrupada como dice la ruta raíz de
    # alertmanager.yml (ninguna ruta hija cambia group_by).
    assert meta["severidad"] == "critica"
    assert cuerpo["receiver"] == f"{meta['equipo']}-guardia"
    agrupar = yaml.safe_load(ALERTMANAGER.read_text(encoding="utf-8"))["route"]["group_by"]
    assert cuerpo["groupLabels"] == {k: serie[k] for k in agrupar}, cuerpo["groupLabels"]
    assert all(coinciden(a["labels"], **cuerpo["groupLabels"]) for a in cuerpo["alerts"])
    alerta = next(a for a in cuerpo["alerts"] if a["status"] == "firing" and coinciden(a["labels"], **con_etapa))
    objetivo = f">= {meta['valor'] * 100:g}%"
    assert alerta["annotations"]["objetivo"] == objetivo
    valor = alerta["annotations"]["valor"]
    assert re.fullmatch(r"\d+(\.\d+)?%", valor) and float(valor[:-1]) / 100 < meta["valor"], valor
    # El runbook abre en su sección (la del indicador), servido en la base configurada.
    enlace = alerta["annotations"]["runbook_url"]
    assert enlace == f"{pila.runbooks}meta-incumplida.md#{INDICADOR}"
    with urllib.request.urlopen(enlace.partition("#")[0], timeout=10) as respuesta:
        assert respuesta.status == 200
        assert f'id="{INDICADOR}"' in respuesta.read().decode()

    def correo_de_alerta():
        return [c for c in pila.buzon.correos() if CORREO_EQUIPO in c.destinatarios and c.asunto.startswith("[ALERTA")
                and f"] {serie['alertname']} {AGENCIA}/{SERVICIO}: {INDICADOR} " in c.asunto
                and f"cuello de botella: {pila.etapa_lenta}" in c.asunto]

    correo = esperar(correo_de_alerta, PLAZOS["notificacion"], f"correo de la alerta a {CORREO_EQUIPO}",
                     pila.diagnostico)[0]
    asunto = correo.asunto
    for parte in (f"[ALERTA {meta['severidad']}]", f"{AGENCIA}/{SERVICIO}", INDICADOR, f"(meta {objetivo})",
                  f"cuello de botella: {pila.etapa_lenta}"):
        assert parte in asunto, (parte, asunto)
    texto = correo.texto()
    for linea in (f"Agencia:            {AGENCIA}", f"Servicio:           {SERVICIO}",
                  f"Indicador:          {INDICADOR}", f"Meta:               {objetivo}",
                  f"Cuello de botella:  {pila.etapa_lenta}", f"Qué hacer (runbook): {enlace}"):
        assert linea in texto, (linea, texto)
    assert f'href="{enlace}"' in correo.html()
    return enlace


def _comprobar_resolucion(pila: Pila, serie: dict, enlace: str) -> None:
    """La resolución llega por los dos canales, después de la alerta: una notificación del grupo
    con todas sus alertas resueltas (antes pudo haber otras con alguna resuelta y otra activa, si la
    etapa cuello de botella cambió)."""
    def resueltas():
        return [w for w in _con_la_serie(pila, "equipo", "resolved", serie) if w.cuerpo["status"] == "resolved"]

    resuelto = esperar(resueltas, PLAZOS["notificacion"], f"notificación de resolución de {serie} en el webhook",
                       pila.diagnostico)[-1]
    primero = _con_la_serie(pila, "equipo", "firing", serie)[0]
    assert resuelto.recibido > primero.recibido
    assert all(a["status"] == "resolved" for a in resuelto.cuerpo["alerts"])

    def correo_resuelto():
        return [c for c in pila.buzon.correos() if CORREO_EQUIPO in c.destinatarios
                and c.asunto.startswith("[RESUELTA") and f"] {serie['alertname']} {AGENCIA}/{SERVICIO}: {INDICADOR} " in c.asunto]

    correo = esperar(correo_resuelto, PLAZOS["notificacion"], "correo de resolución", pila.diagnostico)[0]
    assert f"RESUELTA: " in correo.texto() and enlace in correo.texto()


def test_meta_incumplida_y_agencia_sin_eventos_llegan_a_alertmanager(pila):
    inicio = time.monotonic()
    meta = next(m for m in _metas_de(AGENCIA) if (m["servicio"], m["indicador"]) == (SERVICIO, INDICADOR))
    assert meta["operador"] == ">=", "la prueba degrada el servicio bajando su cumplimiento"
    equipos_callada = sorted({m["equipo"] for m in _metas_de(AGENCIA_CALLADA)})
    assert equipos_callada, f"{AGENCIA_CALLADA} necesita alguna meta para saber a qué equipo avisar"
    # El procesador dice al arrancar cuántas metas cargó de cada agencia (contadas aquí con yaml).
    por_agencia = {a: len(_metas_de(a)) for a in ("minsa", "reniec", "sunarp")}
    resumen = (f"{sum(por_agencia.values())} metas cargadas de {METAS} ("
               + ", ".join(f"{a} {n}" for a, n in sorted(por_agencia.items()) if n) + ")")
    esperar(lambda: resumen in pila.procesos.registro("procesador"), 30, f"«{resumen}» en el registro del procesador",
            lambda: pila.registros("procesador"))

    # 1. MINSA publica en tiempo real: su marca de agua está al día y no hay alerta de silencio.
    def minsa_al_dia():
        antiguedad = _antiguedad(pila, AGENCIA_CALLADA)
        return (antiguedad is not None and antiguedad < SIN_EVENTOS_S / 2
                and not _activas(pila, alertname="AgenciaSinEventos", agencia=AGENCIA_CALLADA))

    esperar(minsa_al_dia, PLAZOS["pila"], f"eventos de {AGENCIA_CALLADA} al día en Prometheus y sin alerta",
            pila.diagnostico)
    # La regla se evalúa de verdad para MINSA (la serie existe) y no se cumple.
    assert not [a for a in alertas_prometheus(pila.prometheus)
                if coinciden(a["labels"], alertname="AgenciaSinEventos", agencia=AGENCIA_CALLADA)]
    pila.simulador_callado.send_signal(signal.SIGTERM)
    assert pila.simulador_callado.wait(30) == 0, pila.registros("simulador-minsa")
    detenido = time.time()

    # 2. SUNARP incumple su meta: la alerta llega a Alertmanager con la etapa lenta.
    serie = {"alertname": "MetaIncumplida", "agencia": AGENCIA, "servicio": SERVICIO, "indicador": INDICADOR}

    def con_la_etapa_lenta():
        return [a for a in _activas(pila, **serie) if a["labels"].get("cuello_botella") == pila.etapa_lenta]

    alerta = esperar(con_la_etapa_lenta, PLAZOS["alerta"],
                     f"MetaIncumplida de {AGENCIA}/{SERVICIO} con cuello_botella={pila.etapa_lenta} en Alertmanager",
                     pila.diagnostico)[0]
    assert alerta["labels"] == {
        **serie, "ventana": meta["ventana"], "severidad": meta["severidad"], "equipo": meta["equipo"],
        "meta": f"{AGENCIA}/{SERVICIO}/{INDICADOR}/{meta['ventana']}", "cuello_botella": pila.etapa_lenta,
    }
    descripcion = alerta["annotations"]["description"]
    assert f"Etapa cuello de botella: {pila.etapa_lenta}" in descripcion, descripcion
    assert f">= {meta['valor'] * 100:g}%" in descripcion, descripcion
    assert alerta["annotations"]["runbook_url"].startswith(f"{pila.runbooks}meta-incumplida.md")
    valor = escalar(pila.prometheus, f'gpr_indicador_valor{{agencia="{AGENCIA}",servicio="{SERVICIO}",'
                                     f'indicador="{INDICADOR}",ventana="{meta["ventana"]}"}}')
    assert valor is not None and valor < meta["valor"], valor
    disparo = time.monotonic()

    # El servicio se recupera desde este instante simulado.
    pila.control.write_text("ninguno\n", encoding="utf-8")

    # 2b. La alerta llega como notificación al webhook y al correo del equipo de la meta.
    enlace = _comprobar_notificacion(pila, meta, serie)

    # 3. MINSA dejó de publicar: su alerta de silencio se dispara, con el equipo de sus metas.
    def sin_eventos():
        return _activas(pila, alertname="AgenciaSinEventos", agencia=AGENCIA_CALLADA)

    avisos = esperar(sin_eventos, PLAZOS["sin_eventos"], f"AgenciaSinEventos de {AGENCIA_CALLADA} en Alertmanager",
                     pila.diagnostico)
    assert sorted(a["labels"]["equipo"] for a in avisos) == equipos_callada
    for aviso in avisos:
        assert aviso["labels"] == {"alertname": "AgenciaSinEventos", "agencia": AGENCIA_CALLADA,
                                   "severidad": "advertencia", "equipo": aviso["labels"]["equipo"]}
    # No se adelantó: empezó (pendiente) después de SIN_EVENTOS_S sin eventos, y el último
    # evento de la agencia es de antes de detener su simulador.
    ultimo = escalar(pila.prometheus, f'max(gpr_eventos_ultimo_timestamp_seconds{{agencia="{AGENCIA_CALLADA}"}})')
    assert ultimo is not None and ultimo <= detenido
    for aviso in avisos:
        assert _instante(aviso["startsAt"]) >= ultimo + SIN_EVENTOS_S, (aviso["startsAt"], ultimo)

    # 4. SUNARP recuperada: la alerta se resuelve (ni activa en Alertmanager ni disparada en
    # Prometheus), y es porque el valor volvió a cumplir, no porque la serie desapareció.
    def resuelta():
        if _activas(pila, **serie):
            return False
        if any(coinciden(a["labels"], **serie) and a["state"] == "firing" for a in alertas_prometheus(pila.prometheus)):
            return False
        valor = escalar(pila.prometheus, f'gpr_indicador_valor{{agencia="{AGENCIA}",servicio="{SERVICIO}",'
                                         f'indicador="{INDICADOR}",ventana="{meta["ventana"]}"}}')
        return valor is not None and valor >= meta["valor"]

    esperar(resuelta, PLAZOS["resolucion"], f"MetaIncumplida de {AGENCIA}/{SERVICIO} resuelta tras la recuperación",
            pila.diagnostico)
    _comprobar_resolucion(pila, serie, enlace)
    print(f"\nalerta a los {disparo - inicio:.0f} s, resuelta {time.monotonic() - disparo:.0f} s después")


# Paneles que pueden quedar vacíos en esta pila, con el motivo: en ella no se dispara ninguna
# alerta del equipo plataforma (ni retraso ni rechazos sobre el 1 %).
VACIOS_ADMITIDOS = {("gpr-plataforma.json", "Alertas de la plataforma")}


def _publicar_rechazado_por_ingesta(pila: Pila) -> None:
    """Un evento de un servicio que no existe, por la Ingesta gRPC con el token de demostración
    de SUNARP: la ingesta lo rechaza (y cuenta), lo deja en el tópico de rechazados (la consulta
    lo cuenta como carta muerta) y el servidor gRPC cuenta la petición. Así los paneles de
    ingesta, gRPC y cartas muertas tienen datos sin tocar los indicadores."""
    evento = pb.Evento(evento_id=str(uuid.uuid4()), fuente="prueba-tableros", tipo=pb.TIPO_EVENTO_SOLICITUD_RECIBIDA,
                       agencia_id=AGENCIA, servicio_id="no-existe", caso_id=str(uuid.uuid4()))
    evento.ocurrido_en.seconds = int(time.time()) - 60
    with grpc.insecure_channel(pila.ingesta) as canal:
        grpc.channel_ready_future(canal).result(timeout=30)
        respuesta = ingesta_pb2_grpc.IngestaStub(canal).Publicar(
            ingesta_pb2.SolicitudPublicar(eventos=[evento]), timeout=30,
            metadata=[("authorization", f"Bearer gpr_demo_{AGENCIA}_SOLO_DESARROLLO_LOCAL")])
    assert (respuesta.aceptados, respuesta.rechazados) == (0, 1), respuesta


def test_cada_consulta_de_los_tableros_funciona_en_prometheus(pila):
    """Cada PromQL de cada panel de despliegue/grafana/tableros/ corre sin error en el Prometheus
    de la prueba, con las variables de plantilla en valores reales; y devuelve datos (un nombre
    de métrica mal escrito no es un error de PromQL: solo se ve como un panel vacío)."""
    _publicar_rechazado_por_ingesta(pila)
    valores = {"agencia": AGENCIA, "servicio": SERVICIO, "ventana": "24h"}
    todas = [c for archivo in tableros.archivos() for c in tableros.consultas(archivo)]
    assert len(todas) >= 30, "¿faltan tableros?"
    errores, vacias = [], []

    def revisar():
        errores.clear()
        vacias.clear()
        for c in todas:
            expr = tableros.sustituir(c.expr, valores)
            try:
                resultado = consultar(pila.prometheus, expr)
            except ErrorPromQL as error:
                errores.append(f"{c.tablero} «{c.panel}» {c.ref}: {error}")
                continue
            if not resultado and (c.tablero, c.panel) not in VACIOS_ADMITIDOS:
                vacias.append(f"{c.tablero} «{c.panel}» {c.ref}: {expr}")
        # Un error de PromQL no se arregla esperando; un panel vacío puede ser un dato que aún
        # no se raspó (el rechazo recién publicado, o si esta prueba corre sola).
        return bool(errores) or not vacias

    esperar(revisar, 90, "todas las consultas de los tableros con datos", lambda: "\n".join(vacias), intervalo_s=2)
    assert not errores, "consultas de los tableros que Prometheus rechaza:\n" + "\n".join(errores)

    # Las variables de plantilla (`label_values(selector, etiqueta)`) ofrecen los valores reales:
    # Grafana las resuelve con la API de etiquetas de Prometheus, como aquí.
    for archivo in tableros.archivos():
        for variable in tableros.cargar(archivo).get("templating", {}).get("list", []):
            if variable["type"] != "query":
                continue
            consulta = tableros.sustituir(variable["query"]["query"], valores)
            partes = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", consulta)
            assert partes, f"{archivo.name}: variable {variable['name']}: {consulta}"
            selector, etiqueta = partes.groups()
            ofrecidos = obtener_json(f"{pila.prometheus}/api/v1/label/{etiqueta}/values?"
                                     + urllib.parse.urlencode({"match[]": selector}))["data"]
            assert valores[variable["name"]] in ofrecidos, (archivo.name, variable["name"], ofrecidos)


def test_el_latido_llega_a_su_receptor(pila):
    """Watchdog está siempre activa y Alertmanager la envía al receptor de latidos (y solo a él)."""
    latidos = esperar(lambda: pila.buzon.webhooks("latido"), PLAZOS["notificacion"], "Watchdog en el receptor de latidos",
                      pila.diagnostico)
    assert latidos[0].cuerpo["receiver"] == "latido"
    assert [a["labels"]["alertname"] for a in latidos[0].cuerpo["alerts"]] == ["Watchdog"]
    for ruta in ("equipo", "plataforma"):
        assert not [w for w in pila.buzon.webhooks(ruta)
                    if any(a["labels"]["alertname"] == "Watchdog" for a in w.cuerpo["alerts"])]


def test_matar_la_consulta_dispara_su_alerta_de_vigilancia(pila):
    """Sin la consulta no se evalúa ninguna meta: ServicioCaido de su trabajo llega a plataforma.
    Va al final: las demás pruebas del módulo necesitan la consulta."""
    muerte = time.time()
    pila.consulta.send_signal(signal.SIGKILL)
    pila.consulta.wait(10)

    def caida():
        return [a for w in pila.buzon.webhooks("plataforma") for a in w.cuerpo["alerts"]
                if a["status"] == "firing" and coinciden(a["labels"], alertname="ServicioCaido", job="gpr-consulta")
                and _instante(a["startsAt"]) >= muerte]

    alerta = esperar(caida, PLAZOS["caida"], "ServicioCaido de gpr-consulta en el webhook de plataforma",
                     pila.diagnostico)[0]
    assert alerta["labels"] == {"alertname": "ServicioCaido", "job": "gpr-consulta", "severidad": "critica",
                                "equipo": "plataforma"}
    assert alerta["annotations"]["runbook_url"] == f"{pila.runbooks}vigilancia.md#serviciocaido"
