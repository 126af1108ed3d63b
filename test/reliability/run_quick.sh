#!/usr/bin/env bash
# CI entry point for the reliability quick checks: see run_quick.py (or --help).
#   NEA_REL_BUILD="$PWD/build-reliability" test/reliability/run_quick.sh [SCRIPT...]
exec python3 -B "$(dirname "${BASH_SOURCE[0]}")/run_quick.py" "$@" </dev/null
