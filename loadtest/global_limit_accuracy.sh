#!/usr/bin/env bash
# gatehouse: how exact is a global (Redis) rate limit shared by two nodes?
#
#   bash loadtest/global_limit_accuracy.sh      # ≈ 20 s
#
# What it does:
#   1. builds gatehouse (cargo build --release) and checks the tools it needs;
#   2. in a temp dir, starts an nginx ORIGIN (1 worker, `return 200 "ok"`), one redis-server
#      (loopback, no persistence) and TWO gatehouse nodes (threads 1 each) with the same
#      route and limit, sharing that Redis:
#          redis: { url: "redis://127.0.0.1:PORT", timeout: 50ms, key_prefix: accuracy }
#          rate_limit: { requests: 2000, per: 10s, key: route, scope: global }
#      (`key: route` = one bucket for every client, so both nodes draw from the same one);
#   3. checks that both nodes' decisions come from Redis (RateLimit-Remaining below the
#      limit; the on_redis_error fallback reports remaining == limit), then empties Redis so
#      that the bucket is full when the measurement starts;
#   4. runs one `wrk -t1 -c32` per node, both at once, for 10 s: far more requests than the
#      limit allows. A wrk Lua script counts 200s, 429s, other statuses, and 200s that carry
#      RateLimit-Remaining == limit (decided by the fallback policy, not by Redis);
#   5. compares the 200s of both nodes together with what the limit allows over the window:
#      GCRA gives a burst of `requests` at once, then one every `per / requests`, so
#      2000 + 2000 × 10 s / 10 s = 4000 for 10 s; prints a Markdown report and saves it as
#      loadtest/results/<timestamp>-accuracy.md (wrk's output in <timestamp>-accuracy.raw).
# Every process it starts is stopped on exit, Ctrl-C or failure. Nothing is pinned: the
# nodes, both wrk, the origin and Redis share the machine's cores, which is why Redis gets
# 50 ms instead of the default 5 ms to answer.
#
# Knobs (environment):
#   LIMIT=2000 PER=10s DURATION=10s CONNS=32 (per node)  BUILD=1 (0 = skip cargo build)
#   GATEHOUSE_BIN=target/release/gatehouse  KEEP_TMP=0 (1 = keep the temp dir)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
HELPER="$HERE/helper.py"

LIMIT="${LIMIT:-2000}"
PER="${PER:-10s}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-32}"
BUILD="${BUILD:-1}"
GATEHOUSE_BIN="${GATEHOUSE_BIN:-$ROOT/target/release/gatehouse}"
KEEP_TMP="${KEEP_TMP:-0}"
NODES=(a b)

