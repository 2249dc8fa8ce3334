"""Núcleo puro del procesador: cálculo de indicadores, ventanas y estado por caso, sin E/S."""
