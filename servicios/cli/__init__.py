"""`gpr`: la herramienta de línea de órdenes de los operadores."""
