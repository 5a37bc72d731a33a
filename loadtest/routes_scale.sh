#!/usr/bin/env bash
# Routes: cost that must not grow with the config. How gatehouse's start time, memory and
# CPU per request grow with the number of routes.
#
#   bash loadtest/routes_scale.sh                  # ≈ 4 min: 10, 1000, 10000 routes, 3 reps × 10 s
#   QUICK=1 bash loadtest/routes_scale.sh          # smoke run (≈ 45 s): 1 rep × 2 s
#   ROUTES="10 100000" bash loadtest/routes_scale.sh
#
# What it does (method: /work/shared/benchmarking.md, summary in loadtest/README.md):
#   1. generates, for each N in ROUTES, run.sh's minimal gatehouse config (threads 1, no
#      access log, no metrics, no admin listener, pid file and upgrade socket in the temp
#      dir, one upstream `origin`) with N routes svc0..svc{N-1}, route i being
#      `{ name: svc<i>, path: /svc<i>/:id/items, upstream: origin }`;
#   2. starts, in a temp dir, an nginx ORIGIN (1 worker) answering `200 "ok"` for any path,
#      and times `gatehouse check -c <config>` (parse, validate, build the snapshot; REPS
#      times);
#   3. starts one gatehouse per N on the proxy core (taskset -c 0), STARTS times each (all
#      but the last stopped again), each start on a port chosen right before it: start ms =
#      from the exec to the first 200 on /svc0/1/items, polled every ms by a client on core 1;
#   4. checks that /svc0/1/items and /svc{N-1}/1/items answer 200 "ok" and that
#      /svc{N}/1/items and /svc0/1/other answer 404 (the routes really route);
#   5. warms each gatehouse up (wrk WARMUP on its first and its last route), reads VmRSS;
#   6. for each rep, N and route (the first, /svc0/42/items, and the last,
#      /svc{N-1}/42/items), interleaved: helper.py run-one (quiet wait, warm-up,
#      wrk -t1 -cCONNS -dDURATION on core 1, gatehouse's utime+stime from /proc around it,
#      noise check and redo) → req/s and CPU µs per request;
#   7. prints a Markdown table (medians) and saves it as
#      loadtest/results/<stamp>-routes-scale.md (runs in .csv, wrk's output in .raw).
#
# Knobs (environment):
#   ROUTES="10 1000 10000" (the first is the base of the "above base" columns)
#   DURATION=10s WARMUP=2s REPS=3 CONNS=64 STARTS=3  QUICK=0 (1: DURATION=2s WARMUP=1s
#   REPS=1 STARTS=1 QUIET_TIMEOUT=3 REDO=0)  PIN=1
#   BUILD=0 (1 = cargo build --release --locked first)  GATEHOUSE_BIN=target/release/gatehouse
#   RESULTS=loadtest/results KEEP_TMP=0 QUIET_MAX=0.15 QUIET_TIMEOUT=30 NOISE_MAX=0.25 REDO=2
# Needs: nginx (nginx-light is enough), wrk, curl, python3, taskset (installed with apt-get
# when root). Every process it starts is stopped on exit, Ctrl-C or failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source=loadtest/common.sh
source "$HERE/common.sh"

if [[ "${QUICK:-0}" == 1 ]]; then
    DURATION="${DURATION:-2s}" WARMUP="${WARMUP:-1s}" REPS="${REPS:-1}" STARTS="${STARTS:-1}"
    QUIET_TIMEOUT="${QUIET_TIMEOUT:-3}" REDO="${REDO:-0}"
fi
ROUTES="${ROUTES:-10 1000 10000}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
REPS="${REPS:-3}"
CONNS="${CONNS:-64}"
STARTS="${STARTS:-3}"
BUILD="${BUILD:-0}"
GATEHOUSE_BIN="${GATEHOUSE_BIN:-$ROOT/target/release/gatehouse}"
RESULTS="${RESULTS:-$HERE/results}"
QUIET_MAX="${QUIET_MAX:-0.15}"
QUIET_TIMEOUT="${QUIET_TIMEOUT:-30}"
NOISE_MAX="${NOISE_MAX:-0.25}"
REDO="${REDO:-2}"

