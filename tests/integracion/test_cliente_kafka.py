"""La biblioteca cliente publicando en el broker embebido (`gpr_cliente.kafka`): lo que llega a
Kafka se lee de vuelta con aiokafka y se compara con lo esperado, calculado aparte: la clave de
cada caso, la partición que el particionador por defecto de aiokafka da a esa clave, la cabecera
de lote, el orden de cada caso. También la contrapresión (con el broker congelado nada se
confirma), el reintento con el mismo evento_id y que el procesador cuenta una vez lo repetido."""

from __future__ import annotations

import os
import signal

import pytest
from aiokafka.partitioner import DefaultPartitioner

from apoyo.ingesta import eventos_de, leer_topico
from apoyo.motor import MotorEnLotes, procesar_como_el_procesador
from conftest import AHORA, CATALOGO
from gpr.v1 import eventos_pb2 as pb
from gpr_cliente import Canal, Eventos, EventoInvalido, PublicadorKafka, PublicadorLleno
from servicios.comun.broker import BrokerEmbebido
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.topicos import CABECERA_LOTE, EVENTOS, crear_topicos

pytestmark = pytest.mark.integracion

PARTICIONES = 4
PLATAFORMA = cargar_catalogo(CATALOGO)
T = AHORA - 7200


def _fabrica(agencia="reniec"):
    return Eventos(PLATAFORMA, agencia, "sistema-tramites", reloj=lambda: AHORA)


def _ciclos(casos: int, agencia="reniec", servicio="dni-duplicado", prefijo="C"):
    """Solicitud, la primera etapa y la entrega de cada caso, intercalados entre casos."""
    e = _fabrica(agencia)
    etapa = PLATAFORMA.servicio(agencia, servicio).etapas[0]
    eventos = []
    for paso in range(3):
        for n in range(casos):
            caso = f"{prefijo}{n}"
            if paso == 0:
                eventos.append(e.solicitud_recibida(servicio, caso, T + n, canal=Canal.WEB, evento_id=f"{caso}-0"))
            elif paso == 1:
                eventos.append(e.etapa_iniciada(servicio, caso, etapa, T + 60 + n, evento_id=f"{caso}-1"))
            else:
                eventos.append(e.servicio_entregado(servicio, caso, T + 120 + n, evento_id=f"{caso}-2"))
    return eventos


def _particion(clave: bytes) -> int:
    # El particionador por defecto de otro cliente (aiokafka): el que daría un envío suelto.
    todas = list(range(PARTICIONES))
    return DefaultPartitioner()(clave, todas, todas)


def test_publica_en_lotes_por_particion_con_la_clave_de_cada_caso(bootstrap):
    crear_topicos(bootstrap, PARTICIONES)
    eventos = _ciclos(12) + _ciclos(3, "sunarp", "certificado-literal", "S")  # los casos de sunarp: otra clave
    with PublicadorKafka(bootstrap, catalogo=PLATAFORMA, reloj=lambda: AHORA) as publicador:
        resumen = publicador.publicar(eventos)
    assert resumen.todo_aceptado and resumen.aceptados == 45

    registros = leer_topico(bootstrap, EVENTOS, 45)
    por_caso: dict[tuple[str, str], list[str]] = {}
    for registro in registros:
        contenidos = eventos_de([registro])
        if len(contenidos) > 1:
            assert (CABECERA_LOTE, b"1") in list(registro.headers)
        else:
            assert not registro.headers
        # La clave del registro es la de su primer evento; todos caen donde caería su caso solo.
        assert registro.key == f"{contenidos[0][1].agencia_id}/{contenidos[0][1].caso_id}".encode()
        for particion, evento, _ in contenidos:
            assert particion == _particion(f"{evento.agencia_id}/{evento.caso_id}".encode())
            por_caso.setdefault((evento.agencia_id, evento.caso_id), []).append(evento.evento_id)
    # Cada evento una vez, y cada caso en el orden en que se publicó.
    assert por_caso == {(e.agencia_id, e.caso_id): [f"{e.caso_id}-{i}" for i in range(3)] for e in eventos}
    # Menos registros que eventos: una partición con varios eventos va en un LoteEventos.
    assert len(registros) <= PARTICIONES * 2 < 45
    assert len({r.partition for r in registros}) > 1


def test_sin_lotes_un_evento_por_registro(bootstrap):
    crear_topicos(bootstrap, PARTICIONES)
    eventos = _ciclos(4)
    with PublicadorKafka(bootstrap, lotes=False) as publicador:
        assert publicador.publicar(eventos).todo_aceptado
    registros = leer_topico(bootstrap, EVENTOS, 12)
    assert len(registros) == 12 and not any(r.headers for r in registros)
    leidos = sorted((r.key, r.partition, pb.Evento.FromString(r.value).evento_id) for r in registros)
    assert leidos == sorted((f"reniec/{e.caso_id}".encode(), _particion(f"reniec/{e.caso_id}".encode()), e.evento_id)
                            for e in eventos)


