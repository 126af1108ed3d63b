#!/usr/bin/env bash
# Runs every reliability script of test/reliability in --quick mode (CI) and
# exits non-zero if any of them reports a broken hard invariant (a good
# request not 200, a hog not 500, the server died, a probe failed, slots /
# arenas / fds not back to baseline) or does not finish. Timing targets are
# only reported (WARN): a shared 2-core machine makes them noisy.
#
# usage: test/reliability/run_quick.sh [SCRIPT...]     (default: all seven)
# env:   NEA_REL_BUILD  build dir for nea-demo (Release) and loadgen
#                       (default /tmp/nea-rel-<uid>)
#        NEA_DEMO / NEA_LOADGEN  use these binaries instead of building
#        NEA_REL_OUT    where each script's JSON line is kept
#                       (default $NEA_REL_BUILD/results)
# About 2.5 minutes on the 2-core VM, build included.
set -uo pipefail
exec </dev/null
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=${NEA_REL_BUILD:-/tmp/nea-rel-$(id -u)}
out=${NEA_REL_OUT:-$build/results}
all=(hog_mix overload_sweep recovery_pulse slow_clients fd_flood ceiling soak)
if (($# > 0)); then scripts=("$@"); else scripts=("${all[@]}"); fi
start=$SECONDS

for tool in taskset prlimit timeout; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "run_quick: $tool not found (util-linux / coreutils)" >&2
        exit 1
    fi
done
if ! command -v python3 >/dev/null 2>&1; then
    if ((EUID == 0)); then
        apt-get install -y -q python3 >/dev/null || { echo "run_quick: cannot install python3" >&2; exit 1; }
    else
        echo "run_quick: python3 not found" >&2
        exit 1
    fi
fi

if [[ -z "${NEA_DEMO:-}" ]]; then
    echo "=== run_quick: building nea-demo (Release) in $build"
    cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DNEA_BUILD_TESTS=OFF >/dev/null \
        && cmake --build "$build" --parallel "$(nproc)" --target nea-demo >/dev/null \
        || { echo "run_quick: building nea-demo failed" >&2; exit 1; }
    export NEA_DEMO=$build/examples/nea-demo
fi
if [[ -z "${NEA_LOADGEN:-}" ]]; then
    NEA_LOADGEN=$("$here/build.sh" "$build/reliability" | tail -n 1) \
        || { echo "run_quick: building loadgen failed" >&2; exit 1; }
    export NEA_LOADGEN
fi
export NEA_REL_BUILD=$build
mkdir -p "$out"

declare -A bound=([hog_mix]=120 [overload_sweep]=150 [recovery_pulse]=90 [slow_clients]=120
                  [fd_flood]=60 [ceiling]=90 [soak]=90)
failed=()
for s in "${scripts[@]}"; do
    if [[ ! -x "$here/$s.sh" ]]; then
        echo "run_quick: no script $s.sh" >&2
        failed+=("$s(missing)")
        continue
    fi
    echo "=== run_quick: $s --quick"
    t0=$SECONDS
    # The script bounds itself; timeout is the backstop (+30 s, then KILL).
    timeout --kill-after=10 "$(( ${bound[$s]:-120} + 30 ))" "$here/$s.sh" --quick \
        | tee "$out/$s.log"
    rc=${PIPESTATUS[0]}
    grep '^{"test"' "$out/$s.log" | tail -n 1 >"$out/$s.json"
    echo "=== run_quick: $s exit $rc in $((SECONDS - t0)) s"
    ((rc == 0)) || failed+=("$s(exit $rc)")
done

echo "=== run_quick: summary"
python3 - "$out" "${scripts[@]}" <<'PY'
import json, os, sys
out = sys.argv[1]
for s in sys.argv[2:]:
    p = os.path.join(out, s + ".json")
    try:
        d = json.loads(open(p).read())
    except (OSError, ValueError):
        print(f"  {s:15} no JSON result")
        continue
    bad = [c for c in d["checks"] if c["kind"] == "invariant" and not c["ok"]]
    warn = [c for c in d["checks"] if c["kind"] == "target" and c["ok"] is False]
    print(f"  {s:15} {d['elapsed_s']:6.1f} s  invariants {'ok' if not bad else 'FAILED'}"
          f"  targets warned: {len(warn)}")
    for c in bad:
        print(f"      FAIL {c['check']}: {c['value']} (expect {c['expect']})")
    for c in warn:
        print(f"      warn {c['check']}: {c['value']} (target {c['expect']})")
PY
echo "=== run_quick: $((SECONDS - start)) s total"
if ((${#failed[@]} > 0)); then
    echo "=== run_quick: FAILED: ${failed[*]}"
    exit 1
fi
echo "=== run_quick: passed"
