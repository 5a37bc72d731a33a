#!/usr/bin/env bash
# Aggregate routes: the latency of one call to an aggregate route of 3 parts next to the
# 3 calls a client would make itself, one after the other (and at once), in one run.
#
#   bash loadtest/aggregate.sh                   # full run (≈ 3 min): 4 modes × 3 reps × 10 s
#   QUICK=1 bash loadtest/aggregate.sh           # smoke run (≈ 25 s)
#   DELAYS="10 20 30" bash loadtest/aggregate.sh # parts of different speeds
#
# What it does (method: /work/shared/benchmarking.md, summary in loadtest/README.md):
#   1. builds gatehouse (cargo build --release --locked) and checks the tools it needs;
#   2. in a temp dir, starts three small upstreams a, b, c (loadtest/features.py
#      agg-upstreams: one python3 asyncio process, HTTP/1.1 keep-alive, each port answering
#      a ~100-byte JSON object after its fixed delay, 20 ms by default) and gatehouse
#      (threads 1, minimal config) with an aggregate route /agg of the 3 parts and one
#      proxied route per upstream (/a, /b, /c);
#   3. iso layout: gatehouse alone on core 0, the upstreams and the client on core 1;
#   4. checks that /agg answers 200, X-Aggregated: true, status success with 3 parts, and
#      that each part's data is what its proxied route answers;
#   5. for each rep, runs the modes interleaved, each a closed loop (the next operation as
#      soon as the last one is done) for DURATION after a warm-up, timed in the client
#      (python3 asyncio, keep-alive connections), gatehouse's CPU read from /proc around it:
#        aggregate   1 GET /agg                          (expected ≈ the slowest part)
#        sequential  GET /a, then /b, then /c            (expected ≈ the sum)
#        parallel    GET /a, /b, /c at once on 3 conns   (the client doing the fan-out)
#        single      GET of the slowest part (/a when all are equal): the floor
#   6. prints a Markdown table (p50/p99 over every operation of every rep) and saves it as
#      loadtest/results/<stamp>-aggregate.md (the runs in .csv, every latency in .raw).
#
# Knobs (environment):
#   DURATION=10 WARMUP=2 REPS=3 (seconds, seconds, count) DELAYS="20 20 20" (ms, parts a b c)
#   MODES="aggregate sequential parallel single"  QUICK=0 PIN=1 BUILD=1
#   GATEHOUSE_BIN=target/release/gatehouse RESULTS=loadtest/results KEEP_TMP=0
#   QUIET_MAX=0.15 QUIET_TIMEOUT=30 NOISE_MAX=0.25 REDO=2 (QUICK: QUIET_TIMEOUT=3 REDO=0)
# Needs: python3, curl, taskset. Every process it starts is stopped on exit, Ctrl-C or failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source=loadtest/common.sh
source "$HERE/common.sh"

if [[ "${QUICK:-0}" == 1 ]]; then
    DURATION="${DURATION:-3}" WARMUP="${WARMUP:-1}" REPS="${REPS:-1}"
    QUIET_TIMEOUT="${QUIET_TIMEOUT:-3}" REDO="${REDO:-0}"
fi
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
REPS="${REPS:-3}"
DELAYS="${DELAYS:-20 20 20}"
MODES="${MODES:-aggregate sequential parallel single}"
BUILD="${BUILD:-1}"
GATEHOUSE_BIN="${GATEHOUSE_BIN:-$ROOT/target/release/gatehouse}"
RESULTS="${RESULTS:-$HERE/results}"
QUIET_MAX="${QUIET_MAX:-0.15}"
QUIET_TIMEOUT="${QUIET_TIMEOUT:-30}"
NOISE_MAX="${NOISE_MAX:-0.25}"
REDO="${REDO:-2}"
DURATION="${DURATION%s}" WARMUP="${WARMUP%s}"   # plain seconds (run.sh's "10s" accepted too)