def test_con_catalogo_lo_invalido_no_se_envia(bootstrap):
    crear_topicos(bootstrap, PARTICIONES)
    buenos = _ciclos(2)
    malo = pb.Evento(evento_id="m1", tipo=pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, fuente="f", agencia_id="reniec",
                     servicio_id="no-existe", caso_id="X")
    malo.ocurrido_en.seconds = T
    with PublicadorKafka(bootstrap, catalogo=PLATAFORMA, reloj=lambda: AHORA) as publicador:
        resumen = publicador.publicar([buenos[0], malo, *buenos[1:]])
        assert [(i, r.evento_id, r.motivo) for i, r in resumen.rechazados] == [(1, "m1", "servicio_desconocido")]
        # `enviar` no envía nada de una llamada con un evento inválido.
        with pytest.raises(EventoInvalido) as error:
            publicador.enviar([buenos[0], malo])
        assert error.value.campo == "servicio_id"
    registros = leer_topico(bootstrap, EVENTOS, 6)
    assert sorted(e.evento_id for _, e, _ in eventos_de(registros)) == sorted(e.evento_id for e in buenos)


def test_contrapresion_tope_de_eventos_sin_acuse(tmp_path):
    """Con el broker congelado nada se confirma: los eventos enviados quedan en vuelo, y una
    llamada que no cabe en el tope falla sin enviar nada (al instante, o tras esperar)."""
    with BrokerEmbebido(registro=tmp_path / "tansu.log") as broker:
        crear_topicos(broker.bootstrap, PARTICIONES)
        eventos = _ciclos(4)  # 12 eventos
        publicador = PublicadorKafka(broker.bootstrap, max_en_vuelo=8, al_llenarse="error",
                                     request_timeout_ms=60_000, delivery_timeout_ms=120_000)
        bloqueante = PublicadorKafka(broker.bootstrap, max_en_vuelo=8, espera_lleno_s=0.5,
                                     request_timeout_ms=60_000, delivery_timeout_ms=120_000)
        try:
            # Los metadatos del tópico, antes de congelar (después no habría cómo pedirlos).
            assert publicador.publicar(eventos[:1]).todo_aceptado
            assert bloqueante.publicar(eventos[1:2]).todo_aceptado
            os.kill(broker._proceso.pid, signal.SIGSTOP)
            try:
                envios = publicador.enviar(eventos[2:8])  # 6 en vuelo
                assert publicador.pendientes == 6 and not any(e.hecho for e in envios)
                with pytest.raises(PublicadorLleno):
                    publicador.enviar(eventos[8:11])  # 6 + 3 > 8: nada sale
                assert publicador.pendientes == 6
                publicador.enviar(eventos[8:10])  # 6 + 2 = 8: cabe
                assert publicador.pendientes == 8

                assert len(bloqueante.enviar(eventos[10:12])) >= 1
                with pytest.raises(PublicadorLleno, match="tras esperar"):
                    bloqueante.enviar(_ciclos(3, prefijo="B")[:7])  # 2 + 7 > 8, ni esperando
                assert bloqueante.pendientes == 2
            finally:
                os.kill(broker._proceso.pid, signal.SIGCONT)
            # Al volver el broker llegan los acuses y se libera el lugar.
            assert publicador.esperar(60) and bloqueante.esperar(60)
            assert all(e.confirmado for e in envios)
            assert publicador.pendientes == bloqueante.pendientes == 0
            assert publicador.enviar(eventos[10:11])[0].esperar(60)
        finally:
            publicador.cerrar()
            bloqueante.cerrar()
        # En el tópico está cada evento enviado y ninguno de las llamadas rechazadas.
        registros = leer_topico(broker.bootstrap, EVENTOS, 13)
        ids = sorted(e.evento_id for _, e, _ in eventos_de(registros))
        assert ids == sorted([e.evento_id for e in eventos] + [eventos[10].evento_id])


