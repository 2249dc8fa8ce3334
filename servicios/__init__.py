"""GpR Monitor: monitoreo de resultados para la administración pública."""
