"""Generador de eventos realistas de varias agencias y servicios (núcleo puro, sin E/S).

Simulación de eventos discretos
-------------------------------
Cada servicio del catálogo recibe solicitudes según un proceso de Poisson cuya intensidad
(`casos_por_hora` en promedio) sube en horario de oficina y baja de noche y en fin de semana,
en la zona horaria de la agencia. Cada caso es una corrutina que recorre su ciclo:

    SOLICITUD_RECIBIDA → por cada etapa ETAPA_INICIADA / ETAPA_COMPLETADA
    (a veces CASO_DEVUELTO y la etapa otra vez con intento=2, o el ciudadano no vuelve y el
    caso termina en CASO_CERRADO) → SERVICIO_ENTREGADO (casi siempre OTORGADO, algunos ERROR
    o DESISTIDO) o CASO_CERRADO (denegado) → COSTO_REGISTRADO, a veces ENCUESTA_RESPONDIDA,
    a veces RECLAMO_REGISTRADO y su RECLAMO_RESUELTO.

Todos los eventos pendientes esperan en un montículo ordenado por (ocurrido_en, secuencia); la
corrutina de un caso solo calcula su paso siguiente cuando el anterior sale del montículo. Así
la salida queda ordenada por `ocurrido_en`, un evento que aún no ha ocurrido nunca se entrega
antes de tiempo (espera en el montículo), y la duración de una etapa se sortea con el perfil
vigente *cuando la etapa empieza*: cambiar un perfil en marcha (degradar y recuperar) afecta
a las etapas que empiezan desde ese momento, también las de casos ya abiertos.

Perfiles
--------
El perfil de un servicio fija la duración de cada etapa (lognormal: mediana y dispersión).
El perfil normal reparte entre sus etapas entre el 30 % y el 50 % del plazo legal, así que
casi todos los casos cumplen el plazo salvo los devueltos. El perfil lento de una etapa la
alarga hasta que la atención típica del caso sea `FACTOR_LENTO` veces el plazo: casi ningún
caso lo cumple y la etapa culpable es la que se eligió. `lentos` dice qué servicio es lento
y por qué etapa; `fijar_lentos` lo cambia en marcha.

Reloj simulado
--------------
`Reloj` decide qué sale en cada instante del reloj de pared. La simulación empieza en
`inicio_s` (p. ej. ahora menos tres días): primero repite esa historia tan rápido como
permite la tasa (eventos/s) y, cuando alcanza al reloj de pared, sigue en tiempo real. La
regla es una sola: solo sale un evento con `ocurrido_en` ≤ hora de pared, y no más de `tasa`
por segundo. Nunca se adelanta al reloj de pared, de modo que el procesador no rechaza nada
por `tiempo_futuro`, y como la salida está ordenada la marca de agua de cada agencia avanza
sin que ningún evento llegue tarde respecto de ella.

Reproducibilidad
----------------
Los identificadores (evento_id, caso_id, reclamo_id) son UUID sacados del generador
pseudoaleatorio. Los perfiles dependen solo de la semilla (el mismo escenario en cada
ejecución); los eventos dependen de la semilla y de `inicio_s`, así dos ejecuciones con la
misma semilla y distinto inicio no repiten identificadores (el procesador las tomaría por
duplicados). Con la misma semilla, inicio, perfiles y cambios de perfil, la salida es idéntica.
"""

from __future__ import annotations

import heapq
import math
import random
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from gpr.v1 import eventos_pb2 as pb
from servicios.comun.catalogo import Catalogo, Servicio

FUENTE = "simulador"
VERSION_ESQUEMA = 1
SEGUNDOS_POR_DIA = 86400
# Atención típica de un servicio lento, en múltiplos del plazo: con la dispersión de la
# etapa lenta, menos de un caso de cada veinte cumple el plazo.
FACTOR_LENTO = 1.5
DISPERSION_LENTA = 0.25
DISPERSION_NORMAL = 0.6

