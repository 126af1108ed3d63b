#!/usr/bin/env bash
# See overload_sweep.py (or --help) for what it measures; --quick is the short CI run.
exec python3 -B "$(dirname "${BASH_SOURCE[0]}")/overload_sweep.py" "$@"
