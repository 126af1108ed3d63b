#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and fuzzes for a while.
#
#   test/fuzz/run.sh [SECONDS] [TARGET]     SECONDS default 600; TARGET conn, server,
#                                           ws, wsconn, tls, https or all (default: every
#                                           one built, SECONDS split evenly)
#
#   conn    fuzz_conn: the request reader and connection state machine, one
#           socketpair per input (corpus/, regressions/)
#   server  fuzz_server: the whole server behind its listener, driven by a script
#           of client ops (corpus_server/, regressions_server/)
#   ws      fuzz_ws: the WebSocket protocol core, no sockets (corpus_ws/,
#           regressions_ws/)
#   wsconn  fuzz_wsconn: WebSocket connections, frames over a socketpair driven by a
#           script (corpus_wsconn/, regressions_wsconn/)
#   tls     fuzz_tls: the TLS engine's input side (corpus_tls/, regressions_tls/);
#           only when BearSSL is installed (libbearssl-dev)
#   https   fuzz_https: the TLS front of a whole server (corpus_https/,
#           regressions_https/); only when BearSSL is installed
#
# Build directory: build-fuzz/ at the top of the checkout (NEA_FUZZ_BUILD_DIR
# overrides). Each fuzzer works on a copy of its target's corpus (plus its
# regressions) in a temporary directory, so the committed corpus only changes by
# hand. Prints, per target, execs, exec/s, coverage (cov: and ft: from libFuzzer's
# last status line) and the number of failing inputs. Every crash-, leak-, timeout-
# or oom- input is copied into the target's regressions directory, where its
# fuzz_replay_<target> ctest replays it from then on (unless the same bytes are
# already kept there). Exits 1 when a failing input was found, 2 when a run itself
# failed.
#
# Extra libFuzzer flags can be passed in NEA_FUZZ_FLAGS, e.g. "-fork=1 -ignore_crashes=1"
# to keep fuzzing past a known crash (a kept regression that still fails stops a
# plain run at once); under -fork, libFuzzer's cov: and ft: count features and are
# not comparable with a plain run's.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
seconds=${1:-600}
which=${2:-all}
build=${NEA_FUZZ_BUILD_DIR:-build-fuzz}
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || ((seconds == 0)); then
    echo "usage: $0 [SECONDS] [conn|server|ws|wsconn|tls|https|all]" >&2
    exit 2
fi
case "$which" in
conn | server | ws | wsconn | tls | https | all) ;;
*)
    echo "usage: $0 [SECONDS] [conn|server|ws|wsconn|tls|https|all]" >&2
    exit 2
    ;;
esac

if ! command -v clang >/dev/null 2>&1; then
    ./scripts/install-deps.sh </dev/null
fi
cmake -S . -B "$build" \
    -DCMAKE_C_COMPILER=clang \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DNEA_FUZZ=ON \
    -DNEA_BUILD_TESTS=ON \
    -DNEA_BUILD_EXAMPLES=OFF >/dev/null
# fuzz_tls exists when the configure step found BearSSL.
have_tls=0
if grep -qE '^NEA_BEARSSL_LIBRARY:FILEPATH=.*bearssl' "$build/CMakeCache.txt"; then
    have_tls=1
fi
case "$which" in
all)
    targets=(conn server ws wsconn)
    ((have_tls)) && targets+=(tls https)
    ;;
tls | https)
    if ((!have_tls)); then
        echo "fuzz $which: BearSSL not found (apt-get install libbearssl-dev)" >&2
        exit 2
    fi
    targets=("$which")
    ;;
*) targets=("$which") ;;
esac
share=$((seconds / ${#targets[@]}))
((share > 0)) || share=1
cmake --build "$build" --target "${targets[@]/#/fuzz_}" --parallel "$(nproc)"

work=$(mktemp -d "${TMPDIR:-/tmp}/nea-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

# ASan aborts (and libFuzzer records the input) on the first error; UBSan too,
# the code being built with -fno-sanitize-recover=all.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

status=0

# fuzz TARGET SECONDS: one libFuzzer run of fuzz_TARGET over a copy of its corpus.
fuzz() {
    local target=$1 secs=$2 corpus regressions dir fuzzer seeds rc=0
    if [[ "$target" == conn ]]; then
        corpus=test/fuzz/corpus regressions=test/fuzz/regressions
    else
        corpus=test/fuzz/corpus_$target regressions=test/fuzz/regressions_$target
    fi
    dir="$work/$target"
    fuzzer="$build/test/fuzz/fuzz_$target"
    mkdir -p "$dir/corpus" "$dir/artifacts" "$regressions"
    cp "$corpus"/* "$dir/corpus/"
    find "$regressions" -maxdepth 1 -type f ! -name 'README*' -exec cp {} "$dir/corpus/" \;
    seeds=$(find "$dir/corpus" -type f | wc -l)

    local cmd=("$fuzzer" -max_len=4096 -timeout=10 -max_total_time="$secs" -print_final_stats=1
        -artifact_prefix="$dir/artifacts/")
    # shellcheck disable=SC2206 # word splitting of the extra flags is intended
    cmd+=(${NEA_FUZZ_FLAGS:-} "$dir/corpus")
    echo "fuzz $target: ${cmd[*]}"
    echo "fuzz $target: $seeds seed inputs, ${secs} s"
    "${cmd[@]}" >"$dir/log" 2>&1 || rc=$?

    # The last status line, e.g. "#123456 DONE cov: 812 ft: 3001 corp: 290/41Kb ...".
    local last execs rate cov ft corp
    last=$(grep -E '^#[0-9]+' "$dir/log" | tail -n 1 || true)
    execs=$(grep -E '^stat::number_of_executed_units:' "$dir/log" | awk '{print $2}' || true)
    rate=$(grep -E '^stat::average_exec_per_sec:' "$dir/log" | awk '{print $2}' || true)
    # -fork=N runs print no stat:: lines: take the count from the status line.
    execs=${execs:-$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$last")}
    rate=${rate:-$(sed -nE 's/.* exec\/s:? ([0-9]+).*/\1/p' <<<"$last")}
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
    corp=$(sed -nE 's/.* corp: ([^ ]+).*/\1/p' <<<"$last")

    local found=0 kept=0 f name known r
    for f in "$dir"/artifacts/*; do
        [[ -e "$f" ]] || continue
        name=$(basename "$f")
        case "$name" in
        crash-* | leak-* | timeout-* | oom-*)
            found=$((found + 1))
            # An input already kept (same bytes) is a known, still open failure.
            known=""
            for r in "$regressions"/*; do
                if cmp -s "$f" "$r"; then
                    known=$r
                    break
                fi
            done
            if [[ -n "$known" ]]; then
                echo "fuzz $target: $name is the kept regression $known (still failing)"
            else
                cp "$f" "$regressions/$name"
                echo "fuzz $target: kept $regressions/$name"
                kept=$((kept + 1))
            fi
            ;;
        esac
    done

    echo "fuzz $target: execs ${execs:-?} (${rate:-?} exec/s), cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}, crashes $found ($kept new)"
    if ((found > 0)); then
        echo "fuzz $target: failing input(s) found; libFuzzer's report:"
        grep -nE -A40 'ERROR: |runtime error|invariant violated|==[0-9]+==' "$dir/log" | head -n 120
        status=1
    elif ((rc != 0)); then
        echo "fuzz $target: the fuzzer exited with status $rc and no failing input; its log ends:"
        tail -n 40 "$dir/log"
        ((status == 1)) || status=2
    fi
}

for t in "${targets[@]}"; do
    fuzz "$t" "$share"
done
exit "$status"
