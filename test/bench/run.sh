#!/usr/bin/env bash
# libnea benchmark driver: nea-demo against nginx, libmicrohttpd, libh2o and
# a plain libuv + llhttp + malloc server, on the same machine, in one run.
#
#   test/bench/run.sh [NEA_DEMO] [--quick] [--out DIR] [--build DIR]
#
#   NEA_DEMO     nea-demo binary (default: build/examples/nea-demo); when it
#                does not exist the run goes on with the peers only
#   --quick      1 round x 3 s per cell (smoke test) instead of 3 x 10 s
#   --out DIR    results: results.md, results.csv, bench.svg, raw/, logs/
#                (default /tmp/nea-bench-out)
#   --build DIR  where build.sh puts the peers (default /tmp/nea-bench-build)
#
# Environment: NEA_BENCH_PORT (first port, default 20080; the run uses the
# next 30), NEA_DEMO_ARGS (replaces nea-demo's sizing flags, see below).
#
# Every server runs pinned to CPU 0 (taskset -c 0), wrk to CPU 1. Rounds are
# interleaved: round r runs every workload on every server before round r+1.
# See test/bench/README.md for what each workload and column means.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

nea=$repo/build/examples/nea-demo
out=/tmp/nea-bench-out
build=/tmp/nea-bench-build
quick=0
while (($#)); do
    case "$1" in
    --quick) quick=1 ;;
    --out)
        out=${2:?--out needs a directory}
        shift
        ;;
    --build)
        build=${2:?--build needs a directory}
        shift
        ;;
    -h | --help)
        sed -n '2,23p' "$0"
        exit 0
        ;;
    -*)
        echo "run.sh: unknown option $1" >&2
        exit 2
        ;;
    *) nea=$1 ;;
    esac
    shift
done

if ((quick)); then
    rounds=1 dur=3 pressure_dur=3
else
    rounds=3 dur=10 pressure_dur=5
fi
zero_count=100000     # mixed requests counted in the zero-allocations phase
control_count=10000   # the same mix against uvmalloc, to show the counter works
port_base=${NEA_BENCH_PORT:-20080}
# Arena big enough for /alloc/50 and the 1000-line /svg (body + document).
read -r -a nea_args <<<"${NEA_DEMO_ARGS:---prefault --arena-size 256k --arenas 128 --connections 256 --memory-limit 1G}"

# Ports inside the kernel's ephemeral range can be taken by wrk's own client
# sockets (the Connection: close workload opens tens of thousands).
read -r eph_lo eph_hi </proc/sys/net/ipv4/ip_local_port_range
if ((port_base + 30 >= eph_lo && port_base <= eph_hi)); then
    echo "run.sh: NEA_BENCH_PORT=$port_base overlaps the ephemeral port range $eph_lo-$eph_hi; pick a lower one" >&2
    exit 2
fi

for tool in wrk nginx taskset python3 curl; do
    if ! command -v "$tool" >/dev/null; then
        echo "run.sh: $tool not found (scripts/install-deps.sh bench installs the benchmark tools)" >&2
        exit 1
    fi
done
if (($(nproc) < 2)); then
    echo "run.sh: needs 2 CPUs (server on CPU 0, wrk on CPU 1)" >&2
    exit 1
fi