for n in $ROUTES; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "bad route count '$n' in ROUTES (positive integers)"
done
[[ "$STARTS" =~ ^[1-9][0-9]*$ ]] || die "STARTS must be ≥ 1, got '$STARTS'"
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || die "REPS must be ≥ 1, got '$REPS'"

need_tools nginx:nginx-light wrk:wrk curl:curl python3:python3 taskset:util-linux getconf:libc-bin
CLK_TCK="$(getconf CLK_TCK)"
export CLK_TCK
if [[ "$BUILD" == 1 ]]; then
    log "building gatehouse (cargo build --release --locked)…"
    (cd "$ROOT" && cargo build --release --locked) || die "cargo build --release --locked failed"
fi
[[ -x "$GATEHOUSE_BIN" ]] || die "no gatehouse binary at $GATEHOUSE_BIN (BUILD=1 builds it)"

make_tmp routes-scale
pin_layout "origin, wrk -t1 and the start-time poller"
# A copy of the binary (mtime kept), so that every start measures the same build even if
# target/release/gatehouse is rebuilt meanwhile; which build it is, is noted now.
BIN_SRC="$GATEHOUSE_BIN"
BIN_TIME="$(date -r "$BIN_SRC" '+%F %H:%M:%S %z')"
BIN_REV="$(git -C "$ROOT" log -1 --before="$(date -r "$BIN_SRC" -Iseconds)" --format='%h' 2>/dev/null || true)"
BIN_DIRTY=""
[[ -z "$(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock build.rs vendor 2>/dev/null)" ]] ||
    BIN_DIRTY="; uncommitted changes under src/ (or Cargo.*, vendor/) at the start of this run: the binary may hold some of them"
cp -p "$BIN_SRC" "$TMP/gatehouse"
GATEHOUSE_BIN="$TMP/gatehouse"
nroutes=$(wc -w <<<"$ROUTES")
declare -A PORT PID   # N -> gatehouse port, N -> pid of the gatehouse kept running

# ---------------------------------------------------------------------------------------
# Origin first (its port is taken as soon as it is chosen), then the gatehouse configs:
# the origin answers "ok" for any path; gatehouse N routes svc0..svc{N-1}. A gatehouse's
# port is chosen again right before each of its starts (write_config): the suite runs
# harnesses in parallel, and a port reserved here would stay free for the whole of the
# `check` timings below, long enough for another harness to take it.
# ---------------------------------------------------------------------------------------
ORIGIN_PORT="$(free_ports 1)"
{
    nginx_head origin
    cat <<EOF
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        location / { return 200 "ok"; }
    }
}
EOF
} > "$TMP/origin.conf"
start_nginx origin "${LOAD_PIN[@]}"
ORIGIN_PID=$STARTED_PID
wait_ready origin "$ORIGIN_PID" "http://127.0.0.1:$ORIGIN_PORT/svc0/1/items" "$TMP/origin/logs/error.log"

write_config() {   # $1 = N: a fresh port for gatehouse N, and its config listening there
    local n="$1" name="routes-$1"
    PORT[$n]="$(free_ports 1)"
    {
        gatehouse_head "$name" "${PORT[$n]}"
        cat <<EOF
upstreams:
  origin:
    targets: ["127.0.0.1:$ORIGIN_PORT"]
    keepalive_timeout: 60s
routes:
EOF
        python3 -c '
import sys
out = sys.stdout
for i in range(int(sys.argv[1])):
    out.write(f"  - {{ name: svc{i}, path: /svc{i}/:id/items, upstream: origin }}\n")
' "$n"
    } > "$TMP/$name.yaml"
}
for n in $ROUTES; do write_config "$n"; done
log "temp dir: $TMP"
log "layout: $LAYOUT"
log "configs: $(for n in $ROUTES; do printf '%s routes %s KiB; ' "$n" $(( $(stat -c %s "$TMP/routes-$n.yaml") / 1024 )); done)"

