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
from servicios.comun.eventos import RegistroInvalido, clave_kafka, decodificar, es_lote, eventos_en_bruto, validar
from servicios.comun.texto import recortar
from servicios.procesador.dominio import medidas as m
from servicios.procesador.dominio.ventanas import SEGUNDOS_HORA
from servicios.procesador.dominio.casos import Caso, cambios_de, identidad, lote_emitido, poner_aportes, registrar
from servicios.procesador.dominio.identidades import Identidades

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
    congelada costaba varias veces más por registro."""

    __slots__ = ("particion", "offset", "clave", "valor", "cabeceras", "origen")

    def __init__(self, particion: int, offset: int, clave: bytes | None, valor: bytes | None,
                 cabeceras: Sequence[tuple[str, bytes]] = (), origen: int | None = None) -> None:
        self.particion = particion
        self.offset = offset
        self.clave = clave
        self.valor = valor
        self.cabeceras = cabeceras
        # La partición de gpr.eventos.v1 de la que vino (la anota el reparto): la marca de agua
        # que juzga su tardanza es la de la agencia en esa partición.
        self.origen = particion if origen is None else origen


@dataclass(frozen=True)
class Rechazo:
    clave: bytes | None
    valor: bytes
    motivo: str
    # Para una persona: qué evento y por qué, sin más de `texto.LARGO_ECO` caracteres de lo
    # que mandó el emisor.
    detalle: str
    # La agencia del evento si es una del catálogo ("" si no se sabe): para la cabecera del
    # rechazo, que deja contarlos por agencia sin decodificar el valor.
    agencia: str = ""
    # `valor` es un registro LoteEventos entero (se rechazó el registro, no un evento suyo):
    # el rechazo lleva la cabecera de lote para que quien lo lea sepa decodificarlo.
    lote: bool = False


@dataclass
class SalidaCasos:
    """Lo que produce un lote: escrituras de la tabla `casos`, lotes de aportes en el orden
    en que deben enviarse y registros rechazados con su motivo.

    `tandas`: los agregados, uno por par, de cada tramo de registros (casi siempre uno; varios
    si el lote se partió: ver `APORTES_MAXIMOS_POR_AGREGADO`). Una tanda solo se envía con la
    anterior ya escrita: un agregado posterior del mismo par adelantaría las secuencias de sus
    cubos por encima de uno anterior perdido, cuyos eventos se descartarían al reenviarse."""

    # None: borrar la clave (las identidades vencidas: `identidades.py`).
    escrituras: dict[bytes, bytes | None] = field(default_factory=dict)
    tandas: list[list[interno.LoteAportes]] = field(default_factory=list)
    rechazos: list[Rechazo] = field(default_factory=list)
    aceptados: int = 0
    duplicados: int = 0
    # Aceptados por agencia (para la métrica; las agencias son las del catálogo).
    aceptados_por_agencia: dict[str, int] = field(default_factory=dict)

    @property
    def lotes(self) -> list[interno.LoteAportes]:
        return [lote for tanda in self.tandas for lote in tanda]

    def seguida_de(self, otra: SalidaCasos) -> SalidaCasos:
        """Esta salida y, a continuación, la de los registros siguientes (`otra`)."""
        self.escrituras.update(otra.escrituras)
        self.tandas += otra.tandas
        self.rechazos += otra.rechazos
        self.aceptados += otra.aceptados
        self.duplicados += otra.duplicados
        for agencia, n in otra.aceptados_por_agencia.items():
            self.aceptados_por_agencia[agencia] = self.aceptados_por_agencia.get(agencia, 0) + n
        return self


def aplicar_escrituras(almacen: dict[bytes, bytes], escrituras: Mapping[bytes, bytes | None]) -> None:
    """Aplica a un diccionario las escrituras de una salida (None: borrar la clave)."""
    for clave, valor in escrituras.items():
        if valor is None:
            almacen.pop(clave, None)
        else:
            almacen[clave] = valor


def clave_caso(evento) -> bytes:
    """Clave del estado de un caso en la tabla `casos`: la agencia y su número de caso (cada
    agencia numera los suyos), o la agencia y el evento_id si no es de un caso. Los
    identificadores validados no llevan U+001F, así que las claves no se confunden."""
    caso_id = evento.caso_id
    if caso_id:
        return f"{evento.agencia_id}\x1fc\x1f{caso_id}".encode()
    return f"{evento.agencia_id}\x1fe\x1f{evento.evento_id}".encode()


class _Superpuesto:
    """El almacén con las escrituras de los registros anteriores del lote encima (al procesar
    un lote en partes, cada parte ve lo que dejaron las anteriores)."""

    __slots__ = ("almacen", "encima")

    def __init__(self, almacen: Mapping[bytes, bytes], encima: Mapping[bytes, bytes]):
        self.almacen = almacen
        self.encima = encima

    def get(self, clave: bytes, defecto=None):
        if clave in self.encima:
            # None: borrada por una parte anterior.
            valor = self.encima[clave]
            return defecto if valor is None else valor
        return self.almacen.get(clave, defecto)


class _FalloDeRegistro(Exception):
    """Una excepción inesperada al procesar un evento (o un registro entero, `posicion` None)."""

    def __init__(self, offset: int | None, posicion: int | None, causa: Exception):
        super().__init__(offset, posicion, causa)
        self.offset = offset
        self.posicion = posicion
        self.causa = causa


def clave_marca(agencia_id: str, particion: int) -> bytes:
    """Clave de la marca de agua de una agencia en una partición de gpr.eventos.v1, en la
    tabla `casos`.

    Por partición de origen y no una por agencia: cada partición de gpr.eventos.v1 trae los
    eventos de sus casos más o menos en orden, pero el reparto las mezcla al ritmo al que se
    leen (una puede ir días por delante de otra en una carga histórica), y una marca única
    declararía tardío lo que solo venía de una partición más lenta.

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
# Un evento de un servicio distinto del de su caso (el del primer evento del caso).
CASO_DE_OTRO_SERVICIO = "caso_de_otro_servicio"
# Un registro LoteEventos sin eventos.
LOTE_VACIO = "lote_vacio"
# Un (fuente, evento_id) que la agencia ya usó en otro caso (`identidades.py`).
IDENTIDAD_REPETIDA = "identidad_repetida"
# Prefijo del motivo de un evento (o registro) cuyo proceso lanzó una excepción inesperada;
# sigue la clase de la excepción, p. ej. «error_interno:KeyError».
ERROR_INTERNO = "error_interno"


