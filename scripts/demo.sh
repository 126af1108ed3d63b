#!/usr/bin/env bash
# Installs the dependencies, builds the demo server and runs it in the foreground
# (Ctrl-C stops it). Arguments go to nea-demo; it prints the address it listens on.
#
#   scripts/demo.sh [nea-demo options...]
#
# Uses the same build directory and options as scripts/test.sh (NEA_BUILD_DIR
# overrides build/), so running one after the other does not reconfigure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${NEA_BUILD_DIR:-build}

./scripts/install-deps.sh </dev/null
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DNEA_BUILD_TESTS=ON >/dev/null
cmake --build "$build" --parallel "$(nproc)" --target nea-demo
exec "$build/examples/nea-demo" "$@"
