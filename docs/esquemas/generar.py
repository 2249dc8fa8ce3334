"""Genera `docs/esquemas/evento.schema.json`: el JSON Schema (2020-12) de `gpr.v1.Evento` en el
mapeo JSON de protobuf, para los sistemas que validan antes de enviar.

    make esquema            # o: .venv/bin/python docs/esquemas/generar.py

La forma sale de los descriptores de protobuf (los mismos `*_pb2` que usa la plataforma): cada
campo con su nombre JSON (lowerCamelCase) y su nombre del proto, como los acepta
`google.protobuf.json_format`; enums como nombres (o su número); `int64` como texto (o número);
`Timestamp` como RFC 3339 con `Z` o desfase. Las reglas del validador que un JSON Schema puede
expresar (obligatorios por tipo, largos, rangos, decimales del importe) salen de las constantes
de `servicios/comun/eventos.py` y `servicios/comun/dinero.py`: el esquema no repite números.
Lo que depende del catálogo, del reloj o del estado del caso no está aquí (docs/contrato.md).
Por qué un generador propio y no una biblioteca: docs/decisiones.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

RAIZ = Path(__file__).resolve().parents[2]
if str(RAIZ) not in sys.path:
    sys.path.insert(0, str(RAIZ))

from gpr.v1 import eventos_pb2 as pb  # noqa: E402
from servicios.comun import dinero, eventos  # noqa: E402

DESTINO = Path(__file__).resolve().parent / "evento.schema.json"
ID_ESQUEMA = "https://gpr-monitor.example/esquemas/gpr.v1.Evento.schema.json"

_ENTERO = r"^-?[0-9]+$"
# RFC 3339 tal como lo lee json_format: fecha y hora con «T», fracción de hasta 9 dígitos y
# «Z» o un desfase ±hh:mm (sin zona, o con «z» minúscula, es un error de lectura).
_RFC3339 = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$"
_LIMITES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1), FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1), FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
}
_ENTEROS_64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64,
               FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64}


def _nombre_tipo(tipo: int) -> str:
    return pb.TipoEvento.Name(tipo)


def _enum(enum: EnumDescriptor) -> dict:
    return {"description": f"{enum.full_name}: el nombre del valor (o su número).",
            "enum": [v.name for v in enum.values] + [v.number for v in enum.values]}


def _escalar(campo: FieldDescriptor) -> dict:
    t = campo.type
    if t == FieldDescriptor.TYPE_STRING:
        return {"type": "string"}
    if t == FieldDescriptor.TYPE_BOOL:
        return {"type": "boolean"}
    if t in _LIMITES:
        minimo, maximo = _LIMITES[t]
        return {"anyOf": [{"type": "integer", "minimum": minimo, "maximum": maximo},
                          {"type": "string", "pattern": _ENTERO}]}
    if t in _ENTEROS_64:
        # El mapeo JSON escribe los enteros de 64 bits como texto (un double no los representa).
        return {"anyOf": [{"type": "string", "pattern": _ENTERO}, {"type": "integer"}]}
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return {"anyOf": [{"type": "number"}, {"enum": ["NaN", "Infinity", "-Infinity"]}]}
    if t == FieldDescriptor.TYPE_BYTES:
        return {"type": "string", "contentEncoding": "base64"}
    raise ValueError(f"tipo de campo sin mapeo JSON en el generador: {campo.full_name}")


class _Generador:
    def __init__(self) -> None:
        self.defs: dict[str, dict] = {}

    def ref(self, nombre: str) -> dict:
        return {"$ref": f"#/$defs/{nombre}"}

    def campo(self, campo: FieldDescriptor) -> dict:
        if campo.message_type is not None and campo.message_type.GetOptions().map_entry:
            valor = campo.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self.valor(valor)}
        esquema = self.valor(campo)
        if campo.is_repeated:
            return {"type": "array", "items": esquema}
        return esquema

    def valor(self, campo: FieldDescriptor) -> dict:
        if campo.enum_type is not None:
            nombre = campo.enum_type.full_name
            self.defs.setdefault(nombre, _enum(campo.enum_type))
            return self.ref(nombre)
        if campo.message_type is not None:
            return self.mensaje(campo.message_type)
        return _escalar(campo)

    def mensaje(self, mensaje: Descriptor) -> dict:
        nombre = mensaje.full_name
        if nombre == "google.protobuf.Timestamp":
            self.defs.setdefault(nombre, {
                "description": "Un instante en RFC 3339 con Z o desfase, p. ej. 2026-04-29T09:10:00-05:00.",
                "type": "string", "format": "date-time", "pattern": _RFC3339})
        elif nombre not in self.defs:
            self.defs[nombre] = {}  # reservado antes de recorrer (mensajes recursivos)
            propiedades = {}
            for campo in mensaje.fields:
                esquema = self.campo(campo)
                propiedades[campo.json_name] = esquema
                if campo.name != campo.json_name:
                    propiedades[campo.name] = esquema
            self.defs[nombre] = {"type": "object", "properties": propiedades, "additionalProperties": False}
        return self.ref(nombre)


def _entero_o_texto(**limites) -> dict:
    """Un entero de 32 bits con `limites` (como número; el texto lo juzga la plataforma)."""
    return {"anyOf": [{"type": "integer", **limites}, {"type": "string", "pattern": _ENTERO}]}


def _requerido(mensaje: Descriptor, *nombres: str) -> list[dict]:
    """Cada campo presente con cualquiera de sus dos nombres (el JSON o el del proto)."""
    reglas = []
    for nombre in nombres:
        campo = mensaje.fields_by_name[nombre]
        if campo.json_name == campo.name:
            reglas.append({"required": [campo.name]})
        else:
            reglas.append({"anyOf": [{"required": [campo.json_name]}, {"required": [campo.name]}]})
    return reglas


def _propiedad(mensaje: Descriptor, nombre: str, esquema: dict) -> dict:
    """`esquema` para el campo, con cualquiera de sus dos nombres."""
    campo = mensaje.fields_by_name[nombre]
    return {"properties": {n: esquema for n in dict.fromkeys((campo.json_name, campo.name))}}


def _cuando_tipo(tipos, *reglas: dict) -> dict:
    nombres = sorted(_nombre_tipo(t) for t in tipos)
    numeros = sorted(int(t) for t in tipos)
    return {"if": {"properties": {"tipo": {"enum": nombres + numeros}}, "required": ["tipo"]},
            "then": {"allOf": list(reglas)}}


def generar() -> dict:
    g = _Generador()
    g.mensaje(pb.Evento.DESCRIPTOR)
    ev = pb.Evento.DESCRIPTOR
    ident = {"type": "string", "minLength": 1, "maxLength": eventos.LARGO_MAXIMO_IDENTIFICADOR}
    texto_libre = {"type": "string", "maxLength": eventos.LARGO_MAXIMO_TEXTO}

    # Reglas del validador que no dependen del catálogo, del reloj ni del estado del caso.
    evento = g.defs["gpr.v1.Evento"]
    props = evento["properties"]
    tipos = [v for v in pb.TipoEvento.values() if v != pb.TIPO_EVENTO_NO_ESPECIFICADO]

    def restringir(nombre: str, *extra: dict) -> None:
        campo = ev.fields_by_name[nombre]
        for n in dict.fromkeys((campo.json_name, campo.name)):
            props[n] = {"allOf": [props[n], *extra]}

    for nombre in ("evento_id", "agencia_id", "servicio_id"):
        restringir(nombre, ident)
    for nombre in ("fuente", "caso_id", "etapa_id"):
        restringir(nombre, {"maxLength": eventos.LARGO_MAXIMO_IDENTIFICADOR})
    restringir("region", texto_libre)
    restringir("tipo", {"enum": [_nombre_tipo(t) for t in tipos] + sorted(int(t) for t in tipos)})
    # Desde el año 2000 (INSTANTE_MINIMO_S): ni instantes sin inicializar ni milisegundos leídos como segundos.
    restringir("ocurrido_en", {"pattern": "^[2-9][0-9]{3}-"})
    restringir("intento", _entero_o_texto(minimum=0, maximum=eventos.INTENTO_MAXIMO))
    restringir("plazo_dias", _entero_o_texto(minimum=1, maximum=eventos.PLAZO_MAXIMO_DIAS))
    restringir("atributos", {"maxProperties": eventos.ATRIBUTOS_MAXIMOS,
                             "propertyNames": {"maxLength": eventos.LARGO_MAXIMO_TEXTO},
                             "additionalProperties": texto_libre})

    reclamo = g.defs["gpr.v1.Reclamo"]["properties"]
    for nombre in ("reclamoId", "reclamo_id"):
        reclamo[nombre] = {"allOf": [reclamo[nombre], {"maxLength": eventos.LARGO_MAXIMO_IDENTIFICADOR}]}
    for nombre in ("categoria", "etapaRelacionada", "etapa_relacionada"):
        reclamo[nombre] = {"allOf": [reclamo[nombre], texto_libre]}

    satisfaccion = {"type": "object", "allOf": [
        *_requerido(pb.Satisfaccion.DESCRIPTOR, "puntaje", "escala_max"),
        _propiedad(pb.Satisfaccion.DESCRIPTOR, "puntaje", _entero_o_texto(minimum=1)),
        _propiedad(pb.Satisfaccion.DESCRIPTOR, "escala_max",
                   _entero_o_texto(minimum=2, maximum=eventos.ESCALA_MAXIMA_SATISFACCION)),
    ]}
    nanos_por_diezmilesima = 1_000_000_000 // dinero.ESCALA
    costo = {"type": "object", "allOf": [
        *_requerido(pb.Costo.DESCRIPTOR, "moneda"),
        _propiedad(pb.Costo.DESCRIPTOR, "moneda", {"type": "string", "pattern": "^[A-Z]{3}$"}),
        _propiedad(pb.Costo.DESCRIPTOR, "unidades", {"anyOf": [
            {"type": "integer", "minimum": 0, "maximum": dinero.UNIDADES_MAXIMAS},
            {"type": "string", "pattern": r"^[0-9]+$"}]}),
        _propiedad(pb.Costo.DESCRIPTOR, "nanos", _entero_o_texto(minimum=0, maximum=999_999_999,
                                                                 multipleOf=nanos_por_diezmilesima)),
    ]}
    reclamo_con_id = {"type": "object",
                      "allOf": [*_requerido(pb.Reclamo.DESCRIPTOR, "reclamo_id"),
                                _propiedad(pb.Reclamo.DESCRIPTOR, "reclamo_id", {"minLength": 1})]}
    no_vacio = {"type": "string", "minLength": 1}

    evento["allOf"] = [
        *_requerido(ev, "evento_id", "tipo", "ocurrido_en", "agencia_id", "servicio_id"),
        _cuando_tipo(eventos.TIPOS_DE_CASO, *_requerido(ev, "caso_id"), _propiedad(ev, "caso_id", no_vacio)),
        _cuando_tipo(eventos.TIPOS_DE_ETAPA, *_requerido(ev, "etapa_id"), _propiedad(ev, "etapa_id", no_vacio)),
        _cuando_tipo([pb.TIPO_EVENTO_ENCUESTA_RESPONDIDA], *_requerido(ev, "satisfaccion"),
                     _propiedad(ev, "satisfaccion", satisfaccion)),
        _cuando_tipo([pb.TIPO_EVENTO_RECLAMO_REGISTRADO, pb.TIPO_EVENTO_RECLAMO_RESUELTO],
                     *_requerido(ev, "reclamo"), _propiedad(ev, "reclamo", reclamo_con_id)),
        _cuando_tipo([pb.TIPO_EVENTO_COSTO_REGISTRADO], *_requerido(ev, "costo"), _propiedad(ev, "costo", costo)),
    ]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": ID_ESQUEMA,
        "title": "gpr.v1.Evento",
        "description": ("Un evento de entrega de servicios de GpR Monitor en el mapeo JSON de protobuf "
                        "(una línea de `gpr publicar`, un evento de la Ingesta por grpcurl). Generado por "
                        "docs/esquemas/generar.py desde protos/gpr/v1/eventos.proto: no editar a mano. "
                        "Lo que depende del catálogo (agencia, servicio, etapa, moneda), del reloj "
                        "(tiempo_futuro, tardio) o del caso lo juzga la plataforma: docs/contract.md."),
        **g.ref("gpr.v1.Evento"),
        "$defs": dict(sorted(g.defs.items())),
    }


def texto() -> str:
    return json.dumps(generar(), ensure_ascii=False, indent=2) + "\n"


def main() -> None:
    DESTINO.write_text(texto(), encoding="utf-8")
    print(f"escrito {DESTINO.relative_to(RAIZ)}")


if __name__ == "__main__":
    main()
