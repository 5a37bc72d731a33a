#!/usr/bin/env bash
# An upstream outage: what a failed request costs the proxy. gatehouse and an nginx reverse
# proxy, each 1 thread / 1 worker, route every request to an upstream port nothing listens
# on (connection refused); hey sends keep-alive requests over plain HTTP/1.1 and over TLS.
#
#   bash loadtest/dead_upstream.sh                      # 2 × 5 s per proxy, ≈ 30 s
#   DURATION=2 CONNS=8 BUILD=0 bash loadtest/dead_upstream.sh
#   BASELINE_BIN=/path/to/older/gatehouse bash loadtest/dead_upstream.sh   # a third peer
#
# For each proxy and scheme: answers per second, how many were 502, and the proxy's CPU
# time (utime + stime from /proc, nginx's master and worker summed) per answer. A proxy
# that closes the client connection after each failure makes the client reconnect per
# request (and, over TLS, redo its handshake): the TLS row shows it. Both proxies log each
# failure to a file (nginx's error log, gatehouse's stderr). The proxy runs alone on core 0
# when there are 2+ cores (PIN=1), hey on core 1.
# Report: loadtest/results/<stamp>-dead-upstream.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source=loadtest/common.sh
source "$HERE/common.sh"

DURATION="${DURATION:-5}"
CONNS="${CONNS:-32}"
BUILD="${BUILD:-1}"
GATEHOUSE_BIN="${GATEHOUSE_BIN:-$ROOT/target/release/gatehouse}"
BASELINE_BIN="${BASELINE_BIN:-}"
RESULTS="${RESULTS:-$HERE/results}"
for n in "$DURATION" "$CONNS"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "DURATION and CONNS must be positive integers"
done

need_tools nginx:nginx hey:hey curl:curl openssl:openssl python3:python3
[[ "$BUILD" == 0 ]] || (cd "$ROOT" && cargo build --release --locked --bin gatehouse >&2)
[[ -x "$GATEHOUSE_BIN" ]] || die "no gatehouse binary at $GATEHOUSE_BIN (BUILD=1 builds it)"
[[ -z "$BASELINE_BIN" || -x "$BASELINE_BIN" ]] || die "BASELINE_BIN $BASELINE_BIN is not executable"
make_tmp dead-upstream
pin_layout "hey"

read -r DEAD GH_PORT GH_TLS NGX_PORT NGX_TLS < <(free_ports 5)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$TMP/key.pem" -out "$TMP/cert.pem" -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost 2>/dev/null || die "openssl could not make a certificate"

{
    nginx_head proxy
    echo "    upstream dead { server 127.0.0.1:$DEAD; keepalive 64; }"
    echo "    server {"
    echo "        listen 127.0.0.1:$NGX_PORT;"
    echo "        listen 127.0.0.1:$NGX_TLS ssl;"
    echo "        ssl_certificate $TMP/cert.pem; ssl_certificate_key $TMP/key.pem;"
    echo "        location / { proxy_pass http://dead; proxy_http_version 1.1; proxy_set_header Connection \"\"; }"
    echo "    }"
    echo "}"
} > "$TMP/proxy.conf"

gatehouse_config() {   # $1 = name
    gatehouse_head "$1" "$GH_PORT"
    echo "tls:"
    echo "  listen: [\"127.0.0.1:$GH_TLS\"]"
    echo "  certs: [{ cert: $TMP/cert.pem, key: $TMP/key.pem }]"
    echo "upstreams:"
    echo "  dead: { targets: [\"127.0.0.1:$DEAD\"] }"
    echo "routes:"
    echo "  - { name: all, prefix: /, upstream: dead }"
}

# Until URL gets any HTTP answer (a 502 is the answer here).
wait_answering() {   # $1 = name, $2 = pid, $3 = url, $4 = log file
    for _ in $(seq 300); do
        kill -0 "$2" 2>/dev/null || { tail -n 20 "$4" >&2 || true; die "$1 did not start"; }
        [[ "$(curl -sk -o /dev/null -w '%{http_code}' "$3" 2>/dev/null || true)" =~ ^[1-5][0-9][0-9]$ ]] && return 0
        sleep 0.1
    done
    die "$1 did not answer at $3 after 30 s"
}

