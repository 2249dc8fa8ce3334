"""Generador de carga HTTP del banco del portal, en su propio proceso (no comparte el GIL ni
el bucle con el servidor medido). Conexiones persistentes de `http.client`, una por hilo.

    python carga_http.py cerrado URL_BASE SEGUNDOS CONCURRENCIA RUTA [RUTA ...]
    python carga_http.py abierto URL_BASE SEGUNDOS TASA RUTA [RUTA ...]

Cerrado: CONCURRENCIA hilos piden sin pausa → peticiones/s. Abierto: una petición cada
1/TASA s repartida entre hilos → latencias p50/p99 y el retraso del propio cliente respecto
del instante programado (si el cliente no da abasto, se ve ahí). Imprime un JSON.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from urllib.parse import urlsplit


def _percentil(valores: list[float], q: float) -> float | None:
    if not valores:
        return None
    orden = sorted(valores)
    return orden[min(len(orden) - 1, max(0, int(q * len(orden) + 0.999999) - 1))]


class _Conexion:
    def __init__(self, base: str):
        partes = urlsplit(base)
        self._anfitrion, self._puerto = partes.hostname, partes.port
        self._c = http.client.HTTPConnection(self._anfitrion, self._puerto, timeout=30)

    def pedir(self, ruta: str) -> int:
        try:
            self._c.request("GET", ruta)
            r = self._c.getresponse()
            r.read()
            return r.status
        except (OSError, http.client.HTTPException):
            self._c.close()
            self._c = http.client.HTTPConnection(self._anfitrion, self._puerto, timeout=30)
            return 0


def cerrado(base: str, segundos: float, concurrencia: int, rutas: list[str]) -> dict:
    fin = time.perf_counter() + segundos
    latencias: list[float] = []
    errores = [0]
    cerrojo = threading.Lock()

    def trabajar(k: int) -> None:
        conexion, propias, malas, n = _Conexion(base), [], 0, k
        while time.perf_counter() < fin:
            inicio = time.perf_counter()
            codigo = conexion.pedir(rutas[n % len(rutas)])
            propias.append(time.perf_counter() - inicio)
            malas += codigo != 200
            n += concurrencia
        with cerrojo:
            latencias.extend(propias)
            errores[0] += malas

    inicio = time.perf_counter()
    hilos = [threading.Thread(target=trabajar, args=(k,)) for k in range(concurrencia)]
    for h in hilos:
        h.start()
    for h in hilos:
        h.join()
    duracion = time.perf_counter() - inicio
    return {"peticiones": len(latencias), "rps": round(len(latencias) / duracion, 1), "errores": errores[0],
            "p50_ms": round(1000 * _percentil(latencias, 0.5), 2), "p99_ms": round(1000 * _percentil(latencias, 0.99), 2)}


def abierto(base: str, segundos: float, tasa: float, rutas: list[str], hilos: int = 16) -> dict:
    total = int(segundos * tasa)
    inicio = time.perf_counter() + 0.2
    siguiente = [0]
    cerrojo = threading.Lock()
    latencias, retrasos, errores = [], [], [0]

    def trabajar() -> None:
        conexion = _Conexion(base)
        while True:
            with cerrojo:
                n = siguiente[0]
                siguiente[0] += 1
            if n >= total:
                return
            programado = inicio + n / tasa
            espera = programado - time.perf_counter()
            if espera > 0:
                time.sleep(espera)
            comienzo = time.perf_counter()
            codigo = conexion.pedir(rutas[n % len(rutas)])
            fin = time.perf_counter()
            with cerrojo:
                latencias.append(fin - comienzo)
                retrasos.append(max(0.0, comienzo - programado))
                errores[0] += codigo != 200

    grupo = [threading.Thread(target=trabajar) for _ in range(hilos)]
    for h in grupo:
        h.start()
    for h in grupo:
        h.join()
    duracion = time.perf_counter() - inicio
    return {"peticiones": len(latencias), "tasa": tasa, "tasa_lograda": round(len(latencias) / duracion, 1),
            "errores": errores[0], "p50_ms": round(1000 * _percentil(latencias, 0.5), 2),
            "p99_ms": round(1000 * _percentil(latencias, 0.99), 2), "max_ms": round(1000 * max(latencias), 2),
            "retraso_cliente_p99_ms": round(1000 * _percentil(retrasos, 0.99), 2)}


def main() -> None:
    modo, base, segundos, n, *rutas = sys.argv[1:]
    if modo == "cerrado":
        resultado = cerrado(base, float(segundos), int(n), rutas)
    else:
        resultado = abierto(base, float(segundos), float(n), rutas)
    print(json.dumps(resultado))


if __name__ == "__main__":
    main()
