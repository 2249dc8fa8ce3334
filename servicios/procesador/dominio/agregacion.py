"""Etapa de agregación por (agencia, servicio): cubos, vencimientos, marca de agua e
instantáneas de todas las ventanas. Opera sobre mapas clave → bytes (las tablas de faust lo
son; las pruebas usan dicts), sin E/S propia.

Claves de los mapas:
  cubos     "agencia|servicio|h<hora>" (cubo horario UTC), "agencia|servicio|m<AAAA-MM>" (mes
            en la zona de la agencia) y "agencia|servicio|total" (desde el primer evento)
            → CuboHorario
  lineas    "agencia|servicio" → LineaVencimientos
  agencias  "agencia" → EstadoAgencia
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass

from gpr.v1 import interno_pb2 as interno
from servicios.comun.catalogo import Catalogo
from servicios.comun.indicadores import VENTANA_TOTAL, VENTANAS_MOVILES
from servicios.procesador.dominio import medidas as m
from servicios.procesador.dominio import vencimientos, ventanas
from servicios.procesador.dominio.casos import aportes_de
from servicios.procesador.dominio.indicadores import ValorIndicador, calcular_con_cuello

# Los cubos horarios solo sirven a las ventanas móviles: la más larga es de 30 días.
RETENCION_HORAS = max(VENTANAS_MOVILES.values()) // ventanas.SEGUNDOS_HORA
MESES_RETENIDOS = 13
# Tope de horas que un barrido recorre de una vez (tras un salto grande de la marca de agua).
_BARRIDO_MAXIMO = 24 * 60
# En `Pendientes`, las ventanas anotadas para todos los servicios de la agencia.
TODOS_LOS_SERVICIOS = "*"


class Pendientes:
    """Qué ventanas pueden haber cambiado desde la última publicación.

    agencia → servicio (o `TODOS_LOS_SERVICIOS`) → nombres de ventana; `None` en cualquier
    nivel es «todas». La publicación recalcula solo esto: un mes pasado cambia solo si le llega
    un aporte tardío, y recalcular todas las ventanas de cada agencia tocada era casi todo el
    costo de una pasada.
    """

    def __init__(self):
        self.agencias: dict[str, dict[str, set[str] | None] | None] = {}

    def __bool__(self) -> bool:
        return bool(self.agencias)

    def __contains__(self, agencia: str) -> bool:
        return agencia in self.agencias

    def toda_la_agencia(self, agencia: str) -> None:
        self.agencias[agencia] = None

    def anotar(self, agencia: str, servicio: str, ventanas_cambiadas) -> None:
        """`ventanas_cambiadas`: iterable de nombres, o None (todas las del servicio)."""
        servicios = self.agencias.get(agencia, {})
        if servicios is None:
            return
        self.agencias[agencia] = servicios
        if ventanas_cambiadas is None:
            servicios[servicio] = None
        elif servicio not in servicios:
            servicios[servicio] = set(ventanas_cambiadas)
        elif servicios[servicio] is not None:
            servicios[servicio].update(ventanas_cambiadas)

    def unir(self, otras: Pendientes) -> None:
        for agencia, servicios in otras.agencias.items():
            if servicios is None:
                self.toda_la_agencia(agencia)
            else:
                for servicio, nombres in servicios.items():
                    self.anotar(agencia, servicio, nombres)

    def tomar(self) -> Pendientes:
        """Lo anotado hasta ahora (y queda vacío)."""
        tomadas = Pendientes()
        tomadas.agencias, self.agencias = self.agencias, {}
        return tomadas

    def de_servicio(self, agencia: str, servicio: str):
        """Ventanas del servicio por recalcular: None (todas), o un conjunto (vacío: ninguna)."""
        if agencia not in self.agencias:
            return set()
        servicios = self.agencias[agencia]
        if servicios is None:
            return None
        comunes = servicios.get(TODOS_LOS_SERVICIOS, set())
        propias = servicios.get(servicio, set())
        if comunes is None or propias is None:
            return None
        return comunes | propias


def _ventanas_en_marca(desde_s: int, hasta_s: int, zona: str) -> list[str]:
    """Las ventanas que dependen de la marca de agua (móviles y total: su `hasta` y los vencidos
    «ahora») y los meses de `desde_s` a `hasta_s` (su cierre o su `hasta`)."""
    return [*VENTANAS_MOVILES, VENTANA_TOTAL, *(f"mes:{mes}" for mes in ventanas.meses_entre(desde_s, hasta_s, zona))]


@dataclass(frozen=True)
class Instantanea:
    servicio_id: str
    ventana: str
    desde_s: int
    hasta_s: int
    valor: ValorIndicador
    cuello_botella: str


def _clave_cubo_hora(agencia: str, servicio: str, hora: int) -> bytes:
    return f"{agencia}|{servicio}|h{hora}".encode()


def _clave_cubo_mes(agencia: str, servicio: str, mes: str) -> bytes:
    return f"{agencia}|{servicio}|m{mes}".encode()


def _clave_cubo_total(agencia: str, servicio: str) -> bytes:
    return f"{agencia}|{servicio}|total".encode()


class MapaProto:
    """Un mapa clave → bytes visto como clave → mensaje protobuf, con los mensajes ya
    decodificados en memoria: decodificar los cubos grandes (histogramas) en cada lectura era
    más de la mitad del costo de la agregación. Quien modifica un mensaje leído lo anota con
    `poner`; las escrituras se juntan hasta `volcar()`, así un cubo tocado por muchos lotes
    se escribe (y va al changelog) una vez por tanda. `olvidar()` descarta la memoria (tras un
    reequilibrio el mapa cambia por debajo: la recuperación escribe directo en el almacén)."""

    def __init__(self, mapa: MutableMapping, tipo):
        self.mapa = mapa
        self._tipo = tipo
        self._memoria: dict = {}
        self._pendientes: set = set()

    def leer(self, clave: bytes):
        mensaje = self._memoria.get(clave)
        if mensaje is None:
            bruto = self.mapa.get(clave)
            if bruto is None:
                return None
            mensaje = self._memoria[clave] = self._tipo.FromString(bruto)
        return mensaje

    def leer_o_nuevo(self, clave: bytes):
        mensaje = self.leer(clave)
        return mensaje if mensaje is not None else self._tipo()

    def poner(self, clave: bytes, mensaje) -> None:
        self._memoria[clave] = mensaje
        self._pendientes.add(clave)

    def quitar(self, clave: bytes) -> None:
        self._memoria.pop(clave, None)
        self._pendientes.discard(clave)
        self.mapa.pop(clave, None)

    def volcar(self) -> int:
        """Escribe en el mapa lo anotado desde el último volcado; devuelve cuántas claves."""
        pendientes, self._pendientes = self._pendientes, set()
        for clave in pendientes:
            self.mapa[clave] = self._memoria[clave].SerializeToString()
        return len(pendientes)

    def __contains__(self, clave: bytes) -> bool:
        return clave in self._memoria or clave in self.mapa

    def claves(self):
        return list(set(self.mapa.keys()) | self._pendientes)

    def olvidar(self) -> None:
        self._memoria.clear()
        self._pendientes.clear()


class Agregacion:
    def __init__(self, cubos: MutableMapping, lineas: MutableMapping, agencias: MutableMapping,
                 catalogo: Catalogo, tardanza_maxima_s: int):
        self.cubos = MapaProto(cubos, interno.CuboHorario)
        self.lineas = MapaProto(lineas, interno.LineaVencimientos)
        self.agencias = MapaProto(agencias, interno.EstadoAgencia)
        self.catalogo = catalogo
        self.tardanza_maxima_s = tardanza_maxima_s
        # Suma de los 24 cubos horarios de un día UTC, (agencia, servicio, día) → medidas: la
        # ventana de 30 días suma ~30 días y a lo más 48 horas sueltas en vez de 720 cubos.
        # Derivada de los cubos, solo en memoria; se invalida al tocar un cubo de ese día.
        self._dias: dict[tuple[str, str, int], dict[str, float]] = {}
        # Ventanas tocadas desde la última `tomar_pendientes`.
        self.pendientes = Pendientes()

    def olvidar_memoria(self) -> None:
        for mapa in (self.cubos, self.lineas, self.agencias):
            mapa.olvidar()
        self._dias.clear()

    def _zona(self, agencia_id: str) -> str:
        agencia = self.catalogo.agencias.get(agencia_id)
        return agencia.zona_horaria if agencia else "UTC"

    def estado_agencia(self, agencia_id: str) -> interno.EstadoAgencia:
        return self.agencias.leer_o_nuevo(agencia_id.encode())

    def _sumar_en_cubo(self, clave: bytes, aportes: list, lote: interno.LoteAportes) -> bool:
        cubo = self.cubos.leer_o_nuevo(clave)
        if cubo.secuencias.get(lote.particion_origen, -1) >= lote.secuencia:
            return False
        medidas = cubo.medidas
        for medida, _, valor in aportes:
            nuevo = medidas.get(medida, 0.0) + valor
            if abs(nuevo) < 1e-9:
                medidas.pop(medida, None)
            else:
                medidas[medida] = nuevo
        cubo.secuencias[lote.particion_origen] = lote.secuencia
        self.cubos.poner(clave, cubo)
        return True

    def aplicar_lotes(self, lotes) -> set[str]:
        """Suma lotes de aportes en orden, escribe cada clave tocada una vez y devuelve las
        agencias tocadas."""
        tocadas = set()
        for lote in lotes:
            self._aplicar(lote)
            tocadas.add(lote.agencia_id)
        self.volcar()
        return tocadas

    def volcar(self) -> None:
        for mapa in (self.cubos, self.lineas, self.agencias):
            mapa.volcar()

    def _aplicar(self, lote: interno.LoteAportes) -> None:
        for reenvio in lote.reenvios:
            self._aplicar_uno(reenvio)
        self._aplicar_uno(lote)

    def tomar_pendientes(self) -> Pendientes:
        """Las ventanas que pueden haber cambiado desde la llamada anterior."""
        return self.pendientes.tomar()

    def _aplicar_uno(self, lote: interno.LoteAportes) -> None:
        agencia, servicio = lote.agencia_id, lote.servicio_id
        zona = self._zona(agencia)
        por_hora: dict[int, list] = {}
        por_mes: dict[str, list] = {}
        todos = []
        de_vencidos = []
        meses_de_hora: dict[int, str] = {}
        for aporte in aportes_de(lote):
            medida, instante, _ = aporte
            if medida == m.VENCIDOS:
                de_vencidos.append(aporte)
                continue
            h = ventanas.hora(instante)
            por_hora.setdefault(h, []).append(aporte)
            mes = meses_de_hora.get(h)
            if mes is None:
                # Las zonas admitidas tienen desfases de horas enteras: el mes es el de la hora.
                mes = meses_de_hora[h] = ventanas.mes_de(instante, zona)
            por_mes.setdefault(mes, []).append(aporte)
            todos.append(aporte)
        cambiadas = set()
        for h, aportes in por_hora.items():
            if self._sumar_en_cubo(_clave_cubo_hora(agencia, servicio, h), aportes, lote):
                self._dias.pop((agencia, servicio, h // 24), None)
                cambiadas.update(VENTANAS_MOVILES)
        for mes, aportes in por_mes.items():
            if self._sumar_en_cubo(_clave_cubo_mes(agencia, servicio, mes), aportes, lote):
                cambiadas.add(f"mes:{mes}")
        if todos and self._sumar_en_cubo(_clave_cubo_total(agencia, servicio), todos, lote):
            cambiadas.add(VENTANA_TOTAL)
        if cambiadas:
            self.pendientes.anotar(agencia, servicio, cambiadas)
        if de_vencidos and self._sumar_vencidos(agencia, servicio, de_vencidos, lote, zona):
            self._anotar_vencidos(agencia, servicio, min(instante for _, instante, _ in de_vencidos), zona)
        if lote.ocurrido_en:
            self._avanzar_marca(agencia, lote.ocurrido_desde or lote.ocurrido_en, lote.ocurrido_en)

    def _anotar_vencidos(self, agencia: str, servicio: str, primero: int, zona: str) -> None:
        """Un cambio de vencidos en el instante `primero` cambia los vencidos en la marca de agua
        (ventanas móviles y total) y al cierre de cada mes desde el suyo. Uno posterior a la
        marca aún no cuenta en ninguna ventana: lo anotará el avance de la marca (también si
        es este mismo lote el que la avanza)."""
        marca = self.estado_agencia(agencia).marca_agua
        if not marca or primero > marca:
            return
        self.pendientes.anotar(agencia, servicio, _ventanas_en_marca(primero, marca, zona))

    def _linea(self, agencia: str, servicio: str) -> interno.LineaVencimientos:
        return self.lineas.leer_o_nuevo(f"{agencia}|{servicio}".encode())

    def _sumar_vencidos(self, agencia, servicio, aportes, lote, zona) -> bool:
        linea = self._linea(agencia, servicio)
        if linea.secuencias.get(lote.particion_origen, -1) >= lote.secuencia:
            return False
        for _, instante, valor in aportes:
            vencimientos.aplicar(linea, instante, valor, zona)
        linea.secuencias[lote.particion_origen] = lote.secuencia
        self.lineas.poner(f"{agencia}|{servicio}".encode(), linea)
        return True

    def _avanzar_marca(self, agencia: str, primero: int, ocurrido_en: int) -> None:
        estado = self.estado_agencia(agencia)
        cambio = False
        if not estado.primer_instante or primero < estado.primer_instante:
            estado.primer_instante = primero
            cambio = True
            # Cambia el `desde` del total y aparecen meses anteriores.
            self.pendientes.toda_la_agencia(agencia)
        if ocurrido_en > estado.marca_agua:
            anterior = estado.marca_agua
            estado.marca_agua = ocurrido_en
            self._barrer(agencia, estado)
            cambio = True
            if not anterior:
                self.pendientes.toda_la_agencia(agencia)
            else:
                # La marca de agua es el `hasta` de las ventanas móviles, del total y del mes en
                # curso (y fija los vencidos «ahora»); un mes que termina pasa a su cierre.
                self.pendientes.anotar(agencia, TODOS_LOS_SERVICIOS,
                                       _ventanas_en_marca(anterior, ocurrido_en, self._zona(agencia)))
        if cambio:
            self.agencias.poner(agencia.encode(), estado)

    def _barrer(self, agencia: str, estado: interno.EstadoAgencia) -> None:
        """Borra cubos que ya no sirven a ninguna ventana y pliega los vencimientos viejos."""
        corte = ventanas.hora(estado.marca_agua) - RETENCION_HORAS
        if corte <= estado.barrido_hasta:
            return
        # No hay cubos antes de la hora del primer evento de la agencia: sin este límite, la
        # primera vez se recorrían 60 días vacíos por servicio (con miles de agencias nuevas,
        # casi todo el trabajo de la agregación).
        desde = max(estado.barrido_hasta, corte - _BARRIDO_MAXIMO, ventanas.hora(estado.primer_instante))
        zona = self._zona(agencia)
        meses_vigentes = set(ventanas.meses_hasta(ventanas.mes_de(estado.marca_agua, zona), MESES_RETENIDOS))
        mes_viejo = ventanas.meses_hasta(min(meses_vigentes), 2)[0]
        for servicio in self.catalogo.servicios_de(agencia):
            for hora in range(desde, corte):
                self.cubos.quitar(_clave_cubo_hora(agencia, servicio.id, hora))
            for dia in range(desde // 24, corte // 24 + 1):
                self._dias.pop((agencia, servicio.id, dia), None)
            self.cubos.quitar(_clave_cubo_mes(agencia, servicio.id, mes_viejo))
            clave_linea = f"{agencia}|{servicio.id}".encode()
            if clave_linea in self.lineas:
                linea = self._linea(agencia, servicio.id)
                vencimientos.plegar(linea, estado.marca_agua - self.tardanza_maxima_s, zona, MESES_RETENIDOS)
                self.lineas.poner(clave_linea, linea)
        estado.barrido_hasta = corte

    def _medidas(self, clave: bytes) -> dict[str, float] | None:
        cubo = self.cubos.leer(clave)
        return None if cubo is None else cubo.medidas

    def _dia(self, agencia: str, servicio: str, dia: int) -> dict[str, float]:
        clave = (agencia, servicio, dia)
        sumas = self._dias.get(clave)
        if sumas is None:
            primera = dia * 24
            sumas = self._dias[clave] = ventanas.sumar(
                medidas for h in range(primera, primera + 24)
                if (medidas := self._medidas(_clave_cubo_hora(agencia, servicio, h))) is not None
            )
        return sumas

    def _sumas_horas(self, agencia: str, servicio: str, rango: ventanas.Rango) -> dict[str, float]:
        """Suma de los cubos horarios del rango: días completos de la memoria por día."""
        partes = []
        h, ultima = rango.primera_hora, rango.ultima_hora
        while h <= ultima:
            if h % 24 == 0 and h + 23 <= ultima:
                partes.append(self._dia(agencia, servicio, h // 24))
                h += 24
            else:
                medidas = self._medidas(_clave_cubo_hora(agencia, servicio, h))
                if medidas is not None:
                    partes.append(medidas)
                h += 1
        return ventanas.sumar(partes)

    def _sumas(self, clave: bytes) -> dict[str, float]:
        medidas = self._medidas(clave)
        return dict(medidas) if medidas is not None else {}

    def instantaneas(self, agencia_id: str, pendientes: Pendientes | None = None) -> list[Instantanea]:
        """Las ventanas de los servicios de la agencia en su marca de agua: todas, o solo las
        anotadas en `pendientes`."""
        estado = self.estado_agencia(agencia_id)
        if not estado.marca_agua:
            return []
        marca = estado.marca_agua
        zona = self._zona(agencia_id)
        mes_actual = ventanas.mes_de(marca, zona)
        meses = [mes for mes in ventanas.meses_hasta(mes_actual, MESES_RETENIDOS)
                 if mes >= ventanas.mes_de(estado.primer_instante, zona)]
        resultado = []
        for servicio in self.catalogo.servicios_de(agencia_id):
            elegidas = None if pendientes is None else pendientes.de_servicio(agencia_id, servicio.id)
            if elegidas is not None and not elegidas:
                continue
            linea = self._linea(agencia_id, servicio.id)
            vencidos_ahora = vencimientos.valor_en(linea, marca)
            rangos = [(nombre, ventanas.rango_movil(marca, duracion), vencidos_ahora)
                      for nombre, duracion in VENTANAS_MOVILES.items()]
            for mes in meses:
                if elegidas is None or f"mes:{mes}" in elegidas:
                    rangos.append((f"mes:{mes}", ventanas.rango_mes(mes, zona, marca),
                                   vencimientos.valor_al_cierre(linea, mes, zona, marca)))
            rangos.append((VENTANA_TOTAL, ventanas.Rango(0, 0, estado.primer_instante, marca), vencidos_ahora))
            for nombre, rango, vencidos in rangos:
                if elegidas is not None and nombre not in elegidas:
                    continue
                if nombre == VENTANA_TOTAL:
                    sumas = self._sumas(_clave_cubo_total(agencia_id, servicio.id))
                elif nombre.startswith("mes:"):
                    sumas = self._sumas(_clave_cubo_mes(agencia_id, servicio.id, nombre[4:]))
                else:
                    sumas = self._sumas_horas(agencia_id, servicio.id, rango)
                valores, cuello = calcular_con_cuello(sumas, vencidos, servicio.etapas)
                for valor in valores:
                    resultado.append(Instantanea(servicio.id, nombre, rango.desde_s, rango.hasta_s, valor, cuello))
        return resultado
