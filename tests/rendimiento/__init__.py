"""Bancos de rendimiento (issue #6): `make bench`, nunca parte de `make test`.

Es un paquete para que su conftest se importe como `rendimiento.conftest` y no reemplace
en `sys.modules` al `conftest` de tests/, del que importan otras pruebas (`from conftest
import CATALOGO`).
"""