mkdir -p "$out/raw" "$out/logs"
rm -f "$out"/raw/* "$out"/logs/*
tmp=$(mktemp -d /tmp/nea-bench.XXXXXX)

echo "== building peers into $build"
"$here/build.sh" "$build" >"$out/logs/build.log" 2>&1 || {
    cat "$out/logs/build.log" >&2
    exit 1
}

# ---------------------------------------------------------------- servers

declare -A PID PORT
started=()

stop_server() { # name: TERM, wait up to 5 s, then KILL
    local name=$1 pid=${PID[$1]:-}
    [[ -n $pid ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null || true
    PID[$name]=
}

cleanup() {
    local name
    for name in "${started[@]}"; do
        stop_server "$name"
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_open() { # port: 0 when something accepts on 127.0.0.1:port
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# start_server NAME PORT CMD...: starts CMD on CPU 0, waits (bounded) until
# the port accepts. Fails when the port is already taken or CMD dies.
start_server() {
    local name=$1 port=$2
    shift 2
    if port_open "$port"; then
        echo "run.sh: port $port is already in use (set NEA_BENCH_PORT)" >&2
        return 1
    fi
    taskset -c 0 "$@" >"$out/logs/$name.log" 2>&1 &
    PID[$name]=$!
    PORT[$name]=$port
    started+=("$name")
    for _ in $(seq 200); do # up to 10 s
        if ! kill -0 "${PID[$name]}" 2>/dev/null; then
            echo "run.sh: $name exited during start-up:" >&2
            cat "$out/logs/$name.log" >&2
            return 1
        fi
        port_open "$port" && return 0
        sleep 0.05
    done
    echo "run.sh: $name did not open port $port within 10 s" >&2
    return 1
}

cpu_ticks() { # utime + stime of the whole process (all threads), in clock ticks
    local line
    line=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' <<<"$line"
}
hwm_kb() { # peak resident set size so far, kB
    awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null
}
reset_hwm() { # restart the VmHWM count at the current RSS (Linux >= 4.0)
    echo 5 >"/proc/$1/clear_refs" 2>/dev/null || true
}
clk_tck=$(getconf CLK_TCK)

# A server that dies is reported (with its exit status or signal), recorded
# in raw/deaths.txt and left out of the rest of the run; the others go on.
declare -A DEAD
check_alive() { # server what: 0 when alive, else records the death
    local s=$1 pid=${PID[$1]} st=0 how state
    # Alive: signalable and not a zombie waiting to be reaped.
    state=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$pid/stat" 2>/dev/null || true)
    [[ -n $state && $state != Z ]] && return 0
    wait "$pid" 2>/dev/null || st=$?
    if ((st > 128)); then
        how="killed by SIG$(kill -l $((st - 128)) 2>/dev/null || echo $((st - 128)))"
    else
        how="exited with status $st"
    fi
    DEAD[$s]="$how during $2"
    PID[$s]=
    echo "!! $s $how during $2: left out of the rest of the run (log: $out/logs/$s.log)" >&2
    echo "$s,$how during $2" >>"$out/raw/deaths.txt"
    return 1
}

servers=()
nea_reserved=
nea_status=missing
nea_cmd=("$nea")
if [[ -x $nea ]] && ! start_server nea-demo "$port_base" "${nea_cmd[@]}" --port "$port_base" "${nea_args[@]}"; then
    echo "== nea-demo at $nea FAILED to start (log above): SKIPPING it, peers only"
    nea_status="failed to start: $(tr '\n' ' ' <"$out/logs/nea-demo.log")"
    stop_server nea-demo
    nea=
elif [[ -x $nea ]]; then
    nea_status=ok
    # The demo prints its plan on its first line: wait for it (bounded).
    for _ in $(seq 100); do
        grep -q 'listening on' "$out/logs/nea-demo.log" && break
        sleep 0.05
    done
    nea_line=$(grep -m1 'listening on' "$out/logs/nea-demo.log" || true)
    nea_reserved=$(sed -n 's/.*reserved=\([0-9]*\).*/\1/p' <<<"$nea_line")
    echo "== nea-demo: $nea_line"
    if [[ -z $nea_reserved ]]; then
        echo "run.sh: nea-demo printed no reserved= figure" >&2
        exit 1
    fi
    servers+=(nea-demo)
else
    echo "== nea-demo not found at $nea: SKIPPING it (peers only; build libnea with examples, or pass its path)"
fi

