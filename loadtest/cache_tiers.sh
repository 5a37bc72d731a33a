#!/usr/bin/env bash
# Response cache tiers: what a HIT costs from the memory tier and from the disk tier, next
# to a proxied request, in one interleaved run; then gatehouse's memory when a disk tier
# ten times the memory bound fills and evicts.
#
#   bash loadtest/cache_tiers.sh                               # full run (≈ 5 min)
#   TIERS="proxied memory" DURATION_RSS=0 bash loadtest/cache_tiers.sh
#                                                # without the disk tier (a build that lacks it)
#   DURATION=3 REPS=1 DURATION_RSS=10 bash loadtest/cache_tiers.sh    # smoke run (≈ 2 min)
#
# What it does (method: /work/shared/benchmarking.md, summary in loadtest/README.md):
#   1. builds gatehouse (cargo build --release --locked), checks the tools it needs, and
#      has `gatehouse check` validate every config first (a build without the disk tier
#      refuses `cache.disk` there, before anything starts);
#   2. in a temp dir, starts an nginx ORIGIN (1 worker) serving one static file per body
#      size (/4k, /1m: random bytes, no Cache-Control, so the route's default 5 min apply)
#      and one gatehouse (threads 1, run.sh's minimal config) per tier:
#        proxied  a route without cache;
#        memory   `cache: true`, `cache: { max_size: 256MiB, max_object_size: 8MiB }`;
#        disk     `cache: true`, a memory tier of 1 MiB that stores nothing above 1 KiB,
#                 and `disk: { path, max_size: 4GiB, max_object_size: 64MiB }`: every
#                 answer measured here is larger than 1 KiB, so it lives on disk only and
#                 every HIT is served from its file (the 1 KiB bound is what keeps the
#                 4 KiB answer out of memory; the 1 MiB one is out of it either way);
#   3. iso layout: gatehouse on core 0, origin + wrk -t1 on core 1;
#   4. checks every tier and size answers 200 with the origin's exact bytes; proxied with
#      no X-Cache, memory with `X-Cache: HIT` and `Cache-Status: gatehouse; hit; ttl=N`
#      (no detail), disk with `X-Cache: HIT` and `detail=disk` in Cache-Status: the disk
#      copy is written off the request path, so it polls up to 10 s for it, else fails.
#      The same HIT check runs again before and after every measured cached run;
#   5. for each rep, size and tier (tiers innermost, so the three share the machine's
#      moments) helper.py run-one: quiet wait, warm-up, wrk -t1 -cCONNS --latency, the
#      tier's gatehouse CPU (utime+stime from /proc/<pid>/stat) over the measured window
#      → CPU µs per request, the origin's likewise (≈ 0 for HITs), noise check and redo;
#   6. RSS phase (DURATION_RSS > 0): one more gatehouse with
#      `cache: { max_size: 16MiB, max_object_size: 1MiB, disk: { path, max_size: 160MiB } }`
#      and an admin listener, driven by wrk with a Lua script whose every request is a new
#      key (/64k?k=<counter>-<random>), so both tiers fill and then evict; VmRSS
#      and Threads (/proc/<pid>/status), `du -sb` and the files' bytes of the disk path
#      every second; once the writes settled (≤ 10 s) the same and `GET /admin/cache`.
#      The disk tier must then be within its 160 MiB (its files' bytes): over it, the
#      report says so and the script exits 1 (a peak above it while writes are in flight
#      is reported, not failed);
#   7. prints a Markdown report and saves it as loadtest/results/<stamp>-cache-tiers.md
#      (the runs in <stamp>-cache-tiers.csv, wrk's output in .raw).
# Every process it starts is stopped on exit, Ctrl-C or failure.
#
# Knobs (environment):
#   SIZES="4k 1m" (N, Nk or Nm bytes)  CONNS=64  DURATION=10 (s)  WARMUP=2 (s)  REPS=3
#   TIERS="proxied memory disk"  DURATION_RSS=20 (s; 0 skips the RSS phase)  RSS_OBJECT=64k
#   BUILD=1 (0 = skip cargo build)  GATEHOUSE_BIN=target/release/gatehouse  PIN=1
#   RESULTS=loadtest/results  KEEP_TMP=0
#   QUIET_MAX=0.15 QUIET_TIMEOUT=30 NOISE_MAX=0.25 REDO=2
# Needs: nginx (nginx-light is enough), wrk, curl, python3, taskset.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source=loadtest/common.sh
source "$HERE/common.sh"

