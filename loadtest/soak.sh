#!/usr/bin/env bash
# Soak test (#14): gatehouse at saturation for DURATION over a mixed route set, its memory
# and open files sampled every EVERY seconds. Passes when, after the warm-up, RSS and open
# fds grow by less than 5 %, every HTTP answer is 200 or (on the rate-limited route only)
# 429, no socket error happened and every WebSocket message came back.
#
#   bash loadtest/soak.sh                       # 10 minutes (the figure in the closing note)
#   DURATION=20 WARMUP=5 bash loadtest/soak.sh  # a smoke run (the test suite does this)
#
# Routes (one gatehouse, release build, `threads: THREADS`, access log off, metrics on):
#   /plain    → origin                          /jwt    → origin, HS256 bearer token
#   /limited  → origin, LIMIT req/s per route    /cached → origin, `cache: true` (HITs)
#   /ws       → a WebSocket echo server (loadtest/soak.py ws-echo)
# Load: wrk -t1 -cCONNS rotating over the four HTTP routes (loadtest/soak.lua) and
# WS_CONNS WebSocket clients each sending a message and waiting for its echo, in a loop.
# Origin: nginx, one worker (`return 200`). Needs: nginx, wrk, curl, python3.
#
# Knobs: DURATION=600 WARMUP=60 EVERY=10 CONNS=64 WS_CONNS=16 THREADS=1 BUILD=1
#        MAX_GROWTH=5 (percent; a smoke run of a few seconds is still warming up)
#        LIMIT=2000 (requests per second the /limited route lets through)
#        PATHS=/plain,/jwt,/limited,/cached (the HTTP routes wrk rotates over; one alone
#        shows what that route costs in memory)
#        GATEHOUSE_BIN=target/release/gatehouse RESULTS=loadtest/results KEEP_TMP=0
# Output: loadtest/results/<stamp>-soak.md (and .csv, the samples); exit 1 if a check fails.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
DURATION="${DURATION:-600}"
WARMUP="${WARMUP:-60}"
EVERY="${EVERY:-10}"
CONNS="${CONNS:-64}"
WS_CONNS="${WS_CONNS:-16}"
THREADS="${THREADS:-1}"
MAX_GROWTH="${MAX_GROWTH:-5}"
LIMIT="${LIMIT:-2000}"
PATHS="${PATHS:-/plain,/jwt,/limited,/cached}"
BUILD="${BUILD:-1}"
KEEP_TMP="${KEEP_TMP:-0}"
RESULTS="${RESULTS:-$ROOT/loadtest/results}"
GATEHOUSE_BIN="${GATEHOUSE_BIN:-$ROOT/target/release/gatehouse}"
SECRET="soak-secret-that-is-at-least-32-bytes"

log() { echo "soak: $*" >&2; }
die() { echo "soak: error: $*" >&2; exit 1; }

missing=()
for tool in nginx wrk curl python3; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        log "installing nginx-light wrk curl (missing: ${missing[*]})"
        apt-get install -y --no-install-recommends nginx-light wrk curl >&2
    else
        die "missing: ${missing[*]} (Debian: apt-get install nginx-light wrk curl python3)"
    fi
fi
if [[ "$BUILD" == 1 ]]; then
    (cd "$ROOT" && cargo build --release --locked) >&2
fi
[[ -x "$GATEHOUSE_BIN" ]] || die "no gatehouse binary at $GATEHOUSE_BIN"

TMP="$(mktemp -d /tmp/gatehouse-soak.XXXXXX)"
chmod 755 "$TMP"
PIDS=()
cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        pkill -KILL -P "$pid" 2>/dev/null || true
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ "$KEEP_TMP" == 1 || $rc -ne 0 ]]; then log "temp dir kept: $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || true

read -r ORIGIN GW ADMIN WS <<< "$(python3 "$HERE/helper.py" ports 4 | tr '\n' ' ')"

mkdir -p "$TMP/origin/logs" "$TMP/origin/tmp"
cat > "$TMP/origin.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/origin/nginx.pid;
error_log $TMP/origin/logs/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $TMP/origin/tmp;
    proxy_temp_path $TMP/origin/tmp;
    server {
        listen 127.0.0.1:$ORIGIN;
        location /cached { add_header Cache-Control "max-age=60"; return 200 "cached"; }
        location / { return 200 "ok"; }
    }
}
EOF
nginx -c "$TMP/origin.conf" -p "$TMP/origin" > "$TMP/origin.log" 2>&1 &
PIDS+=($!)
python3 "$HERE/soak.py" ws-echo "$WS" > "$TMP/ws-echo.log" 2>&1 &
PIDS+=($!)