log() { printf '%s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ "$LIMIT" =~ ^[1-9][0-9]*$ ]] || die "LIMIT must be a positive integer"
# PER and DURATION in seconds (wrk and gatehouse take them as given; this is for the sums).
secs() { [[ "$1" =~ ^([0-9]+)(s|m)$ ]] || die "use Ns or Nm, not '$1'"
         if [[ "${BASH_REMATCH[2]}" == m ]]; then echo $(( BASH_REMATCH[1] * 60 )); else echo "${BASH_REMATCH[1]}"; fi; }
PER_S="$(secs "$PER")" DURATION_S="$(secs "$DURATION")"

# ---------------------------------------------------------------------------------------
# Tools (installed with apt-get only as root), build
# ---------------------------------------------------------------------------------------
declare -A PKG=([nginx]=nginx-light [wrk]=wrk [curl]=curl [python3]=python3
                [redis-server]=redis-server [redis-cli]=redis-tools)
missing=()
for tool in "${!PKG[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("${PKG[$tool]}")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing: ${missing[*]}"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    else
        die "missing packages: ${missing[*]} (run as root to install them, or: apt-get install -y ${missing[*]})"
    fi
fi
if [[ "$BUILD" == 1 ]]; then
    log "building gatehouse (cargo build --release)…"
    (cd "$ROOT" && cargo build --release) || die "cargo build --release failed"
fi
[[ -x "$GATEHOUSE_BIN" ]] || die "no gatehouse binary at $GATEHOUSE_BIN"

# ---------------------------------------------------------------------------------------
# Temp dir and cleanup (as in run.sh)
# ---------------------------------------------------------------------------------------
TMP="$(mktemp -d /tmp/gatehouse-accuracy.XXXXXX)"
chmod 755 "$TMP"    # nginx's worker (unprivileged when we are root) writes under it
PIDS=()             # every long-lived process we started
declare -A NAME     # pid -> name

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        # gatehouse: SIGINT = fast shutdown; nginx master, redis-server: SIGTERM.
        if [[ "${NAME[$pid]}" == gatehouse* ]]; then kill -INT "$pid" 2>/dev/null || true
        else kill -TERM "$pid" 2>/dev/null || true; fi
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            pkill -KILL -P "$pid" 2>/dev/null || true
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    if [[ "$KEEP_TMP" == 1 || ( $rc -ne 0 && $rc -ne 130 && $rc -ne 143 ) ]]; then
        log "temp dir kept: $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ulimit -n 65536 2>/dev/null || true
read -r ORIGIN_PORT REDIS_PORT PORT_a PORT_b < <(python3 "$HELPER" ports 4)
declare -A PORT=([a]=$PORT_a [b]=$PORT_b)

# Wait until `$2` (a command) succeeds while pid $1 lives, for up to 30 s.
wait_for() {   # $1 = name, $2 = pid, $3 = log file, rest = command
    local name="$1" pid="$2" logf="$3"; shift 3
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$logf" >&2 || true; die "$name exited during startup"; }
        "$@" && return 0
        sleep 0.1
    done
    tail -n 20 "$logf" >&2 || true
    die "$name not ready after 30 s"
}
http_200() { [[ "$(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null || true)" == 200 ]]; }
redis_pong() { [[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null || true)" == PONG ]]; }

# ---------------------------------------------------------------------------------------
# Origin: nginx with its own prefix, pid, logs and temp dirs (the system nginx is untouched)
# ---------------------------------------------------------------------------------------
mkdir -p "$TMP/origin/logs"
NGINX_V="$(nginx -V 2>&1)"
{
    cat <<EOF
worker_processes 1;
daemon off;
pid $TMP/origin/nginx.pid;
error_log $TMP/origin/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $TMP/origin/client_body;
    proxy_temp_path $TMP/origin/proxy;
EOF
    for m in fastcgi uwsgi scgi; do
        [[ "$NGINX_V" == *"--without-http_${m}_module"* ]] || echo "    ${m}_temp_path $TMP/origin/$m;"
    done
    cat <<EOF
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        location / { return 200 "ok"; }
    }
}
EOF
} > "$TMP/origin.conf"
nginx_args=(-p "$TMP/origin" -c "$TMP/origin.conf")
[[ "$(nginx -h 2>&1 || true)" == *"-e filename"* ]] && nginx_args+=(-e "$TMP/origin/logs/error.log")
nginx -t -q "${nginx_args[@]}" || die "nginx config $TMP/origin.conf is invalid"
nginx "${nginx_args[@]}" > "$TMP/origin/logs/stdout.log" 2>&1 &
ORIGIN_PID=$!; PIDS+=("$ORIGIN_PID"); NAME[$ORIGIN_PID]=origin
wait_for origin "$ORIGIN_PID" "$TMP/origin/logs/error.log" http_200 "http://127.0.0.1:$ORIGIN_PORT/"

# ---------------------------------------------------------------------------------------
# Redis (loopback, no RDB snapshots, no AOF) and the two gatehouse nodes
# ---------------------------------------------------------------------------------------
mkdir -p "$TMP/redis"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$TMP/redis" --logfile "$TMP/redis/redis.log" --daemonize no > /dev/null 2>&1 &
REDIS_PID=$!; PIDS+=("$REDIS_PID"); NAME[$REDIS_PID]=redis
wait_for redis-server "$REDIS_PID" "$TMP/redis/redis.log" redis_pong

# Both nodes: same key_prefix and route name, so the same Redis key; `key: route` makes
# it one bucket for every client.
declare -A GH_PID
for n in "${NODES[@]}"; do
    cat > "$TMP/node-$n.yaml" <<EOF
listen: ["127.0.0.1:${PORT[$n]}"]
threads: 1
access_log: false
metrics: false
admin: { listen: "" }
pid_file: $TMP/node-$n.pid
upgrade_sock: $TMP/node-${n}_upgrade.sock
redis: { url: "redis://127.0.0.1:$REDIS_PORT", timeout: 50ms, key_prefix: accuracy }
upstreams:
  origin:
    targets: ["127.0.0.1:$ORIGIN_PORT"]
    keepalive_timeout: 60s
routes:
  - name: bench
    prefix: /
    upstream: origin
    rate_limit: { requests: $LIMIT, per: $PER, key: route, scope: global }
EOF
    env -u PORT RUST_LOG=info "$GATEHOUSE_BIN" run -c "$TMP/node-$n.yaml" > "$TMP/node-$n.log" 2>&1 &
    GH_PID[$n]=$!; PIDS+=("${GH_PID[$n]}"); NAME[${GH_PID[$n]}]="gatehouse-node-$n"
    wait_for "gatehouse node $n" "${GH_PID[$n]}" "$TMP/node-$n.log" http_200 "http://127.0.0.1:${PORT[$n]}/health"
done

# Each node must decide through Redis: RateLimit-Remaining below the limit (the fallback
# reports remaining == limit). gatehouse connects to Redis in the background on the first
# global decision, so the first requests may be fallbacks: retry for up to 5 s.
for n in "${NODES[@]}"; do
    remaining=""
    for _ in $(seq 50); do
        remaining="$(curl -s -D - -o /dev/null "http://127.0.0.1:${PORT[$n]}/" | tr -d '\r' |
                     sed -n 's/^[Rr]ate[Ll]imit-[Rr]emaining: *//p' || true)"
        [[ "$remaining" =~ ^[0-9]+$ && "$remaining" -lt "$LIMIT" ]] && break
        sleep 0.1
    done
    [[ "$remaining" =~ ^[0-9]+$ && "$remaining" -lt "$LIMIT" ]] ||
        die "node $n: expected ratelimit-remaining below $LIMIT (decided by Redis), got '${remaining:-none}'"
    log "node $n decides through Redis (ratelimit-remaining $remaining)"
