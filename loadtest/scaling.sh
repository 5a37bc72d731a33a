#!/usr/bin/env bash
# Scaling of gatehouse next to nginx (issue #8, item 4): throughput with 1 and 2 worker
# threads, and memory (RSS) idle and while holding many client connections, i.e. how RSS
# grows per connection.
#
#   bash loadtest/scaling.sh                                    # full run, ≈ 3.5 min
#   BUILD=0 DURATION=2 WARMUP=1 REPS=1 bash loadtest/scaling.sh # smoke run, ≈ 30 s
#   CONNS_MEM="256 1024 4096" bash loadtest/scaling.sh          # more points for memory
#
# What it does (all over loopback, in a temp dir; every process stopped on exit, Ctrl-C or
# failure):
#   1. starts an nginx ORIGIN (1 worker, `/` → `return 200 "ok"`, a 2-byte body) and, in
#      front of it, gatehouse with the minimal benchmark config of run.sh (no access log,
#      no metrics, no admin listener, one upstream, one route `/`) with `threads: 1` and
#      with `threads: 2`, and the nginx reverse proxy of run.sh (upstream keepalive) with
#      `worker_processes 1` and `2`;
#   2. THROUGHPUT: for each rep, the four proxies interleaved (gatehouse 1, gatehouse 2,
#      nginx 1, nginx 2): wrk warm-up, then wrk -c$TPUT_CONNS for $DURATION; req/s, p99,
#      and the proxy's CPU (process tree, from /proc) as cores used and µs per request.
#      Medians over the reps, and each proxy's 2-thread/worker req/s over its 1-thread one;
#   3. MEMORY: a fresh gatehouse (threads 1) and a fresh nginx proxy (1 worker): RSS idle
#      after start (and one checked request), then for each C in $CONNS_MEM a wrk -cC run
#      (-t2 above 1024 connections) during which VmRSS is sampled every $SAMPLE s (nginx:
#      master + workers summed) together with the number of established connections on
#      the proxy's port (proof that wrk really holds C connections); the peak gives
#      (peak − idle) / C = KiB per connection. wrk's socket errors are reported;
#   4. prints a Markdown report and saves it as loadtest/results/<stamp>-scaling.md.
#
# Layout: with 4+ cores (PIN=1 by default there) the 1-thread proxies run on core 0, the
# 2-thread ones on cores 0-1, origin and wrk on the other cores. With fewer cores (PIN=0)
# nothing is pinned: on 2 cores the second proxy thread competes with wrk and the origin,
# so the 2-thread figures show what a loaded 2-core machine gives, not linear scaling.
#
# Knobs (environment), defaults in brackets:
#   DURATION [10s]       length of each measured wrk run (a plain number means seconds)
#   WARMUP [2s]          wrk warm-up before each throughput run (0 = none)
#   REPS [3]             throughput reps (interleaved; medians reported)
#   TPUT_CONNS [256]     wrk connections of the throughput runs
#   WRK_THREADS [1]      wrk threads of the throughput runs
#   CONNS_MEM ["256 4096"]  connection counts of the memory runs
#   SAMPLE [0.2]         seconds between RSS / connection-count samples
#   NOFILE_MIN [16384]   open-files limit the script raises itself to (fails if it cannot)
#   NGINX_UPSTREAM_KEEPALIVE [512]  the nginx proxy's `keepalive N` (as in run.sh)
#   PIN [1 with 4+ cores, else 0]   BUILD [1] (0 = skip cargo build --release --locked)
#   GATEHOUSE_BIN [target/release/gatehouse]   KEEP_TMP [0] (1 = keep configs and logs)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"

# ---------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------
with_unit() { if [[ "$1" =~ ^[0-9]+$ ]]; then echo "${1}s"; else echo "$1"; fi; }
DURATION="$(with_unit "${DURATION:-10s}")"
WARMUP="$(with_unit "${WARMUP:-2s}")"
REPS="${REPS:-3}"
TPUT_CONNS="${TPUT_CONNS:-256}"
WRK_THREADS="${WRK_THREADS:-1}"
CONNS_MEM="${CONNS_MEM:-256 4096}"
SAMPLE="${SAMPLE:-0.2}"
NOFILE_MIN="${NOFILE_MIN:-16384}"
NGINX_UPSTREAM_KEEPALIVE="${NGINX_UPSTREAM_KEEPALIVE:-512}"
BUILD="${BUILD:-1}"
GATEHOUSE_BIN="${GATEHOUSE_BIN:-$ROOT/target/release/gatehouse}"
KEEP_TMP="${KEEP_TMP:-0}"
NCPU="$(nproc)"
if [[ "$NCPU" -ge 4 ]]; then PIN="${PIN:-1}"; else PIN="${PIN:-0}"; fi

