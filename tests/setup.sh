#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build and test odofs,
# then builds it: build/ and, with --asan, build-asan/ too.  Idempotent.
#
# --werror   warnings are errors (the developers' and CI's builds; a user's
#            build must not break on a newer compiler's new warning, so the
#            default options leave it off)
set -euo pipefail
cd "$(dirname "$0")/.."

asan=false
opts=()
for a in "$@"; do
	case $a in
	--asan) asan=true ;;
	--werror) opts+=(-Dwerror=true) ;;
	*) echo "usage: tests/setup.sh [--asan] [--werror]" >&2; exit 2 ;;
	esac
done

PKGS=(build-essential pkg-config meson ninja-build libfuse3-dev fuse3
      libleveldb-dev libconfig-dev libssl-dev python3 python3-pytest
      openssl util-linux procps valgrind clang rsync sqlite3 iproute2
      python3-plyvel)
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

# build DIR [OPTION...]: sets DIR up, or brings an existing one to these
# options, then builds it
build() {
	local dir=$1; shift
	if [ -f "$dir/build.ninja" ]; then
		[ $# -eq 0 ] || meson configure "$dir" "$@" >/dev/null
	else
		meson setup "$dir" "$@" >/dev/null
	fi
	ninja -C "$dir"
}
build build ${opts[@]+"${opts[@]}"}
if $asan; then
	build build-asan -Dsanitize=true ${opts[@]+"${opts[@]}"}
fi
