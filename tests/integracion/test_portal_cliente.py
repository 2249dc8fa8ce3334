"""Cliente del portal contra gRPC real: la consulta de verdad (listado paginado de una agencia
y la caché que ahorra llamadas) y un servidor gRPC con TLS que anota los metadatos recibidos
(token `authorization: Bearer …` y canal seguro con la CA de GPR_PORTAL_CONSULTA_TLS_CA)."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from apoyo.consulta import esperar_serving
from apoyo.kafka import publicar
from gpr.v1 import indicadores_pb2 as ipb
from gpr.v1 import indicadores_pb2_grpc as ipb_grpc
from servicios.comun.indicadores import clave_serie
from servicios.comun.topicos import INDICADORES, crear_topicos
from servicios.consulta import config as config_consulta
from servicios.consulta.servidor import ConsultaEnHilo
from servicios.portal import config as config_portal
from servicios.portal.cache import CacheCorta
from servicios.portal.cliente import ClienteIndicadores, ConsultaNoDisponible

pytestmark = pytest.mark.integracion


def _serie(agencia, servicio, indicador, ventana, valor):
    i = ipb.Indicador(agencia_id=agencia, servicio_id=servicio, indicador=indicador, ventana=ventana,
                      valor=valor, muestras=20)
    return clave_serie(agencia, servicio, indicador, ventana).encode(), i.SerializeToString()


def test_el_cliente_lee_todas_las_paginas_y_la_cache_ahorra_llamadas(bootstrap):
    crear_topicos(bootstrap, 2, [INDICADORES])
    # 1 500 series de «a» (dos páginas de 1 000) y una de «b», que no debe colarse.
    registros = [_serie("a", f"s{k:03d}", "solicitudes", f"mes:2026-{m:02d}", k * 100 + m)
                 for k in range(125) for m in range(1, 13)]
    registros.append(_serie("b", "s000", "solicitudes", "30d", 7))
    publicar(bootstrap, registros, topico=INDICADORES)
    cfg = config_consulta.leer({"GPR_KAFKA_BOOTSTRAP": bootstrap, "GPR_GRPC_HOST": "127.0.0.1",
                                "GPR_GRPC_PUERTO": "0", "GPR_METRICAS_PUERTO": "0"})
    with ConsultaEnHilo(cfg) as consulta:
        canal = grpc.insecure_channel(f"127.0.0.1:{consulta.puerto_grpc}")
        esperar_serving(canal, 60, "la consulta")
        stub = ipb_grpc.IndicadoresStub(canal)
        fin = time.monotonic() + 30
        while len(stub.ListarIndicadores(ipb.FiltroIndicadores(tamano_pagina=1000), timeout=5).indicadores) < 1000:
            assert time.monotonic() < fin
            time.sleep(0.2)
        canal.close()
        llamadas = []
        ahora = [0.0]

        async def escenario():
            cache = CacheCorta(5.0, reloj=lambda: ahora[0])
            cliente = ClienteIndicadores(f"127.0.0.1:{consulta.puerto_grpc}", cache,
                                         al_llamar=lambda rpc, codigo: llamadas.append((rpc, codigo)))
            await cliente.abrir()
            try:
                primera = await asyncio.gather(*(cliente.datos("a") for _ in range(100)))
                antes = len(llamadas)
                ahora[0] = 5.0
                otra = await cliente.datos("a")
                return primera, antes, otra
            finally:
                await cliente.cerrar()

        primera, antes, otra = asyncio.run(escenario())
    datos = primera[0]
    assert all(d is datos for d in primera)
    assert len(datos.series) == 1500 and {k[0] for k in datos.series} == {f"s{k:03d}" for k in range(125)}
    assert datos.get("s124", "solicitudes", "mes:2026-12").valor == 12412
    # 100 visitas a la vez: una lectura (dos páginas); vencida la caché, otra lectura.
    assert antes == 2 and llamadas == [("ListarIndicadores", "OK")] * 4
    assert len(otra.series) == 1500


class _Anotador(ipb_grpc.IndicadoresServicer):
    def __init__(self):
        self.metadatos = []

    async def ListarIndicadores(self, request, context):
        self.metadatos.append(dict(context.invocation_metadata()))
        if request.agencia_id == "prohibida":
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "el token no puede leer esa agencia")
        return ipb.ListaIndicadores(indicadores=[ipb.Indicador(
            agencia_id=request.agencia_id, servicio_id="s", indicador="solicitudes", ventana="30d", valor=3,
            muestras=3)])


def test_token_y_tls_hacia_la_consulta(tmp_path):
    import trustme

    ca = trustme.CA()
    certificado = ca.issue_cert("localhost", "127.0.0.1")
    ruta_ca = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ruta_ca))
    cfg = config_portal.leer({"GPR_PORTAL_CONSULTA_TLS_CA": str(ruta_ca), "GPR_PORTAL_CONSULTA_TOKEN": "t0k3n"})
    assert cfg.token == "t0k3n" and cfg.tls_ca == ruta_ca.read_bytes()

    async def escenario():
        anotador = _Anotador()
        servidor = grpc.aio.server()
        ipb_grpc.add_IndicadoresServicer_to_server(anotador, servidor)
        credenciales = grpc.ssl_server_credentials([(certificado.private_key_pem.bytes(),
                                                     b"".join(c.bytes() for c in certificado.cert_chain_pems))])
        puerto = servidor.add_secure_port("127.0.0.1:0", credenciales)
        await servidor.start()
        resultados = {}
        try:
            destino = f"localhost:{puerto}"
            seguro = ClienteIndicadores(destino, CacheCorta(5.0), token=cfg.token, tls_ca=cfg.tls_ca, plazo_s=5)
            await seguro.abrir()
            resultados["seguro"] = await seguro.datos("a")
            with pytest.raises(ConsultaNoDisponible) as error:
                await seguro.datos("prohibida")
            resultados["prohibida"] = error.value.codigo
            await seguro.cerrar()
            # Sin la CA (canal en claro) contra un servidor TLS: no hay respuesta, nunca datos.
            claro = ClienteIndicadores(destino, CacheCorta(5.0), plazo_s=2)
            await claro.abrir()
            with pytest.raises(ConsultaNoDisponible) as error:
                await claro.datos("a")
            resultados["claro"] = error.value.codigo
            await claro.cerrar()
        finally:
            await servidor.stop(0)
        return anotador.metadatos, resultados

    metadatos, resultados = asyncio.run(escenario())
    assert resultados["seguro"].get("s", "solicitudes", "30d").valor == 3
    assert resultados["prohibida"] == grpc.StatusCode.PERMISSION_DENIED
    assert resultados["claro"] == grpc.StatusCode.UNAVAILABLE
    assert [m.get("authorization") for m in metadatos] == ["Bearer t0k3n", "Bearer t0k3n"]


class _Lenta(ipb_grpc.IndicadoresServicer):
    """Responde tras una pausa: deja una petición del portal en curso al llegar SIGTERM."""

    def ListarIndicadores(self, request, context):
        time.sleep(2)
        return ipb.ListaIndicadores(indicadores=[ipb.Indicador(
            agencia_id=request.agencia_id, servicio_id="dni-duplicado", indicador="solicitudes", ventana="30d",
            valor=42, muestras=42)])


def test_el_portal_termina_lo_que_atiende_al_recibir_sigterm(tmp_path, procesos):
    import signal
    import threading
    import urllib.request
    from concurrent import futures

    from conftest import CATALOGO
    from servicios.comun.broker import puerto_libre

    servidor = grpc.server(futures.ThreadPoolExecutor(4))
    ipb_grpc.add_IndicadoresServicer_to_server(_Lenta(), servidor)
    puerto_grpc = servidor.add_insecure_port("127.0.0.1:0")
    servidor.start()
    puerto = puerto_libre()
    try:
        portal = procesos.lanzar("servicios.portal", {
            "GPR_CATALOGO": str(CATALOGO), "GPR_PORTAL_CONSULTA": f"127.0.0.1:{puerto_grpc}",
            "GPR_PORTAL_HOST": "127.0.0.1", "GPR_PORTAL_PUERTO": str(puerto), "GPR_PORTAL_GRACIA": "10s"})
        url = f"http://127.0.0.1:{puerto}"
        fin = time.monotonic() + 30
        while True:
            try:
                if urllib.request.urlopen(url + "/salud", timeout=2).status == 200:
                    break
            except OSError:
                assert time.monotonic() < fin, procesos.registro("portal")
                time.sleep(0.2)
        respuesta = {}

        def pedir():
            with urllib.request.urlopen(url + "/agencias/reniec", timeout=20) as r:
                respuesta["codigo"], respuesta["texto"] = r.status, r.read().decode()

        hilo = threading.Thread(target=pedir)
        hilo.start()
        time.sleep(0.7)  # la petición espera a la consulta lenta
        portal.send_signal(signal.SIGTERM)
        hilo.join(20)
        # uvicorn, tras la parada ordenada, vuelve a lanzar la señal recibida: el proceso termina
        # «por SIGTERM» (código −15) y no con 0, como espera quien lo mandó parar.
        assert portal.wait(20) in (0, -signal.SIGTERM)
        assert respuesta["codigo"] == 200 and "Duplicado de DNI" in respuesta["texto"]
        registro = procesos.registro("portal")
        assert "Traceback" not in registro and "Application shutdown complete" in registro
    finally:
        servidor.stop(0)


def test_una_configuracion_invalida_termina_con_un_mensaje_que_nombra_la_variable(procesos):
    portal = procesos.lanzar("servicios.portal", {"GPR_PORTAL_MUESTRA_MINIMA": "cero"})
    assert portal.wait(30) == 2
    assert "GPR_PORTAL_MUESTRA_MINIMA" in procesos.registro("portal")