ms_since() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }   # $1 → $2, EPOCHREALTIME

# ---------------------------------------------------------------------------------------
# gatehouse check: parse, validate and build the config without serving
# ---------------------------------------------------------------------------------------
declare -A CHECK_MS
for n in $ROUTES; do
    times=()
    for _ in $(seq "$REPS"); do
        t0=$EPOCHREALTIME
        "${PROXY_PIN[@]}" env -u PORT "$GATEHOUSE_BIN" check -c "$TMP/routes-$n.yaml" > "$TMP/check-$n.log" 2>&1 ||
            { cat "$TMP/check-$n.log" >&2; die "gatehouse check refuses the $n-route config ($TMP/routes-$n.yaml)"; }
        t1=$EPOCHREALTIME
        times+=("$(ms_since "$t0" "$t1")")
    done
    CHECK_MS[$n]="${times[*]}"
    log "gatehouse check, $n routes: ${times[*]} ms"
done

# ---------------------------------------------------------------------------------------
# Each gatehouse STARTS times: exec → first 200 on /svc0/1/items
# ---------------------------------------------------------------------------------------

# The poller (core 1) tries a GET every millisecond from before the exec: connection
# refused until gatehouse listens, 404 or 5xx until the route serves. It prints the wall
# clock (ns) of the first 200; the gatehouse pid comes through a file, so that it gives up
# when gatehouse dies.
cat > "$TMP/poll.py" <<'PY'
import os, socket, sys, time
port, path, pidfile, ready = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
deadline = time.monotonic() + 120
open(ready, "w").close()
while time.monotonic() < deadline:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(req)
            head = s.recv(64)
        if head.startswith(b"HTTP/1.1 200"):
            print(time.time_ns())
            sys.exit(0)
    except OSError:
        pass
    try:
        pid = int(open(pidfile).read())
    except (OSError, ValueError):
        pid = None        # not written yet (or being written: empty for a moment)
    if pid is not None:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    sys.exit(3)
        except OSError:
            sys.exit(3)   # the pid is written, its process is gone
    time.sleep(0.001)
sys.exit(2)
PY