log() { printf '%s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# A command that fails outside `die` stops the script (set -e): say where.
trap 'log "error: command failed (status $?) at line $LINENO: $BASH_COMMAND"' ERR

[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || die "REPS must be a positive integer, got '$REPS'"
[[ "$TPUT_CONNS" =~ ^[1-9][0-9]*$ ]] || die "TPUT_CONNS must be a positive integer, got '$TPUT_CONNS'"
for c in $CONNS_MEM; do [[ "$c" =~ ^[1-9][0-9]*$ ]] || die "bad connection count '$c' in CONNS_MEM"; done
[[ -n "${CONNS_MEM// /}" ]] || die "CONNS_MEM is empty"
if [[ "$PIN" == 1 && "$NCPU" -lt 4 ]]; then die "PIN=1 needs 4+ cores (this machine has $NCPU)"; fi

for tool in nginx wrk curl python3 ss pgrep awk; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done
if [[ "$PIN" == 1 ]]; then command -v taskset >/dev/null 2>&1 || die "taskset is required with PIN=1"; fi
CLK_TCK="$(getconf CLK_TCK)"

if [[ "$BUILD" == 1 ]]; then
    log "building gatehouse (cargo build --release --locked)…"
    (cd "$ROOT" && cargo build --release --locked) || die "cargo build --release --locked failed"
fi
[[ -x "$GATEHOUSE_BIN" ]] || die "no gatehouse binary at $GATEHOUSE_BIN (build it, or BUILD=1)"

# 4096 client connections mean 4096 sockets in wrk, and in each proxy 4096 downstream plus
# up to 4096 upstream ones: raise the open-files limit (inherited by everything started
# below) and stop here if it cannot reach NOFILE_MIN.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nofile="$(ulimit -n)"
if [[ "$nofile" != unlimited && "$nofile" -lt "$NOFILE_MIN" ]]; then
    die "cannot raise the open-files limit to $NOFILE_MIN (now $nofile, hard limit $(ulimit -Hn)); run as root or raise the hard limit (limits.conf / systemd LimitNOFILE)"
fi

# ---------------------------------------------------------------------------------------
# Temp dir and cleanup
# ---------------------------------------------------------------------------------------
TMP="$(mktemp -d /tmp/gatehouse-scaling.XXXXXX)"
chmod 755 "$TMP"    # nginx workers run as nobody when the master is root: they read in here
PIDS=()             # long-lived processes we started (nginx masters, gatehouse)
declare -A NAME LOG # pid -> name, pid -> log file
WRK_PID=0           # a wrk running in the background (memory runs)

started() { PIDS+=("$1"); NAME[$1]="$2"; LOG[$1]="$3"; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM ERR
    local pid st
    if [[ "$WRK_PID" != 0 ]] && kill -0 "$WRK_PID" 2>/dev/null; then
        kill -TERM "$WRK_PID" 2>/dev/null || true
        wait "$WRK_PID" 2>/dev/null || true
    fi
    for pid in "${PIDS[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            st=0; wait "$pid" 2>/dev/null || st=$?
            [[ $rc -eq 130 || $rc -eq 143 ]] && continue   # Ctrl-C reached it too
            log "${NAME[$pid]} (pid $pid) had exited on its own with status $st; last lines of ${LOG[$pid]}:"
            tail -n 5 "${LOG[$pid]}" >&2 2>/dev/null || true
            [[ $rc -ne 0 ]] || rc=1
            continue
        fi
        # gatehouse: SIGINT = fast shutdown; nginx master: SIGTERM = fast shutdown (workers too).
        if [[ "${NAME[$pid]}" == gatehouse* ]]; then
            kill -INT "$pid" 2>/dev/null || true
        else
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            pkill -KILL -P "$pid" 2>/dev/null || true   # its children (nginx workers) first
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

# CPU layout.
if [[ "$PIN" == 1 ]]; then
    PIN1=(taskset -c 0) PIN2=(taskset -c 0-1) LOAD_PIN=(taskset -c "2-$((NCPU - 1))")
    LAYOUT="pinned: 1-thread proxies on core 0, 2-thread proxies on cores 0-1, origin and wrk on cores 2-$((NCPU - 1))"
else
    PIN1=() PIN2=() LOAD_PIN=()
    LAYOUT="unpinned ($NCPU cores): proxies, origin and wrk share all cores"
    [[ "$NCPU" -ge 4 ]] || LAYOUT+="; the 2-thread proxies compete with wrk and the origin for the cores, so their req/s is not what 2 dedicated cores would give"
fi

# Ports: origin, gatehouse threads 1 / 2, nginx proxy 1 / 2 workers, and the fresh
# gatehouse / nginx of the memory part.
read -r ORIGIN_PORT GH1_PORT GH2_PORT NGX1_PORT NGX2_PORT GHM_PORT NGXM_PORT \
    < <(python3 "$HERE/helper.py" ports 7)

# ---------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------
NGINX_V="$(nginx -V 2>&1)"
temp_paths() {   # $1 = prefix dir (Debian's defaults under /var/lib/nginx are not ours)
    local d="$1" m
    echo "client_body_temp_path $d/client_body;"
    echo "proxy_temp_path $d/proxy;"
    for m in fastcgi uwsgi scgi; do
        [[ "$NGINX_V" == *"--without-http_${m}_module"* ]] || echo "${m}_temp_path $d/$m;"
    done
}
# As run.sh's, with room for 4096 client + 4096 upstream connections per worker; listen
# backlogs are raised to gatehouse's (Pingora asks for 65535, the kernel caps it at
# net.core.somaxconn) so that a burst of 4096 connects is not throttled by nginx's 511.
nginx_head() {   # $1 = name, $2 = worker processes
    local d="$TMP/$1"
    mkdir -p "$d/logs"
    cat <<EOF
worker_processes $2;
daemon off;
pid $d/nginx.pid;
error_log $d/logs/error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    default_type application/octet-stream;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
$(temp_paths "$d" | sed 's/^/    /')
EOF
}
{
    nginx_head origin 1
    cat <<EOF
    server {
        listen 127.0.0.1:$ORIGIN_PORT backlog=65535;
        location = / { return 200 "ok"; }
    }
}
EOF
} > "$TMP/origin.conf"
nginx_proxy_config() {   # $1 = name, $2 = port, $3 = workers
    {
        nginx_head "$1" "$3"
        cat <<EOF
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive $NGINX_UPSTREAM_KEEPALIVE;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }
    server {
        listen 127.0.0.1:$2 backlog=65535;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    } > "$TMP/$1.conf"
}
nginx_proxy_config nginx-1 "$NGX1_PORT" 1
nginx_proxy_config nginx-2 "$NGX2_PORT" 2
nginx_proxy_config nginx-mem "$NGXM_PORT" 1

# gatehouse: run.sh's minimal benchmark config, only `threads` varies.
gatehouse_config() {   # $1 = name, $2 = port, $3 = threads
    cat > "$TMP/$1.yaml" <<EOF
listen: ["127.0.0.1:$2"]
threads: $3
pid_file: $TMP/$1.pid
upgrade_sock: $TMP/$1_upgrade.sock
access_log: false
metrics: false
admin: { listen: "" }
upstreams:
  origin:
    targets: ["127.0.0.1:$ORIGIN_PORT"]
    keepalive_timeout: 60s
routes:
  - name: bench
    prefix: /
    upstream: origin
EOF
}
gatehouse_config gatehouse-1 "$GH1_PORT" 1
gatehouse_config gatehouse-2 "$GH2_PORT" 2
gatehouse_config gatehouse-mem "$GHM_PORT" 1

# ---------------------------------------------------------------------------------------
# Start and check
# ---------------------------------------------------------------------------------------
NGINX_E=()
[[ "$(nginx -h 2>&1 || true)" == *"-e filename"* ]] && NGINX_E=(-e)
wait_ready() {   # $1 = name, $2 = pid, $3 = url, $4 = log file
    local i
    for i in $(seq 300); do
        if ! kill -0 "$2" 2>/dev/null; then
            log "$1 exited during startup; last log lines:"; tail -n 20 "$4" >&2 || true
            die "$1 did not start"
        fi
        [[ "$(curl -s -o /dev/null -w '%{http_code}' "$3" 2>/dev/null || true)" == 200 ]] && return 0
        sleep 0.1
    done
    tail -n 20 "$4" >&2 || true
    die "$1 not ready at $3 after 30 s"
}
start_nginx() {   # $1 = name, $2 = port, rest = pin prefix; sets STARTED_PID
    local name="$1" port="$2"; shift 2
    local args=(-p "$TMP/$name" -c "$TMP/$name.conf")
    [[ ${#NGINX_E[@]} -gt 0 ]] && args+=(-e "$TMP/$name/logs/error.log")
    nginx -t -q "${args[@]}" || die "nginx config $TMP/$name.conf is invalid"
    "$@" nginx "${args[@]}" > "$TMP/$name/logs/stdout.log" 2>&1 &
    STARTED_PID=$!
    started "$STARTED_PID" "$name" "$TMP/$name/logs/error.log"
    wait_ready "$name" "$STARTED_PID" "http://127.0.0.1:$port/" "$TMP/$name/logs/error.log"
}
start_gatehouse() {   # $1 = name, $2 = port, rest = pin prefix; sets STARTED_PID
    local name="$1" port="$2"; shift 2
    "$@" env -u PORT RUST_LOG=info "$GATEHOUSE_BIN" run -c "$TMP/$name.yaml" > "$TMP/$name.log" 2>&1 &
    STARTED_PID=$!
    started "$STARTED_PID" "$name" "$TMP/$name.log"
    wait_ready "$name" "$STARTED_PID" "http://127.0.0.1:$port/health" "$TMP/$name.log"
}
check_ok() {   # $1 = name, $2 = port: `/` must answer 200 "ok" through the proxy
    local got
    got="$(curl -s -o "$TMP/body" -w '%{http_code}' "http://127.0.0.1:$2/" || echo curl-failed)"
    [[ "$got" == 200 && "$(cat "$TMP/body")" == ok ]] ||
        die "$1 (port $2): expected 200 \"ok\", got '$got' \"$(head -c 100 "$TMP/body" 2>/dev/null)\""
}
# The pids of a proxy: gatehouse is one process; nginx is its master and its workers.
proxy_pids() {   # $1 = master / gatehouse pid
    echo "$1" $(pgrep -P "$1" || true)
}
rss_kib() {      # summed VmRSS (KiB) of the given pids (0 for one that is gone)
    local p t=0 r
    for p in "$@"; do
        r="$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || true)"
        t=$(( t + ${r:-0} ))
    done
    echo "$t"
}
cpu_ticks() {    # summed utime+stime (clock ticks) of the given pids
    local p t=0 r
    for p in "$@"; do
        r="$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null || true)"
        t=$(( t + ${r:-0} ))
    done
    echo "$t"
}
established() {  # established TCP connections whose local port is $1
    ss -Htn state established "( sport = :$1 )" 2>/dev/null | wc -l
}
all_alive() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || die "${NAME[$pid]} (pid $pid) exited during the run; see ${LOG[$pid]}"
    done
}

log "temp dir: $TMP"
log "layout: $LAYOUT"
start_nginx origin "$ORIGIN_PORT" "${LOAD_PIN[@]}"
ORIGIN_PID=$STARTED_PID

# The memory part's proxies first, so that their idle RSS is taken right after start,
# before anything else loads the machine.
start_gatehouse gatehouse-mem "$GHM_PORT" "${PIN1[@]}"
GHM_PID=$STARTED_PID
start_nginx nginx-mem "$NGXM_PORT" "${PIN1[@]}"
NGXM_PID=$STARTED_PID
check_ok gatehouse-mem "$GHM_PORT"
check_ok nginx-mem "$NGXM_PORT"
sleep 1
read -r -a NGXM_PIDS <<<"$(proxy_pids "$NGXM_PID")"
[[ ${#NGXM_PIDS[@]} -eq 2 ]] || die "nginx-mem: expected a master and 1 worker, found pids ${NGXM_PIDS[*]}"
declare -A IDLE
IDLE[gatehouse]="$(rss_kib "$GHM_PID")"
IDLE[nginx]="$(rss_kib "${NGXM_PIDS[@]}")"
log "idle RSS: gatehouse ${IDLE[gatehouse]} KiB, nginx (master + worker) ${IDLE[nginx]} KiB"

start_gatehouse gatehouse-1 "$GH1_PORT" "${PIN1[@]}"
GH1_PID=$STARTED_PID
start_gatehouse gatehouse-2 "$GH2_PORT" "${PIN2[@]}"
GH2_PID=$STARTED_PID
start_nginx nginx-1 "$NGX1_PORT" "${PIN1[@]}"
NGX1_PID=$STARTED_PID
start_nginx nginx-2 "$NGX2_PORT" "${PIN2[@]}"
NGX2_PID=$STARTED_PID
for p in gatehouse-1:$GH1_PORT gatehouse-2:$GH2_PORT nginx-1:$NGX1_PORT nginx-2:$NGX2_PORT; do
    check_ok "${p%%:*}" "${p##*:}"
done
n1="$(pgrep -c -P "$NGX1_PID" || true)" n2="$(pgrep -c -P "$NGX2_PID" || true)"
[[ "$n1" == 1 && "$n2" == 2 ]] || die "expected 1 and 2 nginx workers, found $n1 and $n2"
# gatehouse's threads: Pingora adds its own (signals, background services), so only the
# difference between the two processes says that `threads: 2` took effect.
th1="$(ls "/proc/$GH1_PID/task" | wc -l)" th2="$(ls "/proc/$GH2_PID/task" | wc -l)"
log "all proxies answer 200 \"ok\"; OS threads: gatehouse threads 1 → $th1, threads 2 → $th2; nginx workers 1 and 2"
(( th2 > th1 )) || die "gatehouse with threads: 2 has no more OS threads ($th2) than with threads: 1 ($th1)"

STAMP="$(date +%Y%m%d-%H%M%S)"
RAW="$TMP/wrk.raw"
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"

# Numbers out of wrk's output.
wrk_field() {   # $1 = file, $2 = rps | requests | p99 | sock | non2xx
    case "$2" in
        rps) awk '/^Requests\/sec:/ { print $2 }' "$1" ;;
        requests) awk '/ requests in / { print $1; exit }' "$1" ;;
        p99) awk '$1 == "99%" || $1 == "99.000%" { print $2; exit }' "$1" ;;
        sock) sed -n 's/.*Socket errors: \(.*\)/\1/p' "$1" ;;
        non2xx) awk '/Non-2xx or 3xx responses:/ { print $NF }' "$1" ;;
    esac
}

# ---------------------------------------------------------------------------------------
# 1. Throughput: threads 1 / 2, interleaved reps
# ---------------------------------------------------------------------------------------
TPUT="$TMP/throughput.tsv"   # proxy threads rep rps cores us_per_req p99 errors
: > "$TPUT"
log "throughput: $REPS rep(s) × 4 proxies, wrk -t$WRK_THREADS -c$TPUT_CONNS -d$DURATION after a $WARMUP warm-up"
for rep in $(seq "$REPS"); do
    for peer in gatehouse:1:$GH1_PID:$GH1_PORT gatehouse:2:$GH2_PID:$GH2_PORT \
                nginx:1:$NGX1_PID:$NGX1_PORT nginx:2:$NGX2_PID:$NGX2_PORT; do
        IFS=: read -r proxy threads pid port <<<"$peer"
        url="http://127.0.0.1:$port/"
        if [[ "$WARMUP" != 0s ]]; then
            "${LOAD_PIN[@]}" wrk -t"$WRK_THREADS" -c"$TPUT_CONNS" -d"$WARMUP" "$url" > /dev/null 2>&1 ||
                die "wrk warm-up against $proxy ($threads) failed"
        fi
        read -r -a pids <<<"$(proxy_pids "$pid")"
        t0="$(cpu_ticks "${pids[@]}")" s0="$(date +%s.%N)"
        "${LOAD_PIN[@]}" wrk -t"$WRK_THREADS" -c"$TPUT_CONNS" -d"$DURATION" --latency "$url" > "$TMP/out" 2>&1 ||
            { cat "$TMP/out" >&2; die "wrk against $proxy ($threads) failed"; }
        s1="$(date +%s.%N)" t1="$(cpu_ticks "${pids[@]}")"
        all_alive
        { echo "### throughput rep=$rep $proxy threads=$threads"; cat "$TMP/out"; } >> "$RAW"
        rps="$(wrk_field "$TMP/out" rps)" req="$(wrk_field "$TMP/out" requests)" p99="$(wrk_field "$TMP/out" p99)"
        [[ -n "$rps" && -n "$req" ]] || { cat "$TMP/out" >&2; die "cannot parse wrk's output"; }
        errs=0
        sock="$(wrk_field "$TMP/out" sock)" non2xx="$(wrk_field "$TMP/out" non2xx)"
        [[ -z "$sock" ]] || errs=$(( errs + $(sed 's/[^0-9 ]//g' <<<"$sock" | awk '{ print $1 + $2 + $3 + $4 }') ))
        errs=$(( errs + ${non2xx:-0} ))
        read -r cores us <<<"$(awk -v t="$((t1 - t0))" -v hz="$CLK_TCK" -v s0="$s0" -v s1="$s1" -v n="$req" \
            'BEGIN { c = t / hz; printf "%.2f %.1f", c / (s1 - s0), c * 1e6 / (n > 0 ? n : 1) }')"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$proxy" "$threads" "$rep" "$rps" "$cores" "$us" "$p99" "$errs" >> "$TPUT"
        log "  rep $rep  $proxy $threads thread(s)/worker(s): $(printf '%8.0f' "$rps") req/s  proxy ${cores} cores, ${us} µs/req  p99 $p99$( ((errs)) && echo "  ERRORS $errs")"
    done
done

# ---------------------------------------------------------------------------------------
# 2. Memory: the fresh gatehouse / nginx (1 thread / worker), C connections each
# ---------------------------------------------------------------------------------------
MEM="$TMP/memory.tsv"   # proxy conns wrk_threads seen rps requests sock non2xx before peak after
: > "$MEM"
for c in $CONNS_MEM; do
    wt=1; (( c <= 1024 )) || wt=2
    for peer in gatehouse:$GHM_PID:$GHM_PORT nginx:$NGXM_PID:$NGXM_PORT; do
        IFS=: read -r proxy pid port <<<"$peer"
        read -r -a pids <<<"$(proxy_pids "$pid")"
        before="$(rss_kib "${pids[@]}")"
        # wrk's default 2 s timeout would count slow answers of a saturated proxy as errors.
        "${LOAD_PIN[@]}" wrk -t"$wt" -c"$c" -d"$DURATION" --timeout 10s "http://127.0.0.1:$port/" > "$TMP/out" 2>&1 &
        WRK_PID=$!
        peak=0 seen=0
        while kill -0 "$WRK_PID" 2>/dev/null; do
            r="$(rss_kib "${pids[@]}")" n="$(established "$port")"
            (( r > peak )) && peak=$r
            (( n > seen )) && seen=$n
            sleep "$SAMPLE"
        done
        st=0; wait "$WRK_PID" || st=$?
        WRK_PID=0
        (( st == 0 )) || { cat "$TMP/out" >&2; die "wrk -c$c against $proxy failed (exit $st)"; }
        all_alive
        sleep 1
        after="$(rss_kib "${pids[@]}")"
        { echo "### memory $proxy conns=$c"; cat "$TMP/out"; } >> "$RAW"
        rps="$(wrk_field "$TMP/out" rps)" req="$(wrk_field "$TMP/out" requests)"
        [[ -n "$rps" && -n "$req" ]] || { cat "$TMP/out" >&2; die "cannot parse wrk's output"; }
        sock="$(wrk_field "$TMP/out" sock)" non2xx="$(wrk_field "$TMP/out" non2xx)"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$proxy" "$c" "$wt" "$seen" "$rps" "$req" \
            "${sock:-none}" "${non2xx:-0}" "$before" "$peak" "$after" >> "$MEM"
        log "  memory $proxy c=$c: $seen connections seen, $(printf '%.0f' "$rps") req/s, RSS $before → peak $peak → $after KiB${sock:+  socket errors: $sock}"
    done
done
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------
mkdir -p "$HERE/results"
OUT="$HERE/results/$STAMP-scaling.md"
commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || commit+=" + uncommitted changes in src/Cargo"
cpu_model="$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
mem_gib="$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)"
nginx_version="$(nginx -v 2>&1 | sed 's/.*: //' || true)"
wrk_version="$(wrk -v 2>&1 | awk 'NR == 1 { print $1, $2 }' || true)"   # wrk -v exits 1
META="machine: ${cpu_model:-unknown CPU}, $NCPU cores, $mem_gib GiB RAM, Linux $(uname -r); gatehouse $commit; $nginx_version; $wrk_version; load average at start $LOAD_START, at end $LOAD_END"

python3 - "$TPUT" "$MEM" "$OUT" "$STAMP" "$META" "$LAYOUT" "$DURATION" "$WARMUP" "$REPS" "$TPUT_CONNS" \
    "$WRK_THREADS" "${IDLE[gatehouse]}" "${IDLE[nginx]}" "$SAMPLE" "$NGINX_UPSTREAM_KEEPALIVE" "$th1" "$th2" <<'EOF'
import statistics, sys

(tput, mem, out, stamp, meta, layout, duration, warmup, reps, tconns, wthreads,
 idle_gh, idle_ngx, sample, ngx_ka, th1, th2) = sys.argv[1:]
idle = {"gatehouse": int(idle_gh), "nginx": int(idle_ngx)}

def k(x):
    return f"{x / 1000:.1f}k"

def mib(kib):
    return f"{kib / 1024:.1f}"

def ms(text):   # a wrk latency ("812.34us", "3.21ms", "1.02s") in ms
    for unit, f in (("us", 0.001), ("ms", 1.0), ("s", 1000.0), ("m", 60000.0)):
        if text.endswith(unit) and text[:-len(unit)].replace(".", "", 1).isdigit():
            return float(text[:-len(unit)]) * f
    return float("nan")

lines = [f"# gatehouse scaling {stamp}", ""]
lines.append(f"- {meta}")
lines.append(f"- layout: {layout}")
lines.append("- origin: nginx, 1 worker, `return 200 \"ok\"` (2-byte body); gatehouse: minimal config "
             "(no access log, no metrics, no admin listener, one upstream, one route `/`); nginx proxy: "
             f"`proxy_pass` with upstream `keepalive {ngx_ka}`, HTTP/1.1 upstream, `keepalive_requests 1000000`")
lines.append("")

# Throughput
rows = [l.rstrip("\n").split("\t") for l in open(tput) if l.strip()]
groups = {}
for proxy, threads, rep, rps, cores, us, p99, errs in rows:
    groups.setdefault((proxy, threads), []).append((float(rps), float(cores), float(us), p99, int(errs)))
lines.append("## Throughput by worker threads")
lines.append("")
lines.append(f"wrk -t{wthreads} -c{tconns}, {duration} per run after a {warmup} warm-up, {reps} rep(s) "
             "interleaved (gatehouse 1, gatehouse 2, nginx 1, nginx 2); medians, req/s range min–max. "
             "threads = gatehouse `threads:` / nginx `worker_processes`. Proxy cores = CPU time of the proxy "
             "(nginx: master + workers) / wall time; CPU µs/req = that CPU time / requests. "
             "errors = socket errors + non-2xx, summed over the reps.")
lines.append("")
lines.append("| proxy | threads | req/s | req/s range | ratio to 1 thread | proxy cores | CPU µs/req | p99 (median) | errors |")
lines.append("|---|---:|---:|---|---:|---:|---:|---:|---:|")
med = {}
for proxy in ("gatehouse", "nginx"):
    for threads in ("1", "2"):
        g = groups.get((proxy, threads))
        if not g:
            continue
        rps = [x[0] for x in g]
        med[(proxy, threads)] = statistics.median(rps)
        base = med.get((proxy, "1"))
        ratio = f"{med[(proxy, threads)] / base:.2f}" if base else "–"
        p99 = statistics.median(ms(x[3]) for x in g)
        lines.append(f"| {proxy} | {threads} | {k(statistics.median(rps))} | {k(min(rps))}–{k(max(rps))} | {ratio} "
                     f"| {statistics.median(x[1] for x in g):.2f} | {statistics.median(x[2] for x in g):.1f} "
                     f"| {p99:.2f} ms | {sum(x[4] for x in g)} |")
if ("gatehouse", "1") in med and ("nginx", "1") in med:
    lines.append("")
    lines.append("gatehouse / nginx req/s: " + ", ".join(
        f"{t} thread(s) {med[('gatehouse', t)] / med[('nginx', t)]:.2f}"
        for t in ("1", "2") if ("gatehouse", t) in med and ("nginx", t) in med) + ".")
lines.append(f"gatehouse OS threads (Pingora adds its own): {th1} with `threads: 1`, {th2} with `threads: 2`.")
lines.append("")

# Memory
mrows = [l.rstrip("\n").split("\t") for l in open(mem) if l.strip()]
conns = []
for r in mrows:
    if int(r[1]) not in conns:
        conns.append(int(r[1]))
m = {(r[0], int(r[1])): r for r in mrows}
lines.append("## Memory per connection")
lines.append("")
lines.append("A fresh gatehouse (`threads: 1`) and a fresh nginx proxy (1 worker): RSS idle after start and one "
             f"request, then one wrk run per connection count (in this order, {duration} each, the same process "
             f"throughout), VmRSS sampled every {sample} s (nginx: master + worker summed, so their shared "
             "pages count twice). KiB/conn = (peak − idle) / connections: everything a held, busy client "
             "connection costs (socket buffers in user space, the request in flight, its upstream connection).")
lines.append("")
head = "| proxy | RSS idle MiB |"
sep = "|---|---:|"
for c in conns:
    head += f" peak at {c} MiB | KiB/conn at {c} |"
    sep += "---:|---:|"
lines.append(head)
lines.append(sep)
for proxy in ("gatehouse", "nginx"):
    row = f"| {proxy} | {mib(idle[proxy])} |"
    for c in conns:
        r = m.get((proxy, c))
        if r:
            peak = int(r[9])
            row += f" {mib(peak)} | {(peak - idle[proxy]) / c:.1f} |"
        else:
            row += " – | – |"
    lines.append(row)
lines.append("")
lines.append("Per run: connections seen = most established connections on the proxy's port in any sample "
             "(wrk's connections, accepted or in the accept queue); RSS in MiB before the run, peak during it "
             "and 1 s after it.")
lines.append("")
lines.append("| proxy | conns | wrk threads | connections seen | req/s | requests | socket errors | non-2xx | RSS before | peak | after |")
lines.append("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
warn = []
for c in conns:
    for proxy in ("gatehouse", "nginx"):
        r = m.get((proxy, c))
        if not r:
            continue
        _, _, wt, seen, rps, req, sock, non2xx, before, peak, after = r
        lines.append(f"| {proxy} | {c} | {wt} | {seen} | {k(float(rps))} | {req} | {sock} | {non2xx} "
                     f"| {mib(int(before))} | {mib(int(peak))} | {mib(int(after))} |")
        if int(seen) < c:
            warn.append(f"**Warning:** {proxy} at {c} connections: at most {seen} established connections were "
                        f"seen, fewer than {c}; its KiB/conn is for fewer connections than stated.")
        if sock != "none":
            warn.append(f"**Warning:** wrk reported socket errors against {proxy} at {c} connections: {sock}.")
        if int(non2xx):
            warn.append(f"**Warning:** {non2xx} non-2xx answers from {proxy} at {c} connections.")
if warn:
    lines.append("")
    lines.extend(warn)
lines.append("")
lines.append("Upstream side: gatehouse keeps up to 128 idle upstream connections (Pingora's default "
             f"`upstream_keepalive_pool_size`), nginx `keepalive {ngx_ka}`; above that, both open and close "
             "upstream connections as the load needs, which the peak RSS includes.")
text = "\n".join(lines) + "\n"
sys.stdout.write(text)
open(out, "w").write(text)
EOF
log "saved: $OUT"
