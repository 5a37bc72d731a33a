#!/usr/bin/env bash
# gatehouse load test: gatehouse vs bare Pingora vs nginx (reverse proxies) vs direct, all
# over loopback.
#
#   bash loadtest/run.sh              # full run (~25 min): 3 sizes × 2 conn counts × 3 reps × 6 peers
#   QUICK=1 bash loadtest/run.sh      # smoke run (~2 min)
#   PEERS="gatehouse nginx direct" bash loadtest/run.sh
#                                     # the former default (~11 min)
#   CLIENT=hey bash loadtest/run.sh   # the same matrix driven by hey instead of wrk
#   PEERS="gatehouse gatehouse-hs256 gatehouse-rs256 nginx" bash loadtest/run.sh
#                                     # + the cost of JWT verification (HS256, RS256)
#   PEERS="gatehouse gatehouse-rl-local gatehouse-rl-global nginx" SIZES=2 CONNS=64 bash loadtest/run.sh
#                                     # + the cost of a rate limit (local / global via Redis)
#   CONNS=1 SIZES=2 PEERS="gatehouse gatehouse-rl-local gatehouse-rl-global" bash loadtest/run.sh
#                                     # per-request latency (one connection, closed loop)
#   PEERS="gatehouse gatehouse-observed nginx" SIZES=2 CONNS=64 bash loadtest/run.sh
#                                     # + the cost of the access log and Prometheus metrics
#   PEERS="gatehouse gatehouse-cache nginx" bash loadtest/run.sh
#                                     # cache HITs vs proxied requests (make bench-cache)
#   PEERS="pingap gatehouse pingora" SIZES="2 4k" bash loadtest/run.sh
#                                     # + Pingap, another gateway on Pingora (installed on
#                                     #   first use with cargo install, ≈ 30+ min, see README)
#
# What it does (method: /work/shared/benchmarking.md, summary in loadtest/README.md):
#   1. builds gatehouse (cargo build --release) and, for the pingora peer, the bare Pingora
#      proxy of examples/bare_pingora.rs (same profile), and checks the tools it needs;
#   2. in a temp dir, starts an nginx ORIGIN (1 worker) serving `/` → "ok" and static files,
#      gatehouse (threads 1), bare Pingora (threads 1, round robin over the origin, nothing
#      else: what the framework alone costs) and an nginx REVERSE PROXY (1 worker, upstream
#      keepalive) in front of it; "direct" is the client straight at the origin; the optional
#      peers gatehouse-hs256 / gatehouse-rs256 are more gatehouse processes whose route
#      requires a JWT (HS256 secret / RS256 public key), sent by the client as a bearer token;
#      gatehouse-rl-local / gatehouse-rl-global have a rate limit on the route that never
#      triggers, counted in the process / in a redis-server started here;
#      gatehouse-cache has `cache: true` on the route, so its measured requests are HITs;
#      gatehouse-observed has the access log and metrics on (every other gatehouse but
#      gatehouse-full has both off and no admin listener), its /metrics scraped once a second
#      while measuring; gatehouse-full has the whole chain on its route: JWT HS256, a local
#      rate limit that never triggers, the access log and metrics (scraped likewise);
#      pingap / pingap-full (optional) are Pingap, another gateway on Pingora, with the
#      same one route (pingap-full: + its jwt and limit plugins), installed with cargo
#      install on first use (target/pingap/bin/pingap);
#   3. iso layout on 2+ cores: the proxy alone on core 0, origin + client (wrk -t1 or hey)
#      on core 1;
#   4. checks every peer answers 200 with the exact body for every size (that the JWT
#      peers answer 401 without a token or with a forged one, that the rate-limited
#      peers send RateLimit-* headers, counted by Redis for the global one, and that only
#      gatehouse-observed and gatehouse-full write access lines and count requests in /metrics);
#   5. for each rep, size and connection count runs the peers interleaved (pingora,
#      gatehouse, …, nginx, direct, pingora, …): wait for a quiet machine, warm up, measure
#      with the client (CLIENT=wrk or hey), read the proxy's CPU time from /proc → CPU µs per
#      request;
#   6. prints a Markdown table (medians, ranges, gatehouse/nginx ratios, gatehouse vs bare
#      Pingora, the full chain vs minimal, and the JWT verification / rate limit /
#      observability / cache sections when those peers ran) and saves it with the raw runs
#      under loadtest/results/<timestamp>.{md,csv,raw}, plus a bar chart of the median
#      req/s, <timestamp>.png (gnuplot).
# Every process it starts is stopped on exit, Ctrl-C or failure.
#
# Knobs (environment):
#   DURATION=10s WARMUP=2s REPS=3 CONNS="64 256" SIZES="2 4k 64k"
#   PEERS="pingora gatehouse gatehouse-full gatehouse-cache nginx direct" (also:
#         gatehouse-hs256 gatehouse-rs256 gatehouse-rl-local gatehouse-rl-global
#         gatehouse-observed gatehouse-alt pingap pingap-full)  PIN=1 (0 = no taskset)  QUICK=0
#   ALT='work_stealing: false' (gatehouse-alt = gatehouse + these top-level YAML keys: an
#         A/B of a setting in one interleaved run)
#   CLIENT=wrk (or hey: Go, one process, much slower per request than wrk)  CHART=1 (0 = no PNG)
#   BUILD=1 (0 = skip cargo build)  GATEHOUSE_BIN=target/release/gatehouse
#   PINGORA_BIN=target/release/examples/bare_pingora
#   PINGAP_BIN (default: `pingap` on the PATH, else target/pingap/bin/pingap, installed there
#         on demand)  PINGAP_VERSION=0.13.1  PINGAP_INSTALL=1 (0 = never install: an error)
#   QUIET_MAX=0.15 (cores) QUIET_TIMEOUT=30 (s) NOISE_MAX=0.25 (cores) REDO=2  KEEP_TMP=0
#   RESULTS=loadtest/results (output dir)  NGINX_UPSTREAM_KEEPALIVE=512 (nginx's `keepalive N`: idle upstream connections kept; ≥ CONNS for a fair comparison)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
HELPER="$HERE/helper.py"

# ---------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------
if [[ "${QUICK:-0}" == 1 ]]; then
    DURATION="${DURATION:-3s}" WARMUP="${WARMUP:-1s}" REPS="${REPS:-1}" CONNS="${CONNS:-64}"
fi
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
REPS="${REPS:-3}"
CONNS="${CONNS:-64 256}"
SIZES="${SIZES:-2 4k 64k}"        # "2" = `return 200 "ok"`; others are static files (N or Nk bytes)
PEERS="${PEERS:-pingora gatehouse gatehouse-full gatehouse-cache nginx direct}"
CLIENT="${CLIENT:-wrk}"           # the load generator: wrk (-t1) or hey
CHART="${CHART:-1}"               # 1 = bar chart of the median req/s, <stamp>.png (gnuplot)
CHART_MISSING=0                   # 1 = wanted, but gnuplot is missing (warned at start and end)
BUILD="${BUILD:-1}"
GATEHOUSE_BIN="${GATEHOUSE_BIN:-$ROOT/target/release/gatehouse}"
PINGORA_BIN="${PINGORA_BIN:-$ROOT/target/release/examples/bare_pingora}"
# Pingap (optional peers pingap, pingap-full): another gateway on Pingora, from crates.io.
# 0.13.1 is the last 0.13 release, and the newest one this repository's rustc (1.95) builds:
# 0.15 and later want rustc 1.96. There is no 0.13.9.
PINGAP_VERSION="${PINGAP_VERSION:-0.13.1}"
PINGAP_ROOT="$ROOT/target/pingap"        # cargo install --root: the binary lands in bin/
PINGAP_INSTALL="${PINGAP_INSTALL:-1}"
PINGAP_MIN_FREE_GB="${PINGAP_MIN_FREE_GB:-20}"   # free disk wanted before building it (the build takes ≈ 3-5 GB)
if [[ -z "${PINGAP_BIN:-}" ]]; then
    PINGAP_BIN="$(command -v pingap 2>/dev/null || echo "$PINGAP_ROOT/bin/pingap")"
