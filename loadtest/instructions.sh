#!/usr/bin/env bash
# Instructions per proxied request, the noise-free figure: gatehouse (minimal config), a
# bare Pingora proxy (examples/bare_pingora.rs) and nginx as a reverse proxy (one worker,
# upstream keepalive, as in run.sh) run under callgrind, a fixed number of
# requests goes through each after a warm-up, and the user-space instructions executed in
# that window are divided by the request count. Also prints the top functions by inclusive
# cost, to show where the instructions go.
#
#   bash loadtest/instructions.sh                     # 20 000 requests each, ≈ 3 min
#   REQUESTS=5000 PEERS=gatehouse bash loadtest/instructions.sh
#   CONFIG=full bash loadtest/instructions.sh         # gatehouse with JWT + rate limit + log + metrics
#   PROTO=h2 PEERS="nginx gatehouse" bash loadtest/instructions.sh   # HTTP/2 over TLS (h2load)
#   PEERS="pingap gatehouse" bash loadtest/instructions.sh          # Pingap (minimal config, h1)
#
# Knobs: REQUESTS=20000 WARMUP=2000 CONNS=8 SIZE=2 (2 = `return 200 "ok"`, or Nk)
#        PEERS="nginx pingora gatehouse" TOP=25 CONFIG=minimal|full BUILD=1
#        CALLGRIND_ARGS='--separate-callers=8' (more callgrind options; with KEEP_TMP=1, to
#        see through which calls a cost is reached: callgrind_annotate <tmp>/<peer>.callgrind.1)
#        GATEHOUSE_TOP='work_stealing: false' (more top-level YAML for gatehouse's config)
#        RESULTS=loadtest/results (where the report goes) GATEHOUSE_BIN PINGORA_BIN
#        PINGAP_BIN (default: `pingap` on the PATH, else target/pingap/bin/pingap, which
#        `PEERS=pingap bash loadtest/run.sh` installs; this script installs nothing)
#        PROTO=h1|h2: h2 = the client speaks HTTP/2 over TLS (ALPN h2) to the proxy, h2load
#        with CONNS connections x STREAMS (10) concurrent streams; both proxies use the same
#        ECDSA P-256 certificate, so that the CONNS handshakes in the window cost little
#        beside the requests (bare Pingora has no TLS listener: not a peer with h2).
# Needs: valgrind (callgrind, callgrind_control, callgrind_annotate), nginx, hey, curl;
#        with PROTO=h2 also h2load (nghttp2-client) and openssl.
# Output: stdout and loadtest/results/<stamp>-instructions.md (the raw profiles stay in a
# temp dir, KEEP_TMP=1 keeps it).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
REQUESTS="${REQUESTS:-20000}"
WARMUP="${WARMUP:-2000}"
CONNS="${CONNS:-8}"
SIZE="${SIZE:-2}"
PEERS="${PEERS:-nginx pingora gatehouse}"
TOP="${TOP:-25}"
CONFIG="${CONFIG:-minimal}"
BUILD="${BUILD:-1}"
GATEHOUSE_TOP="${GATEHOUSE_TOP:-}"
RESULTS="${RESULTS:-$HERE/results}"
PROTO="${PROTO:-h1}"
STREAMS="${STREAMS:-10}"
GATEHOUSE_BIN="${GATEHOUSE_BIN:-$ROOT/target/release/gatehouse}"
PINGORA_BIN="${PINGORA_BIN:-$ROOT/target/release/examples/bare_pingora}"
PINGAP_BIN="${PINGAP_BIN:-$(command -v pingap 2>/dev/null || echo "$ROOT/target/pingap/bin/pingap")}"

die() { echo "error: $*" >&2; exit 1; }
# hey sends n / c requests on each of its c connections: keep the counts exact.
REQUESTS=$(( REQUESTS / CONNS * CONNS ))
WARMUP=$(( WARMUP / CONNS * CONNS ))
log() { echo "$*" >&2; }
missing=()
case "$PROTO" in
    h1) ;;
    h2) [[ " $PEERS " != *" pingap "* ]] || die "the pingap peer is configured for h1 only: PEERS without pingap for PROTO=h2"
        for tool in h2load openssl; do
            command -v "$tool" >/dev/null || die "missing: $tool (Debian: apt-get install nghttp2-client openssl)"
        done ;;
    *) die "PROTO must be h1 or h2" ;;
