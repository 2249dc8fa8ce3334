"""Validación de eventos, catálogo y configuración: errores claros que nombran el campo."""

from __future__ import annotations

import pytest

from gpr.v1 import eventos_pb2 as pb
from servicios.comun import config
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.eventos import RegistroInvalido, decodificar, validar
from servicios.comun.topicos import APORTES, CABECERA_LOTE, TopicoInadecuado, ajustar_registro_maximo
from servicios.comun.yaml_lineas import ArchivoInvalido

from conftest import CATALOGO

AHORA = 2_000_000_000


@pytest.fixture(scope="module")
def catalogo():
    return cargar_catalogo(CATALOGO)


def base(**cambios):
    e = pb.Evento(evento_id="e1", fuente="f", tipo=pb.SOLICITUD_RECIBIDA, agencia_id="reniec",
                  servicio_id="dni-duplicado", caso_id="c1")
    e.ocurrido_en.seconds = AHORA - 60
    for campo, valor in cambios.items():
        if valor is None:
            e.ClearField(campo)
        else:
            setattr(e, campo, valor)
    return e


@pytest.mark.parametrize("cambios, motivo", [
    ({}, None),
    ({"evento_id": ""}, "campo_requerido:evento_id"),
    ({"tipo": pb.TIPO_EVENTO_NO_ESPECIFICADO}, "campo_requerido:tipo"),
    ({"ocurrido_en": None}, "campo_requerido:ocurrido_en"),
    ({"agencia_id": ""}, "campo_requerido:agencia_id"),
    ({"servicio_id": ""}, "campo_requerido:servicio_id"),
    ({"caso_id": ""}, "campo_requerido:caso_id"),
    ({"tipo": pb.ETAPA_INICIADA}, "campo_requerido:etapa_id"),
    ({"agencia_id": "otra"}, "agencia_desconocida"),
    ({"servicio_id": "otro"}, "servicio_desconocido"),
    ({"tipo": pb.ENCUESTA_RESPONDIDA}, "tipo_incoherente"),
    ({"tipo": pb.COSTO_REGISTRADO}, "tipo_incoherente"),
])
def test_motivos_de_rechazo(catalogo, cambios, motivo):
    assert validar(base(**cambios), catalogo, AHORA) == motivo


def test_tiempo_futuro_con_cinco_minutos_de_tolerancia(catalogo):
    e = base()
    e.ocurrido_en.seconds = AHORA + 300
    assert validar(e, catalogo, AHORA) is None
    e.ocurrido_en.seconds = AHORA + 301
    assert validar(e, catalogo, AHORA) == "tiempo_futuro"


def test_encuesta_y_costo(catalogo):
    e = base(tipo=pb.ENCUESTA_RESPONDIDA)
    e.satisfaccion.escala_max = 5
    e.satisfaccion.puntaje = 6
    assert validar(e, catalogo, AHORA) == "tipo_incoherente"
    e.satisfaccion.puntaje = 5
    assert validar(e, catalogo, AHORA) is None
    c = base(tipo=pb.COSTO_REGISTRADO, caso_id="")
    c.costo.monto = 12.5
    c.costo.moneda = "USD"
    assert validar(c, catalogo, AHORA) == "moneda_incoherente"
    c.costo.moneda = "PEN"
    assert validar(c, catalogo, AHORA) is None


def test_decodificar_evento_y_lote():
    e = base()
    assert decodificar(e.SerializeToString()) == [e]
    lote = pb.LoteEventos(eventos=[e, base(evento_id="e2")]).SerializeToString()
    assert [x.evento_id for x in decodificar(lote, [(CABECERA_LOTE, b"1")])] == ["e1", "e2"]
    with pytest.raises(RegistroInvalido):
        decodificar(b"\xff\xff\xff")
    with pytest.raises(RegistroInvalido):
        decodificar(b"")


def test_catalogo_invalido_nombra_archivo_linea_y_campo(tmp_path):
    ruta = tmp_path / "catalogo.yaml"
    ruta.write_text(
        "agencias:\n"
        "  - id: a\n"
        "    nombre: A\n"
        "servicios:\n"
        "  - id: s\n"
        "    nombre: S\n"
        "    agencia: b\n"
        "    plazo_dias: 3\n"
        "  - id: t\n"
        "    nombre: T\n"
        "    agencia: a\n"
        "    plazo_dias: cero\n"
    )
    with pytest.raises(ArchivoInvalido) as error:
        cargar_catalogo(ruta)
    assert str(error.value) == f"{ruta}:12: campo 'servicios[1].plazo_dias': debe ser un número entero"
    ruta.write_text(ruta.read_text().replace("cero", "4"))
    with pytest.raises(ArchivoInvalido) as error:
        cargar_catalogo(ruta)
    assert str(error.value) == f"{ruta}:7: campo 'servicios[0].agencia': agencia desconocida 'b'"


def test_config_nombra_la_variable():
    with pytest.raises(config.ConfiguracionInvalida, match="GPR_KAFKA_BOOTSTRAP"):
        config.texto({}, "GPR_KAFKA_BOOTSTRAP")
    with pytest.raises(config.ConfiguracionInvalida, match="GPR_PARTICIONES"):
        config.entero({"GPR_PARTICIONES": "dos"}, "GPR_PARTICIONES", 4)
    with pytest.raises(config.ConfiguracionInvalida, match="GPR_TARDANZA_MAXIMA"):
        config.duracion({"GPR_TARDANZA_MAXIMA": "7 dias"}, "GPR_TARDANZA_MAXIMA", "7d")
    assert config.duracion({}, "GPR_TARDANZA_MAXIMA", "7d") == 7 * 86400