fi
QUIET_MAX="${QUIET_MAX:-0.15}"    # machine counts as quiet below this many busy cores
QUIET_TIMEOUT="${QUIET_TIMEOUT:-30}"
NOISE_MAX="${NOISE_MAX:-0.25}"    # redo a run if other processes used more cores than this
REDO="${REDO:-2}"
KEEP_TMP="${KEEP_TMP:-0}"
NGINX_UPSTREAM_KEEPALIVE="${NGINX_UPSTREAM_KEEPALIVE:-512}"   # idle upstream connections nginx keeps
NCPU="$(nproc)"
if [[ "$NCPU" -ge 2 ]]; then PIN="${PIN:-1}"; else PIN=0; fi

log() { printf '%s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

ALL_PEERS="pingora gatehouse gatehouse-alt gatehouse-hs256 gatehouse-rs256 gatehouse-rl-local gatehouse-rl-global gatehouse-observed gatehouse-cache gatehouse-full pingap pingap-full nginx direct"
for peer in $PEERS; do
    [[ " $ALL_PEERS " == *" $peer "* ]] || die "unknown peer '$peer' in PEERS (${ALL_PEERS// /, })"
done
has_peer() { [[ " $PEERS " == *" $1 "* ]]; }
has_pingap() { has_peer pingap || has_peer pingap-full; }
ALT="${ALT:-}"
! has_peer gatehouse-alt || [[ -n "$ALT" ]] || die "peer gatehouse-alt needs ALT='top-level YAML' (e.g. ALT='work_stealing: false')"
[[ "$CLIENT" == wrk || "$CLIENT" == hey ]] || die "unknown CLIENT '$CLIENT' (wrk or hey)"

# ---------------------------------------------------------------------------------------
# Tools: install nginx-light / wrk (or hey) / gnuplot when missing (only as root), else say
# what is missing (gnuplot only draws the chart: without it, a loud warning and no chart).
# ---------------------------------------------------------------------------------------
declare -A PKG=([nginx]=nginx-light [curl]=curl [python3]=python3 [taskset]=util-linux [getconf]=libc-bin)
PKG[$CLIENT]=$CLIENT                                           # wrk or hey, same package names
IS_ROOT=0
if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then IS_ROOT=1; fi
if [[ "$CHART" == 1 ]] && ! command -v gnuplot >/dev/null 2>&1; then
    if [[ "$IS_ROOT" == 1 ]]; then
        PKG[gnuplot]=gnuplot-nox                               # has the png / pngcairo terminals
    else
        log ""
        log "WARNING: gnuplot is missing and this is not root: NO CHART (<stamp>.png) will be drawn."
        log "WARNING: install it (apt-get install -y gnuplot-nox) or set CHART=0 to silence this."
        log ""
        CHART=0 CHART_MISSING=1
    fi
fi
if has_peer gatehouse-rs256; then PKG[openssl]=openssl; fi   # generates its RSA key pair
if has_peer gatehouse-rl-global; then                          # the Redis of its global limit
    PKG[redis-server]=redis-server PKG[redis-cli]=redis-tools
fi
if has_pingap && [[ ! -x "$PINGAP_BIN" && "$PINGAP_INSTALL" == 1 ]]; then
    PKG[protoc]=protobuf-compiler                              # building Pingap wants it
fi
missing=()
for tool in "${!PKG[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("${PKG[$tool]}")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ "$IS_ROOT" == 1 ]]; then
        log "installing: ${missing[*]}"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    else
        die "missing packages: ${missing[*]} (run as root to install them, or: apt-get install -y ${missing[*]})"
    fi
fi
CLK_TCK="$(getconf CLK_TCK)"
export CLK_TCK

if [[ "$BUILD" == 1 ]]; then
    log "building gatehouse (cargo build --release)…"
    (cd "$ROOT" && cargo build --release) || die "cargo build --release failed"
    # The bare Pingora baseline: same profile, same Pingora version (Cargo.lock), so that
    # the difference to gatehouse is gatehouse's own code.
    if has_peer pingora; then
        log "building bare Pingora (cargo build --release --locked --examples)…"
        (cd "$ROOT" && cargo build --release --locked --examples) ||
            die "cargo build --release --locked --examples failed"
    fi
fi
[[ -x "$GATEHOUSE_BIN" ]] || die "no gatehouse binary at $GATEHOUSE_BIN"
if has_peer pingora; then
    [[ -x "$PINGORA_BIN" ]] || die "no bare Pingora binary at $PINGORA_BIN (BUILD=1 builds it)"
fi

# Pingap, when a pingap peer runs and there is none yet: `cargo install` of the crates.io
# release (its own Cargo.lock, its own Pingora), at nice 19, into target/pingap/bin/. The
# build's target dir is a throwaway under /tmp (several GB), removed afterwards; cargo's
# output goes to target/pingap/install.log. Any failure (no network, a compile error, no
# disk) stops the run here, saying why; PINGAP_BIN=<a pingap binary> skips all of it.
install_pingap() {
    local build_dir install_log="$PINGAP_ROOT/install.log" free_gb t0 rc=0 why
    command -v cargo >/dev/null 2>&1 ||
        die "pingap peer: no pingap at $PINGAP_BIN and no cargo to build it (install Rust, or set PINGAP_BIN, or drop pingap/pingap-full from PEERS)"
    command -v protoc >/dev/null 2>&1 ||
        die "pingap peer: building Pingap needs protoc (apt-get install -y protobuf-compiler, as root), or set PINGAP_BIN"
    free_gb=$(( $(df -Pk /tmp | awk 'NR == 2 { print $4 }') / 1048576 ))
    [[ "$free_gb" -ge "$PINGAP_MIN_FREE_GB" ]] ||
        die "pingap peer: only $free_gb GB free under /tmp, building Pingap wants $PINGAP_MIN_FREE_GB (PINGAP_MIN_FREE_GB); free some disk or set PINGAP_BIN"
    mkdir -p "$PINGAP_ROOT"
    build_dir="$(mktemp -d /tmp/pingap-build.XXXXXX)"
    # shellcheck disable=SC2064   # the dir is known now; the main cleanup trap replaces this one
    trap "rm -rf '$build_dir'" EXIT
    log "installing Pingap $PINGAP_VERSION: nice -n 19 cargo install pingap --locked --version $PINGAP_VERSION --root $PINGAP_ROOT"
    log "  (≈ 700 crates: half an hour or more on 2 cores; output in $install_log, build dir $build_dir)"
    t0=$SECONDS
    CARGO_INCREMENTAL=0 CARGO_TARGET_DIR="$build_dir" nice -n 19 \
        cargo install pingap --locked --version "$PINGAP_VERSION" --root "$PINGAP_ROOT" \
        > "$install_log" 2>&1 || rc=$?
    rm -rf "$build_dir"
    trap - EXIT
    if [[ $rc -ne 0 || ! -x "$PINGAP_ROOT/bin/pingap" ]]; then
        log "last lines of $install_log:"
        tail -n 25 "$install_log" >&2 || true
        if grep -qiE 'failed to (download|get|query|fetch|load)|Couldn.t resolve|could not resolve|network|timed out|spurious' "$install_log"; then
            why="crates.io could not be reached (network)"
        elif grep -qiE 'No space left on device' "$install_log"; then
            why="the disk filled up"
        elif grep -qiE 'could not find .pingap. in registry|no matching package|failed to select a version' "$install_log"; then
            why="crates.io has no pingap $PINGAP_VERSION (PINGAP_VERSION)"
        elif grep -qE '^error(\[E[0-9]+\])?:|could not compile' "$install_log"; then
            why="a compile error (rustc $(rustc --version 2>/dev/null | cut -d' ' -f2); Pingap $PINGAP_VERSION wants the rust-version of its Cargo.toml)"
        else
            why="exit status $rc"
        fi
        die "pingap peer: cargo install pingap $PINGAP_VERSION failed after $((SECONDS - t0)) s: $why. Full output: $install_log. Set PINGAP_BIN to a pingap binary, or run without pingap/pingap-full in PEERS."
    fi
    PINGAP_BIN="$PINGAP_ROOT/bin/pingap"
    log "Pingap installed in $((SECONDS - t0)) s: $PINGAP_BIN ($("$PINGAP_BIN" --version 2>/dev/null || echo 'version unknown'))"
}
if has_pingap && [[ ! -x "$PINGAP_BIN" ]]; then
    [[ "$PINGAP_INSTALL" == 1 ]] ||
        die "no pingap binary at $PINGAP_BIN (PINGAP_INSTALL=0; set PINGAP_BIN, or PINGAP_INSTALL=1 to cargo install it)"
    install_pingap
fi
# Which builds are measured, noted now: target/release may be rebuilt while this runs
# (the processes keep the binary they started with; the report must name that one).
GH_BUILT="$(date -r "$GATEHOUSE_BIN" '+%F %H:%M')"
gh_rev="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no commit')"
[[ -z "$(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]] || gh_rev+=" + uncommitted changes"
PINGORA_BUILT="" PINGAP_BUILT=""
if has_peer pingora; then PINGORA_BUILT="$(date -r "$PINGORA_BIN" '+%F %H:%M')"; fi
if has_pingap; then PINGAP_BUILT="$(date -r "$PINGAP_BIN" '+%F %H:%M')"; fi

# ---------------------------------------------------------------------------------------
# Temp dir and cleanup
# ---------------------------------------------------------------------------------------
TMP="$(mktemp -d /tmp/gatehouse-loadtest.XXXXXX)"
# nginx workers run as an unprivileged user when the master is root: they must be able
# to read the static files and write their temp dirs under $TMP.
chmod 755 "$TMP"
PIDS=()             # every long-lived process we started (nginx masters, gatehouse, redis)
declare -A NAME LOG  # pid -> name, pid -> its log file

started() {   # $1 = pid, $2 = name, $3 = log file
    PIDS+=("$1"); NAME[$1]="$2"; LOG[$1]="$3"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid st
    for pid in "${PIDS[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            st=0; wait "$pid" 2>/dev/null || st=$?
            # Ctrl-C reaches our children too (same process group): nothing to report then.
            [[ $rc -eq 130 || $rc -eq 143 ]] && continue
            # Otherwise it died before we stopped it: say how, it matters for the results.
            log "${NAME[$pid]} (pid $pid) had exited on its own with status $st$( ((st > 128)) && echo " (signal $((st - 128)))"); last lines of ${LOG[$pid]}:"
            tail -n 5 "${LOG[$pid]}" >&2 2>/dev/null || true
            [[ $rc -ne 0 ]] || rc=1
            continue
        fi
        # gatehouse (any of its peers), bare Pingora and Pingap: SIGINT = fast shutdown (SIGTERM
        # would be Pingora's graceful one); nginx master: SIGTERM = fast shutdown (it also
        # stops its worker); redis-server: SIGTERM (nothing to save).
        if [[ "${NAME[$pid]}" == gatehouse* || "${NAME[$pid]}" == pingora || "${NAME[$pid]}" == pingap* ]]; then
            kill -INT "$pid" 2>/dev/null || true
        else
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    for pid in "${PIDS[@]}"; do
        # Anything still alive after ~3 s gets SIGKILL, its children (nginx worker) first.
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            pkill -KILL -P "$pid" 2>/dev/null || true
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    # Keep the temp dir (configs, logs) when asked or after a failure, not after Ctrl-C.
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

# Try to allow many sockets (256 client + upstream connections per peer).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# CPU layout: proxy alone on core 0, origin (+ Redis) + the client on core 1.
load_side="origin"
if has_peer gatehouse-rl-global; then load_side+=", redis-server"; fi
if [[ "$CLIENT" == wrk ]]; then CLIENT_DESC="wrk -t1"; else CLIENT_DESC="hey"; fi
if [[ "$PIN" == 1 ]]; then
    PROXY_PIN=(taskset -c 0) LOAD_PIN=(taskset -c 1)
    LAYOUT="iso: proxy on core 0; $load_side and $CLIENT_DESC on core 1"
else
    PROXY_PIN=() LOAD_PIN=()
    LAYOUT="unpinned (PIN=0 or 1 core)"
fi

# Ports of the origin, gatehouse, the nginx proxy, the two JWT and the two rate-limited
# gatehouse peers, the Redis of the global one, gatehouse-observed and its admin listener,
# gatehouse-cache, bare Pingora, gatehouse-full and its admin listener, gatehouse-alt, and
# the two Pingap peers.
read -r ORIGIN_PORT GH_PORT NGX_PORT HS_PORT RS_PORT RLL_PORT RLG_PORT REDIS_PORT OBS_PORT OBS_ADMIN_PORT CACHE_PORT \
    PINGORA_PORT FULL_PORT FULL_ADMIN_PORT ALT_PORT PINGAP_PORT PFULL_PORT < <(python3 "$HELPER" ports 17)

# ---------------------------------------------------------------------------------------
# Body sizes: "2" is the `return 200 "ok"` location at `/`, anything else (N or Nk bytes)
# a static file /<token> of exactly that many bytes.
# ---------------------------------------------------------------------------------------
size_bytes() {
    case "$1" in
        *k) echo $(( ${1%k} * 1024 )) ;;
        *)  echo "$1" ;;
    esac
}
size_path() { if [[ "$1" == 2 ]]; then echo /; else echo "/$1"; fi; }

mkdir -p "$TMP/www"
for s in $SIZES; do
    [[ "$s" =~ ^[0-9]+k?$ ]] || die "bad size '$s' in SIZES (use N or Nk)"
    [[ "$s" == 2 ]] && continue
    head -c "$(size_bytes "$s")" /dev/zero | tr '\0' 'x' > "$TMP/www/$s"
done
chmod -R a+rX "$TMP/www"

# ---------------------------------------------------------------------------------------
# nginx configs (own prefix, pid, logs and temp dirs: the system nginx is never touched)
# ---------------------------------------------------------------------------------------
# Temp-path directives for the modules this nginx has (Debian's defaults are under
# /var/lib/nginx, which we must not use).
NGINX_V="$(nginx -V 2>&1)"
temp_paths() {   # $1 = prefix dir
    local d="$1" m
    echo "client_body_temp_path $d/client_body;"
    echo "proxy_temp_path $d/proxy;"
    for m in fastcgi uwsgi scgi; do
        [[ "$NGINX_V" == *"--without-http_${m}_module"* ]] || echo "${m}_temp_path $d/$m;"
    done
}

# Common head: 1 worker, foreground, logs in the temp dir. keepalive_requests is raised
# so that neither side closes a keepalive connection every 1000 requests (the default),
# which would penalise nginx (gatehouse has no such limit) and add reconnects to both.
nginx_head() {   # $1 = name
    local d="$TMP/$1"
    mkdir -p "$d/logs"
    cat <<EOF
worker_processes 1;
daemon off;
pid $d/nginx.pid;
error_log $d/logs/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    default_type application/octet-stream;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
$(temp_paths "$d" | sed 's/^/    /')
EOF
}

{
    nginx_head origin
    cat <<EOF
    sendfile on;
    tcp_nopush on;
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        root $TMP/www;
        location = / { return 200 "ok"; }
        location / { }
    }
}
EOF
} > "$TMP/origin.conf"

