"""El único lugar del proyecto que toca el interior de bibliotecas de terceros.

- `faust/`: el adaptador del procesador a faust, mode y aiokafka (el puerto de
  `servicios/procesador/puerto.py`, la entrega por lotes, las tablas en bloque y las
  correcciones a faust).
- `aiokafka.py`: cabeceras que no son UTF-8 (cualquier broker) y las correcciones del broker
  embebido (Tansu), que solo se instalan con él.
- `typer_es.py`: `gpr` en español (typer trae click sin catálogo de traducciones).

`docs/terceros.md` dice de cada corrección por qué hace falta y qué issue de la biblioteca la
motiva; `tests/unitarios/test_frontera_terceros.py` comprueba que nada de esto ocurre fuera de
aquí.
"""
