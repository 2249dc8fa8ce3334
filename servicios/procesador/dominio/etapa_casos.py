"""La etapa por caso sobre un lote de registros de una partición de gpr.eventos.v1.

Por cada registro: decodifica (un `Evento` o un `LoteEventos`), valida, deduplica, juzga la
tardanza y aplica el evento al estado de su caso (`casos.py`). En vez de un registro de
aportes por evento, suma los aportes del lote por (agencia, servicio) y emite uno solo por
par: el costo por registro de Kafka (y de faust) se paga una vez por lote, no por evento.

Exactamente-una-vez en efecto. Cada evento aplicado queda en el estado de su caso con su
secuencia (offset << 20 | posición), de modo que su lote de aportes *individual* se puede
reconstruir igual que la primera vez (`casos.lote_emitido`). El agregado
de un par lleva una secuencia mayor que la de todo evento del lote de registros; la etapa
siguiente descarta, por cubo y partición de origen, todo lote con secuencia menor o igual a
la mayor aplicada. Dos reglas lo hacen exacto ante cortes:

1. Los estados del lote se escriben y se confirman en el changelog *antes* de enviar sus
   agregados (el adaptador vacía el productor): si un agregado llegó, sus eventos constan
   como vistos y un reproceso no los vuelve a sumar.
2. Un evento ya visto (reproceso tras un corte, o un emisor que reintenta) reenvía su lote
   individual *dentro* del registro del agregado de su par (`reenvios`, por secuencia): el
   registro se aplica o se pierde entero, así un reenvío no puede adelantar la marca de un
   cubo por encima de eventos nuevos del mismo lote cuyo agregado se perdió.

Un cubo que aplicó la secuencia X tiene, pues, todos los eventos de esa partición hasta X
que lo tocan. Los repetidos cuyo original está en este mismo lote no se reenvían: ya van en
el agregado.

Sin E/S: lee el estado de un mapa clave → bytes y devuelve lo que hay que escribir y enviar.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from gpr.v1 import interno_pb2 as interno
from servicios.comun.catalogo import Catalogo
from servicios.comun.eventos import RegistroInvalido, decodificar, es_lote, validar
from servicios.procesador.dominio import medidas as m
from servicios.procesador.dominio.ventanas import SEGUNDOS_HORA
from servicios.procesador.dominio.casos import Caso, cambios_de, identidad, lote_emitido, poner_aportes, registrar

# Bits de la secuencia reservados a la posición del evento dentro de su registro.
BITS_POSICION = 20
# Tope de aportes distintos del agregado de un par (cada reenvío cuenta como `_APORTES_POR_REENVIO`):
# al alcanzarlo, los registros siguientes van en otro agregado. Un aporte ocupa ~35 bytes:
# así un agregado queda en ~0,5 MiB, por debajo del registro máximo de Kafka (1 MiB por
# omisión) aunque un lote de registros traiga cientos de miles de eventos.
APORTES_MAXIMOS_POR_AGREGADO = 16_000
_APORTES_POR_REENVIO = 16


class Registro:
    """Un registro de Kafka tal como lo ve la etapa: de dónde vino y qué trae.

    Una clase con `__slots__` y no una dataclass congelada: se crea una por registro y la
    congelada costaba 4 veces más (0,48 frente a 0,11 µs)."""

    __slots__ = ("particion", "offset", "clave", "valor", "cabeceras")

    def __init__(self, particion: int, offset: int, clave: bytes | None, valor: bytes | None,
                 cabeceras: Sequence[tuple[str, bytes]] = ()) -> None:
        self.particion = particion
        self.offset = offset
        self.clave = clave
        self.valor = valor
        self.cabeceras = cabeceras


@dataclass(frozen=True)
class Rechazo:
    clave: bytes | None
    valor: bytes
    motivo: str
    detalle: str


@dataclass
class SalidaCasos:
    """Lo que produce un lote: escrituras de la tabla `casos`, lotes de aportes en el orden
    en que deben enviarse y registros rechazados con su motivo.

    `tandas`: los agregados, uno por par, de cada tramo de registros (casi siempre uno; varios
    si el lote se partió: ver `APORTES_MAXIMOS_POR_AGREGADO`). Una tanda solo se envía con la
    anterior ya escrita: un agregado posterior del mismo par adelantaría las secuencias de sus
    cubos por encima de uno anterior perdido, cuyos eventos se descartarían al reenviarse."""

    escrituras: dict[bytes, bytes] = field(default_factory=dict)
    tandas: list[list[interno.LoteAportes]] = field(default_factory=list)
    rechazos: list[Rechazo] = field(default_factory=list)
    aceptados: int = 0
    duplicados: int = 0

    @property
    def lotes(self) -> list[interno.LoteAportes]:
        return [lote for tanda in self.tandas for lote in tanda]


def clave_marca(agencia_id: str, particion: int) -> bytes:
    """Clave de la marca de agua de una agencia en una partición, en la tabla `casos`.

    Empieza por 0xFF (imposible en UTF-8): no choca con ningún caso_id.
    """
    return b"\xff" + f"marca|{agencia_id}|{particion}".encode()


class _Par:
    """Aportes sumados de un (agencia, servicio) en el lote."""

    __slots__ = ("aportes", "ocurrido_en", "ocurrido_desde")

    def __init__(self) -> None:
        self.aportes: dict[tuple[str, int], float] = {}
        self.ocurrido_en = 0
        self.ocurrido_desde = 0

    def sumar(self, cambios: dict[tuple[str, int], float], ocurrido_en: int) -> None:
        # La agregación solo mira la hora de un aporte (su cubo horario, y el mes de esa hora):
        # sumados por hora, el agregado de un lote largo tiene un aporte por medida y hora, no
        # uno por segundo. Los vencidos no: la línea de vencimientos cuenta al segundo.
        aportes = self.aportes
        for clave, valor in cambios.items():
            medida, instante = clave
            if medida != m.VENCIDOS:
                clave = (medida, instante - instante % SEGUNDOS_HORA)
            aportes[clave] = aportes.get(clave, 0.0) + valor
        if ocurrido_en > self.ocurrido_en:
            self.ocurrido_en = ocurrido_en
        if not self.ocurrido_desde or ocurrido_en < self.ocurrido_desde:
            self.ocurrido_desde = ocurrido_en


# Motivo de rechazo de un evento nuevo de un caso que ya tiene `eventos_maximos_por_caso`.
CASO_SATURADO = "caso_saturado"


class EtapaCasos:
    def __init__(self, catalogo: Catalogo, tardanza_maxima_s: int, reloj: Callable[[], float],
                 eventos_maximos_por_caso: int = 1000):
        self.catalogo = catalogo
        self.tardanza_maxima_s = tardanza_maxima_s
        self.reloj = reloj
        self.eventos_maximos_por_caso = eventos_maximos_por_caso

    def procesar(self, registros: Sequence[Registro], casos: Mapping[bytes, bytes]) -> SalidaCasos:
        """Procesa registros de *una* partición, en orden de offset."""
        salida = SalidaCasos()
        if not registros:
            return salida
        particion = registros[0].particion
        estados: dict[bytes, Caso] = {}
        modificados: set[bytes] = set()
        marcas: dict[str, int] = {}
        pares: dict[tuple[str, str], _Par] = {}
        reenvios: dict[str, interno.LoteAportes] = {}
        aplicados: set[str] = set()
        ahora = self.reloj()
        catalogo = self.catalogo
        tardanza_maxima_s = self.tardanza_maxima_s
        eventos_maximos = self.eventos_maximos_por_caso
        claves_marca: dict[str, bytes] = {}
        # Aportes distintos del par más grande del agregado en curso (solo crece).
        mayor_agregado = 0

        for registro in registros:
            assert registro.particion == particion, "un lote de la etapa por caso es de una sola partición"
            try:
                eventos = decodificar(registro.valor, registro.cabeceras)
            except RegistroInvalido as error:
                salida.rechazos.append(Rechazo(registro.clave, registro.valor or b"", error.motivo, str(error)))
                continue
            en_lote = es_lote(registro.cabeceras)
            base = registro.offset << BITS_POSICION
            for posicion, evento in enumerate(eventos):
                motivo = validar(evento, catalogo, ahora)
                if motivo is not None:
                    original = evento.SerializeToString() if en_lote else registro.valor
                    salida.rechazos.append(Rechazo(registro.clave, original, motivo,
                                                   f"evento {evento.evento_id!r}: {motivo}"))
                    continue
                clave = (evento.caso_id or evento.evento_id).encode()
                estado = estados.get(clave)
                if estado is None:
                    bruto = casos.get(clave)
                    if bruto is not None:
                        estado = estados[clave] = Caso.de_mensaje(interno.EstadoCaso.FromString(bruto))
                agencia = evento.agencia_id
                marca = marcas.get(agencia)
                if marca is None:
                    clave_m = claves_marca[agencia] = clave_marca(agencia, particion)
                    marca = marcas[agencia] = int(casos.get(clave_m) or 0)
                ocurrido = evento.ocurrido_en.seconds
                ident = identidad(evento)
                if estado is not None and ident in estado.vistos:
                    salida.duplicados += 1
                    if ident not in aplicados and ident not in reenvios:
                        # No se aplicó en este lote: está en el estado leído del almacén (y
                        # su lote, reconstruido, es el mismo cada vez que se repita).
                        reenvios[ident] = lote_emitido(estado.mensaje, ident)
                    # Fue aceptado: la marca avanza como avanzó la primera vez, así un
                    # reproceso juzga la tardanza de los siguientes igual que entonces.
                    if ocurrido > marca:
                        marcas[agencia] = ocurrido
                        modificados.add(claves_marca[agencia])
                    continue
                # La tardanza se juzga contra la marca de agua de la agencia en *esta*
                # partición, guardada en la misma tabla que los casos: la decisión es la misma
                # si el registro se reprocesa tras un corte, avancen lo que avancen las demás.
                if ocurrido < marca - tardanza_maxima_s:
                    original = evento.SerializeToString() if en_lote else registro.valor
                    salida.rechazos.append(Rechazo(registro.clave, original, "tardio",
                                                   f"evento {evento.evento_id!r}: tardio"))
                    continue
                if estado is None:
                    estado = estados[clave] = Caso.nuevo(
                        evento, catalogo.servicio(agencia, evento.servicio_id).plazo_dias)
                elif len(estado.vistos) >= eventos_maximos:
                    original = evento.SerializeToString() if en_lote else registro.valor
                    salida.rechazos.append(Rechazo(
                        registro.clave, original, CASO_SATURADO,
                        f"evento {evento.evento_id!r}: el caso {evento.caso_id!r} ya tiene {len(estado.vistos)} "
                        f"eventos (GPR_EVENTOS_MAXIMOS_POR_CASO); ¿el emisor repite el mismo caso_id?"))
                    continue
                cambios = cambios_de(estado, evento, evento.tipo, ocurrido)
                registrar(estado, evento, ident, particion, base | posicion, ocurrido, cambios,
                          None if en_lote else registro.valor)
                modificados.add(clave)
                aplicados.add(ident)
                if ocurrido > marca:
                    marcas[agencia] = ocurrido
                    modificados.add(claves_marca[agencia])
                clave_par = (estado.agencia_id, estado.servicio_id)
                par = pares.get(clave_par)
                if par is None:
                    par = pares[clave_par] = _Par()
                par.sumar(cambios, ocurrido)
                if len(par.aportes) > mayor_agregado:
                    mayor_agregado = len(par.aportes)
                salida.aceptados += 1
            if mayor_agregado + len(reenvios) * _APORTES_POR_REENVIO >= APORTES_MAXIMOS_POR_AGREGADO:
                # Los registros leídos hasta aquí forman un agregado aparte, con la secuencia de
                # este registro: mayor que la de sus eventos y menor que la de los siguientes.
                _emitir_agregados(salida, pares, reenvios, particion, registro.offset)
                pares, reenvios, mayor_agregado = {}, {}, 0

        for clave in modificados:
            if clave in estados:
                salida.escrituras[clave] = estados[clave].a_mensaje().SerializeToString()
        for agencia, marca in marcas.items():
            clave = clave_marca(agencia, particion)
            if clave in modificados:
                salida.escrituras[clave] = str(marca).encode()
        _emitir_agregados(salida, pares, reenvios, particion, registros[-1].offset)
        return salida


def _emitir_agregados(salida: SalidaCasos, pares: dict[tuple[str, str], _Par],
                      reenvios: dict[str, interno.LoteAportes], particion: int, ultimo_offset: int) -> None:
    """Añade a `salida.tandas` la de los agregados, uno por par, de los registros hasta
    `ultimo_offset`."""
    por_par: dict[tuple[str, str], list[interno.LoteAportes]] = {}
    for lote in sorted(reenvios.values(), key=lambda lote: (lote.particion_origen, lote.secuencia)):
        por_par.setdefault((lote.agencia_id, lote.servicio_id), []).append(lote)
    # El agregado lleva una secuencia mayor que la de todo evento de sus registros (y menor que
    # la de cualquiera del registro siguiente).
    secuencia_lote = (ultimo_offset << BITS_POSICION) | ((1 << BITS_POSICION) - 1)
    tanda = []
    for clave_par in list(pares) + [p for p in por_par if p not in pares]:
        agencia, servicio = clave_par
        lote = interno.LoteAportes(particion_origen=particion, secuencia=secuencia_lote,
                                   agencia_id=agencia, servicio_id=servicio,
                                   reenvios=por_par.get(clave_par, ()))
        par = pares.get(clave_par)
        if par is not None:
            lote.ocurrido_en, lote.ocurrido_desde = par.ocurrido_en, par.ocurrido_desde
            # También los que suman cero: el agregado debe marcar su secuencia en cada
            # cubo que tocó alguno de sus eventos, o un reenvío posterior de uno de ellos
            # se sumaría dos veces.
            poner_aportes(lote, {clave: valor if abs(valor) > 1e-12 else 0.0
                                 for clave, valor in par.aportes.items()})
        tanda.append(lote)
    if tanda:
        salida.tandas.append(tanda)