cat > "$TMP/gatehouse.yaml" <<EOF
listen: ["127.0.0.1:$GW"]
threads: $THREADS
admin: { listen: "127.0.0.1:$ADMIN" }
pid_file: $TMP/gatehouse.pid
upgrade_sock: $TMP/upgrade.sock
access_log: false
auth: { jwt: { secret: "$SECRET" } }
upstreams:
  origin: { targets: ["127.0.0.1:$ORIGIN"] }
  echo: { targets: ["127.0.0.1:$WS"] }
routes:
  - { name: plain, prefix: /plain, upstream: origin }
  - { name: jwt, prefix: /jwt, auth: jwt, upstream: origin }
  - { name: limited, prefix: /limited, rate_limit: { requests: $LIMIT, per: 1s, key: route }, upstream: origin }
  - { name: cached, prefix: /cached, cache: true, upstream: origin }
  - { name: ws, prefix: /ws, upstream: echo }
EOF
"$GATEHOUSE_BIN" check -c "$TMP/gatehouse.yaml" >&2
"$GATEHOUSE_BIN" run -c "$TMP/gatehouse.yaml" > "$TMP/gatehouse.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$GW/plain" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$GW/plain" >/dev/null || die "gatehouse is not serving (see $TMP/gatehouse.log)"
TOKEN="$("$GATEHOUSE_BIN" token -c "$TMP/gatehouse.yaml" --sub soak --ttl 24h)"
[[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$GW/jwt")" == 200 ]] \
    || die "the JWT route does not accept the minted token"
[[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GW/jwt")" == 401 ]] || die "the JWT route is open"

STAMP="$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$RESULTS"
SAMPLES="$RESULTS/$STAMP-soak.csv"
log "gatehouse pid $GW_PID on :$GW; ${DURATION}s of wrk -c$CONNS + $WS_CONNS WebSocket clients"
python3 "$HERE/soak.py" sample "$GW_PID" "$DURATION" "$EVERY" "$SAMPLES" &
SAMPLER=$!
python3 "$HERE/soak.py" ws-load "ws://127.0.0.1:$GW/ws" "$WS_CONNS" "$DURATION" "$TMP/ws.json" &
WS_LOAD=$!
SOAK_TOKEN="$TOKEN" SOAK_OUT="$TMP/wrk.json" SOAK_PATHS="$PATHS" \
    wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 10s -s "$HERE/soak.lua" "http://127.0.0.1:$GW" > "$TMP/wrk.txt" 2>&1 \
    || die "wrk failed: $(tail -n 5 "$TMP/wrk.txt")"
wait "$WS_LOAD" || die "the WebSocket load failed"
wait "$SAMPLER" || die "the sampler failed (did gatehouse exit?)"
kill -0 "$GW_PID" 2>/dev/null || die "gatehouse exited during the soak"

# 429s must all be the limited route's: read them from gatehouse's own metrics.
curl -s "http://127.0.0.1:$ADMIN/metrics" > "$TMP/metrics.txt"
python3 - "$TMP/wrk.json" "$TMP/metrics.txt" <<'EOF'
import json, re, sys
wrk = json.load(open(sys.argv[1]))
elsewhere = 0
for line in open(sys.argv[2]):
    m = re.match(r'gateway_requests_total\{(.*)\} (\d+)', line)
    if m and 'status="429"' in m.group(1) and 'route="limited"' not in m.group(1):
        elsewhere += int(m.group(2))
wrk["unexpected_429"] = elsewhere
json.dump(wrk, open(sys.argv[1], "w"))
EOF
errors="$(grep -c '"level":"ERROR"' "$TMP/gatehouse.log" || true)"
[[ "$errors" == 0 ]] || { log "gatehouse logged $errors ERROR lines:"; grep '"level":"ERROR"' "$TMP/gatehouse.log" | head -n 5 >&2; }

python3 "$HERE/soak.py" report --samples "$SAMPLES" --wrk "$TMP/wrk.json" --ws "$TMP/ws.json" \
    --out "$RESULTS/$STAMP-soak.md" --stamp "$STAMP" --version "$("$GATEHOUSE_BIN" --version | head -n 1)" \
    --duration "$DURATION" --warmup "$WARMUP" --every "$EVERY" --conns "$CONNS" --ws-conns "$WS_CONNS" \
    --threads "$THREADS" --max-growth "$MAX_GROWTH" --paths "$PATHS"
[[ "$errors" == 0 ]] || die "ERROR lines in the gatehouse log"
