"""El procesador real (faust, broker embebido) contra la implementación de referencia, con un
escenario desordenado de más de 20.000 eventos con duplicados, tardíos y malformados; también
matando el trabajador con SIGKILL y con dos trabajadores."""

from __future__ import annotations

import random
import signal
import subprocess
import time

import pytest

from apoyo import escenario
from apoyo.kafka import leer_todo, publicar, publicar_eventos
from apoyo.procesador import PARTICIONES, esperar_igual_a_referencia, lanzar_procesador
from conftest import CATALOGO
from gpr.v1 import eventos_pb2 as pb
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.topicos import CABECERA_MOTIVO, RECHAZADOS, crear_topicos

pytestmark = pytest.mark.integracion

D = 86400


def armar_escenario(semilla: int, casos_por_servicio: int = 442):
    """Eventos aceptables + su orden de llegada + los registros malos que deben rechazarse."""
    catalogo = cargar_catalogo(CATALOGO)
    azar = random.Random(semilla)
    inicio = (int(time.time()) // 3600) * 3600 - 45 * D
    eventos = escenario.generar(catalogo, azar, casos_por_servicio, inicio, 44 * D)
    # Desorden acotado (hasta 2 días, dentro de la tardanza de 7) y duplicados cerca del original.
    llegada = sorted(eventos, key=lambda e: e.ocurrido_en.seconds + azar.randint(0, 2 * D))
    for _ in range(len(eventos) // 20):
        i = azar.randrange(len(llegada))
        llegada.insert(min(len(llegada), i + azar.randint(1, 50)), llegada[i])
    malos = []
    for i in range(30):
        base = random.Random(i).choice(eventos)
        e = pb.Evento()
        e.CopyFrom(base)
        e.evento_id = f"malo-{i}"
        motivo = ["agencia_desconocida", "campo_requerido:ocurrido_en", "tipo_incoherente", "protobuf_invalido"][i % 4]
        if motivo == "agencia_desconocida":
            e.agencia_id = "no-existe"
        elif motivo == "campo_requerido:ocurrido_en":
            e.ClearField("ocurrido_en")
        elif motivo == "tipo_incoherente":
            e.tipo = pb.TIPO_EVENTO_ENCUESTA_RESPONDIDA
            e.ClearField("satisfaccion")
        valor = b"\x00\xffbasura" + bytes([i]) if motivo == "protobuf_invalido" else e.SerializeToString()
        malos.append((motivo, (e.caso_id or "x").encode(), valor))
    return catalogo, eventos, llegada, malos


def tardios(eventos, azar):
    """Eventos nuevos 20 días anteriores al final: se publican al final y deben rechazarse."""
    fin = max(e.ocurrido_en.seconds for e in eventos)
    resultado = []
    for i in range(10):
        e = pb.Evento()
        e.CopyFrom(azar.choice(eventos))
        e.evento_id = f"tardio-{i}"
        e.caso_id = f"caso-tardio-{i}" if e.caso_id else ""
        e.ocurrido_en.seconds = fin - 20 * D
        resultado.append(e)
    return resultado


def comprobar_rechazados(bootstrap, malos, tardios_publicados):
    esperados = len(malos) + len(tardios_publicados)
    registros = leer_todo(bootstrap, RECHAZADOS, lambda r: len(r) >= esperados, 60)
    motivos = sorted(dict(r.headers)[CABECERA_MOTIVO].decode() for r in registros)
    assert motivos == sorted([m for m, _, _ in malos] + ["tardio"] * len(tardios_publicados))
    originales = {v for _, _, v in malos} | {e.SerializeToString() for e in tardios_publicados}
    assert {r.value for r in registros} == originales


def test_escenario_de_20000_eventos_igual_a_la_referencia(bootstrap, procesos, tmp_path):
    catalogo, eventos, llegada, malos = armar_escenario(semilla=1)
    assert len(llegada) >= 20000
    crear_topicos(bootstrap, PARTICIONES)
    lanzar_procesador(procesos, bootstrap, tmp_path)
    publicar_eventos(bootstrap, llegada)
    publicar(bootstrap, [(k, v) for _, k, v in malos])
    esperar_igual_a_referencia(bootstrap, catalogo, eventos, procesos)
    atrasados = tardios(eventos, random.Random(5))
    publicar_eventos(bootstrap, atrasados)
    comprobar_rechazados(bootstrap, malos, atrasados)
    esperar_igual_a_referencia(bootstrap, catalogo, eventos, procesos, limite_s=30)
    assert "Traceback" not in procesos.registro("procesador")


def test_un_lote_que_falla_a_medias_se_procesa_de_nuevo_sin_perder_sus_agregados(bootstrap, procesos, tmp_path):
    """El tercer lote de la etapa por caso falla con sus estados ya en el changelog y sus
    agregados sin enviar (como un envío a Kafka que falla). faust reinicia el agente dentro del
    mismo proceso y relee desde el offset confirmado: esos registros deben procesarse otra vez
    (sus eventos, ya vistos, reenvían su aporte), no confirmarse como ya procesados."""
    catalogo, eventos, llegada, _malos = armar_escenario(semilla=3, casos_por_servicio=150)
    crear_topicos(bootstrap, PARTICIONES)
    # Lotes chicos: el reparto empaqueta los eventos, y con lotes de 200 registros la etapa
    # por caso podía ver todo el escenario en menos de tres lotes.
    procesador = lanzar_procesador(procesos, bootstrap, tmp_path, GPR_PRUEBA_FALLAR_LOTE="3", GPR_LOTE_MAXIMO="20")
    publicar_eventos(bootstrap, llegada)
    esperar_igual_a_referencia(bootstrap, catalogo, eventos, procesos)
    assert "GPR_PRUEBA_FALLAR_LOTE: falla el lote 3" in procesos.registro("procesador")
    # Y se detiene con SIGTERM: faust esperaba en `wait_empty` los mensajes del lote fallido,
    # que no se confirmarán nunca, y la parada (como un reequilibrio) se colgaba hasta el SIGKILL.
    procesador.send_signal(signal.SIGTERM)
    try:
        procesador.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail("tras un lote fallido el procesador no se detuvo con SIGTERM en 30 s:\n"
                    + procesos.registro("procesador")[-3000:])
    assert procesador.returncode == 0, procesos.registro("procesador")[-3000:]
    assert "wait_empty: Waiting" not in procesos.registro("procesador")


def test_tras_un_lote_fallido_un_reequilibrio_no_se_queda_esperando(bootstrap, procesos, tmp_path):
    """Tras un lote fallido, un segundo trabajador entra al grupo: al revocar particiones faust
    espera (`wait_empty`) los mensajes entregados sin confirmar, y los del lote fallido no se
    confirmarían nunca. Sin `olvidar_entregados` el primero se quedaba ahí (faust lo avisa
    cada ~10 s con «wait_empty: Waiting») y el grupo seguía sin él."""
    catalogo, eventos, llegada, _ = armar_escenario(semilla=5, casos_por_servicio=120)
    crear_topicos(bootstrap, PARTICIONES)
    mitad = len(llegada) // 2
    primero = lanzar_procesador(procesos, bootstrap, tmp_path, GPR_PRUEBA_FALLAR_LOTE="3", GPR_LOTE_MAXIMO="20")
    publicar_eventos(bootstrap, llegada[:mitad])
    fin = time.monotonic() + 120
    while "sin confirmar se releerán" not in procesos.registro("procesador"):
        assert time.monotonic() < fin and primero.poll() is None, procesos.registro("procesador")[-3000:]
        time.sleep(0.2)
    lanzar_procesador(procesos, bootstrap, tmp_path, nombre="procesador-2")
    publicar_eventos(bootstrap, llegada[mitad:])
    esperar_igual_a_referencia(bootstrap, catalogo, eventos, procesos)
    # faust repite el aviso cada 10 vueltas de su espera de ~1 s: se le da tiempo a aparecer.
    time.sleep(12)
    assert "wait_empty: Waiting" not in procesos.registro("procesador"), procesos.registro("procesador")[-3000:]
    assert primero.poll() is None


@pytest.mark.parametrize("almacen", ["rocksdb", "memoria"])
def test_sigkill_en_tres_puntos_al_azar_no_pierde_ni_duplica(bootstrap, procesos, tmp_path, almacen):
    catalogo, eventos, llegada, _ = armar_escenario(semilla=2, casos_por_servicio=200)
    crear_topicos(bootstrap, PARTICIONES)
    azar = random.Random(3)
    trozos = sorted(azar.sample(range(1, len(llegada)), 3))
    proceso = lanzar_procesador(procesos, bootstrap, tmp_path, almacen=almacen)
    anterior = 0
    for corte in trozos + [len(llegada)]:
        publicar_eventos(bootstrap, llegada[anterior:corte])
        anterior = corte
        if corte == len(llegada):
            break
        time.sleep(azar.uniform(3, 8))  # a mitad de proceso, con envíos y changelogs en vuelo
        proceso.send_signal(signal.SIGKILL)
        proceso.wait()
        proceso = lanzar_procesador(procesos, bootstrap, tmp_path, almacen=almacen)
    esperar_igual_a_referencia(bootstrap, catalogo, eventos, procesos)


def test_dos_trabajadores_reparten_particiones_y_dan_lo_mismo(bootstrap, procesos, tmp_path):
    catalogo, eventos, llegada, _ = armar_escenario(semilla=4, casos_por_servicio=150)
    crear_topicos(bootstrap, PARTICIONES)
    lanzar_procesador(procesos, bootstrap, tmp_path, nombre="procesador")
    lanzar_procesador(procesos, bootstrap, tmp_path, nombre="procesador-2")
    publicar_eventos(bootstrap, llegada)
    esperar_igual_a_referencia(bootstrap, catalogo, eventos, procesos)


def test_reinicio_ordenado_en_memoria_recupera_las_tablas_completas(bootstrap, procesos, tmp_path):
    """Parada ordenada (todo confirmado) y arranque con el almacén en memoria: las tablas se
    recuperan solo del changelog. Con el fin de log que informa Tansu (inicio del último
    lote) faust paraba la recuperación antes del último lote y los casos tocados allí
    seguían con un estado viejo; los eventos siguientes de esos casos daban indicadores
    erróneos. Con carga, faust además descartaba un registro por partición al reanudar tras la
    recuperación (la guardia de orden lo relee). La segunda mitad de los eventos continúa los
    casos de la primera."""
    catalogo, eventos, _, _ = armar_escenario(semilla=6, casos_por_servicio=120)
    crear_topicos(bootstrap, PARTICIONES)
    mitad = sorted(e.ocurrido_en.seconds for e in eventos)[len(eventos) // 2]
    primera = [e for e in eventos if e.ocurrido_en.seconds < mitad]
    segunda = [e for e in eventos if e.ocurrido_en.seconds >= mitad]
    proceso = lanzar_procesador(procesos, bootstrap, tmp_path, almacen="memoria")
    publicar_eventos(bootstrap, primera)
    esperar_igual_a_referencia(bootstrap, catalogo, primera, procesos)
    proceso.send_signal(signal.SIGTERM)
    assert proceso.wait(30) == 0
    lanzar_procesador(procesos, bootstrap, tmp_path, almacen="memoria")
    publicar_eventos(bootstrap, segunda)
    esperar_igual_a_referencia(bootstrap, catalogo, eventos, procesos)


def test_un_registro_de_miles_de_repetidos_pasa_y_no_cuenta_dos_veces(bootstrap, procesos, tmp_path):
    """Un emisor reenvía entero un `LoteEventos` de 10 000 eventos ya procesados. El agregado de
    su par lleva el aporte individual de cada repetido (más de 1 MiB, el registro máximo de
    Kafka por omisión): el procesador lo escribe (sus tópicos internos admiten hasta 16 MiB; con
    1 MiB caía en ese lote una y otra vez) y los indicadores no cuentan nada dos veces."""
    from kafka import KafkaProducer

    from gpr.v1 import interno_pb2 as interno
    from servicios.comun.topicos import APORTES, CABECERA_LOTE, EVENTOS

    catalogo = cargar_catalogo(CATALOGO)
    servicio = next(s for s in catalogo.servicios.values() if s.agencia_id == "reniec")
    t = (int(time.time()) // 3600) * 3600 - D
    eventos = []
    for i in range(10_000):
        e = pb.Evento(evento_id=f"s{i}", fuente="carga", tipo=pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, agencia_id="reniec",
                      servicio_id=servicio.id, caso_id=f"c{i}")
        e.ocurrido_en.seconds = t + i % 3600
        eventos.append(e)
    valor = pb.LoteEventos(eventos=eventos).SerializeToString()
    crear_topicos(bootstrap, PARTICIONES)
    lanzar_procesador(procesos, bootstrap, tmp_path)
    productor = KafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=2 * 1024 * 1024)
    productor.send(EVENTOS, valor, key=b"carga", headers=[(CABECERA_LOTE, b"1")], partition=0).get(30)
    esperar_igual_a_referencia(bootstrap, catalogo, eventos, procesos, limite_s=120)
    productor.send(EVENTOS, valor, key=b"carga", headers=[(CABECERA_LOTE, b"1")], partition=0).get(30)
    productor.close()

    def reenvios(registros) -> int:
        return max((len(interno.LoteAportes.FromString(r.value).reenvios) for r in registros), default=0)

    agregados = leer_todo(bootstrap, APORTES, lambda rs: reenvios(rs) == len(eventos), 120)
    grande = max(agregados, key=lambda r: len(r.value))
    assert reenvios(agregados) == len(eventos) and len(grande.value) > 1024 * 1024, procesos.registro("procesador")
    esperar_igual_a_referencia(bootstrap, catalogo, eventos, procesos, limite_s=30)
    assert "Traceback" not in procesos.registro("procesador")
