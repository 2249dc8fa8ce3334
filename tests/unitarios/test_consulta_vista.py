"""Vista de la consulta sin Kafka, ante lo que no debería llegar: instantáneas falsificadas o
rotas, un historial que crece sin que nadie pueda leerlo y un Kafka que deja de responder.

La vista se alimenta con `_aplicar`, el mismo camino que los registros de Kafka; lo esperado
se escribe a mano.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import tracemalloc

import pytest

from conftest import RAIZ

from gpr.v1 import indicadores_pb2 as ipb
from servicios.consulta.lector import Frescura
from servicios.consulta.vista import MOTIVOS_DESCARTE, Vista

CLAVE = "reniec/dni/cumplimiento_plazo/24h"


def _ind(a="reniec", s="dni", i="cumplimiento_plazo", v="24h", e="", valor=0.9, muestras=10, **extra):
    return ipb.Indicador(agencia_id=a, servicio_id=s, indicador=i, ventana=v, etapa_id=e, valor=valor,
                         muestras=muestras, numerador=valor * muestras, **extra)


def _bytes(indicador: ipb.Indicador) -> bytes:
    return indicador.SerializeToString()


# (descripción, clave de Kafka, valor, motivo con que se descarta)
FALSIFICADOS = [
    ("no es protobuf", CLAVE.encode(), b"\xff\xff\xff\xff", "protobuf_invalido"),
    ("protobuf truncado", CLAVE.encode(), _bytes(_ind())[:-3], "protobuf_invalido"),
    ("sin clave", None, _bytes(_ind()), "sin_clave"),
    ("clave vacía", b"", _bytes(_ind()), "sin_clave"),
    ("clave no UTF-8", b"\xffreniec", _bytes(_ind()), "sin_clave"),
    ("clave con NUL", b"reniec\0/dni/cumplimiento_plazo/24h", _bytes(_ind()), "sin_clave"),
    # La clave de reniec con el contenido de otra agencia, de otro servicio, de otra ventana.
    ("otra agencia bajo la clave", CLAVE.encode(), _bytes(_ind(a="sunarp")), "clave_no_coincide"),
    ("otro servicio bajo la clave", CLAVE.encode(), _bytes(_ind(s="pasaporte")), "clave_no_coincide"),
    ("otra ventana bajo la clave", CLAVE.encode(), _bytes(_ind(v="7d")), "clave_no_coincide"),
    ("clave con etapa de más", (CLAVE + "/impresion").encode(), _bytes(_ind()), "clave_no_coincide"),
    # Una agencia con "/" arma una clave que se leería como otra agencia y otro servicio.
    ("agencia con barra", b"reniec/dni/x/cumplimiento_plazo/24h",
     _bytes(_ind(a="reniec/dni", s="x")), "campo_invalido"),
    ("indicador desconocido", b"reniec/dni/inventado/24h", _bytes(_ind(i="inventado")), "campo_invalido"),
    ("ventana inválida", b"reniec/dni/cumplimiento_plazo/2d", _bytes(_ind(v="2d")), "campo_invalido"),
    ("agencia vacía", b"/dni/cumplimiento_plazo/24h", _bytes(_ind(a="")), "campo_invalido"),
    ("por etapa sin etapa", b"reniec/dni/tiempo_etapa_p50/24h", _bytes(_ind(i="tiempo_etapa_p50")), "campo_invalido"),
    ("etapa en indicador sin etapa", (CLAVE + "/impresion").encode(), _bytes(_ind(e="impresion")), "campo_invalido"),
    ("servicio de 1 KB", f"reniec/{'s' * 1024}/cumplimiento_plazo/24h".encode(),
     _bytes(_ind(s="s" * 1024)), "campo_invalido"),
    ("cuello de botella de 1 KB", CLAVE.encode(), _bytes(_ind(etapa_cuello_botella="e" * 1024)), "campo_invalido"),
    ("muestras negativas", CLAVE.encode(), _bytes(_ind(muestras=-5)), "campo_invalido"),
    # La unidad es una etiqueta de /metrics que eligen los tableros: la del catálogo o nada.
    ("proporción en segundos", CLAVE.encode(), _bytes(_ind(unidad="segundos")), "campo_invalido"),
    ("unidad de 1 KB", CLAVE.encode(), _bytes(_ind(unidad="u" * 1024)), "campo_invalido"),
    ("moneda en una proporción", CLAVE.encode(), _bytes(_ind(unidad="PEN")), "campo_invalido"),
    ("moneda en minúsculas", b"reniec/dni/costo_por_tramite/24h",
     _bytes(_ind(i="costo_por_tramite", unidad="pen")), "campo_invalido"),
    ("moneda de cuatro letras", b"reniec/dni/costo_por_tramite/24h",
     _bytes(_ind(i="costo_por_tramite", unidad="PENX")), "campo_invalido"),
    ("el marcador del catálogo en vez de la moneda", b"reniec/dni/costo_por_tramite/24h",
     _bytes(_ind(i="costo_por_tramite", unidad="moneda")), "campo_invalido"),
    ("valor NaN", CLAVE.encode(), _bytes(_ind(valor=math.nan)), "valor_no_finito"),
    ("valor +inf", CLAVE.encode(), _bytes(_ind(valor=math.inf)), "valor_no_finito"),
    ("valor -inf", CLAVE.encode(), _bytes(_ind(valor=-math.inf)), "valor_no_finito"),
    ("numerador inf", CLAVE.encode(), _bytes(ipb.Indicador(agencia_id="reniec", servicio_id="dni",
                                                          indicador="cumplimiento_plazo", ventana="24h", valor=0.5,
                                                          muestras=2, numerador=math.inf)), "valor_no_finito"),
    ("meta NaN", CLAVE.encode(), _bytes(_ind(meta=ipb.EvaluacionMeta(operador=">=", valor=math.nan,
                                                                    estado=ipb.ESTADO_CUMPLIMIENTO_CUMPLE))), "valor_no_finito"),
]


def _vista_con_una_serie() -> tuple[Vista, list]:
    vista = Vista("sin-kafka:9092")
    vista.conservar_historial(maximo=10, total=100)
    avisos = []
    vista.suscribir(lambda clave, indicador: avisos.append((clave, indicador)))
    vista._aplicar(CLAVE.encode(), _bytes(_ind(valor=0.9)), 0, 0)
    return vista, avisos


@pytest.mark.parametrize("descripcion,clave,valor,motivo", FALSIFICADOS, ids=[f[0] for f in FALSIFICADOS])
def test_instantanea_falsificada_o_rota_se_descarta_y_se_cuenta(descripcion, clave, valor, motivo):
    vista, avisos = _vista_con_una_serie()
    vista._aplicar(clave, valor, 0, 1)
    assert vista.descartados == {**{m: 0 for m in MOTIVOS_DESCARTE}, motivo: 1}
    # La vista sigue igual: la serie de reniec con su valor, y nada más.
    assert len(vista) == 1 and vista.obtener(CLAVE).valor == 0.9
    assert [i.valor for i in vista.historial(CLAVE)] == [0.9]
    assert len(avisos) == 1, "un registro descartado no se avisa a los suscriptores"


def test_todas_las_falsificaciones_seguidas_no_cambian_nada_y_se_cuentan_por_motivo():
    vista, avisos = _vista_con_una_serie()
    for offset, (_, clave, valor, _) in enumerate(FALSIFICADOS, start=1):
        vista._aplicar(clave, valor, 0, offset)
    esperado = {m: 0 for m in MOTIVOS_DESCARTE}
    for *_, motivo in FALSIFICADOS:
        esperado[motivo] += 1
    assert vista.descartados == esperado
    assert sum(esperado.values()) == len(FALSIFICADOS) == 30
    assert len(vista) == 1 and vista.obtener(CLAVE).valor == 0.9 and len(avisos) == 1
    # Una instantánea válida después sí se aplica.
    vista._aplicar(CLAVE.encode(), _bytes(_ind(valor=0.7)), 0, 99)
    assert vista.obtener(CLAVE).valor == 0.7 and [i.valor for i in vista.historial(CLAVE)] == [0.9, 0.7]


@pytest.mark.parametrize("indicador,unidad", [
    ("cumplimiento_plazo", "proporcion"), ("satisfaccion_indice", "indice"), ("solicitudes", "conteo"),
    ("tiempo_atencion_p50", "segundos"), ("reclamos_por_mil", "por_mil"), ("costo_por_tramite", "PEN"),
    ("costo_por_tramite", "USD"),
    # Escrita antes de que existiera el campo: se acepta, sin unidad.
    ("cumplimiento_plazo", ""),
])
def test_la_unidad_del_catalogo_se_acepta_y_se_sirve_tal_cual(indicador, unidad):
    vista = Vista("sin-kafka:9092")
    clave = f"reniec/dni/{indicador}/24h"
    vista._aplicar(clave.encode(), _bytes(_ind(i=indicador, unidad=unidad)), 0, 0)
    assert sum(vista.descartados.values()) == 0
    assert vista.obtener(clave).unidad == unidad


def test_una_lapida_de_una_serie_que_no_existe_no_cuenta_ni_avisa():
    vista, avisos = _vista_con_una_serie()
    vista._aplicar(b"sunarp/x/solicitudes/24h", None, 0, 1)
    assert sum(vista.descartados.values()) == 0 and len(vista) == 1 and len(avisos) == 1


# --- historial -----------------------------------------------------------------------------

def test_historial_retiene_en_memoria_solo_lo_que_se_puede_leer():
    """Una serie que cambia 3000 veces con un tope de 100 por serie: en memoria quedan ~100
    instantáneas (las que ObtenerHistorial puede devolver), no 3000. Cada instantánea lleva
    10 KB de relleno (en la descripción de la meta, que no es una etiqueta), así que la memoria
    de Python (tracemalloc, no el RSS) las cuenta."""
    vista = Vista("sin-kafka:9092")
    vista.conservar_historial(maximo=100, total=200_000)
    meta = ipb.EvaluacionMeta(operador=">=", valor=0.9, estado=ipb.ESTADO_CUMPLIMIENTO_CUMPLE, descripcion="r" * 10_000)
    tracemalloc.start()
    try:
        antes = tracemalloc.get_traced_memory()[0]
        for n in range(3000):
            vista._aplicar(CLAVE.encode(), _bytes(_ind(valor=float(n), meta=meta)), 0, n)
        retenida = tracemalloc.get_traced_memory()[0] - antes
    finally:
        tracemalloc.stop()
    assert [i.valor for i in vista.historial(CLAVE)] == [float(n) for n in range(2900, 3000)]
    por_instantanea = len(_bytes(_ind(meta=meta)))
    # 100 legibles (99 anteriores y la actual); 3000 serían ~30 MB.
    assert retenida < 150 * por_instantanea, f"{retenida} bytes retenidos para 100 instantáneas de {por_instantanea}"


_RSS_HISTORIAL = textwrap.dedent("""
    import os
    from gpr.v1 import indicadores_pb2 as ipb
    from servicios.consulta.vista import Vista

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    vista = Vista("sin-kafka:9092")
    vista.conservar_historial(100, 200_000)
    meta = ipb.EvaluacionMeta(operador=">=", valor=0.9, estado=ipb.ESTADO_CUMPLIMIENTO_CUMPLE, descripcion="r" * 5000)
    claves = [f"reniec/s{n}/solicitudes/24h" for n in range(10)]
    antes = rss()
    for n in range(20_000):
        clave = claves[n % 10]
        a, s, i, v = clave.split("/")
        vista._aplicar(clave.encode(), ipb.Indicador(agencia_id=a, servicio_id=s, indicador=i, ventana=v, valor=n,
                                                     muestras=1, meta=meta).SerializeToString(), 0, n)
    print(rss() - antes, sum(len(vista.historial(c)) for c in claves))
