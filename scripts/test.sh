#!/usr/bin/env bash
# Installs the dependencies, builds libnea with its tests (Release) and runs them.
#
#   scripts/test.sh [extra cmake -D options...]
#
# Build directory: build/ at the top of the checkout (NEA_BUILD_DIR overrides).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${NEA_BUILD_DIR:-build}

./scripts/install-deps.sh </dev/null
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DNEA_BUILD_TESTS=ON "$@"
cmake --build "$build" --parallel "$(nproc)"
ctest --test-dir "$build" --output-on-failure
