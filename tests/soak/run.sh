#!/usr/bin/env bash
# Runs the chaos soak alone: bash tests/soak/run.sh [SECONDS] (default 300).
set -euo pipefail
cd "$(dirname "$0")/../.."
ODOFS_SOAK_SECONDS=${1:-300} exec /usr/bin/python3 -m pytest -q -s \
    tests/integration/test_soak.py
