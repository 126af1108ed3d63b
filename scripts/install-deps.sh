#!/usr/bin/env bash
# Installs the Debian 12 packages libnea needs to build and test
# (prometheus: its promtool validates the metrics exposition in test_metrics and test_worker;
# python3-wsproto: a second WebSocket implementation test_ws checks the protocol core against;
# libbearssl-dev: TLS; openssl and python3: test_tls makes certificates and runs clients;
# iproute2: ss, for the slots each address holds in test/reliability/slot_flood.py;
# python3-websockets: a real WebSocket client test_wsconn runs against WebSocket routes).
#
#   scripts/install-deps.sh          build + test toolchain
#   scripts/install-deps.sh bench    also the benchmark peers and load tools
#
# Idempotent and fast on repeat: when every package is already installed
# (checked with dpkg-query) apt is not touched at all. Never reads stdin.
set -euo pipefail

packages=(
    build-essential cmake pkg-config
    libuv1-dev node-llhttp libcmocka-dev
    clang libclang-rt-14-dev valgrind curl haproxy iproute2
    libjansson-dev zlib1g-dev libprotobuf-c-dev
    prometheus python3-wsproto python3-websockets
    libbearssl-dev openssl python3
)
bench_packages=(
    wrk nginx libmicrohttpd-dev libh2o-dev gnuplot-nox
    slowhttptest httperf nghttp2-client python3
)

for arg in "$@"; do
    case "$arg" in
    bench) packages+=("${bench_packages[@]}") ;;
    -h | --help)
        sed -n '2,8p' "$0"
        exit 0
        ;;
    *)
        echo "install-deps.sh: unknown argument '$arg' (expected: bench)" >&2
        exit 2
        ;;
    esac
done

missing=()
for pkg in "${packages[@]}"; do
    # "ii " = desired install, currently installed. Anything else (absent,
    # half-configured, removed with config left) needs apt.
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
    if [[ "$status" != ii* ]]; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "install-deps: all ${#packages[@]} packages already installed"
    exit 0
fi

sudo=()
if ((EUID != 0)); then
    if command -v sudo >/dev/null 2>&1; then
        sudo=(sudo -n)
    else
        echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2
        exit 1
    fi
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Wait for a concurrent apt/dpkg instead of failing on its lock.
apt_opts=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" update </dev/null
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y \
    --no-install-recommends "${packages[@]}" </dev/null
