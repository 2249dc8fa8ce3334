"""Utilidades de las pruebas: implementación de referencia y generación de escenarios."""