ticks() {   # utime + stime of the pids and their children
    local p total=0 t
    for p in "$@" $(pgrep -P "$1" || true); do
        t="$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || true)"
        total=$(( total + ${t:-0} ))
    done
    echo "$total"
}

HZ="$(getconf CLK_TCK)"
ROWS=()
measure() {   # $1 = peer name, $2 = pid, $3 = plain port, $4 = TLS port
    local name="$1" pid="$2" scheme port url t0 t1 out n rps
    for scheme in http https; do
        port="$3"; [[ "$scheme" == https ]] && port="$4"
        url="$scheme://localhost:$port/x"
        t0="$(ticks "$pid")"
        out="$("${LOAD_PIN[@]}" hey -z "${DURATION}s" -c "$CONNS" "$url" 2>&1)" || die "$name: hey failed: $out"
        t1="$(ticks "$pid")"
        n="$(awk '/\[502\]/ { print $2 }' <<< "$out")"
        rps="$(awk '/Requests\/sec/ { print $2 }' <<< "$out")"
        [[ "${n:-0}" -gt 0 ]] || die "$name: no 502 over $scheme:"$'\n'"$out"
        ROWS+=("$name $scheme ${rps:-0} $n $(( t1 - t0 ))")
        log "$name $scheme: ${rps:-?} answers/s, $n × 502, $(( t1 - t0 )) ticks"
    done
}

run_gatehouse() {   # $1 = name, $2 = binary
    gatehouse_config "$1" > "$TMP/$1.yaml"
    "${PROXY_PIN[@]}" env -u PORT RUST_LOG=info "$2" run -c "$TMP/$1.yaml" > "$TMP/$1.log" 2>&1 &
    local pid=$!
    started "$pid" "$1" "$TMP/$1.log"
    wait_answering "$1" "$pid" "http://127.0.0.1:$GH_PORT/x" "$TMP/$1.log"
    measure "$1" "$pid" "$GH_PORT" "$GH_TLS"
    stop "$pid" INT
}

run_gatehouse gatehouse "$GATEHOUSE_BIN"
[[ -z "$BASELINE_BIN" ]] || run_gatehouse gatehouse-baseline "$BASELINE_BIN"
start_nginx proxy "${PROXY_PIN[@]}"
NGINX_PID="$STARTED_PID"
wait_answering nginx "$NGINX_PID" "http://127.0.0.1:$NGX_PORT/x" "$TMP/proxy/logs/error.log"
measure nginx "$NGINX_PID" "$NGX_PORT" "$NGX_TLS"
stop "$NGINX_PID" TERM

mkdir -p "$RESULTS"
OUT="$RESULTS/$(date +%Y%m%d-%H%M%S)-dead-upstream.md"
{
    echo "# An upstream outage: the cost of a failed request ($(date '+%F %H:%M'))"
    echo
    echo "gatehouse $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?') ($GATEHOUSE_BIN)${BASELINE_BIN:+, baseline $BASELINE_BIN}; threads 1, access log off."
    echo "$(nginx -v 2>&1 | sed 's/^nginx version: //'), 1 worker. Every request goes to a port nothing listens on."
    echo "hey -z ${DURATION}s -c $CONNS, keep-alive, HTTP/1.1 (plain and over TLS, P-256 certificate). $LAYOUT."
    echo
    echo "| proxy | scheme | answers/s | 502s | CPU µs per answer |"
    echo "|---|---|---:|---:|---:|"
    for row in "${ROWS[@]}"; do
        read -r name scheme rps n t <<< "$row"
        awk -v name="$name" -v s="$scheme" -v r="$rps" -v n="$n" -v t="$t" -v hz="$HZ" 'BEGIN {
            printf "| %s | %s | %.0f | %d | %.1f |\n", name, s, r, n, t / hz * 1e6 / n }'
    done
} > "$OUT"
cat "$OUT"
log "saved $OUT"
