"""Procesador de flujos (faust-streaming): eventos → estado por caso → cubos → indicadores."""
