"""Deduplicación por agencia: qué caso aceptó primero cada (`fuente`, `evento_id`).

El contrato promete que la identidad de un evento es (`fuente`, `evento_id`) dentro de su
agencia, sea cual sea el caso. El estado de cada caso ya reconoce sus propios repetidos
(`casos.py`); aquí se recuerda, por agencia, el caso de cada identidad aceptada, para rechazar
la misma identidad en *otro* caso (`identidad_repetida`). Todos los eventos de una agencia
llegan a una partición (`reparto.py`), así que basta lo que hay en ella.

Memoria acotada: una identidad se recuerda mientras su evento esté dentro de la tolerancia de
tardanza de la agencia (`GPR_TARDANZA_MAXIMA`): pasada, un evento con su instante ya se
rechazaría por tardío. Para poder olvidarlas sin recorrer la tabla, cada lote anota las
identidades nuevas por hora del evento en un «tramo» propio; un contador por (agencia, hora)
dice cuántos tramos tiene, y la hora más vieja con identidades de cada agencia, por dónde
empezar a barrer. Al avanzar la marca de agua, las horas que quedaron fuera se borran enteras
(cada identidad, su tramo y su contador), a lo sumo `HORAS_POR_BARRIDO` por lote.

Todo vive en la tabla `casos`, con claves que empiezan por 0xFE (imposible en UTF-8, como las
marcas de agua con 0xFF): se escribe y se confirma con los estados de los casos, así que un
reproceso tras un corte ve lo mismo que vio el primero (las reglas del exactamente-una-vez
siguen valiendo). Un borrado es una escritura con valor None (una lápida en el changelog).

Sin E/S.
"""

from __future__ import annotations

from collections.abc import Mapping

SEGUNDOS_HORA = 3600
# Horas (con o sin identidades) que un lote barre por agencia como mucho: una agencia que
# vuelve tras meses no hace un lote enorme; lo que quede se barre en los siguientes.
HORAS_POR_BARRIDO = 256

_SEP = "\x1f"
_IDENTIDAD = b"\xfei"
_TRAMO = b"\xfet"
_CONTADOR = b"\xfen"
_MAS_VIEJA = b"\xfeo"


def clave_identidad(agencia_id: str, identidad: str) -> bytes:
    return _IDENTIDAD + f"{agencia_id}{_SEP}{identidad}".encode()


def _clave_contador(agencia_id: str, hora: int) -> bytes:
    return _CONTADOR + f"{agencia_id}{_SEP}{hora}".encode()


def _clave_tramo(agencia_id: str, hora: int, numero: int) -> bytes:
    return _TRAMO + f"{agencia_id}{_SEP}{hora}{_SEP}{numero}".encode()


def _clave_mas_vieja(agencia_id: str) -> bytes:
    return _MAS_VIEJA + agencia_id.encode()


def es_clave_de_identidades(clave: bytes) -> bool:
    return clave[:1] == b"\xfe"


class Identidades:
    """Las identidades de las agencias de una partición mientras se procesa un lote.

    `almacen`: la tabla `casos` de la partición (solo `get`); `escrituras`: donde se anota lo
    que hay que escribir (valor None: borrar), que se lee antes que el almacén."""

    __slots__ = ("almacen", "escrituras", "tardanza_maxima_s", "_nuevas")

    def __init__(self, almacen: Mapping[bytes, bytes], tardanza_maxima_s: int):
        self.almacen = almacen
        self.escrituras: dict[bytes, bytes | None] = {}
        self.tardanza_maxima_s = tardanza_maxima_s
        # (agencia, hora) → identidades nuevas de este lote con un evento de esa hora.
        self._nuevas: dict[tuple[str, int], list[str]] = {}

    def _leer(self, clave: bytes) -> bytes | None:
        if clave in self.escrituras:
            return self.escrituras[clave]
        return self.almacen.get(clave)

    def _vencida(self, hora: int, marca: int) -> bool:
        """Todo evento de `hora` ya sería tardío con la marca de agua `marca`."""
        return (hora + 1) * SEGUNDOS_HORA <= marca - self.tardanza_maxima_s

    def caso_de(self, agencia_id: str, identidad: str, marca: int) -> bytes | None:
        """La clave del caso que aceptó `identidad` en la agencia, si aún se recuerda."""
        valor = self._leer(clave_identidad(agencia_id, identidad))
        if valor is None:
            return None
        hora, _, caso = valor.partition(b"\x1f")
        # Vencida pero aún sin barrer: ya no se recuerda (la respuesta no depende de cuándo
        # se barre).
        return None if self._vencida(int(hora), marca) else caso

    def anotar(self, agencia_id: str, identidad: str, clave_caso: bytes, ocurrido_en: int) -> None:
        """`identidad` se aceptó en el caso `clave_caso` con un evento del instante `ocurrido_en`."""
        hora = ocurrido_en // SEGUNDOS_HORA
        self.escrituras[clave_identidad(agencia_id, identidad)] = b"%d\x1f%s" % (hora, clave_caso)
        self._nuevas.setdefault((agencia_id, hora), []).append(identidad)

    def cerrar(self, marcas: Mapping[str, int]) -> dict[bytes, bytes | None]:
        """Escribe los tramos del lote, barre lo vencido de cada agencia con su marca de agua
        (`marcas`: la de cada agencia del lote) y devuelve todas las escrituras."""
        mas_viejas: dict[str, int] = {}
        for (agencia, hora), identidades in self._nuevas.items():
            clave_contador = _clave_contador(agencia, hora)
            numero = int(self._leer(clave_contador) or 0) + 1
            self.escrituras[clave_contador] = str(numero).encode()
            self.escrituras[_clave_tramo(agencia, hora, numero)] = "\n".join(identidades).encode()
            if agencia not in mas_viejas or hora < mas_viejas[agencia]:
                mas_viejas[agencia] = hora
        self._nuevas = {}
        for agencia, hora in mas_viejas.items():
            clave = _clave_mas_vieja(agencia)
            actual = self._leer(clave)
            if actual is None or hora < int(actual):
                self.escrituras[clave] = str(hora).encode()
        for agencia, marca in marcas.items():
            self._barrer(agencia, marca)
        return self.escrituras

    def _barrer(self, agencia: str, marca: int) -> None:
        clave = _clave_mas_vieja(agencia)
        actual = self._leer(clave)
        if actual is None:
            return
        hora = inicio = int(actual)
        for _ in range(HORAS_POR_BARRIDO):
            if not self._vencida(hora, marca):
                break
            self._borrar_hora(agencia, hora)
            hora += 1
        if hora != inicio:
            self.escrituras[clave] = str(hora).encode()

    def _borrar_hora(self, agencia: str, hora: int) -> None:
        clave_contador = _clave_contador(agencia, hora)
        tramos = self._leer(clave_contador)
        if tramos is None:
            return
        for numero in range(1, int(tramos) + 1):
            clave_tramo = _clave_tramo(agencia, hora, numero)
            for identidad in (self._leer(clave_tramo) or b"").decode().split("\n"):
                clave = clave_identidad(agencia, identidad)
                valor = self._leer(clave)
                # Solo si sigue siendo de esta hora: vencida, la misma identidad pudo
                # aceptarse otra vez en otro caso, con un evento de otra hora.
                if valor is not None and valor.partition(b"\x1f")[0] == str(hora).encode():
                    self.escrituras[clave] = None
            self.escrituras[clave_tramo] = None
        self.escrituras[clave_contador] = None
