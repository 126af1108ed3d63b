#!/usr/bin/env bash
# Builds the benchmark peers and the allocation counter with cc -O2.
#
#   test/bench/build.sh [BUILD_DIR]      (default /tmp/nea-bench-build)
#
# Produces BUILD_DIR/{mhd,h2o,uvmalloc,alloccount.so}. Needs libmicrohttpd-dev,
# libh2o-dev (libuv flavour), libuv1-dev and node-llhttp (for the llhttp
# sources); see test/bench/README.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-/tmp/nea-bench-build}
mkdir -p "$out"

cc=${CC:-cc}
cflags=(-O2 -g -Wall -Wextra -Wno-unused-function -std=gnu11 -I"$here/peers")
llhttp_src=/usr/share/llhttp
llhttp_inc=/usr/share/include/llhttp

need_pc() {
    if ! pkg-config --exists "$1"; then
        echo "build.sh: pkg-config cannot find $1 (install $2)" >&2
        exit 1
    fi
}
need_pc libuv libuv1-dev
need_pc libmicrohttpd libmicrohttpd-dev
need_pc libh2o libh2o-dev
if [[ ! -f $llhttp_src/llhttp.c || ! -f $llhttp_inc/llhttp.h ]]; then
    echo "build.sh: llhttp sources not found under $llhttp_src (install node-llhttp)" >&2
    exit 1
fi

set -x
# llhttp objects once, with -O2 like the peers.
for f in api http llhttp; do
    "$cc" -O2 -g -w -I"$llhttp_inc" -c "$llhttp_src/$f.c" -o "$out/llhttp_$f.o"
done
"$cc" "${cflags[@]}" -I"$llhttp_inc" $(pkg-config --cflags libuv) "$here/peers/uvmalloc.c" \
    "$out"/llhttp_{api,http,llhttp}.o -o "$out/uvmalloc" $(pkg-config --libs libuv)
"$cc" "${cflags[@]}" $(pkg-config --cflags libmicrohttpd) "$here/peers/mhd.c" \
    -o "$out/mhd" $(pkg-config --libs libmicrohttpd) -pthread
"$cc" "${cflags[@]}" $(pkg-config --cflags libh2o libuv) "$here/peers/h2o.c" \
    -o "$out/h2o" $(pkg-config --libs libh2o libuv) -lssl -lcrypto
"$cc" -O2 -g -Wall -Wextra -std=gnu11 -fPIC -shared "$here/alloccount.c" \
    -o "$out/alloccount.so" -ldl
