#!/usr/bin/env bash
# Memory hogs among good requests: see hog_mix.py (or --help) for what it measures.
# usage: test/reliability/hog_mix.sh [--quick] [options]   (full: ~2 min, --quick: ~10 s)
exec python3 -B "$(dirname "${BASH_SOURCE[0]}")/hog_mix.py" "$@"