""")


def test_historial_rss_de_un_proceso_acotado_por_lo_legible():
    """Lo mismo medido como lo ve el sistema (RSS de un subproceso): 10 series de ~5 KB que
    cambian 2000 veces cada una. Legibles: 10 × 100 ≈ 5 MB; retener los 20 000 cambios serían
    ~100 MB (medido con la versión anterior: +104 MB)."""
    salida = subprocess.run([sys.executable, "-c", _RSS_HISTORIAL], capture_output=True, text=True, cwd=RAIZ,
                            timeout=120)
    assert salida.returncode == 0, salida.stderr
    crecimiento, legibles = map(int, salida.stdout.split())
    assert legibles == 1000
    assert crecimiento < 30 * 1024 * 1024, f"el RSS creció {crecimiento / 2**20:.1f} MB"


def test_historial_con_tope_por_serie_y_global():
    """El tope global cuenta las instantáneas guardadas que se pueden leer: las que ya salieron
    por el tope de su serie no ocupan lugar ni empujan fuera a las de otras series."""
    vista = Vista("sin-kafka:9092")
    vista.conservar_historial(maximo=3, total=4)

    def publicar(clave, valor):
        a, s, i, v = clave.split("/")
        vista._aplicar(clave.encode(), _bytes(_ind(a, s, i, v, valor=valor, muestras=1)), 0, 0)

    def valores(clave, maximo=0):
        return [i.valor for i in vista.historial(clave, maximo)]

    x, y, z = "a/s/solicitudes/24h", "a/s/solicitudes/7d", "a/s/entregas/24h"
    for n in range(1, 6):
        publicar(x, n)
    publicar(x, 5)  # repetida: no es una instantánea nueva
    # Guardadas (anteriores a la actual): x3, x4 (x1 y x2 salieron por el tope de la serie).
    assert valores(x) == [3, 4, 5] and valores(x, 2) == [4, 5]
    for n in range(10, 17):
        publicar(y, n)
    # y guarda y14, y15: con x3 y x4 son 4, justo el tope global; x no pierde nada.
    assert valores(y) == [14, 15, 16] and valores(x) == [3, 4, 5]
    publicar(z, 100)
    publicar(z, 101)
    # z100 es la quinta guardada: se olvida la más vieja de todas, x3.
    assert valores(z) == [100, 101] and valores(x) == [4, 5] and valores(y) == [14, 15, 16]
    vista._aplicar(y.encode(), None, 0, 0)
    assert valores(y) == []
    # La lápida liberó los dos lugares de y: z y x siguen enteros y caben dos más.
    publicar(z, 102)
    publicar(x, 6)
    assert valores(z) == [100, 101, 102] and valores(x) == [4, 5, 6]
    publicar(y, 1)
    assert valores(y) == [1]


def test_historial_global_acotado_con_muchas_series_que_cambian():
    """Muchas series, muchos cambios: lo guardado nunca pasa del tope global ni del de cada serie."""
    vista = Vista("sin-kafka:9092")
    vista.conservar_historial(maximo=5, total=50)
    claves = [f"a/s{n}/solicitudes/24h" for n in range(30)]
    for vuelta in range(40):
        for n, clave in enumerate(claves):
            if (vuelta + n) % 3:
                a, s, i, v = clave.split("/")
                vista._aplicar(clave.encode(), _bytes(_ind(a, s, i, v, valor=vuelta, muestras=1)), 0, 0)
        guardadas = [len(vista.historial(c)) - 1 for c in claves if vista.obtener(c) is not None]
        assert sum(guardadas) <= 50 and max(guardadas) <= 4
    assert sum(len(vista.historial(c)) - 1 for c in claves) == 50


# --- frescura ------------------------------------------------------------------------------

class Reloj:
    def __init__(self):
        self.ahora = 1000.0

    def __call__(self):
        return self.ahora


def test_frescura_caduca_si_una_particion_deja_de_responder():
    reloj = Reloj()
    frescura = Frescura(plazo_s=10, reloj=reloj)
    frescura.asignar([0, 1])
    assert frescura.al_dia()  # recién conectada: tiene el plazo para la primera respuesta
    reloj.ahora += 9
    frescura.observar({0: 111, 1: 222})
    reloj.ahora += 9
    assert frescura.al_dia()  # 9 s desde la última respuesta de cada una
    frescura.observar({0: 333, 1: 222})  # la 1 no trajo una respuesta nueva
    reloj.ahora += 2
    assert not frescura.al_dia()  # 11 s sin saber de la partición 1
    frescura.observar({0: 444, 1: 555})
    assert frescura.al_dia()
    reloj.ahora += 10.5
    assert not frescura.al_dia()
    # Otro consumidor (una reconexión): marcas nuevas cuentan como respuestas.
    frescura.observar({0: None, 1: None})
    assert not frescura.al_dia()
    frescura.observar({0: 1, 1: 2})
    assert frescura.al_dia()
    # Si el tópico cambia de particiones, la nueva entra con su plazo.
    frescura.asignar([0, 1, 2])
    reloj.ahora += 5
    assert frescura.al_dia()


def test_instantanea_desde_otro_hilo_mientras_la_vista_cambia():
    """/metrics lee la vista desde el hilo del servidor HTTP mientras el lector de Kafka la
    cambia. Un recolector de basura que corre a mitad de la lectura puede ejecutar un finalizador
    y ceder el GIL: la lectura no debe ver el diccionario cambiar bajo sus pies (así falló
    `make bench` con «dictionary changed size during iteration» y un 500 en /metrics)."""
    import gc
    import threading
    import time

    class Basura:
        def __init__(self):
            self.ciclo = self

        def __del__(self):
            time.sleep(0)  # cede el GIL, como cualquier finalizador que haga E/S

    vista = Vista("sin-kafka:9092")
    for n in range(2000):
        vista._aplicar(f"reniec/s{n}/cumplimiento_plazo/24h".encode(), _bytes(_ind(s=f"s{n}")), 0, n)
    parar = threading.Event()
    errores: list[BaseException] = []
    tamanos: list[int] = []

    def lector():
        try:
            while not parar.is_set():
                Basura()
                tamanos.append(len(vista.instantanea()))
        except BaseException as error:  # noqa: BLE001 (la prueba informa cualquier error)
            errores.append(error)

    umbral = gc.get_threshold()
    gc.set_threshold(50)
    hilo = threading.Thread(target=lector)
    hilo.start()
    try:
        fin = time.monotonic() + 3.0
        n = 2000
        while time.monotonic() < fin and not errores:
            vista._aplicar(f"reniec/s{n}/cumplimiento_plazo/24h".encode(), _bytes(_ind(s=f"s{n}")), 0, n)
            vista._aplicar(f"reniec/s{n - 2000}/cumplimiento_plazo/24h".encode(), None, 0, n)
            n += 1
    finally:
        parar.set()
        hilo.join(10)
        gc.set_threshold(*umbral)
    assert errores == []
    assert tamanos and all(t in (2000, 2001) for t in tamanos)
