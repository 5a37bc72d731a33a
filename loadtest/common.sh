# Shared by loadtest/compression.sh, aggregate.sh and grpc.sh (sourced, not run): run.sh's
# habits in functions. Tools installed with apt-get when root (else a clear error), a temp
# dir, a cleanup trap that stops every process the script started (gatehouse with SIGINT,
# Pingora's fast shutdown; the rest with SIGTERM; SIGKILL after 3 s), nginx with its own
# prefix, pid file, temp dirs and error log (the system nginx is never touched), the iso
# CPU layout, and the machine/version lines of a report.
#
# The sourcing script sets HERE and ROOT first; it gets log, die, need_tools, make_tmp,
# started, PROXY_PIN/LOAD_PIN/LAYOUT (pin_layout), nginx_head, start_nginx, wait_ready,
# start_gatehouse, free_ports, rss_kib and report_meta.

log() { printf '%s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

IS_ROOT=0
if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then IS_ROOT=1; fi

# need_tools TOOL:PACKAGE...: every TOOL on the PATH, else apt-get install its PACKAGE as
# root, else exit 1 naming the packages.
need_tools() {
    local pair missing=()
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    # shellcheck disable=SC2207
    missing=($(printf '%s\n' "${missing[@]}" | sort -u))
    if [[ "$IS_ROOT" == 1 ]]; then
        log "installing: ${missing[*]}"
        apt-get update >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
    else
        die "missing packages: ${missing[*]} (run as root to install them, or: apt-get install -y ${missing[*]})"
    fi
}

# ---------------------------------------------------------------------------------------
# Temp dir, processes, cleanup
# ---------------------------------------------------------------------------------------
PIDS=()
declare -A PNAME PLOG   # pid -> name, pid -> its log file

started() {   # $1 = pid, $2 = name, $3 = log file
    PIDS+=("$1"); PNAME[$1]="$2"; PLOG[$1]="$3"
}

_cleanup() {
    local rc=$? pid st
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            st=0; wait "$pid" 2>/dev/null || st=$?
            [[ $rc -eq 130 || $rc -eq 143 ]] && continue
            # It died before we stopped it: say how, it matters for the results.
            log "${PNAME[$pid]} (pid $pid) had exited on its own with status $st; last lines of ${PLOG[$pid]}:"
            tail -n 5 "${PLOG[$pid]}" >&2 2>/dev/null || true
            [[ $rc -ne 0 ]] || rc=1
            continue
        fi
        if [[ "${PNAME[$pid]}" == gatehouse* ]]; then
            kill -INT "$pid" 2>/dev/null || true     # Pingora's fast shutdown
        else
            kill -TERM "$pid" 2>/dev/null || true    # nginx master: fast shutdown (and its worker)
        fi
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            pkill -KILL -P "$pid" 2>/dev/null || true   # its children (nginx worker) first
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    if [[ "${KEEP_TMP:-0}" == 1 || ( $rc -ne 0 && $rc -ne 130 && $rc -ne 143 ) ]]; then
        log "temp dir kept: $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}

make_tmp() {   # $1 = name: sets TMP and the traps
    TMP="$(mktemp -d "/tmp/gatehouse-$1.XXXXXX")"
    # nginx workers run as an unprivileged user when the master is root: they read files
    # and write their temp dirs under $TMP.
    chmod 755 "$TMP"
    trap _cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    ulimit -n 65536 2>/dev/null || true
}

# iso layout on 2+ cores (PIN=1): the proxy alone on core 0, the rest on core 1.
pin_layout() {   # $1 = what shares core 1 (for the report)
    if [[ "$(nproc)" -ge 2 && "${PIN:-1}" == 1 ]]; then
        PROXY_PIN=(taskset -c 0) LOAD_PIN=(taskset -c 1)
        LAYOUT="iso: proxy on core 0; $1 on core 1"
    else
        PROXY_PIN=() LOAD_PIN=()
        LAYOUT="unpinned (PIN=0 or 1 core)"
    fi
}

# Stops a process started here and forgets it (the cleanup trap reports those that died).
stop() {   # $1 = pid, $2 = signal
    local pid="$1" kept=() p
    kill "-$2" "$pid" 2>/dev/null || true
    pkill "-$2" -P "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do [[ "$p" == "$pid" ]] || kept+=("$p"); done
    PIDS=("${kept[@]}")
}

free_ports() { python3 "$HERE/helper.py" ports "$1"; }

# Summed VmRSS (KiB) of the given pids; 0 for one that is gone.
rss_kib() {
    local p total=0 r
    for p in "$@"; do
        r="$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || true)"
        total=$(( total + ${r:-0} ))
    done
    echo "$total"
}

# ---------------------------------------------------------------------------------------
# nginx (own prefix, pid, logs and temp dirs) and gatehouse
# ---------------------------------------------------------------------------------------
# The head of an nginx config: 1 worker, foreground, logs and temp dirs under $TMP/NAME,
# keepalive_requests raised so that no side closes a keep-alive connection every 1000
# requests. The caller adds its own http-level lines and the closing brace.
nginx_head() {   # $1 = name
    local d="$TMP/$1" m nginx_v
    nginx_v="$(nginx -V 2>&1)"
    mkdir -p "$d/logs"
    cat <<EOF
worker_processes 1;
daemon off;
pid $d/nginx.pid;
error_log $d/logs/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    client_body_temp_path $d/client_body;
    proxy_temp_path $d/proxy;
EOF
    for m in fastcgi uwsgi scgi; do
        [[ "$nginx_v" == *"--without-http_${m}_module"* ]] || echo "    ${m}_temp_path $d/$m;"
    done
}

start_nginx() {   # $1 = name (config $TMP/NAME.conf), rest = pin prefix; sets STARTED_PID
    local name="$1"; shift
    local args=(-p "$TMP/$name" -c "$TMP/$name.conf")
    [[ "$(nginx -h 2>&1 || true)" == *"-e filename"* ]] && args+=(-e "$TMP/$name/logs/error.log")
    nginx -t -q "${args[@]}" || die "nginx config $TMP/$name.conf is invalid"
    "$@" nginx "${args[@]}" > "$TMP/$name/logs/stdout.log" 2>&1 &
    STARTED_PID=$!
    started "$STARTED_PID" "$name" "$TMP/$name/logs/error.log"
}

# Wait until URL answers 200 (or the process dies, or 30 s pass).
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

# gatehouse on the proxy core with $TMP/NAME.yaml, its log in $TMP/NAME.log; ready when
# its built-in /health answers.
start_gatehouse() {   # $1 = name, $2 = port; sets STARTED_PID
    local name="$1"
    "${PROXY_PIN[@]}" env -u PORT RUST_LOG=info "$GATEHOUSE_BIN" run -c "$TMP/$name.yaml" \
        > "$TMP/$name.log" 2>&1 &
    STARTED_PID=$!
    started "$STARTED_PID" "$name" "$TMP/$name.log"
    wait_ready "$name" "$STARTED_PID" "http://127.0.0.1:$2/health" "$TMP/$name.log"
}

# The top of every gatehouse config here: run.sh's minimal peer (threads 1, no access
# log, no metrics, no admin listener), pid file and upgrade socket in the temp dir.
gatehouse_head() {   # $1 = name, $2 = port
    cat <<EOF
listen: ["127.0.0.1:$2"]
threads: 1
pid_file: $TMP/$1.pid
upgrade_sock: $TMP/$1_upgrade.sock
access_log: false
metrics: false
admin: { listen: "" }
EOF
}

# --meta arguments shared by the reports: machine, layout, gatehouse revision and binary.
report_meta() {
    local cpu_model gh_rev
    cpu_model="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)"
    gh_rev="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no commit')"
    [[ -z "$(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock build.rs 2>/dev/null)" ]] ||
        gh_rev+=" + uncommitted changes"
    META=(
        --meta "machine: $(nproc) cores ($cpu_model), Linux $(uname -r); shared: other work may run (see the noise columns)"
        --meta "layout: $LAYOUT"
        --meta "gatehouse: $gh_rev, binary $GATEHOUSE_BIN built $(date -r "$GATEHOUSE_BIN" '+%F %H:%M'), threads 1, access_log false, metrics false, no admin listener"
    )
}