read -r -a delays <<<"$DELAYS"
[[ ${#delays[@]} -eq 3 ]] || die "DELAYS needs 3 values (ms for parts a, b, c), got '$DELAYS'"
for d in "${delays[@]}"; do [[ "$d" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "bad delay '$d' in DELAYS"; done
# The single mode's part: the slowest (the first of the slowest when they are equal).
SLOWEST="$(python3 -c 'import sys; d = [float(x) for x in sys.argv[1:]]; print("/" + "abc"[d.index(max(d))])' "${delays[@]}")"
for m in $MODES; do
    [[ " aggregate sequential parallel single " == *" $m "* ]] || die "unknown mode '$m' in MODES (aggregate, sequential, parallel, single)"
done

need_tools curl:curl python3:python3 taskset:util-linux getconf:libc-bin
CLK_TCK="$(getconf CLK_TCK)"
export CLK_TCK
if [[ "$BUILD" == 1 ]]; then
    log "building gatehouse (cargo build --release --locked)…"
    (cd "$ROOT" && cargo build --release --locked) || die "cargo build --release --locked failed"
fi
[[ -x "$GATEHOUSE_BIN" ]] || die "no gatehouse binary at $GATEHOUSE_BIN"

make_tmp aggregate
pin_layout "the 3 upstreams (python3) and the client (python3)"
read -r A_PORT B_PORT C_PORT GH_PORT < <(free_ports 4)

# gatehouse: the minimal peer, one aggregate route of the 3 parts and a proxied route per
# part. The parts' timeouts are far above their delays: every part succeeds.
{
    gatehouse_head gatehouse "$GH_PORT"
    cat <<EOF
upstreams:
  a: { targets: ["127.0.0.1:$A_PORT"], keepalive_timeout: 60s }
  b: { targets: ["127.0.0.1:$B_PORT"], keepalive_timeout: 60s }
  c: { targets: ["127.0.0.1:$C_PORT"], keepalive_timeout: 60s }
routes:
  - name: agg
    path: /agg
    timeout: 5s
    aggregate:
      - { name: a, upstream: a, path: /a }
      - { name: b, upstream: b, path: /b }
      - { name: c, upstream: c, path: /c }
  - { name: a, prefix: /a, upstream: a }
  - { name: b, prefix: /b, upstream: b }
  - { name: c, prefix: /c, upstream: c }
EOF
} > "$TMP/gatehouse.yaml"

log "temp dir: $TMP"
log "layout: $LAYOUT"
"${LOAD_PIN[@]}" python3 "$HERE/features.py" agg-upstreams --ports "$A_PORT,$B_PORT,$C_PORT" \
    --delays "$(tr ' ' , <<<"${delays[*]}")" --names a,b,c > "$TMP/upstreams.log" 2>&1 &
UP_PID=$!
started "$UP_PID" upstreams "$TMP/upstreams.log"
for port in "$A_PORT" "$B_PORT" "$C_PORT"; do
    wait_ready "upstream :$port" "$UP_PID" "http://127.0.0.1:$port/health" "$TMP/upstreams.log"
done
start_gatehouse gatehouse "$GH_PORT"
GH_PID=$STARTED_PID

# Check: the aggregate answer holds the 3 parts, each equal to its proxied route's answer.
merged="$(python3 "$HERE/features.py" agg-check --port "$GH_PORT" --parts /a,/b,/c --names a,b,c)" ||
    die "the aggregate route /agg does not merge the 3 parts (see above)"
log "/agg answers 200, X-Aggregated: true, 3 parts: $merged"

# ---------------------------------------------------------------------------------------
# Measure: reps outermost, modes interleaved
# ---------------------------------------------------------------------------------------
STAMP="$(date +%Y%m%d-%H%M%S)"
mkdir -p "$RESULTS"
CSV="$RESULTS/$STAMP-aggregate.csv" MD="$RESULTS/$STAMP-aggregate.md" RAW="$RESULTS/$STAMP-aggregate.raw"
log "measuring: $REPS rep(s) × $(wc -w <<<"$MODES") modes × ${DURATION}s (after ${WARMUP}s warm-up), closed loop; runs → $CSV"
for rep in $(seq "$REPS"); do
    for mode in $MODES; do
        "${LOAD_PIN[@]}" python3 "$HERE/features.py" agg-run --port "$GH_PORT" --mode "$mode" \
            --parts /a,/b,/c --single "$SLOWEST" --rep "$rep" --duration "$DURATION" --warmup "$WARMUP" \
            --proxy-pid "$GH_PID" --ours "$GH_PID,$UP_PID" \
            --quiet-max "$QUIET_MAX" --quiet-timeout "$QUIET_TIMEOUT" \
            --noise-max "$NOISE_MAX" --redo "$REDO" --csv "$CSV" --raw "$RAW"
    done
done

# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------
report_meta
args=(--stamp "$STAMP" --delays "$(tr ' ' , <<<"${delays[*]}")" --noise-max "$NOISE_MAX" "${META[@]}"
    --meta "route: \`aggregate:\` of 3 parts a, b, c (GET /a, /b, /c on upstreams a, b, c), route timeout 5s; proxied routes /a, /b, /c to the same upstreams; single = GET $SLOWEST, the slowest part"
    --meta "upstreams: python3 asyncio (loadtest/features.py agg-upstreams), HTTP/1.1 keep-alive, a ~100-byte JSON object after ${delays[0]} / ${delays[1]} / ${delays[2]} ms (a / b / c)"
    --meta "client: python3 asyncio, closed loop, keep-alive connections (1; 3 for parallel), latency of each operation from its first byte sent to its last byte read"
    --meta "runs: $REPS rep(s) × ${DURATION}s per mode after ${WARMUP}s warm-up, modes interleaved; p50/p99 over every operation of every kept run; CPU µs/op = gatehouse's utime+stime during the run ÷ operations"
)
n="$(python3 "$HERE/helper.py" logsummary gatehouse "$TMP/gatehouse.log")"
[[ -z "$n" ]] || args+=(--note "$n")
echo
python3 "$HERE/features.py" agg-report "$CSV" "$RAW" "$MD" "${args[@]}"
log "saved: $MD, $CSV (every latency: $RAW)"
