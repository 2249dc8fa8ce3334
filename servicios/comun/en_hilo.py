"""Un servicio asyncio (gRPC) corriendo en un hilo con su propio bucle, para las pruebas en
proceso: `iniciar()` vuelve cuando el servicio escucha; `detener()` hace la misma parada
ordenada que SIGTERM. El servicio debe tener `iniciar()`/`detener()` asíncronos y los
atributos `puerto_grpc` y `puerto_metricas`."""

from __future__ import annotations

import asyncio
import threading


class ServicioEnHilo:
    def __init__(self, servicio, nombre: str):
        self.servicio = servicio
        self._bucle = asyncio.new_event_loop()
        self._hilo = threading.Thread(target=self._bucle.run_forever, name=nombre, daemon=True)

    @property
    def puerto_grpc(self) -> int | None:
        return self.servicio.puerto_grpc

    @property
    def puerto_metricas(self) -> int | None:
        return self.servicio.puerto_metricas

    def iniciar(self, limite_s: float = 10.0):
        self._hilo.start()
        try:
            asyncio.run_coroutine_threadsafe(self.servicio.iniciar(), self._bucle).result(limite_s)
        except BaseException:
            self.detener()
            raise
        return self

    def detener(self, limite_s: float = 30.0) -> None:
        if not self._hilo.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self.servicio.detener(), self._bucle).result(limite_s)
        finally:
            self._bucle.call_soon_threadsafe(self._bucle.stop)
            self._hilo.join(limite_s)
            self._bucle.close()

    def __enter__(self):
        return self.iniciar()

    def __exit__(self, *_exc) -> None:
        self.detener()
