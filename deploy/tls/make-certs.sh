#!/usr/bin/env bash
# Makes a private CA and certificates signed by it, for a trial or a private deployment:
#
#   deploy/tls/make-certs.sh DIR server localhost 127.0.0.1      # the client port
#   deploy/tls/make-certs.sh DIR node-1 10.0.0.1 node1.internal  # a node's peer certificate
#
# The CA (DIR/ca.pem, DIR/ca-key.pem) is made on the first call and reused after. Each
# call writes DIR/NAME.pem (certificate) and DIR/NAME-key.pem (key, mode 600), valid for
# every NAME given after it as DNS name or IP address, for TLS servers and clients both
# (a node's peer certificate is both). Needs `openssl`.
set -euo pipefail

if [ $# -lt 3 ]; then
  echo "usage: $0 DIR NAME HOST [HOST...]   (HOST: DNS name or IP address)" >&2
  exit 2
fi
dir=$1 name=$2
shift 2
days=${DAYS:-825}
mkdir -p "$dir"
umask 077

if [ ! -f "$dir/ca.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" -days 3650 \
    -subj "/CN=licensed private CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  chmod 644 "$dir/ca.pem"
fi

sans=()
for host in "$@"; do
  if [[ $host =~ ^[0-9.]+$ || $host == *:* ]]; then
    sans+=("IP:$host")
  else
    sans+=("DNS:$host")
  fi
done
san=$(IFS=,; echo "${sans[*]}")

extensions=$(mktemp)
trap 'rm -f "$extensions" "$dir/$name.csr"' EXIT
cat >"$extensions" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san
EXT

openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$dir/$name-key.pem.tmp" -out "$dir/$name.csr" -subj "/CN=$name" 2>/dev/null
openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
  -CAcreateserial -days "$days" -extfile "$extensions" -out "$dir/$name.pem.tmp" 2>/dev/null
chmod 644 "$dir/$name.pem.tmp"
# Renamed into place, key first: a node watching the files never sees half of a pair.
mv "$dir/$name-key.pem.tmp" "$dir/$name-key.pem"
mv "$dir/$name.pem.tmp" "$dir/$name.pem"
echo "$dir/$name.pem ($san), key $dir/$name-key.pem, CA $dir/ca.pem"