mkdir -p "$tmp/nginx"
sed "s|@PORT@|$((port_base + 1))|g; s|@DIR@|$tmp/nginx|g" "$here/peers/nginx.conf.in" >"$tmp/nginx/nginx.conf"
start_server nginx $((port_base + 1)) nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log"
start_server mhd $((port_base + 2)) "$build/mhd" --port $((port_base + 2))
start_server h2o $((port_base + 3)) "$build/h2o" --port $((port_base + 3))
start_server uvmalloc $((port_base + 4)) "$build/uvmalloc" --port $((port_base + 4))
servers+=(nginx mhd h2o uvmalloc)

# ------------------------------------------------------------- workloads

workloads=(hello pipeline close alloc svg)
supports() { # server workload
    [[ $1 != nginx ]] || [[ $2 == hello || $2 == pipeline || $2 == close ]]
}
set_wrk_args() { # port workload -> WRK_ARGS: wrk arguments after the common ones, URL last
    local url=http://127.0.0.1:$1
    case "$2" in
    hello) WRK_ARGS=("$url/hello") ;;
    pipeline) WRK_ARGS=(-s "$here/pipeline.lua" "$url/hello") ;;
    close) WRK_ARGS=(-H "Connection: close" "$url/hello") ;;
    alloc) WRK_ARGS=(-s "$here/alloc.lua" "$url/") ;;
    svg) WRK_ARGS=(-s "$here/svg.lua" "$url/svg") ;;
    esac
}

# parse_wrk FILE -> "requests rps p50_ms p99_ms non2xx socket_errors"
parse_wrk() {
    awk '
        function ms(v) {
            if (v ~ /us$/) return v / 1000
            if (v ~ /ms$/) return v + 0
            if (v ~ /m$/) return v * 60000
            if (v ~ /s$/) return v * 1000
            return v + 0
        }
        / requests in / { req = $1 }
        /^Requests\/sec:/ { rps = $2 }
        /^ +50%/ { p50 = ms($2) }
        /^ +99%/ { p99 = ms($2) }
        /Non-2xx or 3xx responses:/ { bad = $NF }
        /Socket errors:/ {
            for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) { gsub(",", "", $i); err += $i }
        }
        # wrk 4.1 sometimes prints 0.00us percentiles (wg/wrk#354, often with
        # pipelining): a zero latency is "not measured", not a number.
        function lat(v) { return v > 0 ? sprintf("%.3f", v) : "nan" }
        END { printf "%d %s %s %s %d %d\n", req, rps, lat(p50), lat(p99), bad, err }
    ' "$1"
}

# run_wrk NAME DURATION CONNECTIONS ARGS...: wrk on CPU 1, bounded in time
run_wrk() {
    local file=$1 d=$2 c=$3
    shift 3
    timeout $((d + 30)) taskset -c 1 wrk -t 1 -c "$c" -d "${d}s" --latency "$@" >"$file" 2>&1 || {
        echo "run.sh: wrk failed, see $file" >&2
        cat "$file" >&2
        return 1
    }
}

echo "cell,server,workload,round,requests,rps,p50_ms,p99_ms,non2xx,socket_errors,cpu_ticks,cpu_us_per_req,peak_rss_kb" \
    >"$out/raw/cells.csv"

