#!/usr/bin/env bash
# See slow_clients.py (or --help) for what it measures; --quick is the short CI run.
exec python3 -B "$(dirname "${BASH_SOURCE[0]}")/slow_clients.py" "$@"
