"""Guardia de orden: cada partición de entrada se procesa en orden de offset, sin huecos.

Por qué hace falta. La agregación descarta un lote cuya secuencia (offset del evento de
origen) no supera la última ya sumada en ese cubo para esa partición: así un lote reenviado
tras un corte no se suma dos veces. Eso solo es correcto si la etapa por caso procesa cada
partición en orden y sin saltarse registros. faust-streaming 0.15 no lo garantiza: al terminar
una recuperación reanuda las particiones *antes* de llevarlas al offset confirmado, y los
registros leídos en ese intervalo llegan al agente con el flujo aún suspendido, así que el
stream descarta algunos sin confirmarlos y sin volver a leerlos (visto con dos núcleos
cargados: tras un reinicio ordenado, un offset perdido en cada partición). El
registro saltado solo se relee en el siguiente reinicio, cuando ya llegaron lotes de offsets
mayores, y su lote se descarta: una actualización de menos para siempre.

La guardia decide, para cada registro (partición, offset), qué hacer:

- `PROCESAR`: es el siguiente esperado (o el primero que se ve de la partición, si no se
  conoce su offset confirmado).
- `REPETIDO`: un offset ya procesado que vuelve (faust relee desde el último confirmado); se
  procesa igual, la deduplicación por estado lo reconoce.
- `RELEER`: falta uno o más offsets antes de este: el adaptador debe llevar la partición al
  offset `esperado` y no procesar ni confirmar este registro.
- `IGNORAR`: tras pedir releer, registros posteriores que ya estaban en la cola del stream;
  se volverán a leer en orden.

Un hueco legítimo (un offset que no existe: marcas de transacción o compactación en Apache
Kafka) se reconoce porque cada relectura empieza después del offset pedido, siempre en el
mismo offset; tras `RELECTURAS_PARA_ACEPTAR` relecturas iguales se acepta.
Sin E/S: el adaptador (`app.py`) hace la relectura con `consumer.seek`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# Un descarte de faust no se repite ocho veces seguidas sobre el mismo registro; un offset que
# no existe, sí.
RELECTURAS_PARA_ACEPTAR = 8


class Decision(enum.Enum):
    PROCESAR = "procesar"
    REPETIDO = "repetido"
    RELEER = "releer"
    IGNORAR = "ignorar"


@dataclass
class _Particion:
    esperado: int
    # Offset al que se pidió volver y mayor offset visto desde entonces: los registros viejos
    # de la cola llegan en orden creciente, la relectura empieza en o antes de lo ya visto.
    releyendo_desde: int | None = None
    visto_desde_releer: int = -1
    ultimo_avance: float = 0.0
    inicio_de_relectura: int | None = None
    relecturas_iguales: int = 0


class GuardiaDeOrden:
    def __init__(self) -> None:
        self._particiones: dict[object, _Particion] = {}
        self.huecos_releidos = 0
        self.huecos_legitimos = 0

    def olvidar(self) -> None:
        """Tras un reequilibrio faust vuelve al offset confirmado: se empieza de nuevo."""
        self._particiones.clear()

    def releer_desde(self, particion, offset: int) -> None:
        """Tras un lote fallido cuyo primer registro en `particion` era `offset`: ese registro
        y los siguientes se procesan otra vez. Lo posterior que ya venía en camino se ignora
        hasta que llegue la relectura desde `offset`, que pide el adaptador."""
        estado = self._particiones.get(particion)
        if estado is None:
            estado = self._particiones[particion] = _Particion(esperado=offset)
        estado.esperado = offset
        estado.releyendo_desde = offset
        estado.visto_desde_releer = -1
        estado.inicio_de_relectura, estado.relecturas_iguales = None, 0

    def esperado(self, particion) -> int | None:
        estado = self._particiones.get(particion)
        return None if estado is None else estado.esperado

    def rezagadas(self, fines: dict, ahora: float, quietud_s: float,
                  confirmados: dict | None = None) -> list[tuple[object, int]]:
        """Particiones cuyo log sigue más allá de lo esperado sin que nada avance hace
        `quietud_s`: el último registro pudo descartarse y ningún otro delata el hueco. Las
        que aún no entregaron nada cuentan desde su offset `confirmados`. El adaptador las
        relee desde el offset dado, sin cambiar el estado: si lo que llega primero es
        posterior, `decidir` pedirá releer como siempre."""
        resultado = [
            (particion, estado.esperado)
            for particion, estado in self._particiones.items()
            if (fines.get(particion) or 0) > estado.esperado and ahora - estado.ultimo_avance >= quietud_s
        ]
        for particion, confirmado in (confirmados or {}).items():
            if particion not in self._particiones and confirmado is not None and (fines.get(particion) or 0) > confirmado:
                resultado.append((particion, confirmado))
        return resultado

    def decidir(self, particion, offset: int, confirmado: int | None = None, ahora: float = 0.0) -> Decision:
        """`confirmado`: offset confirmado de la partición, si se conoce; con él también se
        detecta un hueco en el primer registro tras arrancar o reequilibrar. `ahora` fecha el
        último avance, para `rezagadas`."""
        estado = self._particiones.get(particion)
        if estado is None:
            estado = self._particiones[particion] = _Particion(
                esperado=offset if confirmado is None else confirmado)
        decision = self._decidir(estado, offset)
        if decision is Decision.PROCESAR:
            estado.ultimo_avance = ahora
        return decision

    def _decidir(self, estado: _Particion, offset: int) -> Decision:
        if estado.releyendo_desde is not None:
            if offset > estado.releyendo_desde and offset > estado.visto_desde_releer:
                estado.visto_desde_releer = offset
                return Decision.IGNORAR
            estado.releyendo_desde = None
            if offset > estado.esperado:
                # La relectura empezó después del offset pedido: o ese offset no existe, o
                # faust volvió a descartarlo. Solo un hueco que se repite igual en
                # RELECTURAS_PARA_ACEPTAR relecturas seguidas se da por inexistente.
                if offset == estado.inicio_de_relectura:
                    estado.relecturas_iguales += 1
                else:
                    estado.inicio_de_relectura, estado.relecturas_iguales = offset, 1
                if estado.relecturas_iguales >= RELECTURAS_PARA_ACEPTAR:
                    self.huecos_legitimos += 1
                    estado.esperado = offset + 1
                    estado.inicio_de_relectura, estado.relecturas_iguales = None, 0
                    return Decision.PROCESAR
        if offset == estado.esperado:
            estado.inicio_de_relectura, estado.relecturas_iguales = None, 0
        if offset == estado.esperado:
            estado.esperado += 1
            return Decision.PROCESAR
        if offset < estado.esperado:
            return Decision.REPETIDO
        estado.releyendo_desde = estado.esperado
        estado.visto_desde_releer = offset
        self.huecos_releidos += 1
        return Decision.RELEER
