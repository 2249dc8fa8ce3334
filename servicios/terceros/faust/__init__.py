"""El procesador sobre faust: el `Puerto` (`puerto.py`), la entrega por lotes, las tablas en
bloque y las correcciones a faust (`parches.py`). Ver `servicios/terceros/__init__.py`."""
