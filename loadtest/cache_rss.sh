#!/usr/bin/env bash
# Memory of the response cache under load: every request a new cache key, so the cache
# fills to `cache.max_size` and then evicts on every insert. Reports gatehouse's RSS over
# the run next to what the cache says it holds, to show the bound holds.
#
#   bash loadtest/cache_rss.sh                    # 64 MiB cache, 64 KiB objects, 30 s
#   MAX_SIZE=16MiB OBJECT=256k DURATION=20 bash loadtest/cache_rss.sh
#   OBJECT=100 bash loadtest/cache_rss.sh         # tiny answers: the per-entry overhead
#
# Needs nginx (the origin) and wrk. Output: loadtest/results/<stamp>-cache-rss.md
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
MAX_SIZE="${MAX_SIZE:-64MiB}"
OBJECT="${OBJECT:-64k}"
DURATION="${DURATION:-30}"
CONNS="${CONNS:-64}"
BUILD="${BUILD:-1}"
BIN="${GATEHOUSE_BIN:-$ROOT/target/release/gatehouse}"

die() { echo "error: $*" >&2; exit 1; }
for tool in nginx wrk curl; do command -v "$tool" >/dev/null || die "$tool is required"; done
[[ "$BUILD" == 0 ]] || (cd "$ROOT" && cargo build --release --locked)

TMP="$(mktemp -d)"
chmod 755 "$TMP"   # nginx's worker (nobody) reads the object in it
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; [[ "${KEEP_TMP:-0}" == 1 ]] || rm -rf "$TMP"; }
trap cleanup EXIT INT TERM

read -r ORIGIN_PORT GH_PORT ADMIN_PORT < <(python3 "$HERE/helper.py" ports 3)
case "$OBJECT" in *k) bytes=$(( ${OBJECT%k} * 1024 ));; *) bytes="$OBJECT";; esac
mkdir -p "$TMP/www" "$TMP/origin/logs"
head -c "$bytes" /dev/urandom > "$TMP/www/object"
cat > "$TMP/origin.conf" <<EOF
worker_processes 1;
pid $TMP/origin/nginx.pid;
error_log $TMP/origin/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    server { listen 127.0.0.1:$ORIGIN_PORT; root $TMP/www; location / { try_files /object =404; } }
}
EOF
nginx -p "$TMP/origin" -c "$TMP/origin.conf" -g 'daemon off;' 2>"$TMP/origin/logs/stderr" &
PIDS+=($!)

cat > "$TMP/gatehouse.yaml" <<EOF
listen: ["127.0.0.1:$GH_PORT"]
threads: 1
pid_file: $TMP/gatehouse.pid
upgrade_sock: $TMP/upgrade.sock
access_log: false
admin: { listen: "127.0.0.1:$ADMIN_PORT" }
cache: { max_size: $MAX_SIZE }
upstreams: { origin: { targets: ["127.0.0.1:$ORIGIN_PORT"] } }
routes: [{ name: cached, prefix: /, upstream: origin, cache: true }]
EOF
"$BIN" run -c "$TMP/gatehouse.yaml" 2>"$TMP/gatehouse.log" &
GH_PID=$!
PIDS+=("$GH_PID")
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$GH_PORT/warm" && break; sleep 0.1; done
size="$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$GH_PORT/warm?check")"
[[ "$size" == "200 $bytes" ]] || die "expected '200 $bytes' from the origin through gatehouse, got '$size'"
got="$(curl -s -D - -o /dev/null "http://127.0.0.1:$GH_PORT/warm" | tr -d '\r' | sed -n 's/^x-cache: *//Ip')"
[[ "$got" == HIT ]] || die "expected X-Cache: HIT on the second request, got '${got:-none}'"

rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$GH_PID/status"; }
cache_field() { curl -s "http://127.0.0.1:$ADMIN_PORT/admin/cache" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

# Every request a key never seen before: the path is the same file, the query differs.
cat > "$TMP/unique.lua" <<'EOF'
local n = 0
request = function()
    n = n + 1
    return wrk.format("GET", "/object?k=" .. n .. "-" .. math.random(1, 1000000000))
end
EOF
idle_rss="$(rss_mib)"
samples=()
wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$TMP/unique.lua" "http://127.0.0.1:$GH_PORT/" > "$TMP/wrk.out" &
WRK=$!
peak=0
for i in $(seq "$DURATION"); do
    sleep 1
    r="$(rss_mib)"
    samples+=("$i s: RSS $r MiB, cache $(( $(cache_field bytes) / 1048576 )) MiB in $(cache_field entries) entries")
    peak="$(python3 -c "print(max($peak, $r))")"
done
wait "$WRK"
rps="$(awk '/Requests\/sec/ { print $2 }' "$TMP/wrk.out")"
total="$(awk '/requests in/ { print $1 }' "$TMP/wrk.out")"
after_rss="$(rss_mib)"
stamp="$(date +%Y%m%d-%H%M%S)"
out="$HERE/results/$stamp-cache-rss.md"
{
    echo "# Response cache memory under load ($stamp)"
    echo
    echo "gatehouse $(git -C "$ROOT" rev-parse --short HEAD), threads 1, \`cache.max_size: $MAX_SIZE\`;"
    echo "wrk -t1 -c$CONNS for ${DURATION} s, every request a new key (same $OBJECT object, unique query),"
    echo "so the cache fills and then evicts on every insert. $total requests, $rps req/s."
    echo
    echo "| | RSS MiB |"
    echo "|---|---:|"
    echo "| idle, before the run (one entry) | $idle_rss |"
    echo "| peak during the run | $peak |"
    echo "| after the run | $after_rss |"
    echo
    echo "Per second:"
    echo
    for s in "${samples[@]}"; do echo "- $s"; done
} | tee "$out"
echo "saved: $out" >&2
