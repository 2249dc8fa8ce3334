"""El procesador real (faust, broker embebido) ante entradas descuidadas y hostiles.

Una batería de registros malos, cada uno de una clase distinta, escritos directo en Kafka como
lo haría cualquier cliente: cada uno termina en gpr.eventos.rechazados.v1 con su motivo (o
cuenta, si es un evento bueno con algo raro alrededor), el procesador no se detiene nunca y
los indicadores de cada agencia son los que da la referencia con solo los eventos buenos.
Dos agencias numeran sus casos y sus eventos igual.
"""

from __future__ import annotations

import random
from collections import Counter
import struct
import time
import urllib.request

import pytest
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from apoyo import escenario
from apoyo.kafka import leer_todo, publicar, publicar_eventos
from apoyo.procesador import PARTICIONES, esperar_igual_a_referencia, lanzar_procesador
from conftest import CATALOGO
from gpr.v1 import eventos_pb2 as pb
from servicios.comun.broker import BrokerEmbebido, puerto_libre
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.eventos import clave_kafka
from servicios.comun.topicos import (
    CABECERA_AGENCIA,
    CABECERA_DETALLE,
    CABECERA_LOTE,
    CABECERA_MOTIVO,
    EVENTOS,
    RECHAZADOS,
    crear_topicos,
)

pytestmark = pytest.mark.integracion
D = 86400


class ClaveCruda(str):
    """Una clave de cabecera cuyos bytes en el cable no son UTF-8 (ver test_aiokafka_tolerante)."""

    def encode(self, *argumentos, **opciones):
        return b"\xff\xfe"


def _evento(evento_id, t, tipo=pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, agencia="reniec", servicio="dni-duplicado", caso="EXP-900001",
            **campos):
    e = pb.Evento(evento_id=evento_id, fuente="abuso", tipo=tipo, agencia_id=agencia, servicio_id=servicio,
                  caso_id=caso, **campos)
    e.ocurrido_en.seconds = t
    return e