esac
for tool in valgrind callgrind_control callgrind_annotate nginx hey curl; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        log "installing: valgrind nginx-light hey curl (missing: ${missing[*]})"
        apt-get install -y --no-install-recommends valgrind nginx-light hey curl >&2
    else
        die "missing: ${missing[*]} (Debian: apt-get install valgrind nginx-light hey curl)"
    fi
fi
if [[ "$BUILD" == 1 ]]; then
    (cd "$ROOT" && cargo build --release --locked && cargo build --release --locked --examples) >&2
fi

TMP="$(mktemp -d)"
chmod 755 "$TMP"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ "${KEEP_TMP:-0}" == 1 ]] && log "kept $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

read -r ORIGIN_PORT PROXY_PORT PLAIN_PORT < <(python3 "$HERE/helper.py" ports 3)
SCHEME=http
if [[ "$PROTO" == h2 ]]; then
    SCHEME=https
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
        -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
fi
mkdir -p "$TMP/origin/logs" "$TMP/www"
case "$SIZE" in
    2) path=/ ;;
    *k) head -c $(( ${SIZE%k} * 1024 )) /dev/zero | tr '\0' x > "$TMP/www/$SIZE"; path="/$SIZE" ;;
    *) die "SIZE must be 2 or Nk" ;;
esac
cat > "$TMP/origin.conf" <<EOF
worker_processes 1;
pid $TMP/origin/nginx.pid;
error_log $TMP/origin/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        root $TMP/www;
        location = / { return 200 "ok"; }
    }
}
EOF
nginx -p "$TMP/origin" -c "$TMP/origin.conf" -g 'daemon off;' 2> "$TMP/origin/logs/stderr" &
PIDS+=($!)

gatehouse_config() {
    if [[ "$PROTO" == h2 ]]; then
        cat <<EOF
listen: ["127.0.0.1:$PLAIN_PORT"]
tls: { listen: ["127.0.0.1:$PROXY_PORT"], certs: [{ cert: $TMP/cert.pem, key: $TMP/key.pem }] }
EOF
    else
        echo "listen: [\"127.0.0.1:$PROXY_PORT\"]"
    fi
    cat <<EOF
threads: 1
pid_file: $TMP/gatehouse.pid
upgrade_sock: $TMP/gatehouse_upgrade.sock
EOF
    if [[ "$CONFIG" == full ]]; then
        cat <<EOF
access_log: true
metrics: true
admin: { listen: "" }
auth: { jwt: { secret: "instructions-secret-0123456789abcdef", algorithms: [HS256] } }
EOF
    else
        printf 'access_log: false\nmetrics: false\nadmin: { listen: "" }\n'
    fi
    [[ -z "$GATEHOUSE_TOP" ]] || printf '%s\n' "$GATEHOUSE_TOP"
    cat <<EOF
upstreams:
  origin: { targets: ["127.0.0.1:$ORIGIN_PORT"], keepalive_timeout: 60s }
routes:
  - name: bench
    prefix: /
    upstream: origin
EOF
    if [[ "$CONFIG" == full ]]; then
        printf '    auth: jwt\n    rate_limit: { requests: 1000000, per: 1s, key: ip, scope: local }\n'
    fi
}

# Pingap with the minimal config's equivalent: run.sh's `pingap` peer (pingap_config.sh).
# shellcheck source=loadtest/pingap_config.sh
source "$HERE/pingap_config.sh"
if [[ " $PEERS " == *" pingap "* ]]; then
    [[ "$CONFIG" == minimal ]] || die "the pingap peer has the minimal config only (CONFIG=minimal)"
    [[ -x "$PINGAP_BIN" ]] || die "no pingap at $PINGAP_BIN: set PINGAP_BIN, or install it with PEERS=pingap bash loadtest/run.sh"
fi

# nginx as the reverse proxy, in one process (no master) so that callgrind sees the worker.
mkdir -p "$TMP/nginx/logs"
cat > "$TMP/nginx.conf" <<EOF
worker_processes 1;
master_process off;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 1000000;
    upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$PROXY_PORT$([[ "$PROTO" == h2 ]] && echo " ssl http2");
