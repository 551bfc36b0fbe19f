#!/usr/bin/env bash
# Demo TLS material for Envoy's https listener: a self-signed CA and a server certificate
# for localhost (SAN DNS:localhost, IP:127.0.0.1), signed by that CA.
#
#   envoy/certs/ca.pem           CA certificate (clients trust it: NODE_EXTRA_CA_CERTS=envoy/certs/ca.pem)
#   envoy/certs/ca-key.pem       CA private key
#   envoy/certs/server.pem       server certificate (what envoy/envoy.yaml serves)
#   envoy/certs/server-key.pem   server private key
#
# Idempotent: does nothing when all four files exist. Usage: envoy/gen-certs.sh [OUT_DIR]
set -euo pipefail

out="${1:-$(cd "$(dirname "$0")" && pwd)/certs}"
if [[ -s $out/ca.pem && -s $out/ca-key.pem && -s $out/server.pem && -s $out/server-key.pem ]]; then
  echo "certs: present in $out"
  exit 0
fi

mkdir -p "$out"
# Build everything in a temporary directory and move it in at the end, so a concurrent or
# interrupted run never leaves a half-written set behind.
tmp="$(mktemp -d "$out/.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/ca-key.pem"
openssl req -x509 -new -sha256 -days 3650 -key "$tmp/ca-key.pem" -out "$tmp/ca.pem" \
  -subj "/CN=mcp-oauth-wasm demo CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash"

openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/server-key.pem"
openssl req -new -sha256 -key "$tmp/server-key.pem" -out "$tmp/server.csr" -subj "/CN=localhost"
cat > "$tmp/server.ext" <<'EXT'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
authorityKeyIdentifier = keyid
subjectKeyIdentifier = hash
EXT
# 825 days: the longest validity that Apple platforms accept for a TLS server certificate.
openssl x509 -req -sha256 -days 825 -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca-key.pem" \
  -CAcreateserial -extfile "$tmp/server.ext" -out "$tmp/server.pem" 2>/dev/null

# The Envoy container (docker-compose) may run as another user than the one who made the
# files, so the server key must be readable there: a throwaway demo key. The CA key is not.
chmod 644 "$tmp/ca.pem" "$tmp/server.pem" "$tmp/server-key.pem"
chmod 600 "$tmp/ca-key.pem"
mv -f "$tmp/ca-key.pem" "$tmp/ca.pem" "$tmp/server-key.pem" "$tmp/server.pem" "$out/"
echo "certs: created in $out"
