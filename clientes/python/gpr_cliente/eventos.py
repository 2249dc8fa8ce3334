"""Constructores tipados de eventos: uno por tipo de evento del contrato.

Cada constructor arma el `gpr.v1.Evento` y lo pasa por `validar`, la misma función con que la
Ingesta y el procesador deciden qué rechazar: un evento que ellos rechazarían no sale de aquí
(`EventoInvalido`, con el campo y el motivo del procesador). Sin E/S; el reloj se inyecta.

    eventos = Eventos(catalogo, agencia_id="sunarp", fuente="sistema-tramites")
    e = eventos.solicitud_recibida("certificado-literal", "EXP-1", datetime.now(timezone.utc), canal=Canal.WEB)

Cada evento lleva un `evento_id` propio (un UUID si no se da): reenviarlo tal cual tras un error
es seguro, porque el procesador descarta los repetidos.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import IntEnum

from gpr.v1 import eventos_pb2 as pb
from gpr_cliente import dinero
from gpr_cliente.catalogo import Catalogo
from gpr_cliente.validacion import BYTES_MAXIMOS_EVENTO, FUTURO_TOLERADO_S, validar

VERSION_ESQUEMA = 1

Instante = datetime | int | float
Importe = Decimal | str | int


class Canal(IntEnum):
    """Canal de atención (`gpr.v1.Canal`)."""

    PRESENCIAL = pb.CANAL_PRESENCIAL
    WEB = pb.CANAL_WEB
    APP = pb.CANAL_APP
    TELEFONO = pb.CANAL_TELEFONO
    CORREO = pb.CANAL_CORREO
    DIGITAL_ASISTIDO = pb.CANAL_DIGITAL_ASISTIDO


class Resultado(IntEnum):
    """Resultado de un caso (`gpr.v1.Resultado`)."""

    OTORGADO = pb.RESULTADO_OTORGADO
    DENEGADO_NO_ELEGIBLE = pb.RESULTADO_DENEGADO_NO_ELEGIBLE
    DENEGADO_INCOMPLETO = pb.RESULTADO_DENEGADO_INCOMPLETO
    DESISTIDO = pb.RESULTADO_DESISTIDO
    ERROR = pb.RESULTADO_ERROR


class EventoInvalido(ValueError):
    """El evento no se puede enviar: la plataforma lo rechazaría.

    `campo`: el campo culpable (p. ej. `caso_id`, `costo.moneda`, `ocurrido_en`).
    `motivo`: el motivo con que lo rechazarían la Ingesta y el procesador (el de la cabecera
    `gpr-motivo` del tópico de rechazados, p. ej. `campo_requerido:caso_id`), o None si lo
    rechaza el constructor antes de armar el evento (p. ej. una fecha sin zona horaria).
    `evento`: el evento rechazado, si llegó a armarse.
    """

    def __init__(self, campo: str, mensaje: str, motivo: str | None = None, evento: pb.Evento | None = None):
        self.campo = campo
        self.motivo = motivo
        self.evento = evento
        self.evento_id = evento.evento_id if evento is not None else ""
        donde = f"evento {_eco(self.evento_id)!r}: " if self.evento_id else ""
        sufijo = f" (motivo {motivo})" if motivo else ""
        super().__init__(f"{donde}{campo}: {mensaje}{sufijo}")


def _eco(texto: str, maximo: int = 80) -> str:
    """Lo que se repite de un dato del emisor en un mensaje: acotado (un identificador de 1 MB
    no vuelve entero en el error)."""
    return texto if len(texto) <= maximo else f"{texto[:maximo]}…({len(texto)} caracteres)"


# Campo culpable de los motivos que no lo nombran tras «:».
_CAMPO_DEL_MOTIVO = {
    "agencia_desconocida": "agencia_id",
    "servicio_desconocido": "servicio_id",
    "etapa_desconocida": "etapa_id",
    "tiempo_futuro": "ocurrido_en",
    "monto_invalido": "costo",
    "moneda_incoherente": "costo.moneda",
    "evento_demasiado_grande": "evento",
}
_EXPLICACION = {
    "campo_requerido": "es obligatorio",
    "campo_demasiado_largo": "es demasiado largo (identificadores hasta 128 caracteres; textos, claves y "
                             "valores de atributos hasta 256; hasta 32 atributos)",
    "identificador_invalido": "solo admite letras, dígitos y _ . : / @ + - (sin espacios)",
    "valor_fuera_de_rango": "fuera de rango (ocurrido_en desde el año 2000; intento hasta 1000; plazo_dias hasta "
                            "3650; escala de satisfacción hasta 100)",
    "agencia_desconocida": "la agencia no está en el catálogo",
    "servicio_desconocido": "el servicio no está en el catálogo de la agencia",
    "etapa_desconocida": "la etapa no es una del servicio en el catálogo",
    "tiempo_futuro": f"ocurre más de {FUTURO_TOLERADO_S} s después de la hora actual",
    "evento_demasiado_grande": f"el evento serializado ocupa más de {BYTES_MAXIMOS_EVENTO} bytes",
}


def explicar(motivo: str, evento: pb.Evento) -> EventoInvalido:
    """El `EventoInvalido` de un motivo de `validar`: nombra el campo y dice qué está mal."""
    categoria, _, campo = motivo.partition(":")
    if not campo:
        campo = _CAMPO_DEL_MOTIVO.get(categoria) or _campo_incoherente(evento)
    if categoria == "monto_invalido":
        c = evento.costo
        mensaje = dinero.motivo_importe_invalido(c.unidades, c.nanos) or "lleva el campo monto (double) del contrato anterior"
    elif categoria == "moneda_incoherente":
        mensaje = f"la moneda {_eco(evento.costo.moneda)!r} no es la de la agencia en el catálogo"
    elif categoria == "tipo_incoherente":
        mensaje = _EXPLICACION_INCOHERENTE.get(campo, "no corresponde al tipo de evento")
    else:
        mensaje = _EXPLICACION.get(categoria, "inválido")
    return EventoInvalido(campo, mensaje, motivo, evento)


_EXPLICACION_INCOHERENTE = {
    "tipo": "tipo de evento desconocido",
    "intento": "no puede ser negativo",
    "plazo_dias": "debe ser mayor que 0",
    "satisfaccion": "falta, o el puntaje no está entre 1 y escala_max, o escala_max es menor que 2",
    "reclamo.reclamo_id": "es obligatorio en un reclamo",
    "costo": "falta el costo",
}


def _campo_incoherente(evento: pb.Evento) -> str:
    """El campo de un `tipo_incoherente` (el motivo no lo nombra): solo para el mensaje; lo que
    se rechaza lo decide `validar`."""
    if evento.tipo not in pb.TipoEvento.values():
        return "tipo"
    if evento.intento < 0:
        return "intento"
    if evento.HasField("plazo_dias") and evento.plazo_dias <= 0:
        return "plazo_dias"
    return {pb.TIPO_EVENTO_ENCUESTA_RESPONDIDA: "satisfaccion", pb.TIPO_EVENTO_RECLAMO_REGISTRADO: "reclamo.reclamo_id",
            pb.TIPO_EVENTO_RECLAMO_RESUELTO: "reclamo.reclamo_id",
            pb.TIPO_EVENTO_COSTO_REGISTRADO: "costo"}.get(evento.tipo, "tipo")


def _entero(valor, campo: str, bits: int = 32) -> int:
    if isinstance(valor, bool) or not isinstance(valor, int):
        raise TypeError(f"{campo}: se espera un entero, no {type(valor).__name__}")
    if not -(2 ** (bits - 1)) <= valor < 2 ** (bits - 1):
        # No cabe en el campo del contrato: ni siquiera se puede armar el evento.
        raise EventoInvalido(campo, f"{_eco(str(valor))} no cabe en un entero de {bits} bits")
    return valor


def _texto(valor, campo: str) -> str:
    if not isinstance(valor, str):
        raise TypeError(f"{campo}: se espera un texto, no {type(valor).__name__}")
    return valor


def _fijar_instante(destino, valor: Instante, campo: str) -> None:
    """Un `datetime` con zona horaria, o segundos desde 1970 (UTC)."""
    if isinstance(valor, datetime):
        if valor.tzinfo is None or valor.utcoffset() is None:
            # Sin zona, la misma hora sería otro instante según la máquina: mejor decirlo.
            raise EventoInvalido(campo, "la fecha no tiene zona horaria (use p. ej. datetime.now(timezone.utc) o "
                                        "una fecha con su ZoneInfo)")
        destino.FromDatetime(valor)
    elif isinstance(valor, (int, float)) and not isinstance(valor, bool):
        if valor != valor or valor in (float("inf"), float("-inf")):
            raise EventoInvalido(campo, f"{valor} no es un instante")
        segundos = int(valor // 1)
        try:
            destino.seconds = segundos
        except (ValueError, OverflowError):
            raise EventoInvalido(campo, f"{valor} está fuera de rango", "valor_fuera_de_rango:ocurrido_en") from None
        destino.nanos = min(999_999_999, int(round((valor - segundos) * 1e9)))
    else:
        raise TypeError(f"{campo}: se espera un datetime con zona horaria o segundos desde 1970, "
                        f"no {type(valor).__name__}")


def _enumerado(valor, tipo: type[IntEnum], campo: str) -> int:
    if isinstance(valor, tipo):
        return int(valor)
    if isinstance(valor, int) and not isinstance(valor, bool) and valor in tipo._value2member_map_:
        return valor
    raise TypeError(f"{campo}: se espera un {tipo.__name__} ({', '.join(m.name for m in tipo)}), no {valor!r}")


def importe_exacto(importe: Importe) -> tuple[int, int]:
    """(unidades, nanos) de un importe decimal exacto: `Decimal("12.50")`, `"12.50"` o `12`.

    Un `float` se rechaza: 0.1 + 0.2 no es 0.3 en coma flotante, y un costo debe sumar al
    céntimo. Lanza `EventoInvalido` (campo `costo`, motivo `monto_invalido`) si el importe es
    negativo o no es un número."""
    if isinstance(importe, float):
        raise TypeError("importe: un float no es exacto (0.1 + 0.2 != 0.3); use Decimal o un texto como '12.50'")
    if isinstance(importe, bool) or not isinstance(importe, (Decimal, str, int)):
        raise TypeError(f"importe: se espera Decimal, texto o entero, no {type(importe).__name__}")
    try:
        valor = Decimal(importe)
    except InvalidOperation:
        raise EventoInvalido("costo", f"importe {_eco(str(importe), 40)!r}: no es un número decimal",
                             "monto_invalido") from None
    if not valor.is_finite():
        raise EventoInvalido("costo", f"importe {_eco(str(importe), 40)!r}: no es un número finito", "monto_invalido")
    try:
        unidades, nanos = dinero.desde_decimal(valor)
    except ValueError as error:
        raise EventoInvalido("costo", _eco(str(error)), "monto_invalido") from None
    if unidades >= 2 ** 63:
        # No cabe en `Costo.unidades` (int64); el motivo es el mismo que daría el validador.
        raise EventoInvalido("costo", str(dinero.motivo_importe_invalido(unidades, nanos)), "monto_invalido")
    return unidades, nanos


class Eventos:
    """Arma los eventos de una agencia y los valida como la plataforma antes de devolverlos.

    `catalogo`: el de la plataforma, o `Catalogo.de_agencia(...)` con los servicios de la agencia.
    `fuente`: el sistema emisor (un identificador: con `evento_id`, lo que la plataforma usa
    para reconocer un evento repetido). `reloj`: segundos desde 1970 (para `tiempo_futuro`);
    `nuevo_id`: el `evento_id` de un evento al que no se le da uno.

    Todos los constructores aceptan además `evento_id` (por omisión, `nuevo_id()`), `region` y
    `atributos` (un mapa de textos). `ocurrido_en`: un `datetime` con zona horaria, o segundos
    desde 1970 (UTC).
    """

    def __init__(self, catalogo: Catalogo, agencia_id: str, fuente: str, *,
                 reloj: Callable[[], float] = time.time, nuevo_id: Callable[[], str] = lambda: str(uuid.uuid4())):
        if agencia_id not in catalogo.agencias:
            raise EventoInvalido("agencia_id", f"la agencia {_eco(str(agencia_id))!r} no está en el catálogo",
                                 "agencia_desconocida")
        self.catalogo = catalogo
        self.agencia_id = agencia_id
        self.fuente = _texto(fuente, "fuente")
        self.reloj = reloj
        self.nuevo_id = nuevo_id

    # --- el ciclo de un caso ------------------------------------------------------------------

    def solicitud_recibida(self, servicio_id: str, caso_id: str, ocurrido_en: Instante, *,
                           canal: Canal | None = None, plazo_dias: int | None = None, **comunes) -> pb.Evento:
        """El caso empieza: la solicitud del ciudadano llegó. `plazo_dias` reemplaza, para este
        caso, el plazo del servicio en el catálogo."""
        evento = self._base(pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, servicio_id, ocurrido_en, caso_id, **comunes)
        if canal is not None:
            evento.canal = _enumerado(canal, Canal, "canal")
        if plazo_dias is not None:
            evento.plazo_dias = _entero(plazo_dias, "plazo_dias")
        return self.comprobar(evento)

    def etapa_iniciada(self, servicio_id: str, caso_id: str, etapa_id: str, ocurrido_en: Instante, *,
                       intento: int | None = None, **comunes) -> pb.Evento:
        """Empieza una etapa del servicio (una de las del catálogo). `intento`: 2 o más cuando la
        etapa se repite tras una devolución."""
        return self._etapa(pb.TIPO_EVENTO_ETAPA_INICIADA, servicio_id, caso_id, etapa_id, ocurrido_en, intento, comunes)

    def etapa_completada(self, servicio_id: str, caso_id: str, etapa_id: str, ocurrido_en: Instante, *,
                         intento: int | None = None, **comunes) -> pb.Evento:
        """Termina una etapa del servicio."""
        return self._etapa(pb.TIPO_EVENTO_ETAPA_COMPLETADA, servicio_id, caso_id, etapa_id, ocurrido_en, intento, comunes)

    def caso_devuelto(self, servicio_id: str, caso_id: str, ocurrido_en: Instante, *, etapa_id: str = "",
                      intento: int | None = None, **comunes) -> pb.Evento:
        """El caso vuelve al ciudadano para que subsane (en la etapa `etapa_id`, si se sabe)."""
        return self._etapa(pb.TIPO_EVENTO_CASO_DEVUELTO, servicio_id, caso_id, etapa_id, ocurrido_en, intento, comunes)

    def servicio_entregado(self, servicio_id: str, caso_id: str, ocurrido_en: Instante, *,
                           resultado: Resultado = Resultado.OTORGADO, canal: Canal | None = None,
                           **comunes) -> pb.Evento:
        """El caso termina con la entrega del servicio (otorgado, o con error o desistimiento)."""
        evento = self._base(pb.TIPO_EVENTO_SERVICIO_ENTREGADO, servicio_id, ocurrido_en, caso_id, **comunes)
        evento.resultado = _enumerado(resultado, Resultado, "resultado")
        if canal is not None:
            evento.canal = _enumerado(canal, Canal, "canal")
        return self.comprobar(evento)

    def caso_cerrado(self, servicio_id: str, caso_id: str, ocurrido_en: Instante, resultado: Resultado,
                     **comunes) -> pb.Evento:
        """El caso termina sin entrega (denegado, desistido…)."""
        evento = self._base(pb.TIPO_EVENTO_CASO_CERRADO, servicio_id, ocurrido_en, caso_id, **comunes)
        evento.resultado = _enumerado(resultado, Resultado, "resultado")
        return self.comprobar(evento)

    # --- después del caso ---------------------------------------------------------------------

    def encuesta_respondida(self, servicio_id: str, ocurrido_en: Instante, puntaje: int, escala_max: int, *,
                            caso_id: str = "", canal: Canal | None = None, **comunes) -> pb.Evento:
        """Una encuesta de satisfacción: `puntaje` de 1 a `escala_max` (2 a 100)."""
        evento = self._base(pb.TIPO_EVENTO_ENCUESTA_RESPONDIDA, servicio_id, ocurrido_en, caso_id, **comunes)
        evento.satisfaccion.puntaje = _entero(puntaje, "satisfaccion.puntaje")
        evento.satisfaccion.escala_max = _entero(escala_max, "satisfaccion.escala_max")
        if canal is not None:
            evento.canal = _enumerado(canal, Canal, "canal")
        return self.comprobar(evento)

    def reclamo_registrado(self, servicio_id: str, reclamo_id: str, ocurrido_en: Instante, *, caso_id: str = "",
                           categoria: str = "", etapa_relacionada: str = "", **comunes) -> pb.Evento:
        """Un ciudadano reclama (p. ej. por demora, en la etapa que cree culpable)."""
        return self._reclamo(pb.TIPO_EVENTO_RECLAMO_REGISTRADO, servicio_id, reclamo_id, ocurrido_en, caso_id,
                             categoria, etapa_relacionada, comunes)

    def reclamo_resuelto(self, servicio_id: str, reclamo_id: str, ocurrido_en: Instante, *, caso_id: str = "",
                         categoria: str = "", etapa_relacionada: str = "", **comunes) -> pb.Evento:
        """El reclamo `reclamo_id` quedó resuelto."""
        return self._reclamo(pb.TIPO_EVENTO_RECLAMO_RESUELTO, servicio_id, reclamo_id, ocurrido_en, caso_id,
                             categoria, etapa_relacionada, comunes)

    def costo_registrado(self, servicio_id: str, importe: Importe, ocurrido_en: Instante, *, caso_id: str = "",
                         moneda: str | None = None, **comunes) -> pb.Evento:
        """Lo que costó atender un caso: `importe` exacto (`Decimal("12.50")` o `"12.50"`, hasta 4
        decimales) en `moneda` (por omisión, la de la agencia en el catálogo)."""
        unidades, nanos = importe_exacto(importe)
        evento = self._base(pb.TIPO_EVENTO_COSTO_REGISTRADO, servicio_id, ocurrido_en, caso_id, **comunes)
        evento.costo.unidades = unidades
        evento.costo.nanos = nanos
        evento.costo.moneda = (self.catalogo.agencias[self.agencia_id].moneda if moneda is None
                               else _texto(moneda, "costo.moneda"))
        return self.comprobar(evento)

    # --- comunes ------------------------------------------------------------------------------

    def comprobar(self, evento: pb.Evento) -> pb.Evento:
        """Devuelve el evento si la plataforma lo aceptaría; si no, lanza `EventoInvalido`. Sirve
        también para eventos armados a mano o leídos de JSON."""
        motivo = validar(evento, self.catalogo, self.reloj())
        if motivo is not None:
            raise explicar(motivo, evento)
        return evento

    def _base(self, tipo: int, servicio_id: str, ocurrido_en: Instante, caso_id: str, *, evento_id: str | None = None,
              region: str = "", atributos: Mapping[str, str] | None = None) -> pb.Evento:
        evento = pb.Evento(
            evento_id=self.nuevo_id() if evento_id is None else _texto(evento_id, "evento_id"),
            version_esquema=VERSION_ESQUEMA, tipo=tipo, fuente=self.fuente, agencia_id=self.agencia_id,
            servicio_id=_texto(servicio_id, "servicio_id"), caso_id=_texto(caso_id, "caso_id"),
            region=_texto(region, "region"),
        )
        _fijar_instante(evento.ocurrido_en, ocurrido_en, "ocurrido_en")
        if atributos:
            for clave, valor in atributos.items():
                evento.atributos[_texto(clave, "atributos")] = _texto(valor, f"atributos[{clave!r}]")
        return evento

    def _etapa(self, tipo: int, servicio_id: str, caso_id: str, etapa_id: str, ocurrido_en: Instante,
               intento: int | None, comunes: dict) -> pb.Evento:
        evento = self._base(tipo, servicio_id, ocurrido_en, caso_id, **comunes)
        evento.etapa_id = _texto(etapa_id, "etapa_id")
        if intento is not None:
            evento.intento = _entero(intento, "intento")
        return self.comprobar(evento)

    def _reclamo(self, tipo: int, servicio_id: str, reclamo_id: str, ocurrido_en: Instante, caso_id: str,
                 categoria: str, etapa_relacionada: str, comunes: dict) -> pb.Evento:
        evento = self._base(tipo, servicio_id, ocurrido_en, caso_id, **comunes)
        evento.reclamo.reclamo_id = _texto(reclamo_id, "reclamo.reclamo_id")
        evento.reclamo.categoria = _texto(categoria, "reclamo.categoria")
        evento.reclamo.etapa_relacionada = _texto(etapa_relacionada, "reclamo.etapa_relacionada")
        return self.comprobar(evento)