ClaveServicio = tuple[str, str]

# Peso relativo de la demanda por hora local (0–23) en día laborable; los fines de semana
# se multiplica por _PESO_FIN_DE_SEMANA. Se normaliza para que el promedio semanal sea 1.
_PESO_HORA = (0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.4, 0.8, 1.6, 1.9, 1.9, 1.8, 1.4, 1.2,
              1.6, 1.7, 1.5, 1.1, 0.8, 0.6, 0.4, 0.3, 0.2, 0.1)
_PESO_FIN_DE_SEMANA = 0.35
_PESO_MEDIO = sum(_PESO_HORA) * (5 + 2 * _PESO_FIN_DE_SEMANA) / (7 * 24)
_PESO_MAXIMO = max(_PESO_HORA) / _PESO_MEDIO


class LentosInvalidos(ValueError):
    """Texto de servicios lentos que no tiene la forma `agencia/servicio:etapa,...`."""


@dataclass(frozen=True)
class TiempoEtapa:
    """Duración lognormal: la mitad de los casos tarda menos que `mediana_s`."""

    mediana_s: float
    dispersion: float = DISPERSION_NORMAL

    def muestrear(self, azar: random.Random) -> int:
        return max(1, round(self.mediana_s * math.exp(azar.gauss(0.0, self.dispersion))))


@dataclass(frozen=True)
class PerfilServicio:
    """Cómo se comporta un servicio: demanda, duraciones y probabilidades de cada desenlace."""

    casos_por_hora: float
    # Duración de cada etapa del catálogo; sin etapas, la de toda la atención.
    etapas: Mapping[str, TiempoEtapa]
    atencion_sin_etapas: TiempoEtapa
    # Cola entre una etapa y la siguiente (media de una exponencial).
    espera_entre_etapas_s: float = 1800.0
    prob_devolucion: float = 0.08
    # Lo que tarda el ciudadano en subsanar tras una devolución.
    subsanacion: TiempoEtapa = TiempoEtapa(SEGUNDOS_POR_DIA, 0.6)
    prob_abandono_tras_devolucion: float = 0.25
    prob_denegado: float = 0.03
    prob_error: float = 0.02
    prob_desistido: float = 0.02
    prob_encuesta: float = 0.35
    prob_reclamo: float = 0.02
    prob_reclamo_por_demora: float = 0.3
    costo_base: float = 30.0
    canales: tuple[tuple[int, float], ...] = ((pb.CANAL_PRESENCIAL, 0.5), (pb.CANAL_WEB, 0.5))
    # Etapa alargada a propósito (solo informativo: ya está en `etapas`).
    etapa_lenta: str | None = None

    def mediana_atencion_s(self) -> float:
        """Suma de medianas y esperas: una aproximación de la atención típica de un caso."""
        n = len(self.etapas)
        if not n:
            return self.atencion_sin_etapas.mediana_s + self.espera_entre_etapas_s
        return sum(t.mediana_s for t in self.etapas.values()) + (n + 1) * self.espera_entre_etapas_s


