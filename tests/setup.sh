#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build and test odofs,
# then builds it (build/ and, with --asan, build-asan/ too).  Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential pkg-config meson ninja-build libfuse3-dev fuse3
      libleveldb-dev libconfig-dev libssl-dev python3 python3-pytest
      openssl util-linux procps valgrind)
missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
[ -e /dev/fuse ] || { echo "setup: /dev/fuse is missing (modprobe fuse)" >&2; exit 1; }

build() {
	local dir=$1; shift
	[ -f "$dir/build.ninja" ] || meson setup "$dir" "$@" >/dev/null
	ninja -C "$dir"
}
build build
if [ "${1:-}" = "--asan" ]; then
	build build-asan -Dsanitize=true
fi