{
    nginx_head nginx-proxy
    cat <<EOF
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive $NGINX_UPSTREAM_KEEPALIVE;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }
    server {
        listen 127.0.0.1:$NGX_PORT;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
} > "$TMP/nginx-proxy.conf"

# gatehouse: the minimal benchmark config (pid file and upgrade socket in the temp dir so
# that nothing collides with another gatehouse on this machine): proxy only, so no access
# log, no metrics and no admin listener (whose default 127.0.0.1:9901 only one gatehouse
# peer could bind). The other gatehouse peers use the same config plus one feature, so what
# they cost beyond `gatehouse` is that feature: the JWT peers add `auth: jwt` on the route
# (reading and verifying the token, passing the request on with X-User-ID), the
# rate-limited peers a `rate_limit` on it, gatehouse-observed the access log, metrics and
# an admin listener (top-level keys, which replace these defaults), gatehouse-cache
# `cache: true`; gatehouse-full has them all but the cache and the global limit.
GATEHOUSE_DEFAULTS='access_log: false
metrics: false
admin: { listen: "" }'
gatehouse_config() {   # $1 = peer name, $2 = port, $3 = top-level YAML, $4 = route YAML (both optional, may be several lines)
    local name="$1" port="$2" top="${3:-}" route="${4:-}" line
    {
        cat <<EOF
listen: ["127.0.0.1:$port"]
threads: 1
pid_file: $TMP/$name.pid
upgrade_sock: $TMP/${name}_upgrade.sock
EOF
        while IFS= read -r line; do   # each default unless the top-level YAML sets that key
            [[ $'\n'"$top" == *$'\n'"${line%%:*}:"* ]] || printf '%s\n' "$line"
        done <<<"$GATEHOUSE_DEFAULTS"
        [[ -z "$top" ]] || printf '%s\n' "$top"
        cat <<EOF
upstreams:
  origin:
    targets: ["127.0.0.1:$ORIGIN_PORT"]
    keepalive_timeout: 60s
routes:
  - name: bench
    prefix: /
    upstream: origin
EOF
        [[ -z "$route" ]] || sed 's/^/    /' <<<"$route"   # each line a key of the route
    } > "$TMP/$name.yaml"
}