run_cell() { # server workload round
    local s=$1 w=$2 r=$3 pid=${PID[$1]} file t0 t1 hwm res cpu_us
    file=$out/raw/wrk-$s-$w-$r.txt
    [[ -z ${DEAD[$s]:-} ]] || return 0
    check_alive "$s" "the previous cell or its connections' close" || return 0
    reset_hwm "$pid"
    t0=$(cpu_ticks "$pid") || { check_alive "$s" "$w round $r" || return 0; }
    set_wrk_args "${PORT[$s]}" "$w"
    run_wrk "$file" "$dur" 64 "${WRK_ARGS[@]}"
    # The server can die at any moment, also between these reads.
    if ! t1=$(cpu_ticks "$pid") || ! hwm=$(hwm_kb "$pid") || [[ -z $t1 || -z $hwm ]]; then
        check_alive "$s" "$w round $r" || return 0
        echo "run.sh: cannot read /proc/$pid of $s" >&2
        exit 1
    fi
    read -r req rps p50 p99 bad err < <(parse_wrk "$file")
    cpu_us=$(awk -v t=$((t1 - t0)) -v hz="$clk_tck" -v n="$req" 'BEGIN { printf "%.3f", n ? t * 1e6 / hz / n : 0 }')
    echo "$s:$w:$r,$s,$w,$r,$req,$rps,$p50,$p99,$bad,$err,$((t1 - t0)),$cpu_us,$hwm" >>"$out/raw/cells.csv"
    printf '   %-9s %-9s round %d: %10.0f req/s  p50 %7.3f ms  p99 %8.3f ms  cpu %7.2f us/req  rss %6d kB%s\n' \
        "$s" "$w" "$r" "$rps" "$p50" "$p99" "$cpu_us" "$hwm" "$( ((bad + err)) && echo "  non-2xx $bad, socket errors $err")"
}

echo "== warm-up (1 s of /hello per server, not counted)"
for s in "${servers[@]}"; do
    run_wrk "$out/raw/warmup-$s.txt" 1 64 "http://127.0.0.1:${PORT[$s]}/hello"
done

# Peak RSS from start-up and warm-up (VmHWM is reset before every cell).
declare -A START_HWM
for s in "${servers[@]}"; do
    START_HWM[$s]=$(hwm_kb "${PID[$s]}")
done
{
    echo "server,pid,port,startup_hwm_kb,reserved_bytes"
    for s in "${servers[@]}"; do
        r=
        [[ $s == nea-demo ]] && r=$nea_reserved
        echo "$s,${PID[$s]},${PORT[$s]},${START_HWM[$s]},$r"
    done
} >"$out/raw/servers.csv"

echo "== throughput: $rounds round(s) x ${#workloads[@]} workloads x ${#servers[@]} servers x ${dur} s"
for ((r = 1; r <= rounds; r++)); do
    for w in "${workloads[@]}"; do
        for s in "${servers[@]}"; do
            supports "$s" "$w" && run_cell "$s" "$w" "$r"
        done
    done
done

# ------------------------------------------------- memory under pressure

echo "== memory under pressure: 64 concurrent GET /alloc/4096 (4 MiB each) for ${pressure_dur} s"
echo "server,requests,rps,non2xx,socket_errors,peak_rss_kb,reserved_bytes" >"$out/raw/pressure.csv"
for s in "${servers[@]}"; do
    [[ $s == nginx || -n ${DEAD[$s]:-} ]] && continue
    check_alive "$s" "the end of the throughput phase" || continue
    pid=${PID[$s]}
    reset_hwm "$pid"
    file=$out/raw/wrk-$s-pressure.txt
    run_wrk "$file" "$pressure_dur" 64 "http://127.0.0.1:${PORT[$s]}/alloc/4096"
    if ! hwm=$(hwm_kb "$pid") || [[ -z $hwm ]]; then
        check_alive "$s" "the pressure phase" || continue
        exit 1
    fi
    read -r req rps p50 p99 bad err < <(parse_wrk "$file")
    r=
    [[ $s == nea-demo ]] && r=$nea_reserved
    echo "$s,$req,$rps,$bad,$err,$hwm,$r" >>"$out/raw/pressure.csv"
    printf '   %-9s %8d requests (%d non-2xx, %d socket errors)  peak RSS %7d kB%s\n' "$s" "$req" "$bad" "$err" "$hwm" \
        "${r:+  (reserved $((r / 1024)) kB)}"
done

# report.py takes each server's whole-run peak RSS as the largest of the
# start-up/warm-up peak, the cells' peaks and the pressure peak.
for s in "${servers[@]}"; do
    stop_server "$s"
