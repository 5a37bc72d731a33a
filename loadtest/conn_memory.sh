#!/usr/bin/env bash
# Memory per client connection (issue #21, item 5): gatehouse next to an nginx reverse
# proxy, each fresh, 1 thread / 1 worker, the minimal config of run.sh in front of an
# nginx origin answering 2 bytes.
#
#   bash loadtest/conn_memory.sh                          # 10,000 idle, 4,096 busy, ≈ 1 min
#   IDLE=2000 BUSY=1024 BUILD=0 bash loadtest/conn_memory.sh
#
# For each proxy: RSS after start and one request (idle RSS); then IDLE keep-alive client
# connections, each after one answered request, held idle (loadtest/idle_conns.py, which
# fails if the proxy drops one), RSS read once they are all held: (held − idle RSS) / IDLE
# = KiB per idle connection; then a fresh process under wrk -c BUSY for DURATION, RSS
# sampled every 0.2 s, with the established connections counted (wrk really holds them):
# (peak − its RSS after start) / BUSY = KiB per busy connection (its request in flight and
# its share of upstream connections included). The allocator's options come from the
# environment (MIMALLOC_* for gatehouse). Report: loadtest/results/<stamp>-conn-memory.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source=loadtest/common.sh
source "$HERE/common.sh"

IDLE="${IDLE:-10000}"
BUSY="${BUSY:-4096}"
DURATION="${DURATION:-5}"
BUILD="${BUILD:-1}"
GATEHOUSE_BIN="${GATEHOUSE_BIN:-$ROOT/target/release/gatehouse}"
RESULTS="${RESULTS:-$HERE/results}"
for n in "$IDLE" "$BUSY" "$DURATION"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "IDLE, BUSY and DURATION must be positive integers"
done

need_tools nginx:nginx wrk:wrk curl:curl python3:python3 ss:iproute2
[[ "$BUILD" == 0 ]] || (cd "$ROOT" && cargo build --release --locked --bin gatehouse >&2)
[[ -x "$GATEHOUSE_BIN" ]] || die "no gatehouse binary at $GATEHOUSE_BIN (BUILD=1 builds it)"
make_tmp conn-memory
ulimit -n "$(ulimit -Hn)"
(( $(ulimit -n) >= IDLE + BUSY + 1024 )) || die "open-files limit $(ulimit -n) is too low for IDLE + BUSY connections"
PIN=0 pin_layout "nothing"

read -r ORIGIN_PORT GH_PORT NGX_PORT < <(free_ports 3)

{
    nginx_head origin
    echo "    server { listen 127.0.0.1:$ORIGIN_PORT backlog=4096; location / { return 200 \"ok\"; } }"
    echo "}"
} > "$TMP/origin.conf"
start_nginx origin
wait_ready origin "$STARTED_PID" "http://127.0.0.1:$ORIGIN_PORT/" "$TMP/origin/logs/error.log"

{
    nginx_head proxy | sed 's/worker_connections 8192/worker_connections 32768/'
    echo "    upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 512; }"
    echo "    server {"
    echo "        listen 127.0.0.1:$NGX_PORT backlog=4096;"
    echo "        location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection \"\"; }"
    echo "    }"
    echo "}"
} > "$TMP/proxy.conf"

{
    gatehouse_head gatehouse "$GH_PORT"
    echo "upstreams:"
    echo "  origin: { targets: [\"127.0.0.1:$ORIGIN_PORT\"] }"
    echo "routes:"
    echo "  - { name: all, path: /, upstream: origin }"
} > "$TMP/gatehouse.yaml"

established() { ss -Htn state established "( sport = :$1 )" | wc -l; }

# A fresh proxy: sets PROXY_PID and RSS_PIDS (the pids whose RSS counts).
start_proxy() {   # $1 = gatehouse | nginx
    if [[ "$1" == gatehouse ]]; then
        start_gatehouse gatehouse "$GH_PORT"
        PROXY_PID="$STARTED_PID" RSS_PIDS=("$STARTED_PID") PORT_OF="$GH_PORT" STOP_SIG=INT
    else
        start_nginx proxy
        wait_ready proxy "$STARTED_PID" "http://127.0.0.1:$NGX_PORT/" "$TMP/proxy/logs/error.log"
        # shellcheck disable=SC2207
        PROXY_PID="$STARTED_PID" RSS_PIDS=("$STARTED_PID" $(pgrep -P "$STARTED_PID")) PORT_OF="$NGX_PORT" STOP_SIG=TERM
    fi
    curl -sf -o /dev/null "http://127.0.0.1:$PORT_OF/" || die "$1: GET / failed"
    BASE="$(rss_kib "${RSS_PIDS[@]}")"
}

