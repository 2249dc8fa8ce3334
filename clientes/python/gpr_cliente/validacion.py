"""Validación de un evento del contrato: la misma en el cliente de una agencia, en la Ingesta
y en el procesador (una sola implementación; `servicios.comun.eventos` la importa de aquí).

Pura (sin E/S): recibe el evento, el catálogo y la hora, y devuelve el motivo de rechazo, el
mismo que el procesador pone en la cabecera `gpr-motivo` del tópico de rechazados, o None.
Corre por cada evento en el procesador: cada lectura de campo cuenta.
"""

from __future__ import annotations

import re

from google.protobuf import unknown_fields

from gpr.v1 import eventos_pb2 as pb
from gpr_cliente import dinero
from gpr_cliente.catalogo import Catalogo

# Un evento más adelantado que esto respecto del reloj de la plataforma se rechaza.
FUTURO_TOLERADO_S = 300
# Ni un evento anterior al año 2000 (casi siempre un instante en milisegundos leído como
# segundos, o uno sin inicializar) ni un plazo de más de diez años: con instantes absurdos las
# ventanas mensuales saldrían del calendario.
INSTANTE_MINIMO_S = 946_684_800
PLAZO_MAXIMO_DIAS = 3650
INTENTO_MAXIMO = 1000
ESCALA_MAXIMA_SATISFACCION = 100
# Identificadores que pone la agencia (evento_id, fuente, caso_id, reclamo_id): hasta 128
# caracteres (más: `campo_demasiado_largo`), solo letras (de cualquier alfabeto), dígitos y
# `_ . : / @ + -` (si no: `identificador_invalido`). Sin espacios, controles ni los
# separadores de las claves internas (`#`, `|`, U+001F).
LARGO_MAXIMO_IDENTIFICADOR = 128
_IDENTIFICADOR = re.compile(r"[\w.:/@+\-]+")
# Textos libres (región, categoría, atributos…): largo acotado (más: `campo_demasiado_largo`),
# para que ningún evento haga crecer sin límite el estado de su caso, que lo guarda entero.
LARGO_MAXIMO_TEXTO = 256
ATRIBUTOS_MAXIMOS = 32
# Un evento serializado no ocupa más que esto (uno normal ocupa unos cientos de bytes).
BYTES_MAXIMOS_EVENTO = 16 * 1024

TIPOS_DE_CASO = frozenset({
    pb.TIPO_EVENTO_SOLICITUD_RECIBIDA,
    pb.TIPO_EVENTO_ETAPA_INICIADA,
    pb.TIPO_EVENTO_ETAPA_COMPLETADA,
    pb.TIPO_EVENTO_CASO_DEVUELTO,
    pb.TIPO_EVENTO_SERVICIO_ENTREGADO,
    pb.TIPO_EVENTO_CASO_CERRADO,
})
TIPOS_DE_ETAPA = frozenset({pb.TIPO_EVENTO_ETAPA_INICIADA, pb.TIPO_EVENTO_ETAPA_COMPLETADA})
_TIPOS_CONOCIDOS = frozenset(pb.TipoEvento.values())
_NO_ESPECIFICADO = pb.TIPO_EVENTO_NO_ESPECIFICADO
_TIPOS_CON_DETALLE = frozenset({pb.TIPO_EVENTO_ENCUESTA_RESPONDIDA, pb.TIPO_EVENTO_RECLAMO_REGISTRADO, pb.TIPO_EVENTO_RECLAMO_RESUELTO,
                                pb.TIPO_EVENTO_COSTO_REGISTRADO})


