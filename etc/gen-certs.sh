#!/usr/bin/env bash
# gen-certs.sh: a private CA and one certificate per node id, for odofs
# peering (SPEC §7: a node's id is its certificate's subject CN).
#
#   etc/gen-certs.sh DIR ID [ID...]     DIR/ca.pem, DIR/ca.key (made once,
#                                       reused after), DIR/ID.pem, DIR/ID.key
#   etc/gen-certs.sh --ca-only DIR      just the CA
#
# Keys are EC P-256 (mode 0600), signatures SHA-256.  A node certificate
# has subject CN=ID, subjectAltName DNS:ID, extendedKeyUsage serverAuth and
# clientAuth, and is valid for 825 days; the CA for 3650.  Idempotent: a
# node certificate that exists and verifies against DIR/ca.pem is kept.
# Quiet on success; on failure prints openssl's complaint and exits non-zero.
#
# Then, in odofs.conf:  tls: { cert = "DIR/ID.pem"; key = "DIR/ID.key";
#                              ca = "DIR/ca.pem"; };
set -euo pipefail

usage() {
	echo "usage: gen-certs.sh DIR ID [ID...]" >&2
	echo "       gen-certs.sh --ca-only DIR" >&2
	exit 2
}

ca_only=0
if [ "${1:-}" = "--ca-only" ]; then
	ca_only=1
	shift
fi
[ $# -ge 1 ] || usage
dir=$1
shift
if [ $ca_only -eq 1 ]; then
	[ $# -eq 0 ] || usage
else
	[ $# -ge 1 ] || usage
fi

# The rule of config_valid_id(): 1..64 bytes of [A-Za-z0-9._:@-], not
# starting with '.'.
for id in "$@"; do
	if ! [[ $id =~ ^[A-Za-z0-9_:@-][A-Za-z0-9._:@-]{0,63}$ ]]; then
		echo "gen-certs.sh: invalid id '$id': 1 to 64 bytes of" \
		    "[A-Za-z0-9._:@-], not starting with '.'" >&2
		exit 2
	fi
	if [ "$id" = ca ]; then
		echo "gen-certs.sh: 'ca' names the CA's files, not a node" >&2
		exit 2
	fi
done

mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.gen-certs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
umask 077

# Runs openssl quietly; shows its output only when it fails.
ossl() {
	if ! openssl "$@" >"$tmp/log" 2>&1; then
		echo "gen-certs.sh: openssl $1 failed:" >&2
		cat "$tmp/log" >&2
		exit 1
	fi
}

newkey() {
	ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
}

# A random positive 127-bit serial number.
serial() {
	echo "0x$(openssl rand -hex 16 | sed 's/^./7/')"
}

# A minimal config: req insists on a distinguished_name section.
printf '%s\n' '[req]' 'distinguished_name = dn' 'prompt = no' '[dn]' \
    '[ca_ext]' \
    'basicConstraints = critical, CA:TRUE, pathlen:0' \
    'keyUsage = critical, keyCertSign, cRLSign' \
    'subjectKeyIdentifier = hash' >"$tmp/req.cnf"

if [ ! -s "$dir/ca.pem" ] || [ ! -s "$dir/ca.key" ]; then
	newkey "$tmp/ca.key"
	ossl req -new -x509 -key "$tmp/ca.key" -sha256 -days 3650 \
	    -subj "/CN=odofs CA" -set_serial "$(serial)" \
	    -config "$tmp/req.cnf" -extensions ca_ext -out "$tmp/ca.pem"
	chmod 0644 "$tmp/ca.pem"
	mv "$tmp/ca.key" "$dir/ca.key"
	mv "$tmp/ca.pem" "$dir/ca.pem"
fi

for id in "$@"; do
	if [ -s "$dir/$id.pem" ] && [ -s "$dir/$id.key" ] &&
	    openssl verify -CAfile "$dir/ca.pem" "$dir/$id.pem" \
	    >/dev/null 2>&1; then
		continue
	fi
	newkey "$tmp/$id.key"
	ossl req -new -key "$tmp/$id.key" -subj "/CN=$id" \
	    -config "$tmp/req.cnf" -out "$tmp/$id.csr"
	printf '%s\n' 'basicConstraints = critical, CA:FALSE' \
	    'keyUsage = critical, digitalSignature' \
	    'extendedKeyUsage = serverAuth, clientAuth' \
	    "subjectAltName = DNS:$id" \
	    'subjectKeyIdentifier = hash' \
	    'authorityKeyIdentifier = keyid' >"$tmp/$id.ext"
	ossl x509 -req -in "$tmp/$id.csr" -CA "$dir/ca.pem" \
	    -CAkey "$dir/ca.key" -set_serial "$(serial)" -sha256 -days 825 \
	    -extfile "$tmp/$id.ext" -out "$tmp/$id.pem"
	chmod 0644 "$tmp/$id.pem"
	mv "$tmp/$id.key" "$dir/$id.key"
	mv "$tmp/$id.pem" "$dir/$id.pem"
done