stop_gatehouse() {   # $1 = pid (from `started`): SIGINT, wait, forget it
    local pid="$1" p keep=()
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do [[ "$p" == "$pid" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

declare -A START_MS
for n in $ROUTES; do
    name="routes-$n" times=()
    for s in $(seq "$STARTS"); do
        # Another process may still take the fresh port between its choice and the bind:
        # then gatehouse says "already in use" and exits, and this start is tried again.
        for try in 1 2 3; do
            write_config "$n"
            rm -f "$TMP/poll.pid" "$TMP/poll.ready"
            "${LOAD_PIN[@]}" python3 "$TMP/poll.py" "${PORT[$n]}" /svc0/1/items "$TMP/poll.pid" "$TMP/poll.ready" \
                > "$TMP/poll.out" 2>&1 &
            poller=$!
            until [[ -e "$TMP/poll.ready" ]]; do
                kill -0 "$poller" 2>/dev/null || { cat "$TMP/poll.out" >&2; die "start-time poller failed"; }
                sleep 0.01
            done
            t0=$EPOCHREALTIME
            "${PROXY_PIN[@]}" env -u PORT RUST_LOG=info "$GATEHOUSE_BIN" run -c "$TMP/$name.yaml" \
                > "$TMP/$name.log" 2>&1 &
            pid=$!
            echo "$pid" > "$TMP/poll.pid"
            started "$pid" "gatehouse-$name" "$TMP/$name.log"
            st=0; wait "$poller" || st=$?
            [[ $st -eq 0 ]] && break
            if [[ $try -lt 3 ]] && grep -q "already in use" "$TMP/$name.log"; then
                log "gatehouse with $n routes: port ${PORT[$n]} was taken by another process; again on a new one"
                stop_gatehouse "$pid"
                continue
            fi
            tail -n 20 "$TMP/$name.log" >&2 || true
            die "gatehouse with $n routes did not answer 200 on /svc0/1/items (poller exit $st)"
        done
        t1="$(head -n1 "$TMP/poll.out")"
        times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b / 1e6 - a * 1000 }')")
        if [[ "$s" -lt "$STARTS" ]]; then stop_gatehouse "$pid"; else PID[$n]=$pid; fi
    done
    START_MS[$n]="${times[*]}"
    log "gatehouse run, $n routes: first 200 after ${times[*]} ms (pid ${PID[$n]}, RSS $(awk '/^VmRSS/ { print $2 }' "/proc/${PID[$n]}/status") KiB)"
done

# ---------------------------------------------------------------------------------------
# Checks: the first and last routes serve, a route one past the last and a path that no
# route's pattern matches do not.
# ---------------------------------------------------------------------------------------
expect() {   # $1 = url, $2 = status, $3 = body ("" = any)
    local got
    got="$(curl -s -o "$TMP/body" -w '%{http_code}' "$1" || echo curl-failed)"
    [[ "$got" == "$2" ]] || die "$1: expected $2, got '$got'"
    [[ -z "$3" || "$(cat "$TMP/body")" == "$3" ]] || die "$1: body is not '$3'"
}
for n in $ROUTES; do
    base="http://127.0.0.1:${PORT[$n]}"
    expect "$base/svc0/1/items" 200 ok
    expect "$base/svc$((n - 1))/1/items" 200 ok
    expect "$base/svc$n/1/items" 404 ""
    expect "$base/svc0/1/other" 404 ""
done
log "every gatehouse answers 200 \"ok\" on its first and last route, 404 past them"

# ---------------------------------------------------------------------------------------
# Warm-up, then RSS
# ---------------------------------------------------------------------------------------
declare -A RSS_IDLE RSS_WARM
rss_kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }
for n in $ROUTES; do
    RSS_IDLE[$n]="$(rss_kib "${PID[$n]}" VmRSS)"
    for path in /svc0/42/items "/svc$((n - 1))/42/items"; do
        "${LOAD_PIN[@]}" wrk -t1 -c"$CONNS" -d"$WARMUP" "http://127.0.0.1:${PORT[$n]}$path" > /dev/null 2>&1 ||
            die "wrk warm-up failed on $n routes, $path"
    done
    RSS_WARM[$n]="$(rss_kib "${PID[$n]}" VmRSS)"
    log "RSS, $n routes: ${RSS_IDLE[$n]} KiB after start, ${RSS_WARM[$n]} KiB after warm-up"
done

# ---------------------------------------------------------------------------------------
# Measure: reps outermost, route counts and first/last interleaved
# ---------------------------------------------------------------------------------------
STAMP="$(date +%Y%m%d-%H%M%S)"
mkdir -p "$RESULTS"
CSV="$RESULTS/$STAMP-routes-scale.csv" MD="$RESULTS/$STAMP-routes-scale.md" RAW="$RESULTS/$STAMP-routes-scale.raw"
OURS="$ORIGIN_PID"
for n in $ROUTES; do OURS+=",${PID[$n]}"; done
log "measuring: $((REPS * nroutes * 2)) runs of $DURATION (after $WARMUP warm-up each); results → $CSV"
for rep in $(seq "$REPS"); do
    for n in $ROUTES; do
        for pos in first last; do
            if [[ "$pos" == first ]]; then path=/svc0/42/items; else path="/svc$((n - 1))/42/items"; fi
            python3 "$HERE/helper.py" run-one \
                --peer "$n-$pos" --size 2 --conns "$CONNS" --rep "$rep" \
                --url "http://127.0.0.1:${PORT[$n]}$path" \
                --client wrk --client-cmd "${LOAD_PIN[*]} wrk" \
                --duration "$DURATION" --warmup "$WARMUP" \
                --proxy-pid "${PID[$n]}" --origin-pid "$ORIGIN_PID" --ours "$OURS" \
                --quiet-max "$QUIET_MAX" --quiet-timeout "$QUIET_TIMEOUT" \
                --noise-max "$NOISE_MAX" --redo "$REDO" --csv "$CSV" --raw "$RAW"
        done
    done
done

# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------
{
    printf 'routes\tcheck_ms\tstart_ms\trss_idle_kib\trss_warm_kib\trss_end_kib\thwm_kib\tconfig_bytes\n'
    for n in $ROUTES; do
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "${CHECK_MS[$n]}" "${START_MS[$n]}" "${RSS_IDLE[$n]}" \
            "${RSS_WARM[$n]}" "$(rss_kib "${PID[$n]}" VmRSS)" "$(rss_kib "${PID[$n]}" VmHWM)" \
            "$(stat -c %s "$TMP/routes-$n.yaml")"
    done
} > "$TMP/scale.tsv"

cpu_model="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)"
head_rev="$(git -C "$ROOT" log -1 --format='%h (%ci)' 2>/dev/null || echo 'no commit')"
META=(
    --meta "machine: $(nproc) cores ($cpu_model), Linux $(uname -r); shared: other work may run (see the noise line)"
    --meta "layout: $LAYOUT"
    --meta "gatehouse: $BIN_SRC built $BIN_TIME; the last commit before that: ${BIN_REV:-unknown}; HEAD now: $head_rev$BIN_DIRTY"
    --meta "runs: $REPS rep(s) × $DURATION after $WARMUP warm-up, wrk -t1 -c$CONNS, 2 B answers; $STARTS start(s) per route count; gatehouse check $REPS time(s)"
)

python3 - "$CSV" "$TMP/scale.tsv" "$MD" "$STAMP" "$NOISE_MAX" "${META[@]}" <<'PY'
import csv, statistics, sys
csv_path, tsv, md, stamp, noise_max = sys.argv[1:6]
noise_max = float(noise_max)
meta = [sys.argv[i + 1] for i in range(6, len(sys.argv), 2) if sys.argv[i] == "--meta"]
rows = [r for r in csv.DictReader(open(csv_path)) if r["kept"] == "1"]
scale = list(csv.DictReader(open(tsv), delimiter="\t"))
med = statistics.median
k = lambda x: f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"
mib = lambda kib: f"{int(kib) / 1024:.1f}"

def runs(n, pos):
    return [r for r in rows if r["peer"] == f"{n}-{pos}"]

fig = {}
for s in scale:
    n = s["routes"]
    for pos in ("first", "last"):
        g = runs(n, pos)
        rps = [float(r["rps"]) for r in g]
        us = [float(r["proxy_us_per_req"]) for r in g]
        fig[n, pos] = {"rps": med(rps), "us": med(us), "rps_min": min(rps), "rps_max": max(rps),
                       "us_min": min(us), "us_max": max(us),
                       "p99": med(float(r["p99_ms"]) for r in g),
                       "errors": sum(int(r["non2xx"]) + int(r["sock_errors"]) for r in g),
                       "runs": len(g),
                       "noisy": sum(1 for r in g if float(r["other_cores"]) > noise_max)}
base = scale[0]
bn = base["routes"]
b_rss = int(base["rss_warm_kib"])

out = [f"# gatehouse routes scale {stamp}\n"]
out += [f"- {m}" for m in meta]
out.append("")
out.append(f"N routes `{{ name: svc<i>, path: /svc<i>/:id/items, upstream: origin }}` in run.sh's minimal "
           f"config. start ms = from the exec of `gatehouse run` to the first 200 on /svc0/1/items "
           f"(median of the starts); check ms = `gatehouse check -c` (parse, validate, build; "
           f"median); RSS = VmRSS after a warm-up on the first and last route; KiB/route = (RSS − "
           f"RSS at {bn} routes) ÷ (N − {bn}). req/s and CPU µs/req (gatehouse's utime+stime ÷ "
           f"requests; the figure of merit, wrk shares the machine) are medians over the reps, on "
           f"the first route (/svc0/42/items) and the last (/svc<N−1>/42/items); ratio = req/s "
           f"÷ the same route position at {bn} routes.\n")
out.append(f"| routes | check ms | start ms | RSS MiB | KiB/route above {bn} | req/s first | req/s last "
           f"| CPU µs/req first | CPU µs/req last | req/s ratio to {bn} (first / last) |")
out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for s in scale:
    n = s["routes"]
    f, l = fig[n, "first"], fig[n, "last"]
    bf, bl = fig[bn, "first"], fig[bn, "last"]
    chk = med(float(x) for x in s["check_ms"].split())
    st = med(float(x) for x in s["start_ms"].split())
    per = "–" if n == bn else f"{(int(s['rss_warm_kib']) - b_rss) / (int(n) - int(bn)):.2f}"
    out.append(f"| {int(n):,} | {chk:.0f} | {st:.0f} | {mib(s['rss_warm_kib'])} | {per} "
               f"| {k(f['rps'])} | {k(l['rps'])} | {f['us']:.1f} | {l['us']:.1f} "
               f"| {f['rps'] / bf['rps']:.2f} / {l['rps'] / bl['rps']:.2f} |")
out.append("")
out.append("Details: every start and check (ms), RSS after start / after warm-up / at the end / peak "
           "(VmHWM), the size of the config, and the ranges (min–max over the reps), p99 and errors "
           "of the wrk runs.\n")
out.append("| routes | config KiB | starts ms | checks ms | RSS MiB start / warm / end / peak "
           "| req/s range first | req/s range last | CPU µs/req range first | CPU µs/req range last "
           "| p99 ms first / last | errors | runs |")
out.append("|---:|---:|---|---|---|---|---|---|---|---|---:|---:|")
for s in scale:
    n = s["routes"]
    f, l = fig[n, "first"], fig[n, "last"]
    noisy = f["noisy"] + l["noisy"]
    out.append(f"| {int(n):,} | {int(s['config_bytes']) / 1024:.0f} | {', '.join(s['start_ms'].split())} "
               f"| {', '.join(s['check_ms'].split())} "
               f"| {mib(s['rss_idle_kib'])} / {mib(s['rss_warm_kib'])} / {mib(s['rss_end_kib'])} / {mib(s['hwm_kib'])} "
               f"| {k(f['rps_min'])}–{k(f['rps_max'])} | {k(l['rps_min'])}–{k(l['rps_max'])} "
               f"| {f['us_min']:.1f}–{f['us_max']:.1f} | {l['us_min']:.1f}–{l['us_max']:.1f} "
               f"| {f['p99']:.2f} / {l['p99']:.2f} | {f['errors'] + l['errors']} "
               f"| {f['runs'] + l['runs']}{f' ({noisy} noisy)' if noisy else ''} |")
all_rows = list(csv.DictReader(open(csv_path)))
redone = sum(1 for r in all_rows if r["kept"] == "0")
max_other = max(float(r["other_cores"]) for r in rows)
out.append("")
out.append(f"Noise: CPU used by other processes during kept runs ≤ {max_other:.2f} cores "
           f"(threshold {noise_max}); {redone} run(s) redone.")
text = "\n".join(out) + "\n"
sys.stdout.write(text)
open(md, "w").write(text)
PY
for n in $ROUTES; do
    s="$(python3 "$HERE/helper.py" logsummary "gatehouse ($n routes)" "$TMP/routes-$n.log")"
    if [[ -n "$s" ]]; then echo "$s" | tee -a "$MD"; fi
done
log ""
log "saved: $MD, $CSV (wrk output: $RAW)"