SIZES="${SIZES:-4k 1m}"
CONNS="${CONNS:-64}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
REPS="${REPS:-3}"
TIERS="${TIERS-proxied memory disk}"
DURATION_RSS="${DURATION_RSS:-20}"
RSS_OBJECT="${RSS_OBJECT:-64k}"
BUILD="${BUILD:-1}"
GATEHOUSE_BIN="${GATEHOUSE_BIN:-$ROOT/target/release/gatehouse}"
RESULTS="${RESULTS:-$HERE/results}"
QUIET_MAX="${QUIET_MAX:-0.15}"
QUIET_TIMEOUT="${QUIET_TIMEOUT:-30}"
NOISE_MAX="${NOISE_MAX:-0.25}"
REDO="${REDO:-2}"

# The configs below are the whole truth: the environment overrides of the cache settings
# (CACHE_TTL, ENABLE_CACHING) would otherwise change what is measured.
unset CACHE_TTL ENABLE_CACHING

# Durations in seconds, with or without an "s" (wrk takes both; the RSS loop needs a number).
DURATION="${DURATION%s}" WARMUP="${WARMUP%s}" DURATION_RSS="${DURATION_RSS%s}"
for v in DURATION WARMUP REPS DURATION_RSS CONNS; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
[[ "$DURATION" -gt 0 && "$REPS" -gt 0 && "$CONNS" -gt 0 ]] || die "DURATION, REPS and CONNS must be above 0"
for tier in $TIERS; do
    [[ " proxied memory disk " == *" $tier "* ]] || die "unknown tier '$tier' in TIERS (proxied, memory, disk)"
done
has_tier() { [[ " $TIERS " == *" $1 "* ]]; }
[[ -n "${TIERS// /}" || "$DURATION_RSS" -gt 0 ]] || die "nothing to do: TIERS is empty and DURATION_RSS=0"

size_bytes() {   # N, Nk (KiB) or Nm (MiB)
    case "$1" in
        *k) echo $(( ${1%k} * 1024 )) ;;
        *m) echo $(( ${1%m} * 1048576 )) ;;
        *)  echo "$1" ;;
    esac
}
for s in $SIZES $RSS_OBJECT; do
    [[ "$s" =~ ^[0-9]+[km]?$ && "$(size_bytes "$s")" -gt 0 ]] || die "bad size '$s' (use N, Nk or Nm)"
done
# The disk tier's memory side stores nothing above 1 KiB, so that every size measured is a
# disk-only answer; a size at or below it could be a memory hit and prove nothing.
if has_tier disk; then
    for s in $SIZES; do
        [[ "$(size_bytes "$s")" -gt 1024 ]] || die "size '$s': the disk tier needs sizes above 1 KiB (smaller ones may be held in memory)"
    done
fi