def _malos(t: int, inicio: int):
    """[(motivo esperado, valor del registro, cabeceras)]: una clase de entrada mala por fila."""
    e = _evento

    def con(evento, **cambios):
        copia = pb.Evento()
        copia.CopyFrom(evento)
        for campo, valor in cambios.items():
            if valor is None:
                copia.ClearField(campo)
            elif hasattr(valor, "CopyFrom"):
                getattr(copia, campo).CopyFrom(valor)
            else:
                setattr(copia, campo, valor)
        return copia

    base = e("base", t, caso="EXP-990000")
    costo = e("costo", t, pb.TIPO_EVENTO_COSTO_REGISTRADO, caso="", costo=pb.Costo(unidades=5, moneda="PEN"))
    encuesta = e("encuesta", t, pb.TIPO_EVENTO_ENCUESTA_RESPONDIDA, caso="", satisfaccion=pb.Satisfaccion(puntaje=3, escala_max=5))
    reclamo = e("reclamo", t, pb.TIPO_EVENTO_RECLAMO_REGISTRADO, caso="", reclamo=pb.Reclamo(reclamo_id="R-1"))
    monto_viejo = pb.Evento.FromString(con(costo, evento_id="m-viejo", costo=None).SerializeToString()
                                       + b"\x92\x01\x0e\x09" + struct.pack("<d", 12.5) + b"\x12\x03PEN")
    evento_enorme = con(base, evento_id="enorme")
    evento_enorme.reclamo.categoria = "x" * 20_000
    filas = [
        ("protobuf_invalido", b"\x00\xffbasura", []),
        ("protobuf_invalido", b"", []),
        ("protobuf_invalido", b"\xff\xff\xff\xff", [(CABECERA_LOTE, b"1")]),
        ("lote_vacio", b"\x10\x01", [(CABECERA_LOTE, b"1")]),
        ("campo_requerido:evento_id", con(base, evento_id=""), []),
        ("campo_requerido:tipo", con(base, evento_id="m1", tipo=pb.TIPO_EVENTO_NO_ESPECIFICADO), []),
        ("tipo_incoherente", con(base, evento_id="m2", tipo=99), []),
        ("campo_requerido:ocurrido_en", con(base, evento_id="m3", ocurrido_en=None), []),
        ("campo_requerido:agencia_id", con(base, evento_id="m4", agencia_id=""), []),
        ("campo_requerido:servicio_id", con(base, evento_id="m5", servicio_id=""), []),
        ("campo_requerido:caso_id", con(base, evento_id="m6", caso_id=""), []),
        ("campo_requerido:etapa_id", con(base, evento_id="m7", tipo=pb.TIPO_EVENTO_ETAPA_INICIADA), []),
        ("agencia_desconocida", con(base, evento_id="m8", agencia_id="onpe"), []),
        ("servicio_desconocido", con(base, evento_id="m9", servicio_id="pasaporte"), []),
        # La etapa con `#` tumbaba al procesador en un bucle de caídas.
        ("etapa_desconocida", con(base, evento_id="m10", tipo=pb.TIPO_EVENTO_ETAPA_INICIADA, etapa_id="impresion#1"), []),
        ("etapa_desconocida", con(base, evento_id="m11", tipo=pb.TIPO_EVENTO_ETAPA_INICIADA, etapa_id="calificacion"), []),
        ("tiempo_futuro", con(base, evento_id="m12", ocurrido_en=None), []),
        ("valor_fuera_de_rango:ocurrido_en", con(base, evento_id="m13"), []),
        ("tardio", con(base, evento_id="m14"), []),
        ("identificador_invalido:evento_id", con(base, evento_id="m#15"), []),
        ("campo_demasiado_largo:evento_id", con(base, evento_id="x" * 500_000), []),
        ("identificador_invalido:caso_id", con(base, evento_id="m16", caso_id="EXP 1"), []),
        ("identificador_invalido:caso_id", con(base, evento_id="m17", caso_id="EXP\x1f1"), []),
        ("identificador_invalido:fuente", con(base, evento_id="m18", fuente="a|b"), []),
        ("identificador_invalido:reclamo.reclamo_id", con(reclamo, evento_id="m19", reclamo=pb.Reclamo(reclamo_id="R 1")), []),
        ("tipo_incoherente", con(encuesta, evento_id="m20", satisfaccion=None), []),
        ("tipo_incoherente", con(encuesta, evento_id="m21", satisfaccion=pb.Satisfaccion(puntaje=6, escala_max=5)), []),
        ("valor_fuera_de_rango:satisfaccion",
         con(encuesta, evento_id="m22", satisfaccion=pb.Satisfaccion(puntaje=1, escala_max=1000)), []),
        ("tipo_incoherente", con(reclamo, evento_id="m23", reclamo=None), []),
        ("monto_invalido", con(costo, evento_id="m24", costo=pb.Costo(unidades=-3, moneda="PEN")), []),
        ("monto_invalido", con(costo, evento_id="m25", costo=pb.Costo(nanos=1_000_000_000, moneda="PEN")), []),
        ("monto_invalido", con(costo, evento_id="m26", costo=pb.Costo(nanos=123_456_789, moneda="PEN")), []),
        ("monto_invalido", con(costo, evento_id="m27", costo=pb.Costo(unidades=2**62, moneda="PEN")), []),
        ("monto_invalido", monto_viejo, []),
        ("moneda_incoherente", con(costo, evento_id="m28", costo=pb.Costo(unidades=1, moneda="USD")), []),
        ("tipo_incoherente", con(base, evento_id="m29", plazo_dias=0), []),
        ("valor_fuera_de_rango:plazo_dias", con(base, evento_id="m30", plazo_dias=2**31 - 1), []),
        ("valor_fuera_de_rango:intento",
         con(base, evento_id="m31", tipo=pb.TIPO_EVENTO_ETAPA_INICIADA, etapa_id="impresion", intento=2**31 - 1), []),
        ("campo_demasiado_largo:region", con(base, evento_id="m32", region="r" * 300), []),
        ("campo_demasiado_largo:atributos", con(base, evento_id="m33"), []),
        ("evento_demasiado_grande", evento_enorme, []),
        ("error_interno:RuntimeError", con(base, evento_id="veneno-1"), []),
    ]
    # Los que no se arman con un cambio de campo.
    por_id = {}
    for motivo, valor, cabeceras in filas:
        if isinstance(valor, pb.Evento):
            por_id[valor.evento_id] = valor
    por_id["m12"].ocurrido_en.seconds = int(time.time()) + 3600
    por_id["m13"].ocurrido_en.seconds = 86400 * 365
    por_id["m14"].ocurrido_en.seconds = inicio - 8 * D
    por_id["m33"].atributos.update({f"k{i}": "v" for i in range(40)})
    return [(m, v.SerializeToString() if isinstance(v, pb.Evento) else v, c) for m, v, c in filas]


