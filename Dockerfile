# syntax=docker/dockerfile:1
# Por qué existe: una sola imagen para todos los servicios de GpR Monitor (procesador,
# consulta, simulador, ingesta, cli). Cada servicio de docker-compose.yml / Kubernetes elige
# el suyo con `command: python -m servicios.<nombre>`. La etapa de construcción instala el
# lock de producción y el proyecto, y genera el código de los protos igual que el objetivo
# `proto` del Makefile; la de ejecución solo lleva ese entorno virtual, el código y el
# catálogo, y corre sin root.

############################ construcción ############################
FROM python:3.11-slim AS construccion

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY requirements/produccion.lock requirements/construccion.lock requirements/

# Entorno del servicio (lo que se copia a la imagen final): exactamente el lock de producción,
# con hashes; ni el broker embebido ni las herramientas de prueba (docs/dependencias.md).
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes -r requirements/produccion.lock
# Entorno aparte para grpcio-tools: es solo de construcción y no llega a la imagen final.
RUN python -m venv /opt/protoc \
 && /opt/protoc/bin/pip install --require-hashes -r requirements/construccion.lock

# El proyecto, sin resolver nada: sus dependencias ya están. `pip check` falla si
# pyproject.toml pide algo que el lock no trae.
COPY pyproject.toml README.md ./
COPY servicios/ servicios/
# La biblioteca cliente de las agencias: los servicios importan de ella la validación, las
# claves y los lotes, y pyproject.toml la incluye en el paquete del proyecto.
COPY clientes/python/gpr_cliente/ clientes/python/gpr_cliente/
RUN /opt/venv/bin/pip install --no-deps . \
 && /opt/venv/bin/pip check

# Código generado de los protos (igual que `make proto`).
COPY protos/ protos/
RUN mkdir -p gen \
 && /opt/protoc/bin/python -m grpc_tools.protoc -I protos \
      --python_out=gen --pyi_out=gen --grpc_python_out=gen protos/gpr/v1/*.proto \
 && touch gen/gpr/__init__.py gen/gpr/v1/__init__.py

############################ ejecución ############################
FROM python:3.11-slim

LABEL org.opencontainers.image.title="gpr-monitor" \
      org.opencontainers.image.description="GpR Monitor: monitoreo de resultados para la administración pública" \
      org.opencontainers.image.licenses="Apache-2.0"

# Usuario sin privilegios; /datos es el estado local del procesador (tablas RocksDB), que
# docker-compose monta como volumen: un volumen nuevo hereda este dueño.
# /generado: lo que escriben al arrancar los servicios `reglas` y `alertmanager-configuracion` de
# docker-compose.yml (cada uno monta ahí su volumen, que hereda este dueño).
RUN groupadd --system --gid 10001 gpr \
 && useradd --system --uid 10001 --gid gpr --home-dir /app --no-create-home --shell /usr/sbin/nologin gpr \
 && mkdir -p /datos /generado \
 && chown gpr:gpr /datos /generado

COPY --from=construccion /opt/venv /opt/venv
WORKDIR /app
COPY --from=construccion /src/gen/ /app/gen/
COPY servicios/ /app/servicios/
COPY despliegue/catalogo.yaml /app/despliegue/catalogo.yaml

# gen/ en el PYTHONPATH hace las veces del .pth que escribe el Makefile en .venv.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app/gen:/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GPR_CATALOGO=/app/despliegue/catalogo.yaml \
    GPR_DIRECTORIO_DATOS=/datos

USER gpr:gpr

# Sin servicio por defecto: quien usa la imagen dice cuál arrancar.
CMD ["python", "-c", "print('Imagen de GpR Monitor. Elija un servicio, por ejemplo:\\n  python -m servicios.procesador\\n  python -m servicios.consulta\\n  python -m servicios.simulador\\nLa configuración va en variables GPR_* (vea README.md).')"]
