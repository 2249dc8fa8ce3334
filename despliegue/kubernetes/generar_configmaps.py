"""Regenera los ConfigMaps del catálogo y de las metas desde los archivos del repositorio.

    .venv/bin/python despliegue/kubernetes/generar_configmaps.py

Por qué existe: kustomize no deja que un `configMapGenerator` lea archivos fuera de su
carpeta (despliegue/catalogo.yaml y despliegue/metas/ están más arriba), así que los
ConfigMaps se guardan en base/ como copia generada. Este guion escribe esa copia y, en cada
Deployment que los monta, la anotación `gpr-monitor/<configmap>-sha256` con la suma del
contenido: al cambiar una meta cambia la plantilla del pod y `kubectl apply` reinicia el
procesador (que lee catálogo y metas solo al arrancar). tests/unitarios/test_kubernetes.py
falla si la copia o las sumas no corresponden a los archivos del repositorio.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import yaml

AQUI = Path(__file__).resolve().parent
DESPLIEGUE = AQUI.parent

# nombre del ConfigMap → (manifiesto en base/, archivos del repositorio que contiene)
CONFIGMAPS = {
    "gpr-catalogo": ("configmap-catalogo.yaml", lambda: [DESPLIEGUE / "catalogo.yaml"]),
    # Mismo criterio que servicios.comun.metas.archivos_de: los *.yaml de la carpeta.
    "gpr-metas": ("configmap-metas.yaml", lambda: sorted((DESPLIEGUE / "metas").glob("*.yaml"))),
}


def suma(datos: dict[str, str]) -> str:
    """sha256 de las claves y contenidos, en orden de clave (separados por NUL)."""
    h = hashlib.sha256()
    for clave in sorted(datos):
        h.update(clave.encode() + b"\0" + datos[clave].encode() + b"\0")
    return h.hexdigest()


class _Literal(str):
    pass


def _representar_literal(dumper: yaml.SafeDumper, texto: _Literal):
    # Bloque literal `|`: el ConfigMap se lee igual que el archivo original.
    return dumper.represent_scalar("tag:yaml.org,2002:str", texto, style="|")


def manifiesto(nombre: str, datos: dict[str, str]) -> str:
    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(_Literal, _representar_literal)
    objeto = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": nombre,
            "namespace": "gpr",
            "labels": {"app.kubernetes.io/part-of": "gpr-monitor"},
        },
        "data": {clave: _Literal(valor) for clave, valor in sorted(datos.items())},
    }
    cuerpo = yaml.dump(objeto, Dumper=Dumper, allow_unicode=True, sort_keys=False, width=10_000)
    return ("# GENERADO por despliegue/kubernetes/generar_configmaps.py desde los archivos de\n"
            "# despliegue/: no lo edite a mano, edite el original y vuelva a generarlo.\n" + cuerpo)


def datos_de(archivos: list[Path]) -> dict[str, str]:
    return {a.name: a.read_text(encoding="utf-8") for a in archivos}


def main() -> int:
    sumas = {}
    for nombre, (destino, archivos) in CONFIGMAPS.items():
        datos = datos_de(archivos())
        (AQUI / "base" / destino).write_text(manifiesto(nombre, datos), encoding="utf-8")
        sumas[nombre] = suma(datos)
        print(f"{destino}: {len(datos)} archivo(s), sha256 {sumas[nombre][:12]}…")
    for archivo in sorted(AQUI.rglob("*.yaml")):
        texto = archivo.read_text(encoding="utf-8")
        nuevo = texto
        for nombre, valor in sumas.items():
            nuevo = re.sub(rf'(gpr-monitor/{nombre}-sha256: )"[0-9a-f]*"', rf'\g<1>"{valor}"', nuevo)
        if nuevo != texto:
            archivo.write_text(nuevo, encoding="utf-8")
            print(f"{archivo.relative_to(AQUI)}: sumas actualizadas")
    return 0


if __name__ == "__main__":
    sys.exit(main())