class EtapaCasos:
    def __init__(self, catalogo: Catalogo, tardanza_maxima_s: int, reloj: Callable[[], float],
                 eventos_maximos_por_caso: int = 1000, antes_de_aplicar: Callable | None = None,
                 particiones_origen: int = 1):
        """`antes_de_aplicar(evento)`: se llama con cada evento válido antes de aplicarlo a su
        caso (las pruebas de punta a punta lo usan para provocar un error inesperado).
        `particiones_origen`: las de gpr.eventos.v1; una identidad se olvida cuando su hora
        queda fuera de la tolerancia en todas aquellas donde la agencia tiene marca de agua."""
        self.catalogo = catalogo
        self.tardanza_maxima_s = tardanza_maxima_s
        self.reloj = reloj
        self.eventos_maximos_por_caso = eventos_maximos_por_caso
        self.antes_de_aplicar = antes_de_aplicar
        self.particiones_origen = particiones_origen

    def procesar(self, registros: Sequence[Registro], casos: Mapping[bytes, bytes]) -> SalidaCasos:
        """Procesa registros de *una* partición, en orden de offset.

        Ningún registro detiene el lote: si procesar uno lanza una excepción inesperada (un
        error nuestro ante una entrada que no previmos), ese evento, o el registro si no se
        sabe cuál, va a rechazados con el motivo `error_interno:<clase>` y el resto del lote
        se procesa como si no estuviera. Para eso el lote se parte por la mitad hasta aislar
        el registro y, dentro de él, se excluye el evento y se vuelve a procesar; cada parte
        ve lo que escribieron las anteriores. Procesar no escribe en `casos`, así que repetir
        una parte no deja nada a medias, y el resultado es el mismo que daría el lote sin esos
        eventos: las reglas del exactamente-una-vez siguen valiendo.
        """
        if not registros:
            return SalidaCasos()
        particion = registros[0].particion
        if any(registro.particion != particion for registro in registros):
            raise ValueError("un lote de la etapa por caso es de una sola partición")
        return self._aislando(registros, casos, {})

    def _aislando(self, registros: Sequence[Registro], casos: Mapping[bytes, bytes],
                  excluidos: dict[tuple[int, int | None], Exception]) -> SalidaCasos:
        while True:
            try:
                return self._procesar(registros, casos, excluidos)
            except _FalloDeRegistro as fallo:
                if len(registros) > 1:
                    mitad = len(registros) // 2
                    primera = self._aislando(registros[:mitad], casos, excluidos)
                    segunda = self._aislando(registros[mitad:], _Superpuesto(casos, primera.escrituras), excluidos)
                    return primera.seguida_de(segunda)
                posicion = fallo.posicion if fallo.offset == registros[0].offset else None
                if (registros[0].offset, posicion) in excluidos:
                    # Ya excluido y vuelve a fallar: se excluye el registro entero.
                    posicion = None
                excluidos[(registros[0].offset, posicion)] = fallo.causa

    def _procesar(self, registros: Sequence[Registro], casos: Mapping[bytes, bytes],
                  excluidos: dict[tuple[int, int | None], Exception]) -> SalidaCasos:
        salida = SalidaCasos()
        particion = registros[0].particion
        estados: dict[bytes, Caso] = {}
        modificados: set[bytes] = set()
        # Por (agencia, partición de origen).
        marcas: dict[tuple[str, int], int] = {}
        # Por agencia, la menor de sus marcas al empezar el lote (la que olvida identidades).
        minimas: dict[str, int] = {}
        pares: dict[tuple[str, str], _Par] = {}
        # Por (caso, identidad): dos agencias de la partición pueden usar la misma identidad.
        reenvios: dict[tuple[bytes, str], interno.LoteAportes] = {}
        aplicados: set[tuple[bytes, str]] = set()
        identidades = Identidades(casos, self.tardanza_maxima_s)
        ahora = self.reloj()
        catalogo = self.catalogo
        tardanza_maxima_s = self.tardanza_maxima_s
        eventos_maximos = self.eventos_maximos_por_caso
        claves_marca: dict[tuple[str, int], bytes] = {}

        def marca_minima(agencia: str) -> int:
            valores = []
            for origen in range(self.particiones_origen):
                clave_m = (agencia, origen)
                valor = marcas[clave_m] if clave_m in marcas else casos.get(clave_marca(agencia, origen))
                if valor is not None:
                    valores.append(int(valor))
            return min(valores, default=0)
        # Aportes distintos del par más grande del agregado en curso (solo crece).
        mayor_agregado = 0
        offset = posicion = None
        por_agencia = salida.aceptados_por_agencia

        # Por offset, los bytes de cada evento de un registro lote (solo si se rechaza alguno).
        brutos: dict[int, list[bytes] | None] = {}

        def rechazar(registro: Registro, evento, en_lote: bool, motivo: str, detalle: str) -> None:
            # De un lote (un paquete del reparto, o del emisor): el evento con sus bytes y con
            # la clave del contrato, la que llevaría solo (así `gpr rechazados reprocesar` lo
            # reenvía bien).
            if en_lote:
                if brutos.get(registro.offset, False) is False:
                    brutos[registro.offset] = eventos_en_bruto(registro.valor)
                partes = brutos[registro.offset]
                if partes is not None and posicion is not None and posicion < len(partes):
                    original = partes[posicion]
                else:
                    original = evento.SerializeToString()
                clave = clave_kafka(evento)
            else:
                original, clave = registro.valor, registro.clave
            agencia = evento.agencia_id if evento.agencia_id in catalogo.agencias else ""
            salida.rechazos.append(Rechazo(clave, original, motivo,
                                           f"evento {recortar(evento.evento_id)!r}: {detalle}", agencia))

        try:
            for registro in registros:
                offset, posicion = registro.offset, None
                en_lote = es_lote(registro.cabeceras)
                error = excluidos.get((offset, None))
                if error is not None:
                    salida.rechazos.append(Rechazo(
                        registro.clave, registro.valor or b"", f"{ERROR_INTERNO}:{type(error).__name__}",
                        f"registro {offset}: {recortar(str(error))}", lote=en_lote))
                    continue
                try:
                    eventos = decodificar(registro.valor, registro.cabeceras)
                except RegistroInvalido as error:
                    salida.rechazos.append(Rechazo(registro.clave, registro.valor or b"", error.motivo,
                                                   recortar(str(error)), lote=en_lote))
                    continue
                if not eventos:
                    salida.rechazos.append(Rechazo(registro.clave, registro.valor or b"", LOTE_VACIO,
                                                   f"registro {offset}: un LoteEventos sin eventos", lote=True))
                    continue
                base = offset << BITS_POSICION
                for posicion, evento in enumerate(eventos):
                    error = excluidos.get((offset, posicion))
                    if error is not None:
                        rechazar(registro, evento, en_lote, f"{ERROR_INTERNO}:{type(error).__name__}",
                                 recortar(str(error)))
                        continue
                    motivo = validar(evento, catalogo, ahora)
                    if motivo is not None:
                        rechazar(registro, evento, en_lote, motivo, motivo)
                        continue
                    if self.antes_de_aplicar is not None:
                        self.antes_de_aplicar(evento)
                    clave = clave_caso(evento)
                    estado = estados.get(clave)
                    if estado is None:
                        bruto = casos.get(clave)
                        if bruto is not None:
                            estado = estados[clave] = Caso.de_mensaje(interno.EstadoCaso.FromString(bruto))
                    if estado is not None and estado.servicio_id != evento.servicio_id:
                        rechazar(registro, evento, en_lote, CASO_DE_OTRO_SERVICIO,
                                 f"el caso {recortar(evento.caso_id)!r} de {evento.agencia_id} es del servicio "
                                 f"{estado.servicio_id!r}, no de {evento.servicio_id!r}")
                        continue
                    agencia = evento.agencia_id
                    clave_m = (agencia, registro.origen)
                    marca = marcas.get(clave_m)
                    if marca is None:
                        clave_bytes = claves_marca[clave_m] = clave_marca(agencia, registro.origen)
                        marca = marcas[clave_m] = int(casos.get(clave_bytes) or 0)
                    minima = minimas.get(agencia)
                    if minima is None:
                        minima = minimas[agencia] = marca_minima(agencia)
                    ocurrido = evento.ocurrido_en.seconds
                    ident = identidad(evento)
                    primero = identidades.caso_de(agencia, ident, minima)
                    if primero is not None and primero != clave:
                        rechazar(registro, evento, en_lote, IDENTIDAD_REPETIDA,
                                 f"la agencia ya usó (fuente {recortar(evento.fuente)!r}, evento_id "
                                 f"{recortar(evento.evento_id)!r}) en el caso "
                                 f"{recortar(primero.decode().rpartition(chr(0x1f))[2])!r}")
                        continue
                    if estado is not None and ident in estado.vistos:
                        salida.duplicados += 1
                        if primero is None and ocurrido >= minima - tardanza_maxima_s:
                            # Aceptado y sin identidad: un corte dejó en el changelog el estado
                            # del caso y no su identidad (o esta ya venció). Se vuelve a anotar.
                            identidades.anotar(agencia, ident, clave, ocurrido)
                        reenvio = (clave, ident)
                        if reenvio not in aplicados and reenvio not in reenvios:
                            # No se aplicó en este lote: está en el estado leído del almacén (y
                            # su lote, reconstruido, es el mismo cada vez que se repita).
                            reenvios[reenvio] = lote_emitido(estado.mensaje, ident)
                        # Fue aceptado: la marca avanza como avanzó la primera vez, así un
                        # reproceso juzga la tardanza de los siguientes igual que entonces.
                        if ocurrido > marca:
                            marcas[clave_m] = ocurrido
                            modificados.add(claves_marca[clave_m])
                        continue
                    # La tardanza se juzga contra la marca de agua de la agencia en la partición
                    # de origen del registro, guardada en la misma tabla que los casos: la decisión es la
                    # misma si el registro se reprocesa tras un corte, avancen lo que avancen
                    # las demás.
                    if ocurrido < marca - tardanza_maxima_s:
                        rechazar(registro, evento, en_lote, "tardio", "tardio")
                        continue
                    if estado is None:
                        estado = estados[clave] = Caso.nuevo(
                            evento, catalogo.servicio(agencia, evento.servicio_id).plazo_dias)
                    elif len(estado.vistos) >= eventos_maximos:
                        rechazar(registro, evento, en_lote, CASO_SATURADO,
                                 f"el caso {recortar(evento.caso_id)!r} ya tiene {len(estado.vistos)} eventos "
                                 f"(GPR_EVENTOS_MAXIMOS_POR_CASO); ¿el emisor repite el mismo caso_id?")
                        continue
                    cambios = cambios_de(estado, evento, evento.tipo, ocurrido)
                    registrar(estado, evento, ident, particion, base | posicion, None if en_lote else registro.valor)
                    modificados.add(clave)
                    aplicados.add((clave, ident))
                    identidades.anotar(agencia, ident, clave, ocurrido)
                    if ocurrido > marca:
                        marcas[clave_m] = ocurrido
                        modificados.add(claves_marca[clave_m])
                    clave_par = (estado.agencia_id, estado.servicio_id)
                    par = pares.get(clave_par)
                    if par is None:
                        par = pares[clave_par] = _Par()
                    par.sumar(cambios, ocurrido)
                    if len(par.aportes) > mayor_agregado:
                        mayor_agregado = len(par.aportes)
                    salida.aceptados += 1
                    por_agencia[agencia] = por_agencia.get(agencia, 0) + 1
                posicion = None
                if mayor_agregado + len(reenvios) * _APORTES_POR_REENVIO >= APORTES_MAXIMOS_POR_AGREGADO:
                    # Los registros leídos hasta aquí forman un agregado aparte, con la secuencia
                    # de este registro: mayor que la de sus eventos y menor que la de los siguientes.
                    _emitir_agregados(salida, pares, reenvios, particion, offset)
                    pares, reenvios, mayor_agregado = {}, {}, 0
            offset = posicion = None

            # Las identidades primero: el changelog de una partición llega en orden, así que un
            # corte que deja en Kafka el estado de un caso deja también sus identidades.
            escrituras = identidades.cerrar({agencia: marca_minima(agencia) for agencia in minimas})
            for clave in modificados:
                if clave in estados:
                    escrituras[clave] = estados[clave].a_mensaje().SerializeToString()
            for clave_m, marca in marcas.items():
                clave = claves_marca[clave_m]
                if clave in modificados:
                    escrituras[clave] = str(marca).encode()
            salida.escrituras = escrituras
            _emitir_agregados(salida, pares, reenvios, particion, registros[-1].offset)
        except Exception as error:
            raise _FalloDeRegistro(offset, posicion, error) from error
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
