#!/bin/bash
# Writes the test-only TLS files of the cluster tests into tests/fixtures/tls/: a CA
# (ca.pem) and the trainer's certificate for localhost and 127.0.0.1 signed by it (cert.pem,
# key.pem), EC P-256, valid 100 years; and other-ca.pem, a CA that signed nothing here.
# Never use them outside the tests: the private keys are public.
set -euo pipefail
out="$(cd "$(dirname "$0")/.." && pwd)/tests/fixtures/tls"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
for ca in ca other-ca; do
  openssl req -x509 $ec -keyout "$tmp/$ca.key" -out "$out/$ca.pem" -days 36500 \
    -subj "/CN=rlhf test $ca" -addext "basicConstraints=critical,CA:TRUE" 2>/dev/null
done
openssl req $ec -keyout "$out/key.pem" -out "$tmp/cert.csr" -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n' > "$tmp/ext"
openssl x509 -req -in "$tmp/cert.csr" -CA "$out/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial -CAserial "$tmp/ca.srl" \
  -out "$out/cert.pem" -days 36500 -extfile "$tmp/ext" 2>/dev/null
echo "wrote $out/{ca,other-ca,cert,key}.pem"
