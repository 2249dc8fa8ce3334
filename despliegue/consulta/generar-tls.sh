#!/bin/sh
# Certificado TLS de la consulta (gRPC Indicadores) firmado por una CA privada propia.
#
#   sh despliegue/consulta/generar-tls.sh DIRECTORIO [SAN] [DUEÑO]
#
# Deja en DIRECTORIO: ca.crt (lo que los clientes, p. ej. el portal, usan para verificar al
# servidor), tls.crt y tls.key (GPR_CONSULTA_TLS_CERT y GPR_CONSULTA_TLS_KEY). La clave de la
# CA se borra al terminar: para renovar, se borra el directorio y se vuelve a correr. Si ya
# hay un certificado no hace nada (docker compose lo corre en cada `up`).
#   SAN:   nombres del servidor (por omisión DNS:consulta,DNS:localhost,IP:127.0.0.1: el
#          servicio de compose y el chequeo de salud dentro del contenedor).
#   DUEÑO: uid:gid que debe poder leer la clave (compose: 10001:10001, el usuario gpr).
# En Kubernetes use su emisor de certificados (cert-manager) o un Secret tls propio.
set -eu

dir=${1:?uso: generar-tls.sh DIRECTORIO [SAN] [DUEÑO]}
san=${2:-DNS:consulta,DNS:localhost,IP:127.0.0.1}
duenio=${3:-}

if [ -s "$dir/tls.crt" ] && [ -s "$dir/tls.key" ] && [ -s "$dir/ca.crt" ]; then
    echo "ya hay un certificado en $dir; para renovarlo, borre el directorio y vuelva a correr"
    exit 0
fi
mkdir -p "$dir"
cd "$dir"
umask 077
curva="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
# 825 días: lo máximo que aceptan los clientes que aplican las reglas de los navegadores.
openssl req -x509 $curva -keyout ca.key -out ca.crt -days 825 -subj "/CN=GpR Monitor: CA privada de la consulta" 2>/dev/null
openssl req -new $curva -keyout tls.key -out tls.csr -subj "/CN=consulta" 2>/dev/null
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n' "$san" > extensiones.cnf
openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out tls.crt -days 825 \
    -extfile extensiones.cnf 2>/dev/null
rm -f ca.key ca.srl tls.csr extensiones.cnf
chmod 0444 ca.crt tls.crt
chmod 0400 tls.key
if [ -n "$duenio" ]; then
    chown "$duenio" tls.key tls.crt ca.crt
fi
echo "certificado de la consulta en $dir para $san (CA: $dir/ca.crt)"