$([[ "$PROTO" == h2 ]] && printf '        ssl_certificate %s;\n        ssl_certificate_key %s;\n' "$TMP/cert.pem" "$TMP/key.pem")
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF

# Starts $1 under callgrind with instrumentation off; sets VG_PID.
start_under_callgrind() {
    local peer="$1" cmd=()
    case "$peer" in
        gatehouse)
            gatehouse_config > "$TMP/gatehouse.yaml"
            cmd=("$GATEHOUSE_BIN" run -c "$TMP/gatehouse.yaml") ;;
        nginx)
            cmd=(nginx -p "$TMP/nginx" -c "$TMP/nginx.conf") ;;
        pingora)
            cmd=("$PINGORA_BIN" --listen "127.0.0.1:$PROXY_PORT" --upstream "127.0.0.1:$ORIGIN_PORT" --threads 1 --dir "$TMP")
            [[ "$PROTO" == h2 ]] && cmd+=(--tls "$TMP/cert.pem,$TMP/key.pem") ;;
        pingap)
            pingap_config pingap "$PROXY_PORT"
            cmd=("$PINGAP_BIN" -c "$TMP/pingap.toml") ;;
        *) die "unknown peer $peer" ;;
    esac
    # shellcheck disable=SC2086 # CALLGRIND_ARGS is a list of options
    valgrind --tool=callgrind --instr-atstart=no --separate-threads=no ${CALLGRIND_ARGS:-} \
        --callgrind-out-file="$TMP/$peer.callgrind" "${cmd[@]}" > "$TMP/$peer.log" 2>&1 &
    VG_PID=$!
    PIDS+=("$VG_PID")
    for _ in $(seq 600); do
        # Any HTTP answer means it serves (the full config answers 401 without a token).
        [[ "$(curl -sk -o /dev/null -w '%{http_code}' "$SCHEME://127.0.0.1:$PROXY_PORT$path")" != 000 ]] && return 0
        kill -0 "$VG_PID" 2>/dev/null || { cat "$TMP/$peer.log" >&2; die "$peer exited under valgrind"; }
        sleep 0.1
    done
    cat "$TMP/$peer.log" >&2
    die "$peer did not answer under valgrind within 60 s"
}

# Sends exactly $1 requests (hey: -n is the total over all connections); fails on any
# non-200 answer so that a broken proxy cannot look cheap.
send() {
    local n="$1" out
    if [[ "$PROTO" == h2 ]]; then
        out="$(h2load -n "$n" -c "$CONNS" -m "$STREAMS" ${TOKEN:+-H "Authorization: Bearer $TOKEN"} "https://127.0.0.1:$PROXY_PORT$path")"
        grep -q "Application protocol: h2" <<<"$out" || die "the proxy did not negotiate h2, h2load said:
$out"
        grep -q "status codes: $n 2xx" <<<"$out" || die "expected $n responses with status 2xx, h2load said:
$out"
        return 0
    fi
    out="$(hey -n "$n" -c "$CONNS" ${TOKEN:+-H "Authorization: Bearer $TOKEN"} "http://127.0.0.1:$PROXY_PORT$path")"
    grep -q "\[200\]\s*$n responses" <<<"$out" || die "expected $n responses with status 200, hey said:
$out"
}

declare -A IR PER_REQ
report_top=()
for peer in $PEERS; do
    TOKEN=""
    if [[ "$peer" == gatehouse && "$CONFIG" == full ]]; then
        gatehouse_config > "$TMP/gatehouse.yaml"
        TOKEN="$(env -u PORT "$GATEHOUSE_BIN" token -c "$TMP/gatehouse.yaml" --sub bench --ttl 1h)"
    fi
    log "$peer: starting under callgrind"
    start_under_callgrind "$peer"
    log "$peer: warm-up, $WARMUP requests"
    send "$WARMUP"
    callgrind_control -z "$VG_PID" >/dev/null 2>&1        # zero the counters
    callgrind_control -i on "$VG_PID" >/dev/null 2>&1
    log "$peer: measuring, $REQUESTS requests over $CONNS connections"
    send "$REQUESTS"
    callgrind_control -i off "$VG_PID" >/dev/null 2>&1
    callgrind_control -d "measured" "$VG_PID" >/dev/null 2>&1
    # The dump is written: no need to wait for a graceful shutdown (bare Pingora's waits
    # for its grace period).
    kill -KILL "$VG_PID" 2>/dev/null || true
    wait "$VG_PID" 2>/dev/null || true
    dump="$TMP/$peer.callgrind.1"   # the measured window (.1: the first explicit dump)
    [[ -s "$dump" ]] || die "callgrind wrote no dump of the measured window ($dump)"
    callgrind_annotate "$dump" > "$TMP/$peer.self.txt" 2>/dev/null || true
    callgrind_annotate --inclusive=yes "$dump" > "$TMP/$peer.inclusive.txt" 2>/dev/null || true
    ir="$(sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' "$TMP/$peer.self.txt" | tr -d ,)"
    [[ "$ir" =~ ^[0-9]+$ ]] || die "no instruction total in $dump (callgrind_annotate output: $TMP/$peer.self.txt)"
    IR[$peer]="$ir"
    PER_REQ[$peer]="$(( ir / REQUESTS ))"
    log "$peer: $ir instructions, ${PER_REQ[$peer]} per request"
    report_top+=("### $peer: top $TOP functions by inclusive instructions (% of the total)" "" '```')
    # Lines: "1,234,567 (12.34%)  file:function [object]"; the file path is dropped.
    while IFS= read -r line; do report_top+=("$line"); done < <(python3 - "$TMP/$peer.inclusive.txt" "$TOP" <<'PY'
import re, sys
rows = []
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"\s*([\d,]+) \(\s*([\d.]+)%\)\s+(.*)", line)
    if not m or "PROGRAM TOTALS" in line:
        continue
    name = re.sub(r"\s+\[[^\]]*\]$", "", m.group(3))
    name = name.split(":", 1)[1] if ":" in name and not name.startswith("0x") else name
    rows.append((float(m.group(2)), name[:140]))
for pct, name in rows[: int(sys.argv[2])]:
    print(f"{pct:6.2f}%  {name}")
PY
    )
    report_top+=('```' "")
