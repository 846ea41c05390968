#!/usr/bin/env bash
# Sets up (tests/setup.sh), then runs every test: the C unit tests, the
# integration suite against the normal build, and the integration suite
# again against the AddressSanitizer + UndefinedBehaviorSanitizer build.
# Extra arguments go to pytest (e.g. -k events).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh --asan

PY=/usr/bin/python3
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

echo "== unit tests"
meson test -C build --print-errorlogs
meson test -C build-asan --print-errorlogs

echo "== integration tests"
$PY -m pytest -q tests/integration "$@"

echo "== integration tests under ASan+UBSan"
ODOFS_SANITIZED=1 ODOFS_BIN="$PWD/build-asan/fs/odofs" $PY -m pytest -q tests/integration "$@"
