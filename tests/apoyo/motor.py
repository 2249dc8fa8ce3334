"""El procesador sin Kafka: la etapa por caso y la agregación sobre dicts, como las corre faust
sobre sus tablas, y la comparación de lo que publica con la implementación de referencia."""

from __future__ import annotations

from apoyo import referencia
from apoyo.comparar import diferencias
from servicios.procesador.dominio.agregacion import Agregacion
from servicios.procesador.dominio.etapa_casos import EtapaCasos, Registro, SalidaCasos, aplicar_escrituras
from servicios.procesador.dominio.reparto import origen, repartir

D = 86400


class MotorEnLotes:
    """La etapa por caso por lotes de registros (como la corre el procesador) + agregación.

    `ahora`: el reloj de la etapa (solo juzga si un evento viene del futuro). La tardanza
    máxima es enorme: los escenarios llegan del todo revueltos."""

    def __init__(self, catalogo, ahora: float, tardanza_maxima_s: int = 1000 * D):
        self.catalogo = catalogo
        self.casos, self.cubos, self.lineas, self.agencias = {}, {}, {}, {}
        self.agregacion = Agregacion(self.cubos, self.lineas, self.agencias, catalogo, 7 * D)
        self.etapa = EtapaCasos(catalogo, tardanza_maxima_s, lambda: ahora)

    def procesar(self, registros) -> SalidaCasos:
        """Procesa un lote, guarda sus estados y devuelve la salida (sin aplicar sus agregados)."""
        salida = self.etapa.procesar(registros, self.casos)
        aplicar_escrituras(self.casos, salida.escrituras)
        return salida

    def procesar_y_agregar(self, registros) -> SalidaCasos:
        salida = self.procesar(registros)
        self.agregacion.aplicar_lotes(salida.lotes)
        return salida

    def observado(self, agencia):
        return observado(self.agregacion, agencia)


def procesar_como_el_procesador(motor: MotorEnLotes, registros, particiones: int):
    """(aceptados, duplicados, rechazos) de procesar y agregar con `motor` los `registros` leídos
    de gpr.eventos.v1 (con `partition`, `offset`, `key`, `value`, `headers`) como lo hace el
    procesador: primero el reparto real (`repartir`, a la partición de cada agencia en
    `particiones` particiones, con la cabecera de origen) y después la etapa por caso, un lote
    por partición de destino con el origen que anotó el reparto (`ruta.py`). Así la
    deduplicación por agencia ve todos los eventos de la agencia, como en el procesador.

    Orden determinista: las particiones de origen en orden y cada una por offset."""
    por_destino: dict[int, list] = {}
    for r in sorted(registros, key=lambda r: (r.partition, r.offset)):
        for repartido in repartir(r.key, r.value, list(r.headers or ()), particiones, r.partition):
            por_destino.setdefault(repartido.particion, []).append(repartido)
    aceptados = duplicados = 0
    rechazos = []
    for particion in sorted(por_destino):
        salida = motor.procesar_y_agregar([Registro(particion, offset, d.clave, d.valor, d.cabeceras,
                                                    origen(d.cabeceras))
                                           for offset, d in enumerate(por_destino[particion])])
        aceptados += salida.aceptados
        duplicados += salida.duplicados
        rechazos.extend(salida.rechazos)
    return aceptados, duplicados, rechazos


def observado(agregacion, agencia):
    """({(servicio, indicador, ventana, etapa): (valor, muestras)}, {(servicio, ventana): cuello})."""
    valores, cuellos = {}, {}
    for inst in agregacion.instantaneas(agencia):
        v = inst.valor
        valores[(inst.servicio_id, v.indicador, inst.ventana, v.etapa_id)] = (v.valor, v.muestras)
        cuellos[(inst.servicio_id, inst.ventana)] = inst.cuello_botella
        valores[(inst.servicio_id, "_rango", inst.ventana, "")] = (inst.desde_s, inst.hasta_s)
    return valores, cuellos


def comprobar(agregacion, eventos, catalogo) -> None:
    """Lo que publica la agregación para cada agencia es lo que da la referencia con `eventos`
    (los aceptados, sin repetidos)."""
    for agencia in catalogo.agencias:
        esperado = referencia.indicadores(eventos, catalogo, agencia)
        valores, cuellos = observado(agregacion, agencia)
        errores = diferencias(valores, esperado, cuellos, eventos, catalogo, agencia)
        rangos = {k: v for k, v in esperado.items() if k[1] == "_rango"}
        assert {k: valores.get(k) for k in rangos} == rangos
        assert not errores, f"{agencia}: {len(errores)} diferencias, p. ej. {errores[:5]}"
