#!/usr/bin/env bash
# Builds the libFuzzer target fuzz_conn (clang, ASan + UBSan) and fuzzes for a while.
#
#   test/fuzz/run.sh [SECONDS]      default 600
#
# Build directory: build-fuzz/ at the top of the checkout (NEA_FUZZ_BUILD_DIR
# overrides). The fuzzer works on a copy of test/fuzz/corpus (plus the
# regressions) in a temporary directory, so the committed corpus only changes by
# hand. Prints execs, exec/s, coverage (cov: and ft: from libFuzzer's last status
# line) and the number of failing inputs. Every crash-, leak-, timeout- or oom-
# input is copied into test/fuzz/regressions/, where fuzz_replay (ctest) replays
# it from then on (unless the same bytes are already kept there). Exits 1 when a
# failing input was found, 2 when the run itself failed.
#
# Extra libFuzzer flags can be passed in NEA_FUZZ_FLAGS, e.g. "-fork=1 -ignore_crashes=1"
# to keep fuzzing past a known crash (a kept regression that still fails stops a
# plain run at once); under -fork, libFuzzer's cov: and ft: count features and are
# not comparable with a plain run's.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
seconds=${1:-600}
build=${NEA_FUZZ_BUILD_DIR:-build-fuzz}
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || ((seconds == 0)); then
    echo "usage: $0 [SECONDS]" >&2
    exit 2
fi

if ! command -v clang >/dev/null 2>&1; then
    ./scripts/install-deps.sh </dev/null
fi
cmake -S . -B "$build" \
    -DCMAKE_C_COMPILER=clang \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DNEA_FUZZ=ON \
    -DNEA_BUILD_TESTS=ON \
    -DNEA_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" --target fuzz_conn --parallel "$(nproc)"
fuzzer="$build/test/fuzz/fuzz_conn"

work=$(mktemp -d "${TMPDIR:-/tmp}/nea-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$work/artifacts"
cp test/fuzz/corpus/* "$work/corpus/"
find test/fuzz/regressions -maxdepth 1 -type f ! -name 'README*' -exec cp {} "$work/corpus/" \;
seeds=$(find "$work/corpus" -type f | wc -l)

# ASan aborts (and libFuzzer records the input) on the first error; UBSan too,
# the code being built with -fno-sanitize-recover=all.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cmd=("$fuzzer" -max_len=4096 -timeout=10 -max_total_time="$seconds" -print_final_stats=1
    -artifact_prefix="$work/artifacts/")
# shellcheck disable=SC2206 # word splitting of the extra flags is intended
cmd+=(${NEA_FUZZ_FLAGS:-} "$work/corpus")
echo "fuzz: ${cmd[*]}"
echo "fuzz: $seeds seed inputs, ${seconds} s"
rc=0
"${cmd[@]}" >"$work/log" 2>&1 || rc=$?

# The last status line, e.g. "#123456 DONE cov: 812 ft: 3001 corp: 290/41Kb ...".
last=$(grep -E '^#[0-9]+' "$work/log" | tail -n 1 || true)
execs=$(grep -E '^stat::number_of_executed_units:' "$work/log" | awk '{print $2}' || true)
rate=$(grep -E '^stat::average_exec_per_sec:' "$work/log" | awk '{print $2}' || true)
# -fork=N runs print no stat:: lines: take the count from the status line.
execs=${execs:-$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$last")}
rate=${rate:-$(sed -nE 's/.* exec\/s:? ([0-9]+).*/\1/p' <<<"$last")}
cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
corp=$(sed -nE 's/.* corp: ([^ ]+).*/\1/p' <<<"$last")

found=0 kept=0
mkdir -p test/fuzz/regressions
for f in "$work"/artifacts/*; do
    [[ -e "$f" ]] || continue
    name=$(basename "$f")
    case "$name" in
    crash-* | leak-* | timeout-* | oom-*)
        found=$((found + 1))
        # An input already kept (same bytes) is a known, still open failure.
        known=""
        for r in test/fuzz/regressions/*; do
            if cmp -s "$f" "$r"; then
                known=$r
                break
            fi
        done
        if [[ -n "$known" ]]; then
            echo "fuzz: $name is the kept regression $known (still failing)"
        else
            cp "$f" "test/fuzz/regressions/$name"
            echo "fuzz: kept test/fuzz/regressions/$name"
            kept=$((kept + 1))
        fi
        ;;
    esac
done

echo "fuzz: execs ${execs:-?} (${rate:-?} exec/s), cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}, crashes $found ($kept new)"
if ((found > 0)); then
    echo "fuzz: failing input(s) found; libFuzzer's report:"
    grep -nE -A40 'ERROR: |runtime error|invariant violated|==[0-9]+==' "$work/log" | head -n 120
    exit 1
fi
if ((rc != 0)); then
    echo "fuzz: the fuzzer exited with status $rc and no failing input; its log ends:"
    tail -n 40 "$work/log"
    exit 2
fi