def perfil_normal(servicio: Servicio, azar: random.Random, casos_por_hora: float) -> PerfilServicio:
    """Un servicio sano: su atención típica ocupa entre el 30 % y el 50 % del plazo."""
    plazo_s = servicio.plazo_dias * SEGUNDOS_POR_DIA
    fraccion = azar.uniform(0.3, 0.5)
    espera = min(1800.0, plazo_s * 0.01)
    n = len(servicio.etapas)
    trabajo_s = fraccion * plazo_s - (n + 1) * espera
    pesos = [azar.uniform(1.0, 3.0) for _ in servicio.etapas]
    etapas = {e: TiempoEtapa(trabajo_s * p / sum(pesos)) for e, p in zip(servicio.etapas, pesos)}
    digital = azar.uniform(0.2, 0.8)
    canales = (
        (pb.CANAL_PRESENCIAL, (1 - digital) * 0.85), (pb.CANAL_TELEFONO, (1 - digital) * 0.05),
        (pb.CANAL_CORREO, (1 - digital) * 0.10), (pb.CANAL_WEB, digital * 0.6), (pb.CANAL_APP, digital * 0.3),
        (pb.CANAL_DIGITAL_ASISTIDO, digital * 0.1),
    )
    return PerfilServicio(
        casos_por_hora=casos_por_hora,
        etapas=etapas,
        atencion_sin_etapas=TiempoEtapa(max(trabajo_s, 60.0)),
        espera_entre_etapas_s=espera,
        subsanacion=TiempoEtapa(plazo_s * 0.35, 0.6),
        costo_base=round(azar.uniform(8.0, 120.0), 2),
        canales=canales,
    )


def perfil_lento(base: PerfilServicio, servicio: Servicio, etapa: str,
                 factor: float = FACTOR_LENTO) -> PerfilServicio:
    """`base` con `etapa` alargada hasta que la atención típica sea `factor` veces el plazo."""
    if etapa not in base.etapas:
        raise KeyError(f"el servicio {servicio.agencia_id}/{servicio.id} no tiene la etapa {etapa!r}")
    plazo_s = servicio.plazo_dias * SEGUNDOS_POR_DIA
    extra = max(factor * plazo_s - base.mediana_atencion_s(), 0.0)
    etapas = dict(base.etapas)
    etapas[etapa] = TiempoEtapa(base.etapas[etapa].mediana_s + extra, DISPERSION_LENTA)
    return replace(base, etapas=etapas, etapa_lenta=etapa)


def parsear_lentos(texto: str) -> dict[ClaveServicio, str]:
    """`agencia/servicio:etapa,...` → {(agencia, servicio): etapa}; `ninguno` → {}."""
    texto = texto.strip()
    if texto.lower() in ("", "ninguno"):
        return {}
    lentos: dict[ClaveServicio, str] = {}
    for parte in texto.replace("\n", ",").split(","):
        parte = parte.strip()
        if not parte:
            continue
        servicio, separador, etapa = parte.partition(":")
        agencia, barra, servicio_id = servicio.partition("/")
        if not (separador and barra and agencia.strip() and servicio_id.strip() and etapa.strip()):
            raise LentosInvalidos(f"{parte!r} no tiene la forma agencia/servicio:etapa")
        clave = (agencia.strip(), servicio_id.strip())
        if clave in lentos:
            raise LentosInvalidos(f"el servicio {clave[0]}/{clave[1]} aparece dos veces")
        lentos[clave] = etapa.strip()
    return lentos


def errores_lentos(lentos: Mapping[ClaveServicio, str], catalogo: Catalogo) -> list[str]:
    """Servicios o etapas de `lentos` que el catálogo no conoce."""
    errores = []
    for (agencia, servicio_id), etapa in lentos.items():
        servicio = catalogo.servicio(agencia, servicio_id)
        if servicio is None:
            errores.append(f"servicio desconocido {agencia}/{servicio_id}")
        elif etapa not in servicio.etapas:
            conocidas = ", ".join(servicio.etapas) or "ninguna"
            errores.append(f"{agencia}/{servicio_id} no tiene la etapa {etapa!r} (etapas: {conocidas})")
    return errores


def lentos_por_defecto(catalogo: Catalogo) -> dict[ClaveServicio, str]:
    """El servicio de plazo más corto, lento en su última etapa: el incumplimiento se ve antes."""
    con_etapas = [s for _, s in sorted(catalogo.servicios.items()) if s.etapas]
    if not con_etapas:
        return {}
    servicio = min(con_etapas, key=lambda s: s.plazo_dias)
    return {(servicio.agencia_id, servicio.id): servicio.etapas[-1]}


