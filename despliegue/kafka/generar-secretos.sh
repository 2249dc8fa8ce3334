#!/bin/sh
# Secretos de Kafka para docker compose (docs/seguridad-kafka.md), una sola vez:
#
#   sh despliegue/kafka/generar-secretos.sh RAIZ
#
# Deja, cada cosa en su carpeta (en compose, cada una es un volumen que monta solo quien la usa):
#   RAIZ/broker/   ca.crt y broker.pem (clave y certificado del broker: CN=kafka,
#                  DNS:kafka y DNS:localhost; sirve también de cliente entre broker y controlador)
#   RAIZ/ca/       ca.crt, lo único que necesitan los servicios para verificar al broker
#   RAIZ/admin/    admin.pem (certificado de cliente CN=gpr-admin, superusuario por TLS mutuo),
#                  ca.crt, admin.properties (para las herramientas de Kafka) y la contraseña
#                  SCRAM de cada usuario, para crearlos (despliegue/kafka/acceso.sh)
#   RAIZ/clave-<usuario>/clave   la contraseña SCRAM de ese servicio (GPR_KAFKA_SASL_CLAVE_ARCHIVO)
# La clave de la CA se borra al terminar. Si ya existen no hace nada: para renovar, borre los
# volúmenes y vuelva a correr (y reinicie Kafka y los servicios).
set -eu

raiz=${1:?uso: generar-secretos.sh RAIZ}
# Usuario de la imagen apache/kafka (appuser) y usuario gpr de la imagen del proyecto.
kafka_uid=1000:1000
gpr_uid=10001:10001
usuarios="gpr-procesador gpr-consulta gpr-ingesta gpr-simulador gpr-operador"

# Dueños solo si corre como root (en compose); sin root (una prueba) los archivos quedan suyos.
dar() {
    if [ "$(id -u)" = 0 ]; then chown -R "$@"; fi
}

if [ -s "$raiz/broker/broker.pem" ] && [ -s "$raiz/admin/admin.pem" ]; then
    echo "ya hay secretos de Kafka en $raiz; para renovarlos, borre los volúmenes y vuelva a correr"
    exit 0
fi
mkdir -p "$raiz/broker" "$raiz/ca" "$raiz/admin"
trabajo=$(mktemp -d)
cd "$trabajo"
umask 077
curva="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
openssl req -x509 $curva -keyout ca.key -out ca.crt -days 825 -subj "/CN=GpR Monitor: CA privada de Kafka" 2>/dev/null
firmar() {  # nombre CN extensiones
    openssl req -new $curva -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
    printf '%s\n' "$3" > "$1.cnf"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 825 \
        -extfile "$1.cnf" 2>/dev/null
    # Almacén PEM de Kafka: la clave (PKCS#8 sin cifrar) seguida del certificado.
    cat "$1.key" "$1.crt" > "$1.pem"
}
firmar broker kafka "subjectAltName=DNS:kafka,DNS:localhost
extendedKeyUsage=serverAuth,clientAuth
keyUsage=digitalSignature"
firmar admin gpr-admin "extendedKeyUsage=clientAuth
keyUsage=digitalSignature"

cp ca.crt broker.pem "$raiz/broker/"
cp ca.crt "$raiz/ca/"
cp ca.crt admin.pem "$raiz/admin/"
cat > "$raiz/admin/admin.properties" <<PROPIEDADES
security.protocol=SSL
ssl.keystore.type=PEM
ssl.keystore.location=/secretos/admin/admin.pem
ssl.truststore.type=PEM
ssl.truststore.location=/secretos/admin/ca.crt
PROPIEDADES
for usuario in $usuarios; do
    # Hexadecimal: sin caracteres que kafka-configs.sh o un archivo de JAAS interpreten.
    clave=$(openssl rand -hex 24)
    printf '%s\n' "$clave" > "$raiz/admin/clave-$usuario"
    mkdir -p "$raiz/clave-$usuario"
    printf '%s\n' "$clave" > "$raiz/clave-$usuario/clave"
    dar "$gpr_uid" "$raiz/clave-$usuario"
done
cd /
rm -rf "$trabajo"
chmod 0444 "$raiz/broker/ca.crt" "$raiz/ca/ca.crt" "$raiz/admin/ca.crt"
dar "$kafka_uid" "$raiz/broker" "$raiz/admin"
echo "secretos de Kafka en $raiz (CA: $raiz/ca/ca.crt; usuarios: $usuarios)"
