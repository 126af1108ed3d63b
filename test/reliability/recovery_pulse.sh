#!/usr/bin/env bash
# See recovery_pulse.py (or --help) for what it measures; --quick is the short CI run.
exec python3 -B "$(dirname "${BASH_SOURCE[0]}")/recovery_pulse.py" "$@"
