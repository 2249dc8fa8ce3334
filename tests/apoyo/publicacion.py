"""La etapa por caso, la agregación y la publicación del procesador sobre dicts, sin Kafka:
lo que publica cada pasada queda en un dict (clave de serie → Indicador). Lo usan la prueba de
la publicación incremental y su banco."""

from __future__ import annotations

import asyncio
import math
import time

from gpr.v1 import indicadores_pb2 as ipb
from servicios.comun import topicos
from servicios.comun.indicadores import clave_serie
from servicios.comun.metas import CUMPLE, INCUMPLE, SIN_DATOS, evaluar
from servicios.procesador import config as config_procesador
from servicios.procesador.publicacion import Publicacion
from servicios.procesador.dominio.agregacion import Agregacion
from servicios.procesador.dominio.etapa_casos import EtapaCasos, Registro, aplicar_escrituras
from servicios.procesador.metricas import MetricasProcesador

D = 86400
_ESTADOS = {CUMPLE: ipb.ESTADO_CUMPLIMIENTO_CUMPLE, INCUMPLE: ipb.ESTADO_CUMPLIMIENTO_INCUMPLE, SIN_DATOS: ipb.ESTADO_CUMPLIMIENTO_SIN_DATOS}


class Banco:
    """Etapa por caso + agregación sobre dicts, y la publicación con un reloj manual."""

    def __init__(self, catalogo, metas, refresco_rango_s: float, recalcular_todo: bool = False):
        """`recalcular_todo`: cada pasada recalcula todas las ventanas de cada agencia tocada
        (la publicación antes de ser incremental; la línea base de su banco)."""
        self.catalogo = catalogo
        self.recalcular_todo = recalcular_todo
        self.metas = metas
        self.casos = {}
        self.agregacion = Agregacion({}, {}, {}, catalogo, 7 * D)
        # Sin reloj de pared: aquí no se juzga si un evento viene del futuro (lo prueban las
        # pruebas de validación), así los escenarios valen en cualquier fecha.
        self.etapa = EtapaCasos(catalogo, 1000 * D, lambda: math.inf)
        cfg = config_procesador.leer({"GPR_KAFKA_BOOTSTRAP": "k:9092",
                                      "GPR_REFRESCO_RANGO": str(refresco_rango_s)})
        self.ahora = 1_000.0
        self.publicacion = Publicacion(cfg, metas, MetricasProcesador(), self.agregacion, lambda: self.ahora)
        self.publicado: dict[str, ipb.Indicador] = {}
        self.cumplimiento: list[tuple[bytes, bytes]] = []
        self.offset = 0

    def procesar(self, eventos) -> None:
        registros = []
        for e in eventos:
            registros.append(Registro(0, self.offset, e.caso_id.encode(), e.SerializeToString()))
            self.offset += 1
        salida = self.etapa.procesar(registros, self.casos)
        assert not salida.rechazos, salida.rechazos[:3]
        aplicar_escrituras(self.casos, salida.escrituras)
        self.publicacion.marcar(self.agregacion.aplicar_lotes(salida.lotes))

    def pasada(self, avance_s: float = 1.0) -> float:
        """Una pasada de publicación; devuelve cuántos segundos tardó."""
        self.ahora += avance_s
        if self.recalcular_todo:
            tocadas = self.agregacion.pendientes
            for agencia in list(tocadas.agencias):
                tocadas.toda_la_agencia(agencia)

        async def enviar(topico: str, clave: bytes, valor: bytes) -> None:
            if topico == topicos.INDICADORES:
                self.publicado[clave.decode()] = ipb.Indicador.FromString(valor)
            else:
                self.cumplimiento.append((clave, valor))

        async def medir() -> float:
            inicio = time.perf_counter()
            await self.publicacion.publicar(lambda: False, enviar)
            return time.perf_counter() - inicio

        return asyncio.run(medir())

    def diferencias(self) -> list:
        """Series cuyo último valor publicado no es el que da recalcular todo."""
        errores = []
        for agencia in self.catalogo.agencias:
            for inst in self.agregacion.instantaneas(agencia):
                v = inst.valor
                clave = clave_serie(agencia, inst.servicio_id, v.indicador, inst.ventana, v.etapa_id)
                meta = self.metas.buscar(agencia, inst.servicio_id, v.indicador, v.etapa_id, inst.ventana)
                esperado = (v.valor if v.valor is not None else 0.0, v.valor is None, v.muestras,
                            inst.desde_s, inst.hasta_s, inst.cuello_botella,
                            _ESTADOS[evaluar(meta, v.valor, v.muestras)] if meta else None)
                p = self.publicado.get(clave)
                visto = None if p is None else (
                    p.valor, p.sin_datos, p.muestras, p.desde.seconds, p.hasta.seconds, p.etapa_cuello_botella,
                    p.meta.estado if p.HasField("meta") else None)
                if visto != esperado:
                    errores.append((clave, visto, esperado))
        return errores
