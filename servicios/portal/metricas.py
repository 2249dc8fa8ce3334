"""Métricas Prometheus del portal (prefijo `gpr_portal_`, unidades base)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class MetricasPortal:
    def __init__(self, registro: CollectorRegistry | None = None):
        self.registro = registro or CollectorRegistry()
        self.peticiones = Counter(
            "gpr_portal_peticiones", "Peticiones HTTP atendidas por ruta (plantilla), método y código.",
            ["ruta", "metodo", "codigo"], registry=self.registro)
        self.latencia = Histogram(
            "gpr_portal_peticion_segundos", "Duración de las peticiones HTTP por ruta (plantilla).",
            ["ruta"], registry=self.registro,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
        self.cache = Counter(
            "gpr_portal_cache", "Lecturas de la caché de la API: acierto (sin llamar) o fallo (carga).",
            ["resultado"], registry=self.registro)
        self.rpc = Counter(
            "gpr_portal_rpc", "Llamadas a la API Indicadores por método y código gRPC.",
            ["rpc", "codigo"], registry=self.registro)
        for resultado in ("acierto", "fallo"):
            self.cache.labels(resultado)