gatehouse_config gatehouse "$GH_PORT"
# gatehouse-alt: the minimal config plus the top-level keys in ALT (a tuning A/B).
if has_peer gatehouse-alt; then
    gatehouse_config gatehouse-alt "$ALT_PORT" "$ALT"
fi
HS256_AUTH='auth: { jwt: { secret: "loadtest-secret-0123456789abcdef0123", algorithms: [HS256] } }'
if has_peer gatehouse-hs256; then
    gatehouse_config gatehouse-hs256 "$HS_PORT" "$HS256_AUTH" 'auth: jwt'
fi
if has_peer gatehouse-rs256; then
    # A throwaway RSA 2048 key pair: gatehouse verifies with the public key, the
    # `gatehouse token --key` below signs with the private one.
    { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$TMP/jwt_private.pem" &&
      openssl rsa -in "$TMP/jwt_private.pem" -pubout -out "$TMP/jwt_public.pem"
    } > "$TMP/openssl.log" 2>&1 || { cat "$TMP/openssl.log" >&2; die "cannot generate the RSA key pair"; }
    gatehouse_config gatehouse-rs256 "$RS_PORT" "auth: { jwt: { public_key: $TMP/jwt_public.pem } }" 'auth: jwt'
fi

# The rate-limited peers: a limit per client address that never triggers (all requests
# come from 127.0.0.1, so one bucket, and 10^6 per second (the finest a limit can be) is far above what one core
# serves), counted in the process (local) or, for the global one, by one Lua script round
# trip per request to the redis-server started below. Its timeout is raised from the
# default 5ms to 50ms so that a loaded machine does not turn decisions into policy
# fallbacks (which skip Redis and would look cheaper); the check below makes sure Redis
# answers.
RL_LIMIT=1000000
rl_route() { echo "rate_limit: { requests: $RL_LIMIT, per: 1s, key: ip, scope: $1 }"; }
if has_peer gatehouse-rl-local; then
    gatehouse_config gatehouse-rl-local "$RLL_PORT" "" "$(rl_route local)"
fi
if has_peer gatehouse-rl-global; then
    gatehouse_config gatehouse-rl-global "$RLG_PORT" \
        "redis: { url: \"redis://127.0.0.1:$REDIS_PORT\", timeout: 50ms, key_prefix: bench }" \
        "$(rl_route global)"
fi

# gatehouse-observed: what observing every request costs. One JSON access line per request
# through the `log` crate to stderr (its log file in the temp dir, like every gatehouse
# peer's), the Prometheus collectors updated per request, and the admin listener on its
# own port for /metrics, which a background loop scrapes once a second while measuring,
# as Prometheus would (the scrapes' cost lands in this peer's CPU).
declare -A METRICS_URL   # peer -> its /metrics (the observing peers only)
observing() {   # $1 = admin port: the top-level YAML of an observing peer
    printf 'access_log: true\nmetrics: true\nadmin: { listen: "127.0.0.1:%s" }\n' "$1"
}
if has_peer gatehouse-observed; then
    gatehouse_config gatehouse-observed "$OBS_PORT" "$(observing "$OBS_ADMIN_PORT")"
    METRICS_URL[gatehouse-observed]="http://127.0.0.1:$OBS_ADMIN_PORT/metrics"
fi

# gatehouse-cache: the same route with `cache: true`. The origin says nothing about
# freshness, so answers stay fresh for the default 5 minutes, longer than a run's use of
# one URL (warm-up + measurement); the check below makes sure HITs are what is measured.
if has_peer gatehouse-cache; then
    gatehouse_config gatehouse-cache "$CACHE_PORT" "" "cache: true"
fi

# gatehouse-full: the whole request chain of a typical deployment on the one route, i.e.
# gatehouse-hs256 + gatehouse-rl-local + gatehouse-observed in one process: the JWT (HS256,
# the client sends a valid bearer token), a local rate limit that never triggers, the
# access log (stderr → its log file in the temp dir) and metrics, with its own admin
# listener, scraped once a second like gatehouse-observed's.
if has_peer gatehouse-full; then
    gatehouse_config gatehouse-full "$FULL_PORT" "$HS256_AUTH
$(observing "$FULL_ADMIN_PORT")" "auth: jwt
$(rl_route local)"
    METRICS_URL[gatehouse-full]="http://127.0.0.1:$FULL_ADMIN_PORT/metrics"
fi

# Pingap (optional): the minimal gatehouse peer's equivalent in its TOML (pingap_config.sh).
# shellcheck source=loadtest/pingap_config.sh
source "$HERE/pingap_config.sh"
if has_peer pingap; then
    pingap_config pingap "$PINGAP_PORT"
fi
if has_peer pingap-full; then
    pingap_config pingap-full "$PFULL_PORT" '[plugins.benchJwt]
category = "jwt"
secret = "loadtest-secret-0123456789abcdef0123"
algorithm = "HS256"
header = "Authorization"

