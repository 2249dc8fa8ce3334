# GpR Monitor — tareas de desarrollo. En un clon nuevo, `make run` y `make test` bastan:
# cada uno crea o actualiza .venv y genera el código de los protos cuando hace falta.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
GEN := gen
PROTOS := $(wildcard protos/gpr/v1/*.proto)
PB2 := $(patsubst protos/%.proto,$(GEN)/%_pb2.py,$(PROTOS))

.PHONY: run test test-rapido proto bench docs-rendimiento herramientas limpiar reglas

$(VENV)/.instalado: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
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

limpiar:
	rm -rf $(VENV) $(GEN) .pytest_cache
