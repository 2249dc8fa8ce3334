"""Eventos rechazados por agencia, fuente y motivo, contados desde `gpr.eventos.rechazados.v1`
(para /metrics: `gpr_eventos_rechazados_total{agencia, fuente, motivo}`).

Se cuenta aquí, leyendo el tópico desde el principio, y no solo en el procesador: el contador
del procesador vive en la memoria de cada trabajador (vuelve a 0 al reiniciarse y cada réplica
ve solo sus particiones), mientras que el tópico es la verdad completa y sobrevive reinicios:
una consulta nueva llega al mismo total. El motivo es la parte de la cabecera `gpr-motivo`
antes de ':' (`campo_requerido:agencia_id` → `campo_requerido`), para que las etiquetas sean
pocas y fijas.

Agencia y fuente salen de los bytes originales del registro rechazado: un `Evento`, o un
`LoteEventos` si lleva la cabecera `gpr-lote: 1` (se cuenta cada evento del lote, con su
agencia y fuente). La cabecera `gpr-agencia`, si está, manda sobre la agencia del contenido
(la pone la plataforma, que sabe de quién es el registro). Como cualquiera que escriba en
Kafka elige esos textos, las etiquetas se acotan (`EtiquetasRechazos`): una agencia que no
está en el catálogo, o un registro que no se puede decodificar, cuenta como `desconocida`;
cada agencia tiene a lo más `FUENTES_POR_AGENCIA` fuentes con nombre propio (las primeras que
aparecen en el tópico) y las demás cuentan como `otra`; y a lo más `MOTIVOS_MAXIMOS` motivos.

El tópico lo lee un `LectorTopico` (lector.py), como la vista. Los conteos se publican solo
cuando la lectura llegó al final del tópico (`cargada`): un raspado a medio cargar mostraría un
total menor que el del proceso anterior y Prometheus lo tomaría por un reinicio del contador.
Si el tópico vuelve más corto o desaparece, los conteos se descartan y se cuenta de nuevo desde
el principio: el total es siempre el del tópico, igual en todas las réplicas.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from aiokafka import ConsumerRecord

from servicios.comun.catalogo import Catalogo
from servicios.comun.eventos import RegistroInvalido, decodificar
from servicios.comun.kafka_conexion import ConexionKafka
from servicios.comun.topicos import CABECERA_MOTIVO, RECHAZADOS
from servicios.consulta.lector import LectorTopico

SIN_MOTIVO = "desconocido"
MOTIVO_OTRO = "otro"
AGENCIA_DESCONOCIDA = "desconocida"
FUENTE_DESCONOCIDA = "desconocida"
FUENTE_OTRA = "otra"
# Cabecera opcional con la agencia del registro rechazado (la pone la plataforma).
CABECERA_AGENCIA = "gpr-agencia"
# Un sistema emisor por trámite o canal (trámites, portal, app, centro de llamadas…): 10 dan
# margen a una agencia real y acotan sus series a 12 fuentes (con `otra` y `desconocida`) por
# motivo, aunque un emisor roto mande una fuente distinta en cada evento.
FUENTES_POR_AGENCIA = 10
# Los motivos los fija la plataforma (una docena hoy); el tope solo frena un tópico escrito por otros.
MOTIVOS_MAXIMOS = 50
# Una etiqueta más larga (o con caracteres de control) no es un nombre: cuenta como `otra`.
_LARGO_MAXIMO_ETIQUETA = 64


def motivo_de(cabeceras) -> str:
    """Motivo de un registro rechazado a partir de sus cabeceras (pares nombre, bytes)."""
    for nombre, valor in cabeceras or ():
        if nombre == CABECERA_MOTIVO and valor:
            motivo = valor.decode("utf-8", errors="replace").split(":", 1)[0].strip()
            return motivo or SIN_MOTIVO
    return SIN_MOTIVO


def _cabecera(cabeceras, nombre: str) -> bytes | None:
    for clave, valor in cabeceras or ():
        if clave == nombre:
            return valor
    return None


def _nombre(texto: str) -> bool:
    return 0 < len(texto) <= _LARGO_MAXIMO_ETIQUETA and texto.isprintable()


class EtiquetasRechazos:
    """(agencia, fuente, motivo) acotadas de cada evento de un registro rechazado."""

    def __init__(self, agencias: Iterable[str], fuentes_por_agencia: int = FUENTES_POR_AGENCIA,
                 motivos_maximos: int = MOTIVOS_MAXIMOS):
        self._agencias = frozenset(agencias)
        self._fuentes_por_agencia = fuentes_por_agencia
        self._motivos_maximos = motivos_maximos
        self._fuentes: dict[str, set[str]] = {}
        self._motivos: set[str] = set()

    def de(self, valor: bytes | None, cabeceras) -> list[tuple[str, str, str]]:
        """Una terna por evento del registro (una sola si no se puede decodificar)."""
        motivo = self._motivo(motivo_de(cabeceras))
        cruda = _cabecera(cabeceras, CABECERA_AGENCIA)
        de_cabecera = None if cruda is None else self._agencia(cruda.decode("utf-8", "replace"))
        try:
            eventos = decodificar(valor, cabeceras)
        except RegistroInvalido:
            eventos = []
        if not eventos:
            return [(de_cabecera or AGENCIA_DESCONOCIDA, FUENTE_DESCONOCIDA, motivo)]
        ternas = []
        for evento in eventos:
            agencia = de_cabecera or self._agencia(evento.agencia_id)
            ternas.append((agencia, self._fuente(agencia, evento.fuente), motivo))
        return ternas

    def _agencia(self, agencia: str) -> str:
        return agencia if agencia in self._agencias else AGENCIA_DESCONOCIDA

    def _fuente(self, agencia: str, fuente: str) -> str:
        if not fuente:
            return FUENTE_DESCONOCIDA
        if not _nombre(fuente):
            return FUENTE_OTRA
        conocidas = self._fuentes.setdefault(agencia, set())
        if fuente in conocidas:
            return fuente
        if len(conocidas) < self._fuentes_por_agencia:
            conocidas.add(fuente)
            return fuente
        return FUENTE_OTRA

    def _motivo(self, motivo: str) -> str:
        if motivo in self._motivos:
            return motivo
        if not _nombre(motivo):
            return SIN_MOTIVO
        if len(self._motivos) < self._motivos_maximos:
            self._motivos.add(motivo)
            return motivo
        return MOTIVO_OTRO


class ContadorRechazados:
    """Eventos de gpr.eventos.rechazados.v1 por (agencia, fuente, motivo), alimentado por un `LectorTopico`.

    `catalogo`: las agencias que tienen etiqueta propia; sin él, todas cuentan como `desconocida`.
    """

    def __init__(self, bootstrap: "str | ConexionKafka", catalogo: Catalogo | None = None, topico: str = RECHAZADOS, *,
                 reintento_s: float = 1.0, cliente_id: str = "gpr-consulta-rechazados", plazo_kafka_s: float = 10.0):
        self._agencias = frozenset(catalogo.agencias if catalogo is not None else ())
        self._etiquetas = EtiquetasRechazos(self._agencias)
        self._conteos: Counter[tuple[str, str, str]] = Counter()
        self.lector = LectorTopico(bootstrap, topico, self._leidos, self._vaciar, self._describir,
                                   cliente_id=cliente_id, reintento_s=reintento_s, plazo_kafka_s=plazo_kafka_s)

    def conteos(self) -> dict[tuple[str, str, str], int] | None:
        """Copia de los conteos por (agencia, fuente, motivo) (segura desde el hilo de
        /metrics); None hasta haber leído el tópico hasta el final."""
        if not self.lector.cargada.is_set():
            return None
        return dict(self._conteos)

    def contar(self, valor: bytes | None, cabeceras) -> None:
        for terna in self._etiquetas.de(valor, cabeceras):
            self._conteos[terna] += 1

    def iniciar(self) -> None:
        self.lector.iniciar()

    async def detener(self) -> None:
        await self.lector.detener()

    def _leidos(self, particion: int, registros: list[ConsumerRecord]) -> None:
        for registro in registros:
            self.contar(registro.value, registro.headers)

    def _vaciar(self) -> None:
        # Las fuentes con nombre son las primeras del tópico: se eligen de nuevo.
        self._etiquetas = EtiquetasRechazos(self._agencias)
        self._conteos = Counter()

    def _describir(self) -> str:
        return f"el conteo de rechazados ({sum(self._conteos.values())} eventos)"