[plugins.benchLimit]
category = "limit"
type = "rate"
tag = "ip"
max = '"$RL_LIMIT"'
interval = "1s"' '"benchJwt", "benchLimit"'
    # Its token: gatehouse mints it (below) from a gatehouse config with the same secret,
    # never started. Both sides are plain JWS compact HS256 over the secret's bytes, and
    # Pingap checks only the signature and `exp`, so a gatehouse token is a Pingap token.
    gatehouse_config pingap-full "$PFULL_PORT" "$HS256_AUTH" 'auth: jwt'
fi

# nginx -e (startup error log) exists since 1.19.5; older versions log to the compiled-in path.
NGINX_E=()
[[ "$(nginx -h 2>&1 || true)" == *"-e filename"* ]] && NGINX_E=(-e)
start_nginx() {   # $1 = name, rest = pin prefix; sets STARTED_PID
    local name="$1"; shift
    local args=(-p "$TMP/$name" -c "$TMP/$name.conf")
    [[ ${#NGINX_E[@]} -gt 0 ]] && args+=(-e "$TMP/$name/logs/error.log")
    nginx -t -q "${args[@]}" || die "nginx config $TMP/$name.conf is invalid"
    "$@" nginx "${args[@]}" > "$TMP/$name/logs/stdout.log" 2>&1 &
    STARTED_PID=$!
    started "$STARTED_PID" "$name" "$TMP/$name/logs/error.log"
}

# Wait until URL answers 200 (or the status in $5; or the process dies / 30 s pass).
wait_ready() {   # $1 = name, $2 = pid, $3 = url, $4 = log file, $5 = status (default 200)
    local i want="${5:-200}"
    for i in $(seq 300); do
        if ! kill -0 "$2" 2>/dev/null; then
            log "$1 exited during startup; last log lines:"; tail -n 20 "$4" >&2 || true
            die "$1 did not start"
        fi
        [[ "$(curl -s -o /dev/null -w '%{http_code}' "$3" 2>/dev/null || true)" == "$want" ]] && return 0
        sleep 0.1
    done
    tail -n 20 "$4" >&2 || true
    die "$1 not ready at $3 after 30 s (no $want)"
}

# ---------------------------------------------------------------------------------------
# Start origin, Redis, gatehouse, nginx proxy
# ---------------------------------------------------------------------------------------
log "temp dir: $TMP"
log "layout: $LAYOUT"
start_nginx origin "${LOAD_PIN[@]}"
ORIGIN_PID=$STARTED_PID
wait_ready origin "$ORIGIN_PID" "http://127.0.0.1:$ORIGIN_PORT/" "$TMP/origin/logs/error.log"

# The Redis of gatehouse-rl-global: loopback only, no persistence (no RDB snapshots, no
# AOF: nothing but the request path costs CPU), on the load core like the origin, so
# that the proxy core measures gatehouse alone. Its CPU is read like the origin's.
REDIS_PID=0
if has_peer gatehouse-rl-global; then
    mkdir -p "$TMP/redis"
    "${LOAD_PIN[@]}" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
        --dir "$TMP/redis" --logfile "$TMP/redis/redis.log" --daemonize no > /dev/null 2>&1 &
    REDIS_PID=$!
    started "$REDIS_PID" redis "$TMP/redis/redis.log"
    for _ in $(seq 300); do
        kill -0 "$REDIS_PID" 2>/dev/null || { tail -n 20 "$TMP/redis/redis.log" >&2 || true; die "redis-server did not start"; }
        [[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null || true)" == PONG ]] && break
        sleep 0.1
    done
    [[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null || true)" == PONG ]] || die "redis-server not ready on port $REDIS_PORT after 30 s"
fi

# Every gatehouse peer is its own process on the proxy core, with its config and log in
# the temp dir. /health is built in and answers without a token even on the JWT peers.
start_gatehouse() {   # $1 = peer name, $2 = port; sets STARTED_PID
    local name="$1"
    "${PROXY_PIN[@]}" env -u PORT RUST_LOG=info "$GATEHOUSE_BIN" run -c "$TMP/$name.yaml" \
        > "$TMP/$name.log" 2>&1 &
    STARTED_PID=$!
    started "$STARTED_PID" "$name" "$TMP/$name.log"
    wait_ready "$name" "$STARTED_PID" "http://127.0.0.1:$2/health" "$TMP/$name.log"
}

# Bare Pingora: the same pinning, its own pid file and upgrade socket in the temp dir
# (--dir), round robin over the one origin. It has no /health: ready when `/` answers
# through it. Its stderr goes to pingora.log.
start_pingora() {   # sets STARTED_PID
    "${PROXY_PIN[@]}" env -u PORT RUST_LOG=info "$PINGORA_BIN" --listen "127.0.0.1:$PINGORA_PORT" \
        --upstream "127.0.0.1:$ORIGIN_PORT" --threads 1 --dir "$TMP" > "$TMP/pingora.log" 2>&1 &
    STARTED_PID=$!
    started "$STARTED_PID" pingora "$TMP/pingora.log"
    wait_ready pingora "$STARTED_PID" "http://127.0.0.1:$PINGORA_PORT/" "$TMP/pingora.log"
}

# Pingap: the same pinning, its TOML, pid file and upgrade socket in the temp dir, its
# stderr in <peer>.log. `pingap -t` validates the config (plugins included) first. Ready
# when `/` answers through it: 200, or 401 for pingap-full (no token: its jwt plugin runs).
start_pingap() {   # $1 = peer name, $2 = port; sets STARTED_PID
    local name="$1" want=200
    [[ "$name" == pingap-full ]] && want=401
    env -u PORT RUST_LOG=info "$PINGAP_BIN" -c "$TMP/$name.toml" -t > "$TMP/$name-check.log" 2>&1 ||
        { tail -n 20 "$TMP/$name-check.log" >&2; die "pingap -t refuses $TMP/$name.toml"; }
    "${PROXY_PIN[@]}" env -u PORT RUST_LOG=info "$PINGAP_BIN" -c "$TMP/$name.toml" > "$TMP/$name.log" 2>&1 &
    STARTED_PID=$!
    started "$STARTED_PID" "$name" "$TMP/$name.log"
    wait_ready "$name" "$STARTED_PID" "http://127.0.0.1:$2/" "$TMP/$name.log" "$want"
    if grep -q 'init plugins fail' "$TMP/$name.log"; then
        grep 'init plugins fail' "$TMP/$name.log" | tail -n 3 >&2
        die "$name: Pingap could not init its plugins (log: $TMP/$name.log)"
    fi
}

PINGORA_PID=0 GH_PID=0 ALT_PID=0 NGX_PID=0 HS_PID=0 RS_PID=0 RLL_PID=0 RLG_PID=0 OBS_PID=0 CACHE_PID=0 FULL_PID=0
PINGAP_PID=0 PFULL_PID=0
if has_peer pingora; then
    start_pingora
    PINGORA_PID=$STARTED_PID
fi
if has_peer gatehouse; then
    start_gatehouse gatehouse "$GH_PORT"
    GH_PID=$STARTED_PID
fi
if has_peer gatehouse-alt; then
    start_gatehouse gatehouse-alt "$ALT_PORT"
    ALT_PID=$STARTED_PID
fi
if has_peer gatehouse-hs256; then
    start_gatehouse gatehouse-hs256 "$HS_PORT"
    HS_PID=$STARTED_PID
fi
if has_peer gatehouse-rs256; then
    start_gatehouse gatehouse-rs256 "$RS_PORT"
    RS_PID=$STARTED_PID
fi
if has_peer gatehouse-rl-local; then
    start_gatehouse gatehouse-rl-local "$RLL_PORT"
    RLL_PID=$STARTED_PID
fi
if has_peer gatehouse-rl-global; then
    start_gatehouse gatehouse-rl-global "$RLG_PORT"
    RLG_PID=$STARTED_PID
fi
if has_peer gatehouse-observed; then
    start_gatehouse gatehouse-observed "$OBS_PORT"
    OBS_PID=$STARTED_PID
fi
if has_peer gatehouse-cache; then
    start_gatehouse gatehouse-cache "$CACHE_PORT"
    CACHE_PID=$STARTED_PID
fi
if has_peer gatehouse-full; then
    start_gatehouse gatehouse-full "$FULL_PORT"
    FULL_PID=$STARTED_PID
fi
if has_peer pingap; then
    start_pingap pingap "$PINGAP_PORT"
    PINGAP_PID=$STARTED_PID
fi
if has_peer pingap-full; then
    start_pingap pingap-full "$PFULL_PORT"
    PFULL_PID=$STARTED_PID
fi
if has_peer nginx; then
    start_nginx nginx-proxy "${PROXY_PIN[@]}"
    NGX_PID=$STARTED_PID
    wait_ready nginx-proxy "$NGX_PID" "http://127.0.0.1:$NGX_PORT/" "$TMP/nginx-proxy/logs/error.log"
fi

peer_port() {
    case "$1" in
        gatehouse) echo "$GH_PORT";; gatehouse-alt) echo "$ALT_PORT";; gatehouse-hs256) echo "$HS_PORT";; gatehouse-rs256) echo "$RS_PORT";;
        gatehouse-rl-local) echo "$RLL_PORT";; gatehouse-rl-global) echo "$RLG_PORT";;
        gatehouse-observed) echo "$OBS_PORT";; gatehouse-cache) echo "$CACHE_PORT";;
        gatehouse-full) echo "$FULL_PORT";; pingora) echo "$PINGORA_PORT";;
        pingap) echo "$PINGAP_PORT";; pingap-full) echo "$PFULL_PORT";;
        nginx) echo "$NGX_PORT";; direct) echo "$ORIGIN_PORT";; *) die "unknown peer '$1'";;
    esac
}
peer_pid() {
    case "$1" in
        gatehouse) echo "$GH_PID";; gatehouse-alt) echo "$ALT_PID";; gatehouse-hs256) echo "$HS_PID";; gatehouse-rs256) echo "$RS_PID";;
        gatehouse-rl-local) echo "$RLL_PID";; gatehouse-rl-global) echo "$RLG_PID";;
        gatehouse-observed) echo "$OBS_PID";; gatehouse-cache) echo "$CACHE_PID";;
        gatehouse-full) echo "$FULL_PID";; pingora) echo "$PINGORA_PID";;
        pingap) echo "$PINGAP_PID";; pingap-full) echo "$PFULL_PID";;
        nginx) echo "$NGX_PID";; direct) echo 0;;
    esac
}
# The Redis whose CPU counts for a peer's requests (0 = none).
peer_redis_pid() { if [[ "$1" == gatehouse-rl-global ]]; then echo "$REDIS_PID"; else echo 0; fi; }

