#!/usr/bin/env bash
# Per-file line coverage of lib/ by the test suite and the fuzz replays (gcc --coverage).
#
#   test/fuzz/coverage.sh [SOURCE_DIR] [BUILD_DIR]
#
# SOURCE_DIR: the checkout to measure (default: the one holding this script), so an
# older commit can be measured from a detached worktree with this same script:
#     git worktree add /tmp/nea-old <commit>
#     test/fuzz/coverage.sh /tmp/nea-old build-fzcov-old
# BUILD_DIR: default build-fzcov/ at the top of the checkout holding this script.
#
# Configures a Debug build of SOURCE_DIR with gcc and --coverage (no sanitizers, no
# examples), runs every ctest test but the install test (the unit tests and every
# fuzz_replay* test that checkout has, i.e. both fuzz corpora and their regressions),
# then prints one line per lib/ file: lines, lines covered, covered %. Needs gcovr
# (Debian: apt-get install gcovr).
#
# COVERAGE_LABEL=fuzz runs only the tests with that ctest label (here: the fuzz
# replays), to see what the fuzz corpora alone reach; COVERAGE_TESTS=REGEX only the
# tests whose names match (e.g. fuzz_replay_server).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
src=$(cd "${1:-$here}" && pwd)
build=${2:-$here/build-fzcov}
case "$build" in
/*) ;;
*) build="$here/$build" ;;
esac

if ! command -v gcovr >/dev/null 2>&1; then
    echo "coverage: gcovr not found (Debian: apt-get install gcovr)" >&2
    exit 2
fi

cmake -S "$src" -B "$build" \
    -DCMAKE_C_COMPILER=gcc \
    -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_C_FLAGS="--coverage" \
    -DCMAKE_EXE_LINKER_FLAGS="--coverage" \
    -DCMAKE_SHARED_LINKER_FLAGS="--coverage" \
    -DNEA_SANITIZE=OFF \
    -DNEA_FUZZ=OFF \
    -DNEA_BUILD_TESTS=ON \
    -DNEA_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" --parallel "$(nproc)" >/dev/null
find "$build" -name '*.gcda' -delete
label=()
if [[ -n "${COVERAGE_LABEL:-}" ]]; then
    label+=(-L "$COVERAGE_LABEL")
fi
if [[ -n "${COVERAGE_TESTS:-}" ]]; then
    label+=(-R "$COVERAGE_TESTS")
fi
ctest --test-dir "$build" -E '^install$' "${label[@]}" --output-on-failure >"$build/coverage-ctest.log" 2>&1 || {
    echo "coverage: some tests failed (see $build/coverage-ctest.log); coverage is still reported" >&2
}
grep -E '^[0-9]+% tests passed|tests passed' "$build/coverage-ctest.log" | tail -n 1 >&2 || true

# gcovr's text report: File, Lines, Exec, Cover, Missing. Keep the lib/ files.
gcovr --root "$src" --filter "$src/lib/" --object-directory "$build" "$build" 2>/dev/null |
    awk -v src="$src/" '
        /^lib\// || /^TOTAL/ {
            printf "%-22s %6s %6s %6s\n", $1, $2, $3, $4
        }
        BEGIN { printf "%-22s %6s %6s %6s\n", "file", "lines", "exec", "cover" }'
