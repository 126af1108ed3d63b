#!/usr/bin/env bash
# Install test: installs a libnea build tree into a temporary prefix, then builds
# and runs test/install/consumer.c against it twice, through find_package(nea)
# and through pkg-config nea.
#
#   test/install/run.sh [BUILD_DIR]     (default: ./build; CTest passes its own)
#
# Exits 0 on success, 77 (CTest: skipped) when it cannot run here, other non-zero
# on any failure. Removes its temporary directory on every exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=${1:-build}

skip() {
    echo "install test skipped: $*"
    exit 77
}

[[ -f "$build/CMakeCache.txt" ]] || skip "$build is not a configured build directory"
build=$(cd "$build" && pwd)
command -v cmake >/dev/null 2>&1 || skip "cmake not found"
command -v pkg-config >/dev/null 2>&1 || skip "pkg-config not found"

cache_get() {
    # Value of a CMakeCache.txt entry (NAME:TYPE=VALUE), empty when absent.
    sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt" | head -n 1
}

# Build the consumer with the compiler libnea was built with; a sanitized libnea
# needs a sanitized executable (the ASan runtime must be loaded first).
cc=$(cache_get CMAKE_C_COMPILER)
[[ -n "$cc" ]] || cc=${CC:-cc}
command -v "$cc" >/dev/null 2>&1 || skip "C compiler $cc not found"
is_on() {
    case "${1^^}" in
    ON | TRUE | YES | Y | 1) return 0 ;;
    *) return 1 ;;
    esac
}
extra_flags=()
if is_on "$(cache_get NEA_SANITIZE)" || is_on "$(cache_get NEA_FUZZ)"; then
    extra_flags=('-fsanitize=address,undefined' -fno-omit-frame-pointer)
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/nea-install-test.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT
prefix=$tmp/prefix

step() {
    echo "--- $*"
}

step "cmake --install $build --prefix $prefix"
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 || {
    cat "$tmp/install.log"
    echo "install test: cmake --install failed" >&2
    exit 1
}

# GNUInstallDirs picks lib or lib/<multiarch> at configure time: find what was used.
pc=$(find "$prefix" -name nea.pc -path '*/pkgconfig/*' | head -n 1)
config=$(find "$prefix" -name neaConfig.cmake | head -n 1)
[[ -n "$pc" ]] || { echo "install test: nea.pc was not installed" >&2; exit 1; }
[[ -n "$config" ]] || { echo "install test: neaConfig.cmake was not installed" >&2; exit 1; }
[[ -f "$prefix/include/nea.h" ]] || { echo "install test: nea.h was not installed" >&2; exit 1; }
libdir=$(dirname "$(dirname "$pc")")
libs=("$libdir"/libnea.*)
echo "installed: libdir=${libdir#"$prefix"/}: ${libs[*]##*/}"
pc_static=()
[[ -e "$libdir/libnea.so" ]] || pc_static=(--static)

run_consumer() {
    local exe=$1 out rc=0
    out=$(LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$exe") || rc=$?
    if ((rc != 0)); then
        echo "$out"
        echo "install test: $exe exited with status $rc" >&2
        exit 1
    fi
    echo "$out"
    grep -q 'plan total: [1-9]' <<<"$out" || {
        echo "install test: unexpected output from $exe" >&2
        exit 1
    }
}

step "find_package(nea) consumer"
flags="${extra_flags[*]}"
cmake -S "$here" -B "$tmp/consumer-build" \
    -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_C_FLAGS="$flags" \
    -DCMAKE_EXE_LINKER_FLAGS="$flags" \
    -DCMAKE_BUILD_TYPE=Debug >"$tmp/consumer-configure.log" 2>&1 || {
    cat "$tmp/consumer-configure.log"
    echo "install test: configuring the find_package(nea) consumer failed" >&2
    exit 1
}
cmake --build "$tmp/consumer-build" >"$tmp/consumer-build.log" 2>&1 || {
    cat "$tmp/consumer-build.log"
    echo "install test: building the find_package(nea) consumer failed" >&2
    exit 1
}
run_consumer "$tmp/consumer-build/consumer"

step "pkg-config nea consumer"
pc_flags=$(PKG_CONFIG_PATH="$(dirname "$pc")" pkg-config "${pc_static[@]}" --cflags --libs nea)
echo "pkg-config ${pc_static[*]:+${pc_static[*]} }--cflags --libs nea: $pc_flags"
# shellcheck disable=SC2086 # pkg-config output is a list of flags
"$cc" "${extra_flags[@]}" -o "$tmp/consumer-pc" "$here/consumer.c" $pc_flags
run_consumer "$tmp/consumer-pc"

echo "install test passed"