done

stamp="$(date +%Y%m%d-%H%M%S)"
mkdir -p "$RESULTS"
out="$RESULTS/$stamp-instructions.md"
{
    echo "# Instructions per request ($stamp)"
    echo
    echo "callgrind (user-space instructions, every thread of the process; kernel work such as the"
    echo "socket calls is not counted: 2 reads and 2 writes per request for each peer, and one"
    echo "getpeername more for Pingap and an unpatched Pingora, by perf trace), $REQUESTS requests of"
    if [[ "$PROTO" == h2 ]]; then
        echo "SIZE=$SIZE after $WARMUP warm-up requests, HTTP/2 over TLS 1.3 (ECDSA P-256), h2load -c $CONNS -m $STREAMS (the $CONNS handshakes are in the window), keep-alive upstream;"
    else
        echo "SIZE=$SIZE after $WARMUP warm-up requests, hey -c $CONNS, keep-alive both sides;"
    fi
    echo "gatehouse $(git -C "$ROOT" rev-parse --short HEAD) config \`$CONFIG\`${GATEHOUSE_TOP:+ + \`$GATEHOUSE_TOP\`}, threads 1; bare Pingora = examples/$(basename "$PINGORA_BIN").rs."
    if [[ " $PEERS " == *" pingap "* ]]; then
        echo "Pingap = $("$PINGAP_BIN" --version 2>/dev/null || echo 'version unknown') ($PINGAP_BIN, its crates.io build: fat LTO, one codegen unit, panic = abort, glibc malloc), run.sh's \`pingap\` config."
    fi
    echo
    echo "| peer | instructions | per request | ratio to bare Pingora | ratio to nginx |"
    echo "|---|---:|---:|---:|---:|"
    ratio() { [[ -n "${PER_REQ[$2]:-}" ]] && python3 -c "print(f'{${PER_REQ[$1]} / ${PER_REQ[$2]}:.2f}')" || echo "–"; }
    for peer in $PEERS; do
        echo "| $peer | ${IR[$peer]} | ${PER_REQ[$peer]} | $(ratio "$peer" pingora) | $(ratio "$peer" nginx) |"
    done
    echo
    printf '%s\n' "${report_top[@]}"
} | tee "$out"
log "saved: $out"
