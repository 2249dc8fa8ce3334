"""Etiquetas de `gpr_eventos_rechazados_total{agencia, fuente, motivo}`, sin Kafka: de los
bytes originales de cada registro rechazado (Evento o LoteEventos), con valores acotados.
Lo esperado se escribe a mano."""

from __future__ import annotations

from gpr.v1 import eventos_pb2 as pb
from servicios.consulta.rechazados import FUENTES_POR_AGENCIA, EtiquetasRechazos

AGENCIAS = ["reniec", "sunarp", "minsa"]
LOTE = [("gpr-lote", b"1")]


def _evento(agencia, fuente="tramites", n=0):
    return pb.Evento(evento_id=f"e{n}", fuente=fuente, agencia_id=agencia, servicio_id="dni", caso_id=f"c{n}")


def _lote(*eventos):
    return pb.LoteEventos(eventos=list(eventos)).SerializeToString()


def _motivo(texto):
    return [("gpr-motivo", texto), ("gpr-detalle", b"x")]


def test_un_evento_da_su_agencia_y_fuente():
    etiquetas = EtiquetasRechazos(AGENCIAS)
    assert etiquetas.de(_evento("reniec").SerializeToString(), _motivo(b"tardio")) == [("reniec", "tramites", "tardio")]
    # El motivo es la cabecera hasta ':'; sin cabecera, desconocido.
    assert etiquetas.de(_evento("sunarp", "portal").SerializeToString(), _motivo(b"campo_requerido:caso_id")) == [
        ("sunarp", "portal", "campo_requerido")]
    assert etiquetas.de(_evento("minsa").SerializeToString(), []) == [("minsa", "tramites", "desconocido")]


def test_un_lote_cuenta_cada_evento_con_su_agencia():
    etiquetas = EtiquetasRechazos(AGENCIAS)
    valor = _lote(_evento("reniec", n=1), _evento("reniec", n=2), _evento("sunarp", "app", n=3))
    assert etiquetas.de(valor, _motivo(b"error_interno:KeyError") + LOTE) == [
        ("reniec", "tramites", "error_interno"), ("reniec", "tramites", "error_interno"),
        ("sunarp", "app", "error_interno")]
    # Un lote vacío (decodifica, pero sin eventos) cuenta una vez, sin agencia.
    assert etiquetas.de(_lote(), _motivo(b"lote_vacio") + LOTE) == [("desconocida", "desconocida", "lote_vacio")]


def test_lo_que_no_se_puede_leer_o_no_esta_en_el_catalogo_es_desconocida():
    etiquetas = EtiquetasRechazos(AGENCIAS)
    m = _motivo(b"protobuf_invalido")
    assert etiquetas.de(b"\xff\xff\xff", m) == [("desconocida", "desconocida", "protobuf_invalido")]
    assert etiquetas.de(b"", m) == [("desconocida", "desconocida", "protobuf_invalido")]
    assert etiquetas.de(None, m) == [("desconocida", "desconocida", "protobuf_invalido")]
    # Un lote que no es un LoteEventos.
    assert etiquetas.de(b"\x0a\xff", m + LOTE) == [("desconocida", "desconocida", "protobuf_invalido")]
    # Una agencia inventada, o de 1 MB, no crea una serie propia.
    assert etiquetas.de(_evento("inventada").SerializeToString(), m) == [("desconocida", "tramites", "protobuf_invalido")]
    assert etiquetas.de(_evento("a" * 1_000_000).SerializeToString(), m)[0][0] == "desconocida"


def test_la_cabecera_gpr_agencia_manda():
    etiquetas = EtiquetasRechazos(AGENCIAS)
    evento = _evento("reniec").SerializeToString()
    assert etiquetas.de(evento, _motivo(b"tardio") + [("gpr-agencia", b"sunarp")]) == [("sunarp", "tramites", "tardio")]
    # Con el contenido ilegible, la cabecera da la agencia.
    assert etiquetas.de(b"\xff", _motivo(b"protobuf_invalido") + [("gpr-agencia", b"minsa")]) == [
        ("minsa", "desconocida", "protobuf_invalido")]
    # Una cabecera con una agencia que no está en el catálogo (o no UTF-8) no inventa una etiqueta.
    assert etiquetas.de(evento, _motivo(b"tardio") + [("gpr-agencia", b"otra")]) == [("desconocida", "tramites", "tardio")]
    assert etiquetas.de(evento, _motivo(b"tardio") + [("gpr-agencia", b"\xff")])[0][0] == "desconocida"


def test_fuentes_acotadas_por_agencia():
    etiquetas = EtiquetasRechazos(AGENCIAS)
    assert FUENTES_POR_AGENCIA == 10
    m = _motivo(b"tardio")
    fuentes = [f"sistema-{n}" for n in range(12)]
    obtenidas = [etiquetas.de(_evento("reniec", f).SerializeToString(), m)[0][1] for f in fuentes]
    # Las 10 primeras con su nombre; las siguientes, «otra».
    assert obtenidas == fuentes[:10] + ["otra", "otra"]
    # Una ya admitida sigue con su nombre; otra agencia tiene sus propias 10.
    assert etiquetas.de(_evento("reniec", "sistema-3").SerializeToString(), m)[0][1] == "sistema-3"
    assert etiquetas.de(_evento("sunarp", "sistema-11").SerializeToString(), m)[0][1] == "sistema-11"
    # Vacía: desconocida; larguísima o con saltos de línea: otra (y no gasta un lugar).
    otra = EtiquetasRechazos(AGENCIAS, fuentes_por_agencia=1)
    assert otra.de(_evento("minsa", "").SerializeToString(), m)[0][1] == "desconocida"
    assert otra.de(_evento("minsa", "f" * 1000).SerializeToString(), m)[0][1] == "otra"
    assert otra.de(_evento("minsa", "a\nb").SerializeToString(), m)[0][1] == "otra"
    assert otra.de(_evento("minsa", "bien").SerializeToString(), m)[0][1] == "bien"


def test_motivos_acotados():
    etiquetas = EtiquetasRechazos(AGENCIAS, motivos_maximos=2)
    evento = _evento("reniec").SerializeToString()
    assert [etiquetas.de(evento, _motivo(m))[0][2] for m in (b"tardio", b"duplicado", b"otro_mas", b"tardio")] == [
        "tardio", "duplicado", "otro", "tardio"]
    assert etiquetas.de(evento, _motivo(b"x" * 1000))[0][2] == "desconocido"
