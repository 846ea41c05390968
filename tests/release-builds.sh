#!/usr/bin/env bash
# What a packager runs, with warnings as errors: a --buildtype=release
# build (-O3, NDEBUG: warnings only the optimiser sees, unused variables
# of assert()) with gcc and with clang, in build-release-gcc/ and
# build-release-clang/.  Run by tests/run-tests.sh after tests/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

for cc in gcc clang; do
	dir=build-release-$cc
	echo "== release build with $cc, -Dwerror=true"
	rm -rf "$dir"
	CC=$cc meson setup "$dir" --buildtype=release -Dwerror=true >/dev/null
	ninja -C "$dir" >"$dir/ninja.log" || { cat "$dir/ninja.log"; exit 1; }
done
