"""De punta a punta con la biblioteca cliente: eventos armados con `Eventos`, publicados con
`PublicadorKafka` (dos veces, como tras un acuse perdido) → el procesador real (faust) → la
consulta real → leídos con `ClienteIndicadores`.

Lo esperado se calcula a mano. reniec/dni-duplicado (plazo 7 días): 6 casos; 5 se entregan a
las 2 h y uno, con plazo propio de 1 día, a las 30 h. En la ventana 7d: 6 solicitudes, 6
entregas, cumplimiento_plazo 5/6. Después de los repetidos va un caso marcador más en cada
partición (solo su solicitud): cuando la consulta ve 6 + marcadores solicitudes, el procesador
ya pasó por todos los repetidos, y si los hubiera contado habría más. Un caso de sunarp no
aparece en los indicadores de reniec.
"""

from __future__ import annotations

import time

import grpc
import pytest
from aiokafka.partitioner import DefaultPartitioner

from apoyo.consulta import ClienteConsulta
from apoyo.ingesta import B, CATALOGO, H
from apoyo.procesador import PARTICIONES, lanzar_procesador
from gpr_cliente import ClienteIndicadores, Eventos, PublicadorKafka
from servicios.comun.topicos import crear_topicos

pytestmark = [pytest.mark.integracion, pytest.mark.timeout(420)]

SERV = "dni-duplicado"


def _marcadores() -> list[str]:
    """Un caso de reniec por partición, elegido con el particionador de otro cliente (aiokafka)."""
    todas = list(range(PARTICIONES))
    elegidos: dict[int, str] = {}
    n = 0
    while len(elegidos) < PARTICIONES:
        caso = f"M{n}"
        elegidos.setdefault(DefaultPartitioner()(f"reniec/{caso}".encode(), todas, todas), caso)
        n += 1
    return sorted(elegidos.values())


def _esperar(leer, esperado, limite_s: float, procesos):
    fin = time.monotonic() + limite_s
    visto = None
    while time.monotonic() < fin:
        try:
            visto = leer()
        except grpc.RpcError as error:
            visto = error.code()
        if visto == esperado:
            return
        time.sleep(1)
    pytest.fail(f"se esperaba {esperado}, se vio {visto}\n{procesos.registro('procesador')[-3000:]}")


def test_publicar_con_la_biblioteca_y_consultar_con_su_cliente(bootstrap, procesos, tmp_path):
    crear_topicos(bootstrap, PARTICIONES)
    reniec = Eventos(CATALOGO, "reniec", "sistema-dni")
    sunarp = Eventos(CATALOGO, "sunarp", "sistema-registros")
    eventos = []
    for i in range(6):
        eventos.append(reniec.solicitud_recibida(SERV, f"C{i}", B + i * 60, plazo_dias=1 if i == 5 else None))
    for i in range(6):
        eventos.append(reniec.servicio_entregado(SERV, f"C{i}", B + (30 if i == 5 else 2) * H + i * 60))
    eventos.append(sunarp.solicitud_recibida("certificado-literal", "C0", B))
    marcadores = [reniec.solicitud_recibida(SERV, caso, B + 3 * H) for caso in _marcadores()]

    with PublicadorKafka(bootstrap, catalogo=CATALOGO) as publicador:
        assert publicador.publicar(eventos).todo_aceptado
        # Sin acuse, el emisor no sabe si llegaron: reenvía lo mismo.
        assert publicador.publicar(eventos).todo_aceptado
        assert publicador.publicar(marcadores).todo_aceptado

    lanzar_procesador(procesos, bootstrap, tmp_path, almacen="memoria")
    directo = ClienteConsulta(bootstrap)
    try:
        directo.esperar_al_dia()
        with ClienteIndicadores(f"127.0.0.1:{directo.consulta.puerto_grpc}") as cliente:
            solicitudes = lambda: cliente.indicador("reniec", SERV, "solicitudes", "7d").valor  # noqa: E731
            _esperar(solicitudes, 6.0 + len(marcadores), 300, procesos)
            _esperar(lambda: cliente.indicador("reniec", SERV, "entregas", "7d").valor, 6.0, 30, procesos)

            cumplimiento = cliente.indicador("reniec", SERV, "cumplimiento_plazo", "7d")
            assert (cumplimiento.valor, cumplimiento.muestras, cumplimiento.unidad) == \
                (pytest.approx(5 / 6), 6, "proporcion")
            conteo = cliente.indicador("reniec", SERV, "solicitudes", "7d")
            assert (conteo.agencia_id, conteo.unidad, conteo.sin_datos) == ("reniec", "conteo", False)

            # listar: lo mismo que lista un stub gRPC sin la biblioteca, y solo de reniec.
            propios = list(cliente.listar(agencia_id="reniec"))
            assert propios and {i.agencia_id for i in propios} == {"reniec"}
            assert sorted(i.SerializeToString(deterministic=True) for i in propios) == \
                sorted(i.SerializeToString(deterministic=True) for i in directo.listar("reniec"))
            assert {(i.servicio_id, i.ventana) for i in cliente.listar(agencia_id="sunarp", indicador="solicitudes")} \
                >= {("certificado-literal", "7d")}

            tablero = cliente.tablero("reniec", "7d")
            servicio = {s.servicio_id: s for s in tablero.servicios}[SERV]
            assert {i.indicador: i.valor for i in servicio.indicadores}["solicitudes"] == 6.0 + len(marcadores)

            historial = cliente.historial("reniec", SERV, "solicitudes", "7d")
            assert historial and historial[-1].valor == 6.0 + len(marcadores)

            with cliente.suscribir(agencia_id="reniec", servicio_id=SERV, indicador="solicitudes", ventana="7d",
                                   plazo_s=30) as suscripcion:
                primero = next(iter(suscripcion))
            assert (primero.servicio_id, primero.valor) == (SERV, 6.0 + len(marcadores))

            with pytest.raises(grpc.RpcError) as error:
                cliente.indicador("reniec", "no-existe", "solicitudes", "7d")
            assert error.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        directo.cerrar()
