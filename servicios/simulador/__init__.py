"""Simulador de agencias: genera ciclos de casos realistas y los publica en gpr.eventos.v1."""