def test_reintenta_con_el_mismo_evento_id_y_el_procesador_cuenta_una_vez(tmp_path):
    """Sin metadatos (broker congelado) la ronda falla sin enviar nada y se reintenta con los
    mismos eventos. Después el emisor reenvía todo (como tras un acuse perdido): el tópico tiene
    cada evento dos veces y la etapa por caso del procesador cuenta cada uno una vez."""
    with BrokerEmbebido(registro=tmp_path / "tansu.log") as broker:
        publicador = PublicadorKafka(broker.bootstrap, max_block_ms=2000)
        crear_topicos(broker.bootstrap, PARTICIONES)
        eventos = _ciclos(5)
        reintentos = []

        def al_reintentar(ronda, cuantos, error):
            reintentos.append((ronda, cuantos, type(error).__name__))
            os.kill(broker._proceso.pid, signal.SIGCONT)

        # El publicador aún no pidió los metadatos del tópico: con el broker congelado no puede.
        os.kill(broker._proceso.pid, signal.SIGSTOP)
        try:
            resumen = publicador.publicar(eventos, reintentos=3, espera_reintento_s=0.1, plazo_s=60,
                                          al_reintentar=al_reintentar)
        finally:
            os.kill(broker._proceso.pid, signal.SIGCONT)
        assert reintentos == [(1, 15, "KafkaNoDisponible")]
        assert resumen.todo_aceptado
        # El mismo lote otra vez, tal cual.
        assert publicador.publicar(eventos).todo_aceptado
        publicador.cerrar()

        registros = leer_topico(broker.bootstrap, EVENTOS, 30)
        ids = [e.evento_id for _, e, _ in eventos_de(registros)]
        assert sorted(ids) == sorted([e.evento_id for e in eventos] * 2)

    motor = MotorEnLotes(PLATAFORMA, AHORA)
    aceptados, duplicados, rechazos = procesar_como_el_procesador(motor, registros, PARTICIONES)
    assert (aceptados, duplicados, rechazos) == (15, 15, [])
    valores, _ = motor.observado("reniec")
    assert valores[("dni-duplicado", "solicitudes", "24h", "")] == (5.0, 5)
    assert valores[("dni-duplicado", "entregas", "24h", "")][1] == 5


def test_opciones_que_romperian_la_idempotencia_se_rechazan(bootstrap):
    for opcion in ({"acks": 1}, {"enable_idempotence": False}):
        with pytest.raises(ValueError, match="acks='all'"):
            PublicadorKafka(bootstrap, **opcion)
    with pytest.raises(ValueError, match="al_llenarse"):
        PublicadorKafka(bootstrap, al_llenarse="descartar")


def test_los_ejemplos_del_readme_corren(bootstrap):
    """Los dos primeros ejemplos de clientes/python/README.md (constructores y publicación por
    Kafka), tal cual salvo la dirección del broker: los cinco eventos llegan al tópico."""
    from conftest import RAIZ

    texto = (RAIZ / "clientes" / "python" / "README.md").read_text(encoding="utf-8")
    bloques = texto.split("```python\n")[1:3]
    codigo = "\n".join(b.split("```")[0] for b in bloques).replace('"localhost:9092"', repr(bootstrap))
    assert repr(bootstrap) in codigo
    crear_topicos(bootstrap, PARTICIONES)
    espacio: dict = {}
    exec(compile(codigo, "README.md", "exec"), espacio)  # noqa: S102 (el ejemplo de la documentación)
    assert espacio["resumen"].todo_aceptado and espacio["resumen"].aceptados == 5
    registros = leer_topico(bootstrap, EVENTOS, 5)
    assert sorted(e.evento_id for _, e, _ in eventos_de(registros)) == sorted(e.evento_id for e in espacio["lote"])


@pytest.mark.parametrize("guia", ["contrato.md", "contract.md"])
def test_el_ejemplo_de_la_biblioteca_en_cada_guia_corre(bootstrap, guia):
    """El ejemplo de «La biblioteca cliente» de la guía (española e inglesa), tal cual salvo la
    dirección del broker: la solicitud llega al tópico con la clave agencia/caso."""
    from conftest import RAIZ

    texto = (RAIZ / "docs" / guia).read_text(encoding="utf-8")
    bloques = [b.split("```")[0] for b in texto.split("```python\n")[1:] if "PublicadorKafka(" in b.split("```")[0]]
    assert len(bloques) == 1, f"docs/{guia}: se esperaba un ejemplo de la biblioteca"
    codigo = bloques[0].replace('"kafka:9092"', repr(bootstrap))
    assert repr(bootstrap) in codigo
    crear_topicos(bootstrap, PARTICIONES)
    espacio: dict = {}
    exec(compile(codigo, guia, "exec"), espacio)  # noqa: S102 (el ejemplo de la documentación)
    assert espacio["resumen"].todo_aceptado and espacio["resumen"].aceptados == 1
    [registro] = leer_topico(bootstrap, EVENTOS, 1)
    [(_, evento, _)] = eventos_de([registro])
    clave = registro.key
    assert clave == b"sunarp/CL-2026-004815"
    assert (evento.agencia_id, evento.servicio_id, evento.caso_id) == ("sunarp", "certificado-literal", "CL-2026-004815")