def validar(evento: pb.Evento, catalogo: Catalogo, ahora_s: float) -> str | None:
    """Motivo de rechazo del evento, o None si es aceptable. No juzga la tardanza (ver procesador).

    Lo que el procesador guarda o usa como clave queda acotado aquí: identificadores con un
    patrón seguro, etapas del catálogo, instantes e importes en rango, textos de largo acotado.
    """
    # Cada campo se lee una vez: leer un campo de un mensaje protobuf cuesta más que la
    # comparación, y esto corre por cada evento.
    tipo = evento.tipo
    evento_id = evento.evento_id
    if not evento_id:
        return "campo_requerido:evento_id"
    motivo = _identificador(evento_id, "evento_id")
    if motivo is not None:
        return motivo
    if tipo == _NO_ESPECIFICADO:
        return "campo_requerido:tipo"
    if tipo not in _TIPOS_CONOCIDOS:
        return "tipo_incoherente"
    ocurrido = evento.ocurrido_en.seconds if evento.HasField("ocurrido_en") else 0
    if ocurrido <= 0:
        return "campo_requerido:ocurrido_en"
    agencia_id = evento.agencia_id
    if not agencia_id:
        return "campo_requerido:agencia_id"
    if len(agencia_id) > LARGO_MAXIMO_IDENTIFICADOR:
        return "campo_demasiado_largo:agencia_id"
    servicio_id = evento.servicio_id
    if not servicio_id:
        return "campo_requerido:servicio_id"
    if len(servicio_id) > LARGO_MAXIMO_IDENTIFICADOR:
        return "campo_demasiado_largo:servicio_id"
    caso_id = evento.caso_id
    if caso_id:
        motivo = _identificador(caso_id, "caso_id")
        if motivo is not None:
            return motivo
    elif tipo in TIPOS_DE_CASO:
        return "campo_requerido:caso_id"
    fuente = evento.fuente
    if fuente:
        motivo = _identificador(fuente, "fuente")
        if motivo is not None:
            return motivo
    etapa_id = evento.etapa_id
    if tipo in TIPOS_DE_ETAPA and not etapa_id:
        return "campo_requerido:etapa_id"
    if len(etapa_id) > LARGO_MAXIMO_IDENTIFICADOR:
        return "campo_demasiado_largo:etapa_id"
    agencia = catalogo.agencias.get(agencia_id)
    if agencia is None:
        return "agencia_desconocida"
    servicio = catalogo.servicios.get((agencia_id, servicio_id))
    if servicio is None:
        return "servicio_desconocido"
    if etapa_id and etapa_id not in servicio.etapas:
        return "etapa_desconocida"
    if ocurrido > ahora_s + FUTURO_TOLERADO_S:
        return "tiempo_futuro"
    if ocurrido < INSTANTE_MINIMO_S:
        return "valor_fuera_de_rango:ocurrido_en"
    if evento.intento < 0 or (evento.HasField("plazo_dias") and evento.plazo_dias <= 0):
        return "tipo_incoherente"
    if evento.intento > INTENTO_MAXIMO:
        return "valor_fuera_de_rango:intento"
    if evento.HasField("plazo_dias") and evento.plazo_dias > PLAZO_MAXIMO_DIAS:
        return "valor_fuera_de_rango:plazo_dias"
    if tipo in _TIPOS_CON_DETALLE:
        motivo = _validar_detalle(evento, tipo, agencia)
        if motivo is not None:
            return motivo
    if len(evento.region) > LARGO_MAXIMO_TEXTO:
        return "campo_demasiado_largo:region"
    if evento.atributos:
        motivo = _validar_atributos(evento.atributos)
        if motivo is not None:
            return motivo
    if evento.ByteSize() > BYTES_MAXIMOS_EVENTO:
        return "evento_demasiado_grande"
    return None


def _identificador(valor: str, campo: str) -> str | None:
    if len(valor) > LARGO_MAXIMO_IDENTIFICADOR:
        return f"campo_demasiado_largo:{campo}"
    if not _IDENTIFICADOR.fullmatch(valor):
        return f"identificador_invalido:{campo}"
    return None


def _validar_atributos(atributos) -> str | None:
    if len(atributos) > ATRIBUTOS_MAXIMOS:
        return "campo_demasiado_largo:atributos"
    for clave, valor in atributos.items():
        if len(clave) > LARGO_MAXIMO_TEXTO or len(valor) > LARGO_MAXIMO_TEXTO:
            return "campo_demasiado_largo:atributos"
    return None


def _validar_detalle(evento: pb.Evento, tipo: int, agencia) -> str | None:
    if tipo == pb.TIPO_EVENTO_ENCUESTA_RESPONDIDA:
        s = evento.satisfaccion
        if not evento.HasField("satisfaccion") or s.escala_max < 2 or not 1 <= s.puntaje <= s.escala_max:
            return "tipo_incoherente"
        if s.escala_max > ESCALA_MAXIMA_SATISFACCION:
            return "valor_fuera_de_rango:satisfaccion"
    elif tipo in (pb.TIPO_EVENTO_RECLAMO_REGISTRADO, pb.TIPO_EVENTO_RECLAMO_RESUELTO):
        if not evento.HasField("reclamo") or not evento.reclamo.reclamo_id:
            return "tipo_incoherente"
        reclamo = evento.reclamo
        motivo = _identificador(reclamo.reclamo_id, "reclamo.reclamo_id")
        if motivo is not None:
            return motivo
        if len(reclamo.categoria) > LARGO_MAXIMO_TEXTO:
            return "campo_demasiado_largo:reclamo.categoria"
        if len(reclamo.etapa_relacionada) > LARGO_MAXIMO_TEXTO:
            return "campo_demasiado_largo:reclamo.etapa_relacionada"
    elif tipo == pb.TIPO_EVENTO_COSTO_REGISTRADO:
        if not evento.HasField("costo"):
            return "tipo_incoherente"
        costo = evento.costo
        if dinero.motivo_importe_invalido(costo.unidades, costo.nanos) is not None:
            return "monto_invalido"
        if len(unknown_fields.UnknownFieldSet(costo)):
            # Un emisor con el contrato anterior (`monto`, un double, campo 1): sin esto su
            # importe se leería como 0 y el costo por trámite bajaría sin que nadie lo note.
            return "monto_invalido"
        if costo.moneda != agencia.moneda:
            return "moneda_incoherente"
    return None
