#!/bin/sh
# Build the reliability-test tools (currently: loadgen) into a directory.
# usage: test/reliability/build.sh [OUTDIR]    (default /tmp/nea-rel-build)
set -eu
out=${1:-/tmp/nea-rel-build}
here=$(cd "$(dirname "$0")" && pwd)
if ! pkg-config --exists libuv 2>/dev/null; then
    echo "build.sh: libuv not found by pkg-config (apt-get install -y libuv1-dev pkg-config)" >&2
    exit 1
fi
mkdir -p "$out"
# shellcheck disable=SC2046 # pkg-config output is meant to be word-split
cc -O2 -g -std=c11 -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wformat=2 -Wvla \
    -Wstrict-prototypes -Wmissing-prototypes \
    -o "$out/loadgen" "$here/loadgen.c" $(pkg-config --cflags --libs libuv) -lm
echo "$out/loadgen"