# A missing tool is an error naming its package; nothing is installed (unlike common.sh's
# need_tools as root): a measurement should not change the machine it runs on.
missing=()
for pair in nginx:nginx-light wrk:wrk curl:curl python3:python3 taskset:util-linux getconf:libc-bin; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair%%:*} (package ${pair#*:})")
done
[[ ${#missing[@]} -eq 0 ]] || die "missing tools: ${missing[*]}; install them (apt-get install -y <package>) and run again"
CLK_TCK="$(getconf CLK_TCK)"
export CLK_TCK
if [[ "$BUILD" == 1 ]]; then
    log "building gatehouse (cargo build --release --locked)…"
    (cd "$ROOT" && cargo build --release --locked) || die "cargo build --release --locked failed"
fi
[[ -x "$GATEHOUSE_BIN" ]] || die "no gatehouse binary at $GATEHOUSE_BIN"

make_tmp cache-tiers
pin_layout "origin and wrk -t1"
read -r ORIGIN_PORT PROXIED_PORT MEMORY_PORT DISK_PORT RSS_PORT RSS_ADMIN_PORT < <(free_ports 6)
declare -A PORT=([proxied]=$PROXIED_PORT [memory]=$MEMORY_PORT [disk]=$DISK_PORT)
declare -A PID=([proxied]=0 [memory]=0 [disk]=0)
DISK_TIERS="$TMP/disk-tiers" DISK_RSS="$TMP/disk-rss"   # the disk tiers' paths
mkdir -p "$DISK_TIERS" "$DISK_RSS"
# What "disk" is here: a HIT reads its file through the page cache (the file was just
# written, and nothing here drops caches), so it measures the file path, not the device.
DISK_FS="$(stat -f -c %T "$TMP")"

# ---------------------------------------------------------------------------------------
# Origin: one static file per size (random bytes, so a misplaced byte shows in the checks)
# ---------------------------------------------------------------------------------------
mkdir -p "$TMP/www"
for s in $SIZES $RSS_OBJECT; do
    [[ -f "$TMP/www/$s" ]] || head -c "$(size_bytes "$s")" /dev/urandom > "$TMP/www/$s"
done
chmod -R a+rX "$TMP/www"
# The RSS phase's unique keys differ in the query only: nginx serves the file for any.
{
    nginx_head origin
    cat <<EOF
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        root $TMP/www;
        location / { }
    }
}
EOF
} > "$TMP/origin.conf"

# ---------------------------------------------------------------------------------------
# gatehouse configs: run.sh's minimal peer, one route; the tiers differ in `cache` only.
# ---------------------------------------------------------------------------------------
gatehouse_config() {   # $1 = name, $2 = port, $3 = top-level YAML (cache), $4 = route cache ("" = none)
    {
        gatehouse_head "$1" "$2"
        [[ -z "$3" ]] || printf '%s\n' "$3"
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
        [[ -z "$4" ]] || printf '    %s\n' "$4"
    } > "$TMP/$1.yaml"
}
CACHE_MEMORY='cache: { max_size: 256MiB, max_object_size: 8MiB }'
# The disk tier's memory side: 1 MiB, nothing above 1 KiB in it.
CACHE_DISK="cache: { max_size: 1MiB, max_object_size: 1KiB, disk: { path: $DISK_TIERS, max_size: 4GiB, max_object_size: 64MiB } }"
CACHE_RSS="cache: { max_size: 16MiB, max_object_size: 1MiB, disk: { path: $DISK_RSS, max_size: 160MiB } }"
RSS_DISK_MAX=$(( 160 * 1048576 ))
gatehouse_config gatehouse-proxied "$PROXIED_PORT" "" ""
gatehouse_config gatehouse-memory "$MEMORY_PORT" "$CACHE_MEMORY" "cache: true"
gatehouse_config gatehouse-disk "$DISK_PORT" "$CACHE_DISK" "cache: true"
# The RSS phase reads /admin/cache: same config plus an admin listener (replacing the
# head's `admin: { listen: "" }`).
gatehouse_config gatehouse-rss "$RSS_PORT" "$CACHE_RSS" "cache: true"
sed -i "s|^admin: .*|admin: { listen: \"127.0.0.1:$RSS_ADMIN_PORT\" }|" "$TMP/gatehouse-rss.yaml"

# Validate before starting anything: a gatehouse without the disk tier refuses
# `cache.disk` here, with its own message, rather than at startup in a log.
wanted=()
for tier in $TIERS; do wanted+=("gatehouse-$tier"); done
[[ "$DURATION_RSS" == 0 ]] || wanted+=(gatehouse-rss)
for name in "${wanted[@]}"; do
    if ! env -u PORT "$GATEHOUSE_BIN" check -c "$TMP/$name.yaml" > "$TMP/$name-check.log" 2>&1; then
        cat "$TMP/$name-check.log" >&2
        if grep -q 'cache.disk: unknown key' "$TMP/$name-check.log"; then
            die "this gatehouse has no disk tier (cache.disk is an unknown key): run with TIERS=\"proxied memory\" DURATION_RSS=0"
        fi
        die "gatehouse check refused $TMP/$name.yaml"
    fi
done

log "temp dir: $TMP (disk tiers on $DISK_FS)"
log "layout: $LAYOUT"
start_nginx origin "${LOAD_PIN[@]}"
ORIGIN_PID=$STARTED_PID
wait_ready origin "$ORIGIN_PID" "http://127.0.0.1:$ORIGIN_PORT/$RSS_OBJECT" "$TMP/origin/logs/error.log"
for tier in $TIERS; do
    start_gatehouse "gatehouse-$tier" "${PORT[$tier]}"
    PID[$tier]=$STARTED_PID
done

# ---------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------
# One GET: sets GOT ("<status> <bytes>"), XCACHE and CSTATUS (X-Cache, Cache-Status) and
# leaves the body in $TMP/body.
fetch() {   # $1 = url
    GOT="$(curl -s -D "$TMP/headers" -o "$TMP/body" -w '%{http_code} %{size_download}' "$1" || echo curl-failed)"
    XCACHE="$(tr -d '\r' < "$TMP/headers" | sed -n 's/^[Xx]-[Cc]ache: *//p')"
    CSTATUS="$(tr -d '\r' < "$TMP/headers" | sed -n 's/^[Cc]ache-[Ss]tatus: *//p')"
}
# A memory hit: "gatehouse; hit; ttl=N" with no detail; a disk hit: the same with
# "detail=disk".
is_hit() {   # $1 = tier
    [[ "$XCACHE" == HIT && "$CSTATUS" == "gatehouse; hit; ttl="* ]] || return 1
    if [[ "$1" == disk ]]; then [[ "$CSTATUS" == *"detail=disk"* ]]; else [[ "$CSTATUS" != *detail=* ]]; fi
}
# The tier's URL for a size answers a HIT of that tier with the origin's bytes. The disk
# copy is written off the request path, so the first requests after a MISS may still miss
# (or, for the memory tier, the entry may still be filling): poll for up to 10 s.
check_hit() {   # $1 = tier, $2 = size
    local url="http://127.0.0.1:${PORT[$1]}/$2" i
    for i in $(seq 50); do
        fetch "$url"
        if is_hit "$1"; then
            [[ "$GOT" == "200 $(size_bytes "$2")" ]] || die "$1 $url: HIT with '$GOT', expected '200 $(size_bytes "$2")'"
            cmp -s "$TMP/body" "$TMP/www/$2" || die "$1 $url: the HIT's body differs from the origin file"
            return 0
        fi
        sleep 0.2
    done
    die "$1 $url: no $1 HIT after 10 s; last answer '$GOT', X-Cache '${XCACHE:-none}', Cache-Status '${CSTATUS:-none}'"
}

for tier in $TIERS; do
    for s in $SIZES; do
        url="http://127.0.0.1:${PORT[$tier]}/$s"
        fetch "$url"   # the proxied answer, or the MISS that stores it
        [[ "$GOT" == "200 $(size_bytes "$s")" ]] || die "$tier $url: expected '200 $(size_bytes "$s")' (status, bytes), got '$GOT'"
        cmp -s "$TMP/body" "$TMP/www/$s" || die "$tier $url: body differs from the origin file"
        if [[ "$tier" == proxied ]]; then
            [[ -z "$XCACHE$CSTATUS" ]] || die "proxied $url: X-Cache '$XCACHE', Cache-Status '$CSTATUS' on a route without cache"
        else
            check_hit "$tier" "$s"
            log "$tier /$s: X-Cache $XCACHE, Cache-Status: $CSTATUS, the origin's $(size_bytes "$s") bytes"
        fi
    done
done
if has_tier disk; then
    log "disk tier files after the checks: $(find "$DISK_TIERS" -type f | wc -l) files, $(du -sb "$DISK_TIERS" | cut -f1) bytes (du -sb)"
fi

# ---------------------------------------------------------------------------------------
# Phases 1-3: reps outermost, tiers interleaved innermost
# ---------------------------------------------------------------------------------------
STAMP="$(date +%Y%m%d-%H%M%S)"
mkdir -p "$RESULTS"
CSV="$RESULTS/$STAMP-cache-tiers.csv" MD="$RESULTS/$STAMP-cache-tiers.md" RAW="$RESULTS/$STAMP-cache-tiers.raw"
OURS="$ORIGIN_PID,${PID[proxied]},${PID[memory]},${PID[disk]}"
if [[ -n "${TIERS// /}" ]]; then
    log "measuring: $REPS rep(s) × $(wc -w <<<"$SIZES") size(s) × $(wc -w <<<"$TIERS") tier(s) × ${DURATION}s (after ${WARMUP}s warm-up) at $CONNS connections; runs → $CSV"
fi
for rep in $(seq "$REPS"); do
    [[ -n "${TIERS// /}" ]] || break
    for s in $SIZES; do
        for tier in $TIERS; do
            # Still a HIT of this tier (the 5 min freshness could run out in a long run).
            [[ "$tier" == proxied ]] || check_hit "$tier" "$s"
            python3 "$HERE/helper.py" run-one \
                --peer "$tier" --size "$s" --conns "$CONNS" --rep "$rep" \
                --url "http://127.0.0.1:${PORT[$tier]}/$s" --header "" \
                --client wrk --client-cmd "${LOAD_PIN[*]} wrk" \
                --duration "${DURATION}s" --warmup "${WARMUP}s" \
                --proxy-pid "${PID[$tier]}" --origin-pid "$ORIGIN_PID" --ours "$OURS" \
                --quiet-max "$QUIET_MAX" --quiet-timeout "$QUIET_TIMEOUT" \
                --noise-max "$NOISE_MAX" --redo "$REDO" --csv "$CSV" --raw "$RAW"
            # ... and it was one all along: still a HIT of this tier right after.
            [[ "$tier" == proxied ]] || check_hit "$tier" "$s"
        done
    done
done

# ---------------------------------------------------------------------------------------
# Phase 4: RSS with a disk tier 10× the memory bound, every request a new key
# ---------------------------------------------------------------------------------------
RSS_RAN=0 RSS_OVER=0
mib() { python3 -c "print(f'{$1 / 1048576:.1f}')"; }
pct() { python3 -c "print(f'{$1 / $RSS_DISK_MAX * 100:.1f} %')"; }
# du of a directory whose files come and go: a file removed mid-walk is not an error.
du_bytes() { { du -sb "$1" 2>/dev/null || true; } | cut -f1; }
file_bytes() { find "$1" -type f -printf '%s\n' 2>/dev/null | awk '{ n += $1 } END { print n + 0 }'; }
file_count() { find "$1" -type f 2>/dev/null | wc -l; }
# gatehouse's threads: the disk writes run on blocking threads beside the one worker.
threads() { awk '/^Threads:/ { print $2 }' "/proc/$1/status"; }
# utime and stime (ticks) of the whole process, its threads gone meanwhile included: the
# write-through's kernel work (write, fsync, rename, unlink) shows in the second.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12, $13 }'; }
if [[ "$DURATION_RSS" -gt 0 ]]; then
    RSS_RAN=1
    start_gatehouse gatehouse-rss "$RSS_PORT"
    RSS_PID=$STARTED_PID
    OURS+=",$RSS_PID"
    url="http://127.0.0.1:$RSS_PORT/$RSS_OBJECT?warm"
    fetch "$url"
    [[ "$GOT" == "200 $(size_bytes "$RSS_OBJECT")" ]] || die "rss $url: expected '200 $(size_bytes "$RSS_OBJECT")', got '$GOT'"
    # Write-through: the one stored answer must reach the disk path (off the request
    # path, so give it up to 10 s).
    for _ in $(seq 50); do [[ "$(file_bytes "$DISK_RSS")" -gt 0 ]] && break; sleep 0.2; done
    [[ "$(file_bytes "$DISK_RSS")" -gt 0 ]] || die "rss: nothing written under $DISK_RSS 10 s after storing $url"
    fetch "$url"
    [[ "$XCACHE" == HIT ]] || die "rss $url: expected X-Cache: HIT on the second request, got '${XCACHE:-none}'"
    sleep 1
    RSS_IDLE="$(rss_kib "$RSS_PID")"
    curl -s "http://127.0.0.1:$RSS_ADMIN_PORT/admin/cache" > "$TMP/admin-cache-idle.json" ||
        die "rss: GET /admin/cache on 127.0.0.1:$RSS_ADMIN_PORT failed"

    # Every request a key never seen before: the same file, a new query (the counter, and
    # a random part so that a second run in the same process would not repeat keys).
    cat > "$TMP/unique.lua" <<EOF
local n = 0
request = function()
    n = n + 1
    return wrk.format("GET", "/$RSS_OBJECT?k=" .. n .. "-" .. math.random(1, 1000000000))
end
EOF
    # The sampler runs beside wrk (wrk in the foreground, so an interrupt stops it with the
    # script) and ends on the stop file, or by itself when gatehouse is gone.
    : > "$TMP/rss-samples.txt"
    (
        t=0
        while [[ ! -e "$TMP/rss.stop" ]] && kill -0 "$RSS_PID" 2>/dev/null; do
            sleep 1; t=$((t + 1))
            echo "$t $(rss_kib "$RSS_PID") $(du_bytes "$DISK_RSS") $(file_bytes "$DISK_RSS") $(file_count "$DISK_RSS") $(threads "$RSS_PID")" >> "$TMP/rss-samples.txt"
        done
    ) &
    SAMPLER=$!
    read -r u0 s0 < <(cpu_ticks "$RSS_PID")
    log "RSS phase: wrk -c$CONNS for ${DURATION_RSS}s, every request a new key of $RSS_OBJECT"
    "${LOAD_PIN[@]}" wrk -t1 -c"$CONNS" -d"${DURATION_RSS}s" --latency -s "$TMP/unique.lua" \
        "http://127.0.0.1:$RSS_PORT/" > "$TMP/wrk-rss.out" 2>&1 || { cat "$TMP/wrk-rss.out" >&2; die "wrk failed in the RSS phase"; }
    read -r u1 s1 < <(cpu_ticks "$RSS_PID")
    touch "$TMP/rss.stop"
    wait "$SAMPLER" || true
    { echo "### RSS phase: unique keys of $RSS_OBJECT, ${DURATION_RSS}s"; cat "$TMP/wrk-rss.out"; echo; } >> "$RAW"
    kill -0 "$RSS_PID" 2>/dev/null || die "gatehouse-rss exited during the RSS phase (log: $TMP/gatehouse-rss.log)"
    # The disk copies are written off the request path: let the last ones land (until
    # the disk path's files stop changing over 1 s, at most 10 s).
    SETTLE=0 prev=""
    while [[ "$SETTLE" -lt 10 ]]; do
        now="$(file_count "$DISK_RSS") $(file_bytes "$DISK_RSS")"
        [[ "$now" != "$prev" ]] || break
        prev="$now"; sleep 1; SETTLE=$((SETTLE + 1))
    done
    RSS_AFTER="$(rss_kib "$RSS_PID")" RSS_THREADS_END="$(threads "$RSS_PID")"
    RSS_DU_END="$(du_bytes "$DISK_RSS")" RSS_FILES_END="$(file_bytes "$DISK_RSS")"
    RSS_NFILES="$(file_count "$DISK_RSS")"
    curl -s "http://127.0.0.1:$RSS_ADMIN_PORT/admin/cache" > "$TMP/admin-cache-end.json" ||
        die "rss: GET /admin/cache on 127.0.0.1:$RSS_ADMIN_PORT failed at the end"
    read -r RSS_PEAK RSS_DU_PEAK RSS_FILES_PEAK RSS_THREADS_PEAK < <(awk -v r="$RSS_AFTER" -v d="$RSS_DU_END" \
        -v f="$RSS_FILES_END" -v th="$RSS_THREADS_END" '
        { if ($2 > r) r = $2; if ($3 > d) d = $3; if ($4 > f) f = $4; if ($6 > th) th = $6 }
        END { print r, d, f, th }' "$TMP/rss-samples.txt")
    RSS_REQS="$(awk '/requests in/ { print $1 }' "$TMP/wrk-rss.out")"
    RSS_RPS="$(awk '/^Requests\/sec/ { printf "%.0f", $2 }' "$TMP/wrk-rss.out")"
    RSS_P99="$(awk '$1 == "99%" { print $2 }' "$TMP/wrk-rss.out")"
    RSS_ERRS="$(python3 -c "import sys; sys.path.insert(0, '$HERE'); import helper; w = helper.parse_wrk(open('$TMP/wrk-rss.out').read()); print(w['non2xx'] + w['sock_errors'])")"
    RSS_CPU_US="$(python3 -c "print(f'{($u1 + $s1 - $u0 - $s0) / $CLK_TCK * 1e6 / max($RSS_REQS, 1):.0f}')")"
    RSS_SYS_PCT="$(python3 -c "print(f'{($s1 - $s0) / max($u1 + $s1 - $u0 - $s0, 1) * 100:.0f}')")"
    # The bound is checked once the writes have landed (the files' bytes after they
    # settled: what gatehouse keeps). While writes are in flight, files written but not yet
    # counted (their entry admitted, others evicted and deleted only then) come on top:
    # reported, not failed.
    [[ "$RSS_FILES_END" -le "$RSS_DISK_MAX" ]] || RSS_OVER=1
fi

# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------
report_meta
{
    echo "# Response cache tiers: proxied vs memory HIT vs disk HIT ($STAMP)"
    echo
    for ((i = 1; i < ${#META[@]}; i += 2)); do echo "- ${META[i]}"; done
    echo "- origin: $(nginx -v 2>&1 | sed 's/^nginx version: //'), 1 worker, static files of random bytes, no Cache-Control (the route's default 5 min freshness)"
    echo "- client: $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2 || true) -t1 -c$CONNS --latency"
    if has_tier disk || [[ "$RSS_RAN" == 1 ]]; then
        echo "- disk tiers: directories under $TMP (file system type $DISK_FS); a disk HIT reads a file that was just written, so through the page cache, not from the device"
    fi
    echo
    if [[ -n "${TIERS// /}" ]]; then
        echo "## HITs by tier"
        echo
        echo "Tiers: $TIERS. Sizes: $SIZES. $REPS rep(s) × ${DURATION}s after ${WARMUP}s warm-up, tiers"
        echo "interleaved within each rep; medians over the reps (req/s range in brackets)."
        echo
        echo "- proxied: a route without cache"
        if has_tier memory; then
            echo "- memory: \`$CACHE_MEMORY\`, route \`cache: true\`; every HIT checked (before and after each run) as \`Cache-Status: gatehouse; hit; ttl=N\` without detail"
        fi
        if has_tier disk; then
            echo "- disk: \`$CACHE_DISK\`, route \`cache: true\`; every HIT checked (before and after each run) with \`detail=disk\` in Cache-Status"
        fi
        echo
        python3 - "$CSV" "$SIZES" "$TIERS" <<'PY'
import csv, statistics, sys
path, sizes, tiers = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
rows = [r for r in csv.DictReader(open(path)) if r["kept"] == "1"]

def label(s):
    if s.endswith("k"):
        return f"{s[:-1]} KiB"
    if s.endswith("m"):
        return f"{s[:-1]} MiB"
    return f"{s} B"

def rate(x):
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"

med = {}
print("| body | tier | req/s | gatehouse CPU µs/req | p99 ms | errors | origin CPU µs/req | runs |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for s in sizes:
    for t in tiers:
        rs = [r for r in rows if r["size"] == s and r["peer"] == t]
        if not rs:
            continue
        rps = [float(r["rps"]) for r in rs]
        cpu = statistics.median(float(r["proxy_us_per_req"]) for r in rs)
        p99 = statistics.median(float(r["p99_ms"]) for r in rs)
        org = statistics.median(float(r["origin_us_per_req"]) for r in rs)
        errs = sum(int(r["non2xx"]) + int(r["sock_errors"]) for r in rs)
        med[s, t] = (statistics.median(rps), cpu)
        rng = f" [{rate(min(rps))}–{rate(max(rps))}]" if len(rps) > 1 else ""
        print(f"| {label(s)} | {t} | {rate(med[s, t][0])}{rng} | {cpu:.1f} | {p99:.2f} | {errs} | {org:.2f} | {len(rs)} |")
pairs = [(a, b) for a, b in (("memory", "proxied"), ("disk", "proxied"), ("disk", "memory"))
         if a in tiers and b in tiers]
if pairs:
    print()
    print("Ratios of the medians: req/s (and gatehouse CPU per request).")
    print()
    print("| body | " + " | ".join(f"{a} HIT / {b}{'' if b == 'proxied' else ' HIT'}" for a, b in pairs) + " |")
    print("|---|" + "---:|" * len(pairs))
    for s in sizes:
        cells = []
        for a, b in pairs:
            if (s, a) in med and (s, b) in med:
                (ra, ca), (rb, cb) = med[s, a], med[s, b]
                cells.append(f"{ra / rb:.2f}× ({ca / cb:.2f}× CPU)")
            else:
                cells.append("–")
        print(f"| {label(s)} | " + " | ".join(cells) + " |")
PY
        echo
        for tier in $TIERS; do
            python3 "$HERE/helper.py" logsummary "gatehouse-$tier" "$TMP/gatehouse-$tier.log" | sed 's/^/- /'
        done
        if has_tier disk; then
            echo "- disk tier path after the runs: $(find "$DISK_TIERS" -type f | wc -l) files, $(du_bytes "$DISK_TIERS") bytes (du -sb)"
        fi
        echo
    else
        echo "Phases 1-3 (proxied / memory / disk HITs) did not run: TIERS is empty."
        echo
    fi
    if [[ "$RSS_RAN" == 1 ]]; then
        echo "## RSS with a disk tier 10× the memory bound"
        echo
        echo "\`$CACHE_RSS\`, route \`cache: true\`, admin listener on; wrk -t1 -c$CONNS for ${DURATION_RSS}s,"
        echo "every request a new key (the $RSS_OBJECT file, a unique query), so both tiers fill and then"
        echo "evict. $RSS_REQS requests, $RSS_RPS req/s, p99 $RSS_P99, $RSS_ERRS errors, gatehouse CPU $RSS_CPU_US µs/request,"
        echo "$RSS_SYS_PCT % of it system time (the disk writes included: they run in the same process). The disk writes settled ${SETTLE} s after the load."
        echo
        echo "| | value |"
        echo "|---|---:|"
        echo "| RSS idle (one entry stored) | $(mib "$RSS_IDLE * 1024") MiB |"
        echo "| RSS peak (sampled each second) | $(mib "$RSS_PEAK * 1024") MiB |"
        echo "| RSS after the writes settled | $(mib "$RSS_AFTER * 1024") MiB |"
        echo "| gatehouse threads, peak / after the writes settled | $RSS_THREADS_PEAK / $RSS_THREADS_END |"
        echo "| disk, du -sb after the writes settled | $(mib "$RSS_DU_END") MiB |"
        echo "| disk, files' bytes after the writes settled | $(mib "$RSS_FILES_END") MiB in $RSS_NFILES files ($(pct "$RSS_FILES_END") of the bound) |"
        echo "| disk, files' bytes peak (sampled each second) | $(mib "$RSS_FILES_PEAK") MiB ($(pct "$RSS_FILES_PEAK") of the bound) |"
        echo "| disk bound (\`disk.max_size\`) | 160.0 MiB |"
        echo
        if [[ "$RSS_OVER" == 1 ]]; then
            echo "**OVER THE BOUND: after the writes settled the disk tier's files held $(mib "$RSS_FILES_END") MiB, above its max_size of 160 MiB.**"
            echo
        elif [[ "$RSS_FILES_PEAK" -gt "$RSS_DISK_MAX" ]]; then
            echo "**During the load the files exceeded the bound: $(mib "$RSS_FILES_PEAK") MiB at the peak sample** (files written"
            echo "whose entries were not yet admitted, so nothing evicted for them yet); within it once the writes landed."
            echo
        fi
        echo "\`GET /admin/cache\` at the end: \`$(tr -d '\n' < "$TMP/admin-cache-end.json")\`"
        echo
        echo "Per second (RSS, du -sb of the disk path, its files' bytes and count, gatehouse's threads):"
        echo
        while read -r t r d f n th; do
            echo "- ${t} s: RSS $(mib "$r * 1024") MiB, disk $(mib "${d:-0}") MiB (files $(mib "${f:-0}") MiB, $n), $th threads"
        done < "$TMP/rss-samples.txt"
        echo
        python3 "$HERE/helper.py" logsummary gatehouse-rss "$TMP/gatehouse-rss.log" | sed 's/^/- /'
    else
        echo "Phase 4 (RSS with a disk tier) did not run: DURATION_RSS=0."
    fi
} > "$MD"
echo
cat "$MD"
log ""
log "saved: $MD$([[ -s "$CSV" ]] && echo ", $CSV (raw wrk output: $RAW)")"
[[ "$RSS_OVER" == 0 ]] || die "the disk tier exceeded its max_size (see $MD)"