def _peso_demanda(instante_s: float, zona: ZoneInfo) -> float:
    local = datetime.fromtimestamp(instante_s, timezone.utc).astimezone(zona)
    peso = _PESO_HORA[local.hour] / _PESO_MEDIO
    return peso * _PESO_FIN_DE_SEMANA if local.weekday() >= 5 else peso


def _elegir(azar: random.Random, opciones: tuple[tuple[int, float], ...]) -> int:
    valores, pesos = zip(*opciones)
    return azar.choices(valores, weights=pesos)[0]


class Generador:
    """Produce los eventos de todo el catálogo en orden de `ocurrido_en`, a partir de `inicio_s`.

    `perfiles` reemplaza el perfil normal de los servicios que nombra; `lentos` dice qué
    servicio es lento y por qué etapa (None: `lentos_por_defecto`; {}: ninguno).
    """

    def __init__(
        self,
        catalogo: Catalogo,
        semilla: int,
        inicio_s: int,
        *,
        lentos: Mapping[ClaveServicio, str] | None = None,
        perfiles: Mapping[ClaveServicio, PerfilServicio] | None = None,
        casos_por_hora: float = 10.0,
        fuente: str = FUENTE,
    ):
        self.catalogo = catalogo
        self.fuente = fuente
        self.inicio_s = int(inicio_s)
        azar_escenario = random.Random(f"gpr-simulador:{semilla}")
        self._base: dict[ClaveServicio, PerfilServicio] = {}
        for clave, servicio in sorted(catalogo.servicios.items()):
            self._base[clave] = perfil_normal(servicio, azar_escenario, casos_por_hora)
        self._base.update(perfiles or {})
        self._vigentes: dict[ClaveServicio, PerfilServicio] = {}
        self._lentos: dict[ClaveServicio, str] = {}
        self.fijar_lentos(lentos_por_defecto(catalogo) if lentos is None else lentos)

        self._azar = random.Random(f"gpr-simulador:{semilla}:{self.inicio_s}")
        self._zonas = {a.id: ZoneInfo(a.zona_horaria) for a in catalogo.agencias.values()}
        # (instante, secuencia, evento o None si es un despertar, continuación o None); la
        # secuencia es única, así que nunca se comparan eventos ni continuaciones.
        self._pendientes: list[tuple[int, int, pb.Evento | None, Iterator | None]] = []
        self._secuencia = 0
        self._instante_actual = self.inicio_s
        self.casos_abiertos = 0
        self.casos_iniciados = 0
        for clave in sorted(catalogo.servicios):
            self._programar_continuacion(self._llegadas(catalogo.servicios[clave]))

    @property
    def lentos(self) -> dict[ClaveServicio, str]:
        return dict(self._lentos)

    def perfil(self, agencia_id: str, servicio_id: str) -> PerfilServicio:
        return self._vigentes[(agencia_id, servicio_id)]

    def fijar_lentos(self, lentos: Mapping[ClaveServicio, str]) -> None:
        """Desde ahora son lentos exactamente estos servicios (los demás vuelven a su perfil base)."""
        errores = errores_lentos(lentos, self.catalogo)
        if errores:
            raise LentosInvalidos("; ".join(errores))
        self._lentos = dict(lentos)
        for clave, base in self._base.items():
            etapa = self._lentos.get(clave)
            self._vigentes[clave] = (
                perfil_lento(base, self.catalogo.servicios[clave], etapa) if etapa else base
            )

    def proximo_instante(self) -> int | None:
        """`ocurrido_en` (s) del próximo evento o despertar pendiente."""
        return self._pendientes[0][0] if self._pendientes else None

    @property
    def instante_actual(self) -> int:
        """Hasta dónde ha avanzado la simulación (el último instante procesado)."""
        return self._instante_actual

    def emitir_hasta(self, hasta_s: float, limite: int | None = None) -> list[pb.Evento]:
        """Los eventos con `ocurrido_en` ≤ `hasta_s`, en orden, como mucho `limite`."""
        salida: list[pb.Evento] = []
        pendientes = self._pendientes
        while pendientes and pendientes[0][0] <= hasta_s:
            if limite is not None and len(salida) >= limite:
                break
            instante, _, evento, continuacion = heapq.heappop(pendientes)
            self._instante_actual = instante
            if evento is not None:
                salida.append(evento)
            if continuacion is not None:
                self._programar_continuacion(continuacion)
        return salida

    def _programar(self, instante: int, evento: pb.Evento | None, continuacion: Iterator | None = None) -> None:
        # Nada puede programarse en el pasado de la simulación: rompería el orden de salida.
        instante = max(int(instante), self._instante_actual)
        if evento is not None:
            evento.ocurrido_en.seconds = instante
        self._secuencia += 1
        heapq.heappush(self._pendientes, (instante, self._secuencia, evento, continuacion))

    def _programar_continuacion(self, continuacion: Iterator) -> None:
        try:
            instante, evento = next(continuacion)
        except StopIteration:
            return
        self._programar(instante, evento, continuacion)

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._azar.getrandbits(128), version=4))

    def _evento(self, tipo: int, instante: int, servicio: Servicio, caso_id: str, **campos) -> pb.Evento:
        evento = pb.Evento(
            evento_id=self._uuid(), version_esquema=VERSION_ESQUEMA, tipo=tipo, fuente=self.fuente,
            agencia_id=servicio.agencia_id, servicio_id=servicio.id, caso_id=caso_id, **campos,
        )
        evento.ocurrido_en.seconds = int(instante)
        return evento

    def _llegadas(self, servicio: Servicio) -> Iterator[tuple[int, None]]:
        """Proceso de Poisson no homogéneo por aclareo: candidatos al ritmo máximo, aceptados según la hora."""
        azar = self._azar
        zona = self._zonas[servicio.agencia_id]
        clave = (servicio.agencia_id, servicio.id)
        t = float(self.inicio_s)
        while True:
            tasa_maxima = self._vigentes[clave].casos_por_hora * _PESO_MAXIMO / 3600.0
            if tasa_maxima <= 0:
                t += 3600.0
                yield int(t), None
                continue
            t += azar.expovariate(tasa_maxima)
            if azar.random() * _PESO_MAXIMO <= _peso_demanda(t, zona):
                yield int(t), None
                self._programar_continuacion(self._caso(servicio, int(t)))

    def _caso(self, servicio: Servicio, recibido: int) -> Iterator[tuple[int, pb.Evento]]:
        azar = self._azar
        clave = (servicio.agencia_id, servicio.id)
        caso_id = self._uuid()
        moneda = self.catalogo.agencias[servicio.agencia_id].moneda
        vence = recibido + servicio.plazo_dias * SEGUNDOS_POR_DIA
        perfil = self._vigentes[clave]
        canal = _elegir(azar, perfil.canales)
        etapa_devuelta = azar.choice(servicio.etapas) if servicio.etapas and azar.random() < perfil.prob_devolucion else None
        reclamado = False
        intentos_extra = 0
        self.casos_abiertos += 1
        self.casos_iniciados += 1

        def reclamar(desde: int, hasta: int, etapa: str) -> None:
            """Si el caso cruza su plazo en [desde, hasta], a veces el ciudadano reclama."""
            nonlocal reclamado
            if reclamado or hasta <= vence or azar.random() >= self._vigentes[clave].prob_reclamo_por_demora:
                return
            reclamado = True
            momento = max(desde, vence) + azar.randint(3600, SEGUNDOS_POR_DIA)
            self._programar_reclamo(servicio, caso_id, momento, "demora", etapa)

        def concluir(t: int, tipo: int, resultado: int) -> Iterator[tuple[int, pb.Evento]]:
            campos = {"resultado": resultado}
            if tipo == pb.TIPO_EVENTO_SERVICIO_ENTREGADO:
                campos["canal"] = canal
            yield t, self._evento(tipo, t, servicio, caso_id, **campos)
            self.casos_abiertos -= 1
            p = self._vigentes[clave]
            momento = t + azar.randint(60, 3600)
            costo = self._evento(pb.TIPO_EVENTO_COSTO_REGISTRADO, momento, servicio, caso_id)
            centimos = round(100 * p.costo_base * (1 + 0.4 * intentos_extra) * math.exp(azar.gauss(0, 0.2)))
            costo.costo.unidades, costo.costo.nanos = divmod(centimos, 100)
            costo.costo.nanos *= 10_000_000
            costo.costo.moneda = moneda
            self._programar(momento, costo)
            if tipo != pb.TIPO_EVENTO_SERVICIO_ENTREGADO:
                return
            tarde = t > vence
            if azar.random() < p.prob_encuesta:
                momento = t + 60 + round(azar.expovariate(1 / 28800))
                encuesta = self._evento(pb.TIPO_EVENTO_ENCUESTA_RESPONDIDA, momento, servicio, caso_id, canal=canal)
                encuesta.satisfaccion.puntaje = self._puntaje(tarde or resultado != pb.RESULTADO_OTORGADO)
                encuesta.satisfaccion.escala_max = 5
                self._programar(momento, encuesta)
            if not reclamado and azar.random() < p.prob_reclamo:
                categoria = "error" if resultado == pb.RESULTADO_ERROR else "atencion"
                etapa = azar.choice(servicio.etapas) if servicio.etapas else ""
                self._programar_reclamo(servicio, caso_id, t + azar.randint(3600, 3 * SEGUNDOS_POR_DIA), categoria, etapa)

        t = recibido
        yield t, self._evento(pb.TIPO_EVENTO_SOLICITUD_RECIBIDA, t, servicio, caso_id, canal=canal)

        if not servicio.etapas:
            fin = t + self._vigentes[clave].atencion_sin_etapas.muestrear(azar)
            reclamar(t, fin, "")
            yield from concluir(fin, pb.TIPO_EVENTO_SERVICIO_ENTREGADO, self._resultado_entrega(self._vigentes[clave]))
            return

        for indice, etapa in enumerate(servicio.etapas):
            intento = 1
            while True:
                t += 1 + round(azar.expovariate(1 / self._vigentes[clave].espera_entre_etapas_s))
                yield t, self._evento(pb.TIPO_EVENTO_ETAPA_INICIADA, t, servicio, caso_id, etapa_id=etapa, intento=intento)
                # Se sortea al salir ETAPA_INICIADA: vale el perfil vigente cuando la etapa empieza.
                fin = t + self._vigentes[clave].etapas[etapa].muestrear(azar)
                reclamar(t, fin, etapa)
                t = fin
                yield t, self._evento(pb.TIPO_EVENTO_ETAPA_COMPLETADA, t, servicio, caso_id, etapa_id=etapa, intento=intento)
                if intento > 1 or etapa != etapa_devuelta:
                    break
                t += 1 + azar.randint(0, 600)
                yield t, self._evento(pb.TIPO_EVENTO_CASO_DEVUELTO, t, servicio, caso_id, etapa_id=etapa, intento=intento)
                p = self._vigentes[clave]
                espera = p.subsanacion.muestrear(azar)
                if azar.random() < p.prob_abandono_tras_devolucion:
                    # El ciudadano no subsana: la entidad cierra el caso por abandono.
                    yield from concluir(t + 2 * espera, pb.TIPO_EVENTO_CASO_CERRADO, pb.RESULTADO_DESISTIDO)
                    return
                t += espera
                intento += 1
                intentos_extra += 1
            if indice == 0 and azar.random() < self._vigentes[clave].prob_denegado:
                t += 1 + azar.randint(0, 3600)
                yield from concluir(t, pb.TIPO_EVENTO_CASO_CERRADO, pb.RESULTADO_DENEGADO_NO_ELEGIBLE)
                return

        t += 1 + round(azar.expovariate(1 / self._vigentes[clave].espera_entre_etapas_s))
        yield from concluir(t, pb.TIPO_EVENTO_SERVICIO_ENTREGADO, self._resultado_entrega(self._vigentes[clave]))

    def _resultado_entrega(self, perfil: PerfilServicio) -> int:
        r = self._azar.random()
        if r < perfil.prob_error:
            return pb.RESULTADO_ERROR
        if r < perfil.prob_error + perfil.prob_desistido:
            return pb.RESULTADO_DESISTIDO
        return pb.RESULTADO_OTORGADO

    def _puntaje(self, mal_atendido: bool) -> int:
        pesos = (0.25, 0.3, 0.25, 0.15, 0.05) if mal_atendido else (0.02, 0.04, 0.12, 0.42, 0.40)
        return self._azar.choices((1, 2, 3, 4, 5), weights=pesos)[0]

    def _programar_reclamo(self, servicio: Servicio, caso_id: str, momento: int, categoria: str, etapa: str) -> None:
        reclamo_id = self._uuid()
        registrado = self._evento(pb.TIPO_EVENTO_RECLAMO_REGISTRADO, momento, servicio, caso_id)
        registrado.reclamo.reclamo_id = reclamo_id
        registrado.reclamo.categoria = categoria
        registrado.reclamo.etapa_relacionada = etapa
        self._programar(momento, registrado)
        resuelto = pb.Evento()
        resuelto.CopyFrom(registrado)
        resuelto.tipo = pb.TIPO_EVENTO_RECLAMO_RESUELTO
        resuelto.evento_id = self._uuid()
        resuelto.ocurrido_en.seconds = momento + self._azar.randint(SEGUNDOS_POR_DIA, 5 * SEGUNDOS_POR_DIA)
        self._programar(resuelto.ocurrido_en.seconds, resuelto)


