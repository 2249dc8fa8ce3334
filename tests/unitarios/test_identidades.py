"""Deduplicación por (fuente, evento_id) en la agencia sea cual sea el caso, su memoria acotada
a la tolerancia de tardanza, la tardanza por partición de origen y el reparto por agencia.

Los valores esperados se cuentan a mano sobre escenarios chicos."""

from __future__ import annotations

import zlib

import pytest

from conftest import AHORA, CATALOGO
from gpr.v1 import eventos_pb2 as pb
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.topicos import CABECERA_LOTE, CABECERA_ORIGEN
from servicios.procesador.dominio import identidades as ids
from servicios.procesador.dominio.etapa_casos import EtapaCasos, Registro, aplicar_escrituras
from servicios.procesador.dominio.reparto import Reparto, origen, particion_de_agencia, repartir

H = 3600
D = 86400
CAT = cargar_catalogo(CATALOGO)
# Un instante en punto (hora entera), dos meses antes de AHORA.
T0 = (AHORA - 60 * D) // H * H


def _evento(evento_id, t, caso, agencia="reniec", servicio="dni-duplicado", fuente="sistema",
            tipo=pb.TIPO_EVENTO_SOLICITUD_RECIBIDA):
    e = pb.Evento(evento_id=evento_id, fuente=fuente, tipo=tipo, agencia_id=agencia, servicio_id=servicio,
                  caso_id=caso)
    e.ocurrido_en.seconds = t
    return e


class Etapa:
    """La etapa por caso sobre un dict, registro a registro, con la partición de origen que se
    le diga."""

    def __init__(self, tardanza_s=2 * D, particiones_origen=1):
        self.casos: dict[bytes, bytes] = {}
        self.etapa = EtapaCasos(CAT, tardanza_s, lambda: AHORA, particiones_origen=particiones_origen)
        self.offset = 0

    def procesar(self, eventos, origen_=0):
        registros = []
        for e in eventos:
            registros.append(Registro(0, self.offset, b"k", e.SerializeToString(), (), origen_))
            self.offset += 1
        salida = self.etapa.procesar(registros, self.casos)
        aplicar_escrituras(self.casos, salida.escrituras)
        return salida

    def claves(self, prefijo: bytes) -> list[bytes]:
        return [c for c in self.casos if c.startswith(prefijo)]


def _motivos(salida):
    return [r.motivo for r in salida.rechazos]


def test_la_misma_identidad_en_otro_caso_se_rechaza_nombrando_el_primero():
    etapa = Etapa()
    salida = etapa.procesar([_evento("e1", T0, "EXP-1"), _evento("e1", T0 + 60, "EXP-2")])
    assert salida.aceptados == 1 and _motivos(salida) == ["identidad_repetida"]
    assert "'EXP-1'" in salida.rechazos[0].detalle and salida.rechazos[0].agencia == "reniec"
    # En otro lote, igual; en el mismo caso es un repetido (reintento seguro), no un rechazo.
    salida = etapa.procesar([_evento("e1", T0 + 120, "EXP-3"), _evento("e1", T0, "EXP-1")])
    assert (salida.aceptados, salida.duplicados, _motivos(salida)) == (0, 1, ["identidad_repetida"])
    # Otra fuente es otra identidad.
    assert etapa.procesar([_evento("e1", T0, "EXP-4", fuente="otro")]).aceptados == 1


def test_la_identidad_es_de_la_agencia_otra_agencia_puede_usar_la_misma():
    etapa = Etapa()
    salida = etapa.procesar([_evento("e1", T0, "EXP-1"),
                             _evento("e1", T0, "EXP-1", agencia="sunarp", servicio="certificado-literal"),
                             _evento("e1", T0, "EXP-9", agencia="minsa", servicio="cita-especialidad")])
    assert (salida.aceptados, _motivos(salida)) == (3, [])


def test_una_identidad_se_olvida_cuando_su_hora_sale_de_la_tolerancia():
    etapa = Etapa(tardanza_s=2 * D)
    etapa.procesar([_evento("viejo", T0, "EXP-1")])
    # Marca de agua a T0 + 2 d + 1 h: la hora de T0 (hasta T0 + 1 h) queda fuera de la tolerancia.
    etapa.procesar([_evento("nuevo", T0 + 2 * D + H, "EXP-2")])
    assert ids.clave_identidad("reniec", "sistema\x1fviejo") not in etapa.casos
    assert ids.clave_identidad("reniec", "sistema\x1fnuevo") in etapa.casos
    # Ya no se recuerda: una copia en otro caso, con un instante dentro de la tolerancia, cuenta.
    salida = etapa.procesar([_evento("viejo", T0 + 2 * D, "EXP-3")])
    assert (salida.aceptados, _motivos(salida)) == (1, [])


