"""Importes exactos (unidades + nanos → diezmilésimas de la moneda).

La implementación vive en la biblioteca cliente (`clientes/python/gpr_cliente/dinero.py`): el
sistema de la agencia arma el `Costo` con las mismas reglas con que el procesador lo valida y
lo suma.
"""

from gpr_cliente.dinero import ESCALA, UNIDADES_MAXIMAS, a_diezmilesimas, desde_decimal, motivo_importe_invalido

__all__ = ["ESCALA", "UNIDADES_MAXIMAS", "a_diezmilesimas", "desde_decimal", "motivo_importe_invalido"]