ROWS=()
measure() {   # $1 = gatehouse | nginx: an idle run and a busy run, each on a fresh process
    local name="$1" idle held n busy_base peak=0 conns_peak=0 r c holder wrk_pid rps
    start_proxy "$name"
    idle="$BASE"
    mkfifo "$TMP/$name.hold"
    python3 "$HERE/idle_conns.py" 127.0.0.1 "$PORT_OF" "$IDLE" / < "$TMP/$name.hold" > "$TMP/$name.idle.out" 2>&1 &
    holder=$!
    exec 9> "$TMP/$name.hold"
    for _ in $(seq 1200); do
        grep -q "^held" "$TMP/$name.idle.out" && break
        kill -0 "$holder" 2>/dev/null || { cat "$TMP/$name.idle.out" >&2; die "$name: idle connections failed"; }
        sleep 0.1
    done
    grep -q "^held" "$TMP/$name.idle.out" || die "$name: $IDLE idle connections not held after 120 s"
    n="$(established "$PORT_OF")"
    held="$(rss_kib "${RSS_PIDS[@]}")"
    exec 9>&-
    wait "$holder" || { cat "$TMP/$name.idle.out" >&2; die "$name: the proxy closed an idle connection"; }
    stop "$PROXY_PID" "$STOP_SIG"

    start_proxy "$name"
    busy_base="$BASE"
    wrk -t2 -c"$BUSY" -d"${DURATION}s" "http://127.0.0.1:$PORT_OF/" > "$TMP/$name.wrk" 2>&1 &
    wrk_pid=$!
    while kill -0 "$wrk_pid" 2>/dev/null; do
        r="$(rss_kib "${RSS_PIDS[@]}")"; (( r > peak )) && peak=$r
        c="$(established "$PORT_OF")"; (( c > conns_peak )) && conns_peak=$c
        sleep 0.2
    done
    wait "$wrk_pid" || die "$name: wrk failed: $(cat "$TMP/$name.wrk")"
    stop "$PROXY_PID" "$STOP_SIG"
    rps="$(awk '/Requests\/sec/ { print $2 }' "$TMP/$name.wrk")"
    ROWS+=("$name $idle $n $held $busy_base $conns_peak $peak ${rps:-?}")
    log "$name: idle $idle KiB; $n idle conns: $held KiB; busy: from $busy_base KiB, $conns_peak conns, peak $peak KiB (${rps:-?} req/s)"
}

measure gatehouse
measure nginx

mkdir -p "$RESULTS"
OUT="$RESULTS/$(date +%Y%m%d-%H%M%S)-conn-memory.md"
{
    echo "# Memory per client connection ($(date '+%F %H:%M'))"
    echo
    echo "gatehouse $(git -C "$ROOT" rev-parse --short HEAD) ($GATEHOUSE_BIN), threads 1, run.sh's minimal config;"
    echo "$(nginx -v 2>&1 | sed 's/^nginx version: //'), 1 worker, upstream keepalive 512 (master + worker RSS summed)."
    echo "Idle: $IDLE keep-alive connections, each after one answered request. Busy: wrk -t2 -c$BUSY for ${DURATION}s, 2-byte answers."
    echo
    echo "Each run on a fresh process: KiB per connection = (RSS with the connections − RSS after start) / connections."
    echo
    echo "| proxy | RSS after start MiB | idle conns held | RSS with them MiB | KiB / idle conn | busy conns (peak) | peak RSS MiB | KiB / busy conn | busy req/s |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for row in "${ROWS[@]}"; do
        read -r name idle n held base conns peak rps <<< "$row"
        awk -v name="$name" -v i="$idle" -v h="$held" -v c="$n" -v bb="$base" -v bc="$conns" -v p="$peak" \
            -v b="$BUSY" -v idl="$IDLE" -v r="$rps" 'BEGIN {
            printf "| %s | %.1f | %d | %.1f | %.1f | %d | %.1f | %.1f | %s |\n",
                name, i/1024, c, h/1024, (h-i)/idl, bc, p/1024, (p-bb)/b, r }'
    done
} > "$OUT"
cat "$OUT"
log "saved $OUT"
