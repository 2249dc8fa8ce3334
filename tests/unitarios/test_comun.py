"""Validación de eventos, catálogo y configuración: errores claros que nombran el campo."""

from __future__ import annotations

import pytest

from gpr.v1 import eventos_pb2 as pb
from servicios.comun import config
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.eventos import RegistroInvalido, clave_kafka, decodificar, validar
from servicios.comun.topicos import APORTES, CABECERA_LOTE, TopicoInadecuado, ajustar_registro_maximo
from servicios.comun.yaml_lineas import ArchivoInvalido

from conftest import CATALOGO

AHORA = 2_000_000_000


@pytest.fixture(scope="module")
def catalogo():
    return cargar_catalogo(CATALOGO)


def base(**cambios):
    e = pb.Evento(evento_id="e1", fuente="f", tipo=pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, agencia_id="reniec",
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
    ({"tipo": pb.TIPO_EVENTO_ETAPA_INICIADA}, "campo_requerido:etapa_id"),
    ({"agencia_id": "otra"}, "agencia_desconocida"),
    ({"servicio_id": "otro"}, "servicio_desconocido"),
    ({"tipo": pb.TIPO_EVENTO_ENCUESTA_RESPONDIDA}, "tipo_incoherente"),
    ({"tipo": pb.TIPO_EVENTO_COSTO_REGISTRADO}, "tipo_incoherente"),
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
    e = base(tipo=pb.TIPO_EVENTO_ENCUESTA_RESPONDIDA)
    e.satisfaccion.escala_max = 5
    e.satisfaccion.puntaje = 6
    assert validar(e, catalogo, AHORA) == "tipo_incoherente"
    e.satisfaccion.puntaje = 5
    assert validar(e, catalogo, AHORA) is None
    c = base(tipo=pb.TIPO_EVENTO_COSTO_REGISTRADO, caso_id="")
    c.costo.unidades, c.costo.nanos = 12, 500_000_000
    c.costo.moneda = "USD"
    assert validar(c, catalogo, AHORA) == "moneda_incoherente"
    c.costo.moneda = "PEN"
    assert validar(c, catalogo, AHORA) is None


def _con(tipo=pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, **cambios):
    """Un evento válido de `tipo` con `cambios` aplicados por ruta de campo ("costo.nanos")."""
    e = base(tipo=tipo)
    if tipo in (pb.TIPO_EVENTO_ETAPA_INICIADA, pb.TIPO_EVENTO_ETAPA_COMPLETADA):
        e.etapa_id = "impresion"
    if tipo == pb.TIPO_EVENTO_COSTO_REGISTRADO:
        e.costo.moneda, e.costo.unidades = "PEN", 3
    if tipo == pb.TIPO_EVENTO_RECLAMO_REGISTRADO:
        e.reclamo.reclamo_id = "R-1"
    if tipo == pb.TIPO_EVENTO_ENCUESTA_RESPONDIDA:
        e.satisfaccion.puntaje, e.satisfaccion.escala_max = 4, 5
    for ruta, valor in cambios.items():
        destino = e
        *padres, campo = ruta.split("__")
        for padre in padres:
            destino = getattr(destino, padre)
        if isinstance(valor, dict):
            getattr(destino, campo).update(valor)
        else:
            setattr(destino, campo, valor)
    return e


@pytest.mark.parametrize("evento, motivo", [
    # Identificadores con un patrón seguro: sin separadores de claves internas ni espacios.
    (_con(evento_id="a#b"), "identificador_invalido:evento_id"),
    (_con(evento_id="x" * 129), "campo_demasiado_largo:evento_id"),
    (_con(agencia_id="x" * 129), "campo_demasiado_largo:agencia_id"),
    (_con(evento_id="01J9Z-ábc_ñ.1:2/3@4+5"), None),
    (_con(caso_id="EXP 1"), "identificador_invalido:caso_id"),
    (_con(caso_id="EXP\x1f1"), "identificador_invalido:caso_id"),
    (_con(caso_id="2026/EXP-000123"), None),
    (_con(fuente="sistema|x"), "identificador_invalido:fuente"),
    (_con(fuente=""), None),
    # La etapa, una de las de su servicio en el catálogo (dni-duplicado: verificacion, impresion, entrega).
    (_con(pb.TIPO_EVENTO_ETAPA_INICIADA), None),
    (_con(pb.TIPO_EVENTO_ETAPA_INICIADA, etapa_id="impresion#x"), "etapa_desconocida"),
    (_con(pb.TIPO_EVENTO_ETAPA_COMPLETADA, etapa_id="calificacion"), "etapa_desconocida"),
    (_con(etapa_id="otra"), "etapa_desconocida"),
    # Instantes y plazos en rango.
    (_con(ocurrido_en__seconds=946_684_799), "valor_fuera_de_rango:ocurrido_en"),
    (_con(plazo_dias=3651), "valor_fuera_de_rango:plazo_dias"),
    (_con(plazo_dias=3650), None),
    (_con(pb.TIPO_EVENTO_ETAPA_INICIADA, intento=1001), "valor_fuera_de_rango:intento"),
    (_con(pb.TIPO_EVENTO_ENCUESTA_RESPONDIDA, satisfaccion__escala_max=101, satisfaccion__puntaje=1),
     "valor_fuera_de_rango:satisfaccion"),
    # Dinero: exacto, no negativo, hasta 4 decimales y mil millones de unidades.
    (_con(pb.TIPO_EVENTO_COSTO_REGISTRADO, costo__unidades=-1), "monto_invalido"),
    (_con(pb.TIPO_EVENTO_COSTO_REGISTRADO, costo__nanos=-5), "monto_invalido"),
    (_con(pb.TIPO_EVENTO_COSTO_REGISTRADO, costo__nanos=1_000_000_000), "monto_invalido"),
    (_con(pb.TIPO_EVENTO_COSTO_REGISTRADO, costo__nanos=123_450_000), "monto_invalido"),
    (_con(pb.TIPO_EVENTO_COSTO_REGISTRADO, costo__nanos=123_400_000), None),
    (_con(pb.TIPO_EVENTO_COSTO_REGISTRADO, costo__unidades=1_000_000_000), None),
    (_con(pb.TIPO_EVENTO_COSTO_REGISTRADO, costo__unidades=1_000_000_000, costo__nanos=100_000), "monto_invalido"),
    (_con(pb.TIPO_EVENTO_COSTO_REGISTRADO, costo__unidades=2**62), "monto_invalido"),
    # Textos y tamaño acotados.
    (_con(region="r" * 257), "campo_demasiado_largo:region"),
    (_con(atributos={f"k{i}": "v" for i in range(33)}), "campo_demasiado_largo:atributos"),
    (_con(atributos={"nota": "x" * 257}), "campo_demasiado_largo:atributos"),
    (_con(pb.TIPO_EVENTO_RECLAMO_REGISTRADO, reclamo__categoria="c" * 257), "campo_demasiado_largo:reclamo.categoria"),
    (_con(pb.TIPO_EVENTO_RECLAMO_REGISTRADO, reclamo__reclamo_id="R 1"), "identificador_invalido:reclamo.reclamo_id"),
    (_con(atributos={f"k{i}": "v" * 250 for i in range(32)}), None),
])
def test_lo_que_el_procesador_guarda_queda_acotado(catalogo, evento, motivo):
    assert validar(evento, catalogo, AHORA) == motivo


def test_un_evento_enorme_se_rechaza_aunque_su_tipo_no_use_el_campo_grande(catalogo):
    # Una solicitud no usa `reclamo`, pero el estado del caso guarda el evento entero.
    e = _con()
    e.reclamo.categoria = "c" * 10_000
    assert validar(e, catalogo, AHORA) is None
    e.reclamo.categoria = "c" * 20_000
    assert validar(e, catalogo, AHORA) == "evento_demasiado_grande"


def test_un_costo_con_el_campo_monto_del_contrato_anterior_se_rechaza(catalogo):
    """`monto` (double, campo 1) ya no existe: leído con el contrato nuevo sería un costo de 0."""
    import struct

    e = _con(pb.TIPO_EVENTO_COSTO_REGISTRADO)
    e.costo.unidades = 0
    viejo = pb.Evento.FromString(e.SerializeToString() + b"\x92\x01\x09\x09" + struct.pack("<d", 12.5))
    assert (viejo.costo.unidades, viejo.costo.nanos) == (0, 0)
    assert validar(viejo, catalogo, AHORA) == "monto_invalido"
    assert validar(e, catalogo, AHORA) is None


def test_clave_kafka_por_agencia_y_caso():
    assert clave_kafka(base(agencia_id="reniec", caso_id="EXP-1")) == b"reniec/EXP-1"
    assert clave_kafka(base(agencia_id="sunarp", caso_id="EXP-1")) == b"sunarp/EXP-1"
    assert clave_kafka(base(tipo=pb.TIPO_EVENTO_ENCUESTA_RESPONDIDA, caso_id="", evento_id="e9")) == b"reniec/e9"


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
    assert (cfg.almacen, cfg.bucle, cfg.lote_maximo, cfg.lote_espera_s) == ("rocksdb", "uvloop", 3000, 0.05)
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
    from servicios.procesador.publicacion import Publicacion

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


class AdminConAcl:
    """Un broker con ACL sobre gpr.aportes.v1 (el embebido no tiene permisos). Responde como
    kafka-python 3 ante Apache Kafka: una lectura denegada da la descripción vacía sin error
    (ignora el código de error por recurso), y un cambio denegado, el error como texto."""

    def __init__(self, valor: str | None, cambiar: bool):
        self.valor, self.cambiar = valor, cambiar
        self.cambios: list[str] = []

    def list_topics(self):
        return [APORTES, "otro"]

    def describe_configs(self, recursos, config_filter):
        configuracion = {} if self.valor is None else {"max.message.bytes": {"value": self.valor}}
        return {"topic": {APORTES: configuracion}}

    def alter_configs(self, recursos, **_):
        self.cambios += [r.configs["max.message.bytes"] for r in recursos]
        if self.cambiar:
            return {"topic": {APORTES: "OK"}}
        return {"topic": {APORTES: "[Error 29] TopicAuthorizationFailedError: denegado"}}


ORDEN = (f"kafka-configs.sh --bootstrap-server <broker> --alter --entity-type topics --entity-name {APORTES} "
         f"--add-config max.message.bytes={16 * 1024 * 1024}")


def test_registro_maximo_chico_que_no_se_puede_cambiar_no_deja_arrancar_y_dice_la_orden():
    with pytest.raises(TopicoInadecuado) as error:
        ajustar_registro_maximo(AdminConAcl("1048588", cambiar=False), [APORTES])
    mensaje = str(error.value)
    assert f"el tópico {APORTES} admite registros de hasta 1048588 bytes" in mensaje
    assert "TopicAuthorizationFailedError" in mensaje and ORDEN in mensaje


def test_registro_maximo_ni_legible_ni_cambiable_arranca_con_aviso():
    ajuste = ajustar_registro_maximo(AdminConAcl(None, cambiar=False), [APORTES])
    assert ajuste.cambiados == {}
    assert list(ajuste.sin_verificar) == [APORTES]
    assert "no se pudo comprobar" in ajuste.sin_verificar[APORTES] and ORDEN in ajuste.sin_verificar[APORTES]


@pytest.mark.parametrize("valor, cambiado", [(None, True), ("1048588", True), (str(16 * 1024 * 1024), False),
                                             (str(64 * 1024 * 1024), False), ("no-es-un-numero", True)])
def test_registro_maximo_se_cambia_solo_si_no_alcanza_o_no_se_sabe(valor, cambiado):
    admin = AdminConAcl(valor, cambiar=True)
    ajuste = ajustar_registro_maximo(admin, [APORTES, "no-existe"])
    antes = int(valor) if valor and valor.isdigit() else None
    assert ajuste.cambiados == ({APORTES: antes} if cambiado else {})
    assert admin.cambios == ([str(16 * 1024 * 1024)] if cambiado else [])
    assert ajuste.sin_verificar == {}


def test_las_correcciones_del_broker_embebido_solo_con_tansu():
    from servicios.comun.broker import con_broker_embebido, es_tansu

    assert es_tansu("tansu_cluster") and not es_tansu("MkU3OEVBNTcwNTJENDM2Qk") and not es_tansu(None)
    preguntas = []

    def identificador():
        preguntas.append(1)
        return "MkU3OEVBNTcwNTJENDM2Qk"  # uno de Apache Kafka (al azar, en base64)

    assert not con_broker_embebido("auto", identificador) and preguntas == [1]
    assert con_broker_embebido("auto", lambda: "tansu_cluster")
    # Forzado: no se pregunta al broker.
    assert con_broker_embebido("si", identificador) and not con_broker_embebido("no", identificador)
    assert preguntas == [1]
    assert config.broker_embebido({}) == "auto"
    with pytest.raises(config.ConfiguracionInvalida, match="GPR_KAFKA_EMBEBIDO"):
        config.broker_embebido({"GPR_KAFKA_EMBEBIDO": "quizas"})