done
# Start from a full bucket: forget what the checks above used.
[[ "$(redis-cli -p "$REDIS_PORT" flushall)" == OK ]] || die "redis FLUSHALL failed"

# ---------------------------------------------------------------------------------------
# Measure: one wrk per node, both at once
# ---------------------------------------------------------------------------------------
# wrk runs this in each thread: count statuses, and 200s decided by the fallback policy.
# Every thread has its own Lua state; done() (main state) sums them through thread:get.
cat > "$TMP/count.lua" <<EOF
local limit = "$LIMIT"
ok, limited, other, fallback = 0, 0, 0, 0
function response(status, headers, body)
    if status == 200 then
        ok = ok + 1
        if (headers["ratelimit-remaining"] or headers["RateLimit-Remaining"]) == limit then
            fallback = fallback + 1
        end
    elseif status == 429 then
        limited = limited + 1
    else
        other = other + 1
    end
end
local threads = {}
function setup(thread) table.insert(threads, thread) end
function done(summary, latency, requests)
    local t = { ok = 0, limited = 0, other = 0, fallback = 0 }
    for _, thread in ipairs(threads) do
        for k in pairs(t) do t[k] = t[k] + thread:get(k) end
    end
    local e = summary.errors
    io.write(string.format("COUNTS ok=%d limited=%d other=%d fallback=%d sockerr=%d\n",
        t.ok, t.limited, t.other, t.fallback, e.connect + e.read + e.write + e.timeout))
end
EOF

STAMP="$(date +%Y%m%d-%H%M%S)"
RESULTS="$HERE/results"
mkdir -p "$RESULTS"
MD="$RESULTS/$STAMP-accuracy.md" RAW="$RESULTS/$STAMP-accuracy.raw"
log "measuring: ${#NODES[@]} × wrk -t1 -c$CONNS -d$DURATION at once, limit $LIMIT per $PER (global)"
declare -A WRK_PID
for n in "${NODES[@]}"; do
    wrk -t1 -c"$CONNS" -d"$DURATION" -s "$TMP/count.lua" "http://127.0.0.1:${PORT[$n]}/" \
        > "$TMP/wrk-$n.out" 2>&1 &
    WRK_PID[$n]=$!
done
for n in "${NODES[@]}"; do
    wait "${WRK_PID[$n]}" || { cat "$TMP/wrk-$n.out" >&2; die "wrk against node $n failed"; }
    kill -0 "${GH_PID[$n]}" 2>/dev/null || die "gatehouse node $n exited during the run (log: $TMP/node-$n.log)"
    { echo "### node $n: wrk -t1 -c$CONNS -d$DURATION http://127.0.0.1:${PORT[$n]}/"; cat "$TMP/wrk-$n.out"; echo; } >> "$RAW"
done

# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------
gh_rev="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no commit')"
[[ -z "$(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]] || gh_rev+=" + uncommitted changes"
notes=()
for n in "${NODES[@]}"; do notes+=("$(python3 "$HELPER" logsummary "node $n" "$TMP/node-$n.log")"); done
notes+=("$(python3 "$HELPER" logsummary redis "$TMP/redis/redis.log")")

# The sums in Python: parse both wrk outputs, print the Markdown, save it. Everything it
# needs comes through the environment (quoted heredoc: no shell expansion in the code).
export TMP MD STAMP LIMIT PER PER_S CONNS DURATION
export NODE_LIST="${NODES[*]}"
export META_MACHINE="$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)), Linux $(uname -r)"
export META_GATEHOUSE="gatehouse $gh_rev (binary built $(date -r "$GATEHOUSE_BIN" '+%F %H:%M'))"
export META_REDIS="$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')"
echo
python3 - "${notes[@]}" <<'PYEOF'
import os, re, sys
env = os.environ
limit, per_s = int(env["LIMIT"]), float(env["PER_S"])
nodes = {}
for n in env["NODE_LIST"].split():
    out = open(f"{env['TMP']}/wrk-{n}.out").read()
    c = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", re.search(r"^COUNTS .*$", out, re.M).group(0))}
    m = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    c["requests"] = int(m.group(1))
    c["secs"] = float(m.group(2)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(3)]
    nodes[n] = c

allowed = sum(c["ok"] for c in nodes.values())
window = max(c["secs"] for c in nodes.values())   # both wrk ran at once, this long at most
expected = limit + limit * window / per_s          # GCRA: the full burst, then `limit` per `per`
fallback = sum(c["fallback"] for c in nodes.values())
odd = sum(c["other"] + c["sockerr"] for c in nodes.values())
tot = {k: sum(c[k] for c in nodes.values()) for k in ("requests", "ok", "limited", "other", "sockerr")}

out = [
    f"# gatehouse global rate limit accuracy {env['STAMP']}\n",
    f"- machine: {env['META_MACHINE']}; nothing pinned",
    f"- {env['META_GATEHOUSE']}: {len(nodes)} nodes, threads 1 each, route "
    f"`rate_limit: {{ requests: {limit}, per: {env['PER']}, key: route, scope: global }}` "
    f"(one bucket for all clients), `redis.timeout: 50ms`, on_redis_error allow (default)",
    f"- Redis {env['META_REDIS']} (no persistence), emptied just before the run; origin: nginx `return 200 \"ok\"`",
    f"- load: one `wrk -t1 -c{env['CONNS']} -d{env['DURATION']}` per node, all started together; a wrk "
    f"Lua script counts statuses, and 200s reporting RateLimit-Remaining = {limit} (the fallback's answer)\n",
    "| node | requests | req/s | 200 allowed | 429 limited | other status | socket errors | fallbacks |",
    "|---|---:|---:|---:|---:|---:|---:|---:|",
]
for n, c in nodes.items():
    out.append(f"| {n} | {c['requests']} | {c['requests'] / c['secs']:.0f} | {c['ok']} | {c['limited']} "
               f"| {c['other']} | {c['sockerr']} | {c['fallback']} |")
out.append(f"| **all** | {tot['requests']} | {tot['requests'] / window:.0f} | **{tot['ok']}** "
           f"| {tot['limited']} | {tot['other']} | {tot['sockerr']} | {fallback} |")
out.append("")
shares = ", ".join(f"node {n} {c['ok'] / max(allowed, 1) * 100:.0f} %" for n, c in nodes.items())
out.append(f"Expected allowed: {limit} (burst) + {limit} per {per_s:g} s × {window:.2f} s (longest wrk run) "
           f"= **{expected:.0f}**. Allowed: **{allowed}**, {allowed - expected:+.0f} "
           f"(**{(allowed - expected) / expected * 100:+.2f} %**); {shares}.")
if fallback or odd:
    out.append(f"\n**Not only Redis-decided 200s and 429s:** {fallback} 200(s) decided by the "
               f"on_redis_error fallback, {odd} other status(es) or socket error(s).")
else:
    out.append("\nEvery response was a 200 or a 429, and every 200 was decided by Redis (no fallback).")
out.extend(n for n in sys.argv[1:] if n)
text = "\n".join(out) + "\n"
sys.stdout.write(text)
open(env["MD"], "w").write(text)
PYEOF
log ""
log "saved: $MD (raw wrk output: $RAW)"