# Bearer tokens for the JWT peers, minted by the gatehouse CLI from that peer's own config
# (HS256: the configured secret; RS256: --key with the private key). The 2 h lifetime
# outlasts a default run with all five peers (~18 min); once expired, every request would
# be a 401, counted under errors.
declare -A TOKEN   # peer -> JWT (only the JWT peers have one)
mint_token() {   # $1 = peer, rest = extra arguments of `gatehouse token`
    local peer="$1"; shift
    TOKEN[$peer]="$(env -u PORT "$GATEHOUSE_BIN" token -c "$TMP/$peer.yaml" --sub bench --ttl 2h "$@" \
        2> "$TMP/$peer-token.log")" || { cat "$TMP/$peer-token.log" >&2; die "gatehouse token failed for $peer"; }
}
if has_peer gatehouse-hs256; then mint_token gatehouse-hs256; fi
if has_peer gatehouse-rs256; then mint_token gatehouse-rs256 --key "$TMP/jwt_private.pem"; fi
if has_peer gatehouse-full; then mint_token gatehouse-full; fi
if has_peer pingap-full; then mint_token pingap-full; fi   # from its gatehouse twin, pingap-full.yaml
# The request header a peer needs ("" for all but the JWT peers and gatehouse-full).
peer_header() { if [[ -n "${TOKEN[$1]:-}" ]]; then echo "Authorization: Bearer ${TOKEN[$1]}"; fi; }

# ---------------------------------------------------------------------------------------
# Check every peer returns 200 with the exact body for every size
# ---------------------------------------------------------------------------------------
for peer in $PEERS; do
    header="$(peer_header "$peer")" hdr=()
    [[ -z "$header" ]] || hdr=(-H "$header")
    for s in $SIZES; do
        url="http://127.0.0.1:$(peer_port "$peer")$(size_path "$s")"
        want="$(size_bytes "$s")"
        got="$(curl -s "${hdr[@]}" -o "$TMP/body" -w '%{http_code} %{size_download}' "$url" || echo "curl-failed")"
        [[ "$got" == "200 $want" ]] || die "$peer $url: expected '200 $want' (status, body bytes), got '$got'"
        if [[ "$s" == 2 ]]; then
            [[ "$(cat "$TMP/body")" == ok ]] || die "$peer $url: body is not 'ok'"
        else
            cmp -s "$TMP/body" "$TMP/www/$s" || die "$peer $url: body differs from the origin file"
        fi
    done
done
log "all peers answer 200 with the exact body for sizes: $SIZES"

# The JWT peers must really verify: no token and a token with a forged signature (its
# first signature character changed) are both refused with 401.
for peer in $PEERS; do
    token="${TOKEN[$peer]:-}"
    [[ -n "$token" ]] || continue
    url="http://127.0.0.1:$(peer_port "$peer")/"
    sig="${token##*.}"
    if [[ "${sig:0:1}" == A ]]; then forged="${token%.*}.B${sig:1}"; else forged="${token%.*}.A${sig:1}"; fi
    got="$(curl -s -o /dev/null -w '%{http_code}' "$url" || echo "curl-failed")"
    [[ "$got" == 401 ]] || die "$peer $url without a token: expected 401, got '$got'"
    got="$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $forged" "$url" || echo "curl-failed")"
    [[ "$got" == 401 ]] || die "$peer $url with a forged token: expected 401, got '$got'"
    log "$peer answers 401 without a token and with a forged one"
done

# The rate-limited peers (and gatehouse-full, with its token) must really count: every
# response carries RateLimit-Limit and a RateLimit-Remaining below it. For the global peer
# that proves Redis answered: when it cannot, the decision follows `on_redis_error: allow`
# and reports remaining == limit. gatehouse connects to Redis in the background on the
# first global decision, so the first few requests may be such fallbacks: retry for up to 5 s.
for peer in $PEERS; do
    [[ "$peer" == gatehouse-rl-* || "$peer" == gatehouse-full ]] || continue
    url="http://127.0.0.1:$(peer_port "$peer")/"
    header="$(peer_header "$peer")" hdr=()
    [[ -z "$header" ]] || hdr=(-H "$header")
    for i in $(seq 50); do
        hdrs="$(curl -s "${hdr[@]}" -D - -o /dev/null "$url" | tr -d '\r' | tr 'A-Z' 'a-z' || true)"
        limit="$(sed -n 's/^ratelimit-limit: *//p' <<<"$hdrs")"
        remaining="$(sed -n 's/^ratelimit-remaining: *//p' <<<"$hdrs")"
        [[ "$limit" == "$RL_LIMIT" && "$remaining" =~ ^[0-9]+$ && "$remaining" -lt "$RL_LIMIT" ]] && break
        sleep 0.1
    done
    [[ "$limit" == "$RL_LIMIT" && "$remaining" =~ ^[0-9]+$ && "$remaining" -lt "$RL_LIMIT" ]] ||
        die "$peer $url: expected ratelimit-limit: $RL_LIMIT and ratelimit-remaining below it, got '${limit:-none}' / '${remaining:-none}'"
    log "$peer counts: ratelimit-limit $limit, ratelimit-remaining $remaining$([[ "$peer" == *global ]] && echo " (answered by Redis)")"
