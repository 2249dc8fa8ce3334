# GpR Monitor — tareas de desarrollo. En un clon nuevo, `make run` y `make test` bastan:
# cada uno crea o actualiza .venv y genera el código de los protos cuando hace falta.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
GEN := gen
PROTOS := $(wildcard protos/gpr/v1/*.proto)
PB2 := $(patsubst protos/%.proto,$(GEN)/%_pb2.py,$(PROTOS))
# Locks (docs/dependencias.md): desarrollo = producción + extras `local` y `dev`, lo que usan
# .venv, `make run` y `make test`; producción = lo único que instala la imagen; construcción =
# grpcio-tools para la etapa de construcción de la imagen. Se regeneran con `make bloquear`.
LOCK_DESARROLLO := requirements/desarrollo.lock
LOCK_PRODUCCION := requirements/produccion.lock
LOCK_CONSTRUCCION := requirements/construccion.lock
# Versiones de las herramientas de instalación y de bloqueo: fijas, como todo lo demás.
VERSION_PIP := 26.3
VERSION_PIP_TOOLS := 7.6.2
BLOQUEO := .venv-bloqueo
PIP_COMPILE := CUSTOM_COMPILE_COMMAND="make bloquear" $(BLOQUEO)/bin/pip-compile --quiet \
	--generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links --no-emit-trusted-host

.PHONY: run test test-rapido proto bench docs-rendimiento herramientas limpiar reglas bloquear

# Instala exactamente el lock (con hashes) y después el proyecto sin dependencias: nada se
# resuelve aquí. `pip check` detecta un pyproject.toml que pide otra cosa que el lock.
$(VENV)/.instalado: pyproject.toml $(LOCK_DESARROLLO)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet 'pip==$(VERSION_PIP)'
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK_DESARROLLO)
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m pip check || { echo "pyproject.toml y $(LOCK_DESARROLLO) no coinciden: ejecute 'make bloquear' (docs/dependencias.md)" >&2; exit 1; }
	echo "$(CURDIR)/$(GEN)" > $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/gpr_generado.pth
	touch $@

$(GEN)/.generado: $(PROTOS) $(VENV)/.instalado
	rm -rf $(GEN) && mkdir -p $(GEN)
	$(PY) -m grpc_tools.protoc -I protos --python_out=$(GEN) --pyi_out=$(GEN) --grpc_python_out=$(GEN) $(PROTOS)
	touch $(GEN)/gpr/__init__.py $(GEN)/gpr/v1/__init__.py $@

proto: $(GEN)/.generado

herramientas:
	@bash despliegue/instalar-herramientas.sh

run: proto herramientas
	$(PY) -m servicios.cli local

test: proto herramientas
	$(PY) -m pytest

test-rapido: proto
	$(PY) -m pytest tests/unitarios

bench: proto
	$(PY) -m pytest tests/rendimiento -s -p no:cacheprovider
	$(MAKE) docs-rendimiento

# Copia las tablas de resultados/bench.md a la sección de cifras de docs/rendimiento.md (entre
# sus marcas); el resto del documento no cambia. `make bench` lo corre al terminar bien.
docs-rendimiento: $(VENV)/.instalado
	$(PY) tests/rendimiento/documento.py

# Regenera las reglas de alerta de Prometheus desde el catálogo de metas (gpr metas reglas).
reglas: proto
	$(PY) -m servicios.cli metas reglas

# Regenera los tres locks desde pyproject.toml (y requirements/construccion.in) con pip-tools
# en un entorno propio. Conserva las versiones ya fijadas que siguen valiendo; para subir una
# dependencia indirecta: make bloquear OPCIONES_BLOQUEO='--upgrade-package NOMBRE'. Producción
# y construcción se resuelven restringidas al lock de desarrollo: las pruebas corren las mismas
# versiones que la imagen.
$(BLOQUEO)/.instalado:
	$(PYTHON) -m venv $(BLOQUEO)
	$(BLOQUEO)/bin/python -m pip install --quiet 'pip==$(VERSION_PIP)' 'pip-tools==$(VERSION_PIP_TOOLS)'
	touch $@

bloquear: $(BLOQUEO)/.instalado
	$(PIP_COMPILE) $(OPCIONES_BLOQUEO) --extra local --extra dev -o $(LOCK_DESARROLLO) pyproject.toml
	$(PIP_COMPILE) -c $(LOCK_DESARROLLO) -o $(LOCK_PRODUCCION) pyproject.toml
	$(PIP_COMPILE) -c $(LOCK_DESARROLLO) -o $(LOCK_CONSTRUCCION) requirements/construccion.in

limpiar:
	rm -rf $(VENV) $(GEN) $(BLOQUEO) .pytest_cache