def _contadores(puerto: int) -> dict[str, float]:
    texto = urllib.request.urlopen(f"http://127.0.0.1:{puerto}/metrics", timeout=5).read().decode()
    contadores: dict[str, float] = {}
    for familia in text_string_to_metric_families(texto):
        for muestra in familia.samples:
            if muestra.name.endswith("_total"):
                clave = muestra.name + "".join(f"|{k}={v}" for k, v in sorted(muestra.labels.items()))
                contadores[clave] = muestra.value
    return contadores


def test_cada_entrada_mala_se_rechaza_con_su_motivo_y_el_procesador_sigue(bootstrap, procesos, tmp_path):
    catalogo = cargar_catalogo(CATALOGO)
    azar = random.Random(11)
    ahora = (int(time.time()) // 3600) * 3600
    inicio = ahora - 20 * D
    # Cada agencia numera igual sus casos (EXP-000001…) y sus eventos.
    buenos = escenario.generar(catalogo, azar, casos_por_servicio=25, inicio=inicio, duracion=18 * D,
                               numeracion_compartida=True)
    assert max(Counter(e.caso_id for e in buenos if e.caso_id).values()) < 30
    t = ahora - 2 * D
    # Un caso con más eventos que GPR_EVENTOS_MAXIMOS_POR_CASO (30, más que cualquier caso del
    # escenario): el 31.º se rechaza.
    saturado = [_evento(f"sat-{i}", t + i, pb.TIPO_EVENTO_RECLAMO_REGISTRADO, caso="EXP-SAT", reclamo=pb.Reclamo(reclamo_id=f"R{i}"))
                for i in range(31)]
    otro_servicio = [_evento("os-1", t, caso="EXP-OS"),
                     _evento("os-2", t + 60, pb.TIPO_EVENTO_SERVICIO_ENTREGADO, servicio="dni-primera-vez", caso="EXP-OS")]
    cabecera_rara = _evento("cab-1", t, caso="EXP-CAB")
    en_lote = [_evento("lote-bueno", t, caso="EXP-LOTE"), _evento("lote-malo", t, agencia="onpe", caso="EXP-LOTE")]
    # La (fuente, evento_id) de un evento ya contado, en otros dos casos de la misma agencia: las
    # dos copias se rechazan. Las demás agencias usan los mismos evento_id en `buenos` y cuentan.
    # La más reciente: una identidad se recuerda mientras su evento está dentro de la tolerancia.
    original = max((e for e in buenos if e.agencia_id == "reniec" and e.caso_id), key=lambda e: e.ocurrido_en.seconds)
    copias_identidad = [_evento(original.evento_id, t + i, servicio=original.servicio_id, caso=f"EXP-ID{i}")
                        for i in (1, 2)]
    for copia in copias_identidad:
        copia.fuente = original.fuente
    puerto = puerto_libre()
    crear_topicos(bootstrap, PARTICIONES)
    proceso = lanzar_procesador(procesos, bootstrap, tmp_path, GPR_METRICAS_PUERTO=str(puerto),
                                GPR_EVENTOS_MAXIMOS_POR_CASO="30", GPR_PRUEBA_EVENTO_VENENO="veneno-1")
    # Desorden acotado (hasta 2 días, dentro de la tardanza de 7).
    publicar_eventos(bootstrap, sorted(buenos, key=lambda e: e.ocurrido_en.seconds + azar.randint(0, 2 * D)))
    esperar_igual_a_referencia(bootstrap, catalogo, buenos, procesos)
    assert sum(e.evento_id == original.evento_id for e in buenos) > 1

    malos = _malos(t, inicio)
    publicar(bootstrap, [(b"reniec/malo", valor, cabeceras) for _, valor, cabeceras in malos])
    publicar_eventos(bootstrap, saturado + otro_servicio + copias_identidad)
    productor = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    productor.send(EVENTOS, cabecera_rara.SerializeToString(), key=clave_kafka(cabecera_rara),
                   headers=[(ClaveCruda("x"), b"v")]).get(30)
    productor.send(EVENTOS, pb.LoteEventos(eventos=en_lote).SerializeToString(), key=clave_kafka(en_lote[0]),
                   headers=[(CABECERA_LOTE, b"1")]).get(30)
    productor.close()
    publicar_eventos(bootstrap, buenos[:30])  # repetidos: no cuentan ni se rechazan

    esperados = [m for m, _, _ in malos] + ["caso_saturado", "caso_de_otro_servicio", "agencia_desconocida",
                                           "identidad_repetida", "identidad_repetida"]
    rechazados = leer_todo(bootstrap, RECHAZADOS, lambda r: len(r) >= len(esperados), 120)
    time.sleep(2)  # por si llegara alguno de más
    rechazados = leer_todo(bootstrap, RECHAZADOS, lambda r: len(r) >= len(esperados) + 1, 3)
    motivos = sorted(dict(r.headers)[CABECERA_MOTIVO].decode() for r in rechazados)
    assert motivos == sorted(esperados), procesos.registro("procesador")[-3000:]
    assert len(set(esperados)) >= 30
    # Con los bytes originales (el evento suelto del LoteEventos mixto, el suyo), un detalle
    # acotado aunque el evento_id mida medio megabyte, y la agencia si es del catálogo.
    assert {r.value for r in rechazados} >= {v for _, v, _ in malos}
    assert pb.LoteEventos(eventos=[en_lote[1]]).eventos[0].SerializeToString() in {r.value for r in rechazados}
    assert max(len(dict(r.headers)[CABECERA_DETALLE]) for r in rechazados) < 1000
    assert {dict(r.headers).get(CABECERA_AGENCIA) for r in rechazados} == {b"reniec", None}
    # Un registro LoteEventos rechazado entero conserva la cabecera de lote (para decodificarlo).
    enteros = [r for r in rechazados if dict(r.headers)[CABECERA_MOTIVO] == b"lote_vacio"
               or r.value == b"\xff\xff\xff\xff"]
    assert len(enteros) == 2 and all(dict(r.headers).get(CABECERA_LOTE) == b"1" for r in enteros)

    detalles = [dict(r.headers)[CABECERA_DETALLE].decode() for r in rechazados
                if dict(r.headers)[CABECERA_MOTIVO] == b"identidad_repetida"]
    assert all(repr(original.caso_id) in d for d in detalles), detalles
    validos = buenos + saturado[:30] + otro_servicio[:1] + [cabecera_rara, en_lote[0]]
    esperar_igual_a_referencia(bootstrap, catalogo, validos, procesos, limite_s=60)
    contadores = _contadores(puerto)
    aceptados = sum(v for k, v in contadores.items() if k.startswith("gpr_procesador_eventos_aceptados_total|"))
    assert aceptados == len(validos)
    assert contadores["gpr_procesador_eventos_duplicados_total"] >= 30
    assert proceso.poll() is None
    assert "Traceback" not in procesos.registro("procesador")


def test_con_el_broker_de_vuelta_vacio_el_procesador_arranca_limpio(tmp_path, procesos):
    """El broker vuelve sin nada (el embebido guarda en memoria; en producción, un clúster
    recreado): el estado local de RocksDB va por delante del changelog. Antes, faust se negaba a
    arrancar (ConsistencyError) hasta que alguien borrara los datos; ahora descarta lo local
    (una línea por partición) y lo que publica es lo del broker nuevo."""
    catalogo = cargar_catalogo(CATALOGO)
    azar = random.Random(21)
    ahora = (int(time.time()) // 3600) * 3600
    antes = escenario.generar(catalogo, azar, casos_por_servicio=15, inicio=ahora - 12 * D, duracion=10 * D)
    despues = escenario.generar(catalogo, azar, casos_por_servicio=10, inicio=ahora - 6 * D, duracion=5 * D)
    puerto = puerto_libre()
    with BrokerEmbebido(puerto, registro=tmp_path / "tansu-1.log") as broker:
        crear_topicos(broker.bootstrap, PARTICIONES)
        proceso = lanzar_procesador(procesos, broker.bootstrap, tmp_path)
        publicar_eventos(broker.bootstrap, antes)
        esperar_igual_a_referencia(broker.bootstrap, catalogo, antes, procesos)
        proceso.terminate()
        assert proceso.wait(60) == 0
    with BrokerEmbebido(puerto, registro=tmp_path / "tansu-2.log") as broker:
        crear_topicos(broker.bootstrap, PARTICIONES)
        proceso = lanzar_procesador(procesos, broker.bootstrap, tmp_path)
        publicar_eventos(broker.bootstrap, despues)
        esperar_igual_a_referencia(broker.bootstrap, catalogo, despues, procesos)
        assert proceso.poll() is None
    registro = procesos.registro("procesador")
    assert "ConsistencyError" not in registro
    assert "se descarta lo local y se reconstruye desde el changelog" in registro