class Reloj:
    """Reloj simulado: historia tan rápido como permite la tasa, luego tiempo real.

    Sin E/S: quien lo usa le pasa la hora de pared y duerme lo que `paso` le dice. Un cubo de
    fichas (capacidad: una décima de segundo de tasa) limita el ritmo.
    """

    def __init__(self, generador: Generador, tasa: float):
        if tasa <= 0:
            raise ValueError("la tasa debe ser mayor que 0")
        self.generador = generador
        self.tasa = float(tasa)
        self._capacidad = max(1.0, self.tasa / 10)
        self._fichas = self._capacidad
        self._ultimo: float | None = None

    def paso(self, ahora_pared: float, maximo: int | None = None) -> tuple[list[pb.Evento], float]:
        """Eventos que pueden salir ya (ninguno posterior a `ahora_pared`) y segundos que esperar."""
        if self._ultimo is not None:
            self._fichas = min(self._capacidad, self._fichas + (ahora_pared - self._ultimo) * self.tasa)
        self._ultimo = ahora_pared
        cupo = int(self._fichas)
        if maximo is not None:
            cupo = min(cupo, maximo)
        eventos = self.generador.emitir_hasta(ahora_pared, limite=cupo) if cupo > 0 else []
        self._fichas -= len(eventos)
        proximo = self.generador.proximo_instante()
        if proximo is None:
            return eventos, 1.0
        if proximo > ahora_pared:
            return eventos, min(1.0, proximo - ahora_pared)
        return eventos, max(0.0, (1.0 - self._fichas) / self.tasa)

    def retraso_s(self, ahora_pared: float) -> float:
        """Cuánto lleva esperando el próximo evento ya vencido (0 en tiempo real)."""
        proximo = self.generador.proximo_instante()
        return 0.0 if proximo is None else max(0.0, ahora_pared - proximo)
