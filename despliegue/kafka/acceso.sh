#!/bin/bash
# Usuarios SCRAM y ACL de Kafka para docker compose (docs/seguridad-kafka.md). Idempotente:
# vuelve a fijar cada contraseña y añade las ACL de despliegue/kafka/acl.txt (las que ya
# estaban quedan igual). Corre como gpr-admin, superusuario por su certificado (TLS mutuo).
#
#   acceso.sh BOOTSTRAP ACL.txt
set -euo pipefail

bootstrap=${1:?uso: acceso.sh BOOTSTRAP ACL.txt}
tabla=${2:?uso: acceso.sh BOOTSTRAP ACL.txt}
bin=/opt/kafka/bin
config=/secretos/admin/admin.properties

for archivo in /secretos/admin/clave-*; do
    usuario=${archivo#/secretos/admin/clave-}
    "$bin/kafka-configs.sh" --bootstrap-server "$bootstrap" --command-config "$config" --alter \
        --entity-type users --entity-name "$usuario" \
        --add-config "SCRAM-SHA-512=[iterations=8192,password=$(cat "$archivo")]"
done

while read -r principal recurso nombre patron operaciones; do
    case "$principal" in ''|'#'*) continue ;; esac
    argumentos=()
    for operacion in ${operaciones//,/ }; do
        argumentos+=(--operation "$operacion")
    done
    "$bin/kafka-acls.sh" --bootstrap-server "$bootstrap" --command-config "$config" --add \
        --allow-principal "User:$principal" --resource-pattern-type "$patron" "--$recurso" "$nombre" \
        "${argumentos[@]}" >/dev/null
    echo "ACL: User:$principal $operaciones en $recurso $nombre ($patron)"
done < "$tabla"
"$bin/kafka-acls.sh" --bootstrap-server "$bootstrap" --command-config "$config" --list