def test_config_puerto_compartido_por_los_servicios():
    from servicios.consulta import config as config_consulta
    from servicios.ingesta import config as config_ingesta

    assert config.puerto({}, "GPR_GRPC_PUERTO", 50051) == 50051
    assert config.puerto({"GPR_GRPC_PUERTO": "0"}, "GPR_GRPC_PUERTO", 50051) == 0
    assert config.puerto({"GPR_GRPC_PUERTO": "65535"}, "GPR_GRPC_PUERTO", 50051) == 65535
    for malo, motivo in (("65536", "0–65535"), ("-1", "al menos 0"), ("http", "entero")):
        with pytest.raises(config.ConfiguracionInvalida, match=f"GPR_METRICAS_PUERTO.*{motivo}"):
            config.puerto({"GPR_METRICAS_PUERTO": malo}, "GPR_METRICAS_PUERTO", 9464)
    # Los dos servicios gRPC lo usan para sus dos puertos, con la misma regla.
    for leer, base in ((config_consulta.leer, {"GPR_KAFKA_BOOTSTRAP": "k:9092"}),
                       (config_ingesta.leer, {"GPR_KAFKA_BOOTSTRAP": "k:9092", "GPR_INGESTA_CREDENCIALES": "c.yaml"})):
        for variable in ("GPR_GRPC_PUERTO", "GPR_METRICAS_PUERTO"):
            with pytest.raises(config.ConfiguracionInvalida, match=f"{variable}=70000 no es un puerto TCP"):
                leer({**base, variable: "70000"})


def test_config_del_procesador_valida_almacen_bucle_y_lotes():
    from servicios.procesador import config as config_procesador

    base = {"GPR_KAFKA_BOOTSTRAP": "k:9092"}
    cfg = config_procesador.leer(base)
    assert (cfg.almacen, cfg.bucle, cfg.lote_maximo, cfg.lote_espera_s) == ("rocksdb", "uvloop", 1000, 0.05)
    assert config_procesador.leer({**base, "GPR_BUCLE": "asyncio"}).bucle == "asyncio"
    for variable, malo in (("GPR_BUCLE", "trio"), ("GPR_ALMACEN", "disco"), ("GPR_LOTE_MAXIMO", "0"),
                           ("GPR_LOTE_MAXIMO", "mil")):
        with pytest.raises(config.ConfiguracionInvalida, match=variable):
            config_procesador.leer({**base, variable: malo})


def test_publicacion_pide_pasada_al_marcar_y_espacia_segun_duracion_y_retraso():
    """La publicación espera a que haya algo por publicar y separa las pasadas: al menos
    GPR_INTERVALO_PUBLICACION (0,25 s por omisión), 4 veces lo que tardó la última, y el
    mínimo ×4 si el trabajador va más de 1 s por detrás de lo que llega."""
    from servicios.procesador import config as config_procesador
    from servicios.procesador.app import Publicacion

    cfg = config_procesador.leer({"GPR_KAFKA_BOOTSTRAP": "k:9092"})
    publicacion = Publicacion(cfg, metas=None, metricas=None, agregacion=None, reloj=lambda: 0.0)
    # Al arrancar hay que republicar todo lo local.
    assert publicacion.hay_pendientes.is_set()
    publicacion.hay_pendientes.clear()
    publicacion.marcar(set())
    assert not publicacion.hay_pendientes.is_set()
    publicacion.marcar({"reniec"})
    assert publicacion.hay_pendientes.is_set()

    assert publicacion.espacio_s(0.01) == pytest.approx(0.25)
    assert publicacion.espacio_s(0.05) == pytest.approx(0.25)
    assert publicacion.espacio_s(0.1) == pytest.approx(0.4)
    publicacion.anotar_retraso(0.5)
    assert publicacion.espacio_s(0.01) == pytest.approx(0.25)
    publicacion.anotar_retraso(3.0)
    assert publicacion.espacio_s(0.01) == pytest.approx(1.0)
    assert publicacion.espacio_s(0.5) == pytest.approx(2.0)


class AdminSinPermiso:
    """Un broker con ACL que deja leer la configuración de gpr.aportes.v1 pero no cambiarla
    (el broker embebido no tiene permisos: la respuesta es la que da Apache Kafka)."""

    def __init__(self, leer_falla: bool = False):
        self.leer_falla = leer_falla

    def list_topics(self):
        return [APORTES, "otro"]

    def describe_configs(self, recursos, config_filter):
        from kafka.errors import TopicAuthorizationFailedError

        if self.leer_falla:
            raise TopicAuthorizationFailedError("DescribeConfigs denegado")
        return {"topic": {APORTES: {"max.message.bytes": {"value": "1048588"}}}}

    def alter_configs(self, recursos, **_):
        return {"topic": {APORTES: "[Error 29] TopicAuthorizationFailedError: denegado"}}


@pytest.mark.parametrize("leer_falla", [False, True])
def test_registro_maximo_que_no_se_puede_cambiar_dice_topico_valor_y_orden(leer_falla):
    with pytest.raises(TopicoInadecuado) as error:
        ajustar_registro_maximo(AdminSinPermiso(leer_falla), [APORTES])
    mensaje = str(error.value)
    assert f"el tópico {APORTES} " in mensaje and "TopicAuthorizationFailedError" in mensaje
    assert ("no informa su registro máximo" if leer_falla else "hasta 1048588 bytes") in mensaje
    assert (f"kafka-configs.sh --bootstrap-server <broker> --alter --entity-type topics --entity-name {APORTES} "
            f"--add-config max.message.bytes={16 * 1024 * 1024}") in mensaje