done

# The cache peer must answer from its cache: after the checks above stored every size,
# each answers X-Cache: HIT.
if has_peer gatehouse-cache; then
    for s in $SIZES; do
        url="http://127.0.0.1:$CACHE_PORT$(size_path "$s")"
        got="$(curl -s -D - -o /dev/null "$url" | tr -d '\r' | sed -n 's/^[Xx]-[Cc]ache: *//p' || true)"
        [[ "$got" == HIT ]] || die "gatehouse-cache $url: expected X-Cache: HIT, got '${got:-none}'"
    done
    log "gatehouse-cache answers X-Cache: HIT for sizes: $SIZES"
fi

# Only gatehouse-observed and gatehouse-full observe. The checks above went through every
# peer, so their logs must hold access lines (JSON with "request_id"; retried for up to 2 s
# in case a write lags) and their /metrics a non-zero request count for the route, while
# no other gatehouse peer may have written a single access line.
for peer in $PEERS; do
    [[ "$peer" == gatehouse* ]] || continue
    murl="${METRICS_URL[$peer]:-}"
    if [[ -n "$murl" ]]; then
        for _ in $(seq 20); do grep -q '"request_id"' "$TMP/$peer.log" && break; sleep 0.1; done
        grep -q '"request_id"' "$TMP/$peer.log" || die "$peer: no access line (\"request_id\") in $TMP/$peer.log"
        curl -s "$murl" > "$TMP/$peer-metrics.txt" || die "$peer: cannot fetch $murl"
        grep -Eq '^gateway_requests_total\{[^}]*route="bench"[^}]*\} [1-9]' "$TMP/$peer-metrics.txt" ||
            die "$peer: no non-zero gateway_requests_total for route bench in $murl (saved in $TMP/$peer-metrics.txt)"
        log "$peer writes access lines to its log and counts requests in $murl"
    elif grep -q '"request_id"' "$TMP/$peer.log"; then
        die "$peer: access lines in $TMP/$peer.log, but its config has access_log: false"
    fi
done

# ---------------------------------------------------------------------------------------
# Measure: reps outermost, peers interleaved innermost
# ---------------------------------------------------------------------------------------
STAMP="$(date +%Y%m%d-%H%M%S)"
RESULTS="${RESULTS:-$HERE/results}"   # where the report goes (the CI smoke test: a temp dir)
mkdir -p "$RESULTS"
CSV="$RESULTS/$STAMP.csv" MD="$RESULTS/$STAMP.md" RAW="$RESULTS/$STAMP.raw" PNG="$RESULTS/$STAMP.png"
OURS="$ORIGIN_PID,$GH_PID,$ALT_PID,$NGX_PID,$HS_PID,$RS_PID,$RLL_PID,$RLG_PID,$OBS_PID,$CACHE_PID,$REDIS_PID,$PINGORA_PID,$FULL_PID,$PINGAP_PID,$PFULL_PID"
n_runs=$(( REPS * $(wc -w <<<"$SIZES") * $(wc -w <<<"$CONNS") * $(wc -w <<<"$PEERS") ))
log "measuring with $CLIENT: $n_runs runs of $DURATION (after $WARMUP warm-up each); results → $CSV"

# The observing peers' /metrics (gatehouse-observed, gatehouse-full), each scraped once a
# second from the load core until the end; each scrape's HTTP status goes to
# scrapes-<peer>.log. curl's own CPU (~0.01 core each) counts as "other" in the noise check.
for peer in $PEERS; do
    murl="${METRICS_URL[$peer]:-}"
    [[ -n "$murl" ]] || continue
    while :; do
        "${LOAD_PIN[@]}" curl -s -o /dev/null -w '%{http_code}\n' "$murl" >> "$TMP/scrapes-$peer.log" || true
        sleep 1
    done &
    started $! "metrics-scraper ($peer)" "$TMP/scrapes-$peer.log"
done

for rep in $(seq "$REPS"); do
    for s in $SIZES; do
        for c in $CONNS; do
            for peer in $PEERS; do
                python3 "$HELPER" run-one \
                    --peer "$peer" --size "$s" --conns "$c" --rep "$rep" \
                    --url "http://127.0.0.1:$(peer_port "$peer")$(size_path "$s")" \
                    --header "$(peer_header "$peer")" \
                    --client "$CLIENT" --client-cmd "${LOAD_PIN[*]} $CLIENT" \
                    --duration "$DURATION" --warmup "$WARMUP" \
                    --proxy-pid "$(peer_pid "$peer")" --origin-pid "$ORIGIN_PID" \
                    --redis-pid "$(peer_redis_pid "$peer")" --ours "$OURS" \
                    --quiet-max "$QUIET_MAX" --quiet-timeout "$QUIET_TIMEOUT" \
                    --noise-max "$NOISE_MAX" --redo "$REDO" --csv "$CSV" --raw "$RAW"
            done
        done
    done
done

# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------
# Warnings and errors in the logs of the proxies and the origin, grouped by message.
notes=()
for name in pingora gatehouse gatehouse-alt gatehouse-hs256 gatehouse-rs256 gatehouse-rl-local gatehouse-rl-global gatehouse-observed gatehouse-cache gatehouse-full; do
    if has_peer "$name"; then notes+=("$(python3 "$HELPER" logsummary "$name" "$TMP/$name.log")"); fi
done
for name in nginx-proxy origin; do
    f="$TMP/$name/logs/error.log"
    if [[ -f "$f" ]]; then notes+=("$(python3 "$HELPER" logsummary "$name" "$f")"); fi