done

# ---------------------------------------------------- zero allocations

# snapshot NAME PID FILE DEST: SIGUSR1 makes alloccount.so write FILE.
snapshot() {
    rm -f "$3"
    kill -USR1 "$2"
    for _ in $(seq 100); do
        [[ -s $3 ]] && cp "$3" "$4" && return 0
        sleep 0.05
    done
    echo "run.sh: $1 wrote no allocation counts (is alloccount.so preloaded?)" >&2
    return 1
}

# zero_phase NAME COUNT BIG_KIB CMD...: warm up 1000 mixed requests,
# snapshot, COUNT mixed requests, snapshot.
zero_phase() {
    local name=$1 count=$2 big=$3 port=$((port_base + 10)) pid counts=$tmp/counts-$1 z=$1-zero
    shift 3
    rm -f "$counts"
    start_server "$z" "$port" env NEA_ALLOCCOUNT_FILE="$counts" LD_PRELOAD="$build/alloccount.so" \
        "$@" --port "$port" || return 1
    pid=${PID[$z]}
    if ! timeout 120 python3 "$here/mixed.py" --port "$port" --count 1000 --big-kib "$big" --deadline 100 \
        >"$out/raw/zero-$name-warmup.txt"; then
        check_alive "$z" "the zero-allocation warm-up" || true
        return 1
    fi
    snapshot "$name" "$pid" "$counts" "$out/raw/zero-$name-before.txt" || return 1
    if ! timeout 330 python3 "$here/mixed.py" --port "$port" --count "$count" --big-kib "$big" --deadline 300 \
        >"$out/raw/zero-$name-run.txt"; then
        check_alive "$z" "the zero-allocation run" || true
        return 1
    fi
    snapshot "$name" "$pid" "$counts" "$out/raw/zero-$name-after.txt" || return 1
    stop_server "$z"
    echo "   $name: $(cat "$out/raw/zero-$name-run.txt")"
}

if [[ -x $nea ]]; then
    echo "== zero allocations: nea-demo under alloccount.so, 1000 warm-up + $zero_count mixed requests"
    zero_phase nea-demo "$zero_count" 100000 "${nea_cmd[@]}" "${nea_args[@]}" ||
        echo "!! zero allocations: the nea-demo phase FAILED (see above and $out/raw/zero-nea-demo-*.txt)" >&2
else
    echo "== zero allocations: nea-demo missing, SKIPPED"
fi
# The control's "too big" requests ask 1 MiB, not 100 MB: uvmalloc would
# really allocate and fill 100 MB each time and the phase would take minutes.
echo "== zero allocations control: uvmalloc under alloccount.so, $control_count mixed requests"
zero_phase uvmalloc "$control_count" 1024 "$build/uvmalloc" ||
    echo "!! zero allocations: the uvmalloc control FAILED" >&2

# ---------------------------------------------------------------- report

{
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "command=test/bench/run.sh $( ((quick)) && echo --quick)"
    echo "rounds=$rounds"
    echo "duration_s=$dur"
    echo "pressure_duration_s=$pressure_dur"
    if [[ $nea_status == ok ]]; then
        echo "nea_demo=$nea ${nea_args[*]}"
    else
        echo "nea_demo=$nea_status"
    fi
    echo "nea_commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "kernel=$(uname -r)"
    echo "cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "wrk=$(wrk -v 2>&1 | head -1 | awk '{ print $2 }')"
    echo "nginx=$(nginx -v 2>&1 | sed 's|.*/||')"
    echo "libmicrohttpd=$(pkg-config --modversion libmicrohttpd)"
    echo "libh2o=$(dpkg-query -W -f='${Version}' libh2o-dev 2>/dev/null || pkg-config --modversion libh2o)"
    echo "libuv=$(pkg-config --modversion libuv)"
} >"$out/raw/env.txt"

python3 "$here/report.py" "$out"
