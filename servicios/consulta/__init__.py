"""Servicio de consulta: API gRPC `Indicadores` y exportador Prometheus sobre gpr.indicadores.v1."""