done
if [[ "$REDIS_PID" != 0 ]]; then notes+=("$(python3 "$HELPER" logsummary redis "$TMP/redis/redis.log")"); fi
# Pingap logs plain text (tracing's format: "<time> ERROR <message> key=value…"), which
# logsummary does not parse: count its warnings and errors, those of a client closing
# mid-request apart (Pingap logs each as "ERROR fail to proxy error=Downstream
# ConnectionClosed"), and quote the first other one.
pingap_log_note() {   # $1 = peer, $2 = log file
    awk -v name="$1" '
        { gsub(/\033\[[0-9;]*m/, "") }
        / (WARN|ERROR) / {
            n++
            if ($0 ~ /Downstream (ConnectionClosed|WriteError)|Broken pipe|Connection reset by peer/) gone++
            else if (first == "") first = substr($0, 1, 200)
        }
        END {
            if (!n) exit
            printf "Log of %s: %d WARN/ERROR line(s)", name, n
            if (gone) printf "; %d of them are a client closing mid-request (wrk stops with requests in flight at the end of each run, warm-ups included: expected)", gone
            if (first != "") printf "; other, the first: `%s`", first
            printf "\n"
        }' "$2"
}
for name in pingap pingap-full; do
    if has_peer "$name"; then notes+=("$(pingap_log_note "$name" "$TMP/$name.log")"); fi
done
# gatehouse logs a global decision that Redis failed to make (then at most one line a
# second, with the running count, which logsummary reports in bold). No such line: every
# measured decision of gatehouse-rl-global was Redis's.
if has_peer gatehouse-rl-global && ! grep -q 'follow on_redis_error' "$TMP/gatehouse-rl-global.log"; then
    notes+=("gatehouse-rl-global: no Redis failure in its log, so Redis made every measured decision (no on_redis_error fallback).")
fi
# What the observing peers (gatehouse-observed, gatehouse-full) wrote to their logs, and
# how their scrapes went.
for peer in $PEERS; do
    [[ -n "${METRICS_URL[$peer]:-}" ]] || continue
    read -r access_lines access_mb access_b < <(awk '/"request_id"/ { n++; b += length($0) + 1 }
        END { printf "%d %.0f %.0f\n", n, b / 1e6, n ? b / n : 0 }' "$TMP/$peer.log")
    scrapes="$(wc -l < "$TMP/scrapes-$peer.log" 2>/dev/null || echo 0)"
    scrapes_ok="$(grep -cx 200 "$TMP/scrapes-$peer.log" 2>/dev/null || true)"
    notes+=("$peer: $access_lines access lines in its log, $access_mb MB (≈ $access_b B a line; warm-ups and checks included); /metrics scraped $scrapes times, ${scrapes_ok:-0} answered 200.")
done

cpu_model="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)"
nginx_version="$(nginx -v 2>&1 | sed 's/^nginx version: //' || true)"
if [[ "$CLIENT" == wrk ]]; then
    client_version="$(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2 || true) -t1"
else
    # hey has no version flag: the package's version, where there is one.
    client_version="hey $(dpkg-query -W -f='${Version}' hey 2>/dev/null || echo '(version unknown)') (Go, -z DURATION -c CONNS)"
fi
jwt_peers=""
if has_peer gatehouse-hs256 || has_peer gatehouse-rs256; then
    jwt_peers="; gatehouse-hs256 / gatehouse-rs256 = the same gatehouse with \`auth: jwt\` on the route (HS256 secret / RS256 with an RSA 2048 public key), each its own process, wrk sending a valid bearer token"
fi
rl_peers=""
if has_peer gatehouse-rl-local || has_peer gatehouse-rl-global; then
    rl_peers="; gatehouse-rl-local / gatehouse-rl-global = the same gatehouse with \`$(rl_route "local|global")\` on the route (never triggers), each its own process"
    if has_peer gatehouse-rl-global; then
        rl_peers+=", the global one with \`redis.timeout: 50ms\` and Redis $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p') (no persistence) on the load core"
    fi
fi
obs_peers=""
if has_peer gatehouse-observed; then
    obs_peers="; gatehouse-observed = the same gatehouse with \`access_log: true\`, \`metrics: true\` and an admin listener, its log (stderr, RUST_LOG=info) in a file, /metrics scraped once a second"
fi
alt_peer=""
if has_peer gatehouse-alt; then
    alt_peer="; gatehouse-alt = the same gatehouse with \`${ALT//$'\n'/; }\`"
fi
cache_peers=""
if has_peer gatehouse-cache; then
    cache_peers="; gatehouse-cache = the same gatehouse with \`cache: true\` on the route (every measured request a HIT)"
fi
full_peers=""
if has_peer gatehouse-full; then
    full_peers="; gatehouse-full = the same gatehouse with the full chain: \`auth: jwt\` (HS256, the client sending a valid bearer token), \`$(rl_route local)\` (never triggers), \`access_log: true\` (its log in a file), \`metrics: true\` and an admin listener (/metrics scraped once a second)"
fi
pingora_peer=""
if has_peer pingora; then
    pingora_built="$PINGORA_BUILT"
    pingora_ver="$(sed -n '/^name = "pingora"$/{n;s/^version = "\(.*\)"$/\1/p;q}' "$ROOT/Cargo.lock" 2>/dev/null || true)"
    pingora_peer="; pingora = bare Pingora ${pingora_ver:-(version unknown)} (examples/$(basename "$PINGORA_BIN").rs, binary built $pingora_built, threads 1, one round-robin upstream, no logging or metrics)"
fi
pingap_peer=""
if has_pingap; then
    # `pingap --version`: "pingap 0.13.1 (<git sha, or VERGEN_IDEMPOTENT_OUTPUT from crates.io>)"
    pingap_ver="$("$PINGAP_BIN" --version 2>/dev/null || true)"
    pingap_ver="$(sed -n '1s/^pingap \([0-9][0-9.]*\).*/\1/p' <<<"$pingap_ver")"
    pingap_lock=""
    [[ -z "$pingap_ver" ]] ||
        pingap_lock="$(ls "$HOME"/.cargo/registry/src/*/"pingap-$pingap_ver"/Cargo.lock 2>/dev/null || true)"
    pingap_lock="${pingap_lock%%$'\n'*}"
    pingap_pingora=""
    [[ -z "$pingap_lock" ]] ||
        pingap_pingora="$(sed -n '/^name = "pingora"$/{n;s/^version = "\(.*\)"$/\1/p;q}' "$pingap_lock" 2>/dev/null || true)"
    # cargo install builds with the crate's own release profile (0.13.1: fat LTO, one
    # codegen unit, panic = abort), gatehouse and bare Pingora with this repository's.
    pingap_profile=""
    [[ -z "$pingap_lock" ]] ||
        pingap_profile="$(sed -n '/^\[profile\.release\]$/,/^\[/{/^\(lto\|codegen-units\|panic\) = /p}' \
            "$(dirname "$pingap_lock")/Cargo.toml" 2>/dev/null | paste -sd, - | sed 's/,/, /g' || true)"
    pingap_peer="; pingap = Pingap ${pingap_ver:-(version unknown)}${pingap_pingora:+ on Pingora $pingap_pingora} (its own release profile${pingap_profile:+: $pingap_profile}; binary built $PINGAP_BUILT, default features, threads 1, one location \`/\` → the origin, upstream idle_timeout 60s, no access log)"
    if has_peer pingap-full; then
        pingap_peer+=", pingap-full = the same with its \`jwt\` plugin (HS256, the client sending a valid bearer token minted by gatehouse) and its \`limit\` plugin (rate per IP, $RL_LIMIT/s: never triggers)"
    fi
fi
report_args=(
    --stamp "$STAMP" --noise-max "$NOISE_MAX" --client "$CLIENT"
    --meta "machine: $NCPU cores ($cpu_model), Linux $(uname -r)"
    --meta "layout: $LAYOUT"
    --meta "peers: gatehouse $gh_rev at the start (binary built $GH_BUILT, threads 1, access_log false, metrics false, no admin listener)$alt_peer$jwt_peers$rl_peers$obs_peers$cache_peers$full_peers$pingora_peer$pingap_peer; $nginx_version reverse proxy (1 worker, upstream keepalive $NGINX_UPSTREAM_KEEPALIVE); direct = $CLIENT → origin"
    --meta "origin: nginx, 1 worker, \`return 200 \"ok\"\` for 2 B, static files otherwise"
    --meta "client: $client_version"
    --meta "runs: $REPS rep(s) × $DURATION after $WARMUP warm-up, conns: $CONNS, sizes: $SIZES (bytes, k = KiB)"
)
for n in "${notes[@]}"; do [[ -z "$n" ]] || report_args+=(--note "$n"); done
if [[ "$CHART" == 1 ]]; then report_args+=(--png "$PNG"); fi
echo
python3 "$HELPER" report "$CSV" "$MD" "${report_args[@]}"
log ""
saved="$MD, $CSV (raw $CLIENT output: $RAW)"
if [[ "$CHART" == 1 && -s "$PNG" ]]; then saved+=", chart: $PNG"; fi
log "saved: $saved"
if [[ "$CHART_MISSING" == 1 ]]; then
    log ""
    log "WARNING: no chart drawn: gnuplot is missing (apt-get install -y gnuplot-nox)."
fi
