"""Portal público de resultados y datos abiertos: HTML en español hecho en el servidor (sin
JavaScript), gráficos SVG y datos abiertos (CSV, JSON y un Frictionless Data Package), con
control de divulgación. Es un cliente más de la API gRPC `Indicadores` (servicios/consulta)."""
