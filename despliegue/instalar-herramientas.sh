#!/usr/bin/env bash
# Por qué existe: `make test` y `make run` usan los binarios reales de Prometheus
# (prometheus, promtool) y de Alertmanager (prometheus-alertmanager, amtool): reglas probadas
# con `promtool test rules`, configuraciones validadas y alertas de extremo a extremo. En
# Debian vienen de los paquetes `prometheus` y `prometheus-alertmanager`. Las pruebas del
# portal abren sus páginas en un navegador real: el Chromium de Debian (paquete `chromium`,
# /usr/bin/chromium), que Playwright lanza por su ruta; nunca se descarga un navegador.
#
# Se ejecuta en cada `make run`/`make test` (objetivo `herramientas`), así que:
#   - si los binarios ya están en el PATH, solo informa sus versiones y sale enseguida;
#   - si faltan y somos root, los instala con apt-get sin paquetes recomendados y SIN arrancar
#     los demonios que traen los paquetes (ocuparían los puertos 9090/9093 y pelearían con
#     los Prometheus/Alertmanager que levantan las pruebas);
#   - si faltan y no somos root, imprime el comando exacto y termina con error: nunca se
#     salta en silencio, porque las pruebas que los necesitan fallarían más tarde y peor.
#
# También `buf` (lint y cambios incompatibles de los protos, tests/unitarios/test_contrato_protos.py),
# del paquete npm @bufbuild/buf en una versión fija, instalado sin root en la caché del usuario
# ($GPR_HERRAMIENTAS, por omisión ~/.cache/gpr-monitor) si no está en el PATH.
set -euo pipefail

VERSION_BUF=1.75.0
HERRAMIENTAS="${GPR_HERRAMIENTAS:-$HOME/.cache/gpr-monitor}"
BUF_LOCAL="$HERRAMIENTAS/buf-$VERSION_BUF/node_modules/.bin/buf"

asegurar_buf() {
    if command -v buf >/dev/null 2>&1 || [ -x "$BUF_LOCAL" ]; then
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "herramientas: apt-get install npm (para buf)"
            DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends npm >/dev/null
        else
            echo "herramientas: falta npm para instalar buf (@bufbuild/buf $VERSION_BUF); instale Node.js y npm" >&2
            return 1
        fi
    fi
    echo "herramientas: npm install @bufbuild/buf@$VERSION_BUF en $HERRAMIENTAS"
    mkdir -p "$HERRAMIENTAS/buf-$VERSION_BUF"
    npm install --silent --no-audit --no-fund --prefix "$HERRAMIENTAS/buf-$VERSION_BUF" "@bufbuild/buf@$VERSION_BUF" >/dev/null
}

PAQUETES=(prometheus prometheus-alertmanager chromium)
# Ruta fija: la usan las pruebas del portal (tests/apoyo/portal.py).
CHROMIUM=/usr/bin/chromium
COMANDO_ROOT="sudo bash despliegue/instalar-herramientas.sh"

# El binario de Alertmanager se llama `prometheus-alertmanager` en Debian y `alertmanager`
# en las versiones oficiales; aceptamos cualquiera de los dos.
binario_alertmanager() {
    command -v prometheus-alertmanager 2>/dev/null || command -v alertmanager 2>/dev/null || true
}

faltantes() {
    local b
    for b in prometheus promtool amtool; do
        command -v "$b" >/dev/null 2>&1 || echo "$b"
    done
    [ -n "$(binario_alertmanager)" ] || echo "prometheus-alertmanager"
    [ -x "$CHROMIUM" ] || echo "chromium"
}

version_de() {
    # Primera línea de `--version` (algunas versiones la escriben en stderr). sed, no head:
    # head cierra la tubería y, con pipefail, el SIGPIPE del programa aborta el script.
    "$1" --version 2>&1 | sed -n 1p
}

informar_versiones() {
    local am
    am="$(binario_alertmanager)"
    echo "herramientas: $(command -v prometheus): $(version_de prometheus)"
    echo "herramientas: $(command -v promtool): $(version_de promtool)"
    echo "herramientas: ${am}: $(version_de "$am")"
    echo "herramientas: $(command -v amtool): $(version_de amtool)"
    echo "herramientas: ${CHROMIUM}: $("$CHROMIUM" --version 2>/dev/null | grep -m1 Chromium || echo '?')"
}