def test_una_identidad_en_el_borde_de_la_tolerancia_aun_se_recuerda():
    etapa = Etapa(tardanza_s=2 * D)
    etapa.procesar([_evento("viejo", T0 + H - 1, "EXP-1")])
    # Marca T0 + 2 d + 1 h - 1 s: un evento de T0 + H - 1 aún no es tardío.
    etapa.procesar([_evento("nuevo", T0 + 2 * D + H - 1, "EXP-2")])
    salida = etapa.procesar([_evento("viejo", T0 + 2 * D, "EXP-3")])
    assert _motivos(salida) == ["identidad_repetida"]


def test_la_memoria_queda_acotada_a_las_horas_dentro_de_la_tolerancia():
    """Diez días de eventos, 3 por hora, con tolerancia de un día: al final solo quedan las
    identidades de las horas que no salieron de la tolerancia (contadas a mano)."""
    etapa = Etapa(tardanza_s=D)
    horas = 10 * 24
    for h in range(horas):
        etapa.procesar([_evento(f"e{h}-{i}", T0 + h * H + i * 60, f"EXP-{h}-{i}") for i in range(3)])
    marca = T0 + (horas - 1) * H + 120
    # Quedan las horas h con (h + 1) * H > marca - D, es decir, h >= horas - 1 - 24 + 1.
    vivas = [h for h in range(horas) if T0 + (h + 1) * H > marca - D]
    assert len(vivas) == 25
    assert len(etapa.claves(b"\xfei")) == 3 * len(vivas)
    assert len(etapa.claves(b"\xfet")) == len(vivas) and len(etapa.claves(b"\xfen")) == len(vivas)
    assert etapa.casos[b"\xfeoreniec"] == str(T0 // H + vivas[0]).encode()


def test_el_barrido_se_reparte_entre_lotes_tras_un_salto_largo():
    # Con 20 días de tolerancia, las 300 horas siguen vivas hasta el salto.
    etapa = Etapa(tardanza_s=20 * D)
    for h in range(300):
        etapa.procesar([_evento(f"e{h}", T0 + h * H, f"EXP-{h}")])
    # Un evento 60 días después: 300 horas vencidas, a lo más HORAS_POR_BARRIDO por lote.
    etapa.procesar([_evento("salto", T0 + 60 * D, "EXP-salto")])
    assert len(etapa.claves(b"\xfei")) == 300 + 1 - ids.HORAS_POR_BARRIDO
    etapa.procesar([_evento("otro", T0 + 60 * D, "EXP-otro")])
    assert sorted(etapa.claves(b"\xfei")) == sorted([ids.clave_identidad("reniec", "sistema\x1fsalto"),
                                                    ids.clave_identidad("reniec", "sistema\x1fotro")])


def test_la_tardanza_se_juzga_por_particion_de_origen():
    """El reparto mezcla particiones a distinto ritmo: la partición 0 va diez días por delante
    de la 1, y lo de la 1 no es tardío para la suya."""
    etapa = Etapa(tardanza_s=7 * D, particiones_origen=2)
    etapa.procesar([_evento("a", T0 + 10 * D, "EXP-A")], origen_=0)
    salida = etapa.procesar([_evento("b", T0, "EXP-B")], origen_=1)
    assert (salida.aceptados, _motivos(salida)) == (1, [])
    # Pero en la partición 0 sí lo es.
    assert _motivos(etapa.procesar([_evento("c", T0, "EXP-C")], origen_=0)) == ["tardio"]
    # Y una identidad se olvida solo cuando vence en todas las particiones con marca: la de
    # «b» (T0) sigue dentro de la tolerancia de la partición 1.
    assert _motivos(etapa.procesar([_evento("b", T0 + 9 * D, "EXP-B2")], origen_=0)) == ["identidad_repetida"]


# --- el reparto -------------------------------------------------------------------------------


def _eventos_de(repartido):
    return [(e.agencia_id, e.evento_id) for e in pb.LoteEventos.FromString(repartido.valor).eventos]


def test_un_evento_va_a_la_particion_de_su_agencia_en_un_paquete_con_sus_bytes_y_su_origen():
    e = _evento("e1", T0, "EXP-1", agencia="sunarp", servicio="certificado-literal")
    valor = e.SerializeToString()
    (unico,) = repartir(b"sunarp/EXP-1", valor, [("traceparent", b"00-ab")], 4, 3)
    assert unico.particion == zlib.crc32(b"sunarp") % 4 == particion_de_agencia("sunarp", 4)
    # Un LoteEventos de un evento: campo 1, su largo y los bytes originales, sin reserializar.
    assert unico.valor == b"\x0a" + bytes([len(valor)]) + valor and unico.clave == b"sunarp/EXP-1"
    assert list(unico.cabeceras) == [(CABECERA_LOTE, b"1"), (CABECERA_ORIGEN, b"3")]
    assert origen(unico.cabeceras) == 3


def test_los_sueltos_se_empaquetan_por_particion_de_destino_y_de_origen_en_orden():
    particiones = 8
    reparto = Reparto(particiones)
    entrada = [("r1", "reniec", 0), ("s1", "sunarp", 0), ("r2", "reniec", 1), ("r3", "reniec", 0)]
    for evento_id, agencia, particion_origen in entrada:
        servicio = "dni-duplicado" if agencia == "reniec" else "certificado-literal"
        e = _evento(evento_id, T0, "EXP-" + evento_id, agencia=agencia, servicio=servicio)
        reparto.agregar(b"k", e.SerializeToString(), [], particion_origen, instante=T0 + len(evento_id))
    salida = {(r.particion, origen(r.cabeceras)): _eventos_de(r) for r in reparto.registros([("traceparent", b"t")])}
    reniec, sunarp = particion_de_agencia("reniec", 8), particion_de_agencia("sunarp", 8)
    assert salida == {(reniec, 0): [("reniec", "r1"), ("reniec", "r3")], (sunarp, 0): [("sunarp", "s1")],
                      (reniec, 1): [("reniec", "r2")]}
    assert reparto.registros() == []


def test_un_paquete_se_cierra_al_llegar_a_su_tope_y_todos_llevan_las_cabeceras_del_lote():
    reparto = Reparto(4, eventos_por_paquete=3)
    for i in range(7):
        reparto.agregar(b"k", _evento(f"e{i}", T0, f"EXP-{i}").SerializeToString(), [], 0)
    paquetes = reparto.registros([("traceparent", b"t")])
    assert [len(_eventos_de(r)) for r in paquetes] == [3, 3, 1]
    assert all(list(r.cabeceras) == [(CABECERA_LOTE, b"1"), (CABECERA_ORIGEN, b"0"), ("traceparent", b"t")]
               for r in paquetes)


def test_un_lote_de_varias_agencias_se_parte_en_un_paquete_por_particion():
    particiones = 8
    assert len({particion_de_agencia(a, particiones) for a in ("reniec", "sunarp", "minsa")}) == 3
    eventos = [_evento("r1", T0, "R-1"), _evento("s1", T0, "S-1", "sunarp", "certificado-literal"),
               _evento("r2", T0, "R-2"), _evento("m1", T0, "M-1", "minsa", "cita-especialidad")]
    partes = repartir(b"reniec/R-1", pb.LoteEventos(eventos=eventos).SerializeToString(),
                      [(CABECERA_LOTE, b"1")], particiones, 0)
    por_particion = {p.particion: ([e for _, e in _eventos_de(p)], p.clave) for p in partes}
    assert por_particion == {particion_de_agencia("reniec", 8): (["r1", "r2"], b"reniec/R-1"),
                             particion_de_agencia("sunarp", 8): (["s1"], b"sunarp/S-1"),
                             particion_de_agencia("minsa", 8): (["m1"], b"minsa/M-1")}
    assert all(list(p.cabeceras) == [(CABECERA_LOTE, b"1"), (CABECERA_ORIGEN, b"0")] for p in partes)


@pytest.mark.parametrize("valor,cabeceras", [(b"\x00\xffbasura", []), (b"", []), (None, []),
                                             (b"\x10\x01", [(CABECERA_LOTE, b"1")])])
def test_lo_que_no_se_decodifica_va_tal_cual_a_la_particion_de_su_clave(valor, cabeceras):
    (unico,) = repartir(b"clave-rara", valor, cabeceras, 4, 1)
    assert (unico.particion, unico.valor) == (zlib.crc32(b"clave-rara") % 4, valor)
    assert list(unico.cabeceras) == [*cabeceras, (CABECERA_ORIGEN, b"1")]


def test_una_clave_de_cabecera_que_no_es_utf8_se_reenvia_con_escapes():
    cruda = b"\xffx".decode("utf-8", "surrogateescape")
    (unico,) = repartir(b"k", b"\x00no-es-un-evento", [(cruda, b"v"), ("ñ", b"w")], 4, 0)
    assert list(unico.cabeceras) == [("\\xffx", b"v"), ("ñ", b"w"), (CABECERA_ORIGEN, b"0")]
    assert all(nombre.encode() for nombre, _ in unico.cabeceras)


def test_el_origen_es_la_ultima_cabecera_y_una_que_no_se_entiende_no_cuenta():
    assert origen([(CABECERA_ORIGEN, b"7"), (CABECERA_ORIGEN, b"2")]) == 2
    assert origen([(CABECERA_ORIGEN, b"x")]) is None and origen([]) is None
    # Un emisor que manda su propia cabecera de origen no elige la marca: el reparto pone la suya.
    for valor in (_evento("e", T0, "EXP").SerializeToString(), b"\x00basura"):
        (unico,) = repartir(b"k", valor, [(CABECERA_ORIGEN, b"9")], 4, 1)
        assert origen(unico.cabeceras) == 1


def test_el_reparto_no_lanza_nunca_ante_cabeceras_imposibles():
    # Unas cabeceras que ni se pueden recorrer como pares: el registro sigue, con solo su origen.
    (unico,) = repartir(b"k", b"\x00basura", [("solo-un-elemento",)], 4, 2)
    assert (unico.particion, unico.valor, list(unico.cabeceras)) == (zlib.crc32(b"k") % 4, b"\x00basura",
                                                                      [(CABECERA_ORIGEN, b"2")])


def test_un_evento_rechazado_de_un_paquete_lleva_sus_bytes_originales_y_la_clave_del_contrato():
    """Un mapa se serializa en cualquier orden: volver a serializar el evento no daría los
    bytes que mandó el emisor. Se arma uno con los atributos en un orden que protobuf no
    reproduce y se comprueba que el rechazo trae esos bytes."""
    e = _evento("attr", T0, "EXP-A")
    e.atributos.update({f"k{i}": "v" for i in range(40)})  # más de 32: campo_demasiado_largo
    propio = e.SerializeToString()
    # Los mismos campos con las entradas del mapa al revés (campo 19, tipo 2).
    cabeza = pb.Evento()
    cabeza.CopyFrom(e)
    cabeza.ClearField("atributos")
    entradas = []
    for clave in reversed(sorted(e.atributos)):
        entrada = pb.Evento(atributos={clave: "v"}).SerializeToString()
        entradas.append(entrada)
    raro = cabeza.SerializeToString() + b"".join(entradas)
    assert pb.Evento.FromString(raro) == e and raro != propio and pb.Evento.FromString(raro).SerializeToString() != raro
    (paquete,) = repartir(b"clave-del-emisor", raro, [], 4, 0)
    etapa = Etapa()
    salida = etapa.etapa.procesar([Registro(0, 0, paquete.clave, paquete.valor, paquete.cabeceras, 0)], etapa.casos)
    (rechazo,) = salida.rechazos
    assert (rechazo.motivo, rechazo.valor, rechazo.clave) == ("campo_demasiado_largo:atributos", raro, b"reniec/EXP-A")


def test_un_evento_de_un_lote_del_emisor_llega_al_paquete_con_sus_bytes():
    """Los eventos de un LoteEventos del emisor se recortan de sus bytes, no se reserializan: el
    mismo evento con el mapa en otro orden llega igual al paquete (y a rechazados)."""
    e = _evento("attr", T0, "EXP-A")
    cabeza = pb.Evento()
    cabeza.CopyFrom(e)
    raro = cabeza.SerializeToString() + b"".join(pb.Evento(atributos={f"k{i}": "v"}).SerializeToString()
                                                for i in reversed(range(5)))
    assert pb.Evento.FromString(raro).SerializeToString() != raro
    otro = _evento("otro", T0, "EXP-B").SerializeToString()
    lote = b"".join(b"\x0a" + bytes([len(x)]) + x for x in (raro, otro))
    (paquete,) = repartir(b"k", lote, [(CABECERA_LOTE, b"1")], 4, 0)
    assert paquete.valor == lote
