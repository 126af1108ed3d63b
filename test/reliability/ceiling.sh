#!/usr/bin/env bash
# See ceiling.py (or --help) for what it measures; --quick is the short CI run.
exec python3 -B "$(dirname "${BASH_SOURCE[0]}")/ceiling.py" "$@"