# Procesos del usuario de sistema `prometheus` (con el que los paquetes arrancan sus
# demonios). Las pruebas lanzan prometheus con nuestro usuario, así que no entran aquí.
pids_demonios() {
    local uid d
    uid="$(id -u prometheus 2>/dev/null)" || return 0
    for d in /proc/[0-9]*; do
        if [ "$(stat -c %u "$d" 2>/dev/null)" = "$uid" ]; then echo "${d#/proc/}"; fi
    done | sort
}

POLITICA=/usr/sbin/policy-rc.d
RESPALDO=""

restaurar_politica() {
    if [ -n "$RESPALDO" ]; then
        cp -p "$RESPALDO" "$POLITICA" && rm -f "$RESPALDO"
        RESPALDO=""
    else
        rm -f "$POLITICA"
    fi
}

instalar() {
    local antes despues pid
    antes="$(pids_demonios)"

    # policy-rc.d con "exit 101" prohíbe a invoke-rc.d y a deb-systemd-invoke arrancar
    # servicios desde los scripts postinst. Si ya había una política la respaldamos y la
    # devolvemos tal cual al terminar, pase lo que pase.
    if [ -e "$POLITICA" ]; then
        RESPALDO="$(mktemp)"
        cp -p "$POLITICA" "$RESPALDO"
    fi
    trap restaurar_politica EXIT
    trap "exit 130" INT TERM
    printf '#!/bin/sh\n# Temporal (despliegue/instalar-herramientas.sh): no arrancar servicios.\nexit 101\n' >"$POLITICA"
    chmod 0755 "$POLITICA"

    export DEBIAN_FRONTEND=noninteractive
    echo "herramientas: apt-get update"
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    echo "herramientas: apt-get install ${PAQUETES[*]}"
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${PAQUETES[@]}" >/dev/null

    restaurar_politica
    trap - EXIT INT TERM

    # Con systemd los paquetes quedan habilitados para el próximo arranque: los
    # deshabilitamos (sin tocar nada si no hay systemd, p. ej. en contenedores).
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now prometheus.service prometheus-alertmanager.service >/dev/null 2>&1 || true
        echo "herramientas: servicios systemd prometheus y prometheus-alertmanager deshabilitados" \
             "(actívelos con 'systemctl enable --now ...' si los quiere como servicio)"
    fi

    # Red de seguridad: si a pesar de la política arrancó algún demonio nuevo, lo detenemos
    # por su PID (solo los del usuario `prometheus` que no existían antes de instalar).
    despues="$(pids_demonios)"
    for pid in $(comm -13 <(echo "$antes") <(echo "$despues")); do
        echo "herramientas: deteniendo el demonio arrancado por la instalación (pid $pid)" >&2
        kill "$pid" 2>/dev/null || true
    done
}

asegurar_buf
echo "herramientas: buf $("$(command -v buf || echo "$BUF_LOCAL")" --version)"

falta="$(faltantes | tr '\n' ' ' | sed 's/ *$//')"
if [ -z "$falta" ]; then
    informar_versiones
    exit 0
fi

echo "herramientas: faltan los binarios: $falta" >&2
if ! command -v apt-get >/dev/null 2>&1; then
    echo "herramientas: este sistema no tiene apt-get. Instale Prometheus (prometheus, promtool)" >&2
    echo "  y Alertmanager (alertmanager, amtool) de https://prometheus.io/download/ y déjelos en el PATH," >&2
    echo "  y Chromium en $CHROMIUM (pruebas del portal)." >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "herramientas: hace falta instalar los paquetes Debian ${PAQUETES[*]} y no somos root." >&2
    echo "  Ejecute (instala sin arrancar los servicios ni dejarlos habilitados):" >&2
    echo "    $COMANDO_ROOT" >&2
    exit 1
fi

instalar
falta="$(faltantes | tr '\n' ' ' | sed 's/ *$//')"
if [ -n "$falta" ]; then
    echo "herramientas: tras instalar ${PAQUETES[*]} siguen faltando: $falta" >&2
    exit 1
fi
informar_versiones
