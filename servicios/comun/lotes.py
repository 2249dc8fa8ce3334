"""Registros de Kafka de eventos ya validados (uno por evento, o `LoteEventos` por partición).

La implementación vive en la biblioteca cliente (`clientes/python/gpr_cliente/lotes.py`): la
Ingesta y los publicadores de la biblioteca reparten igual en particiones y lotes (por qué
lotes: docs/rendimiento.md).
"""

from gpr_cliente.lotes import BYTES_MAXIMOS_LOTE, Registro, particion_por_defecto, registros_aceptados

__all__ = ["BYTES_MAXIMOS_LOTE", "Registro", "particion_por_defecto", "registros_aceptados"]
