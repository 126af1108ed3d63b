#!/usr/bin/env bash
# Runs nea-demo under the heap guard (abort mode) and drives every route,
# success and failure paths: any libc allocation inside handler code would
# abort the demo and print the guard's report. Exit 77 (skipped) when the
# demo, the guard or curl is missing.
#
#   test/heapguard/demo.sh BUILD_DIR
set -euo pipefail

build=${1:?usage: demo.sh BUILD_DIR}
demo=$build/examples/nea-demo
guard=$build/libnea_heapguard.so
if [[ ! -x $demo || ! -f $guard ]] || ! command -v curl >/dev/null; then
    echo "demo.sh: needs $demo, $guard and curl; skipped"
    exit 77
fi

tmp=$(mktemp -d)
pid=
cleanup() {
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid"
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

printf 'libnea demo static body\n' >"$tmp/static"
: >"$tmp/out" # the demo starts in the background: sed must find the file even before it writes
LD_PRELOAD=$guard NEA_HEAPGUARD=abort "$demo" --port 0 --arena-size 512k \
    --static "$tmp/static" >"$tmp/out" 2>"$tmp/err" &
pid=$!

port=
for _ in $(seq 100); do
    port=$(sed -n 's|^listening on http://[^:]*:\([0-9]*\) .*|\1|p' "$tmp/out")
    [[ -n $port ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if [[ -z $port ]]; then
    echo "demo.sh: the demo did not start"
    cat "$tmp/err"
    exit 1
fi
grep -q libnea_heapguard "/proc/$pid/maps" || { echo "demo.sh: guard not loaded"; exit 1; }

fail=0
expect() { # expect STATUS PATH [curl args...]
    local want=$1 path=$2 got
    shift 2
    got=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@" "http://127.0.0.1:$port$path" || true)
    if [[ $got != "$want" ]]; then
        echo "demo.sh: GET $path answered $got, expected $want"
        fail=1
    fi
}
for round in 1 2; do
    expect 200 /hello
    expect 200 /json/100
    expect 200 /gzip/64 --compressed
    expect 500 /json/65536
    expect 500 /gzip/5000
    expect 500 /json/4000000000
    expect 500 /gzip/4000000000
    expect 400 /json/0
    expect 200 /alloc/4
    expect 500 /alloc/100000
    expect 200 /static
    expect 206 /static -r 0-3
    expect 416 /static -r 99999-
    expect 304 /static -H 'If-None-Match: *'
    expect 200 /sleep/5
    expect 200 /spin/100
    expect 200 /svg --data-binary $'1,2\n3,4\n'
    expect 400 /svg --data-binary $'1,x\n'
    expect 200 /stats
    expect 200 /health
    expect 200 /metrics
    expect 200 /events/3
    expect 200 /events/3 -H 'Last-Event-ID: 1'
    expect 400 /events/x
    expect 404 /nope
done

if ! kill -0 "$pid" 2>/dev/null; then
    echo "demo.sh: the demo died"
    fail=1
else
    kill -TERM "$pid"
    wait "$pid" || { echo "demo.sh: the demo exited $?"; fail=1; }
fi
pid=
if grep -q "heap guard" "$tmp/err"; then
    echo "demo.sh: the heap guard reported handler heap use:"
    cat "$tmp/err"
    fail=1
fi
if ((fail == 0)); then
    echo "demo.sh: every route answered as expected; no heap use inside handler code"
fi
exit $fail
