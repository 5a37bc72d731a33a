#!/usr/bin/env bash
# gRPC unary calls through gatehouse (h2c in, h2 to the upstream) next to the same calls
# straight to the server: calls per second and gatehouse's CPU µs per call, in one run.
#
#   bash loadtest/grpc.sh                        # full run (≈ 2 min): 2 peers × 5 reps × 10 s
#   QUICK=1 bash loadtest/grpc.sh                # smoke run (≈ 20 s, after the builds)
#   CONCURRENCY=256 CHANNELS=16 bash loadtest/grpc.sh
#
# What it does (method: /work/shared/benchmarking.md, summary in loadtest/README.md):
#   1. builds gatehouse (cargo build --release --locked) and the load test's gRPC server
#      and client, examples/grpc_bench.rs (cargo build --release --locked --example
#      grpc_bench: tonic, the Echo service of tests/proto/echo.proto);
#   2. in a temp dir, starts the Echo server (h2c; Unary echoes the message) and gatehouse
#      (threads 1, minimal config) with `h2c: true`, an upstream `{ targets: [server],
#      h2: true }` and one route `grpc: { service: echo.Echo }`;
#   3. iso layout: gatehouse alone on core 0, the server and the client on core 1;
#   4. checks a short run of calls through gatehouse: every answer echoes its request;
#   5. runs the peers interleaved, REPS times: `grpc_bench client URL CONCURRENCY DURATION
#      CHANNELS` (CONCURRENCY tasks over CHANNELS h2c connections, each calling Unary in a
#      closed loop) against gatehouse and against the server directly, after a warm-up;
#      gatehouse's and the server's CPU from /proc around it (quiet wait, noise check);
#   6. prints a Markdown table and saves it as loadtest/results/<stamp>-grpc.md (the runs
#      in .csv, the client's output in .raw).
#
# Knobs (environment):
#   DURATION=10 WARMUP=2 REPS=5 (seconds, seconds, count) CONCURRENCY=64 CHANNELS=4
#   H2_STREAMS= (the upstream's `h2_streams`, streams per upstream h2 connection; unset =
#   gatehouse's default; 1 = Pingora's own default, one connection per call in flight)
#   QUICK=0 PIN=1 BUILD=1 GATEHOUSE_BIN=target/release/gatehouse
#   GRPC_BENCH_BIN=target/release/examples/grpc_bench RESULTS=loadtest/results KEEP_TMP=0
#   QUIET_MAX=0.15 QUIET_TIMEOUT=30 NOISE_MAX=0.25 REDO=2 (QUICK: QUIET_TIMEOUT=3 REDO=0)
# Needs: curl, python3, taskset (and cargo for the builds). Every process it starts is
# stopped on exit, Ctrl-C or failure.
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
REPS="${REPS:-5}"
CONCURRENCY="${CONCURRENCY:-64}"
CHANNELS="${CHANNELS:-4}"
H2_STREAMS="${H2_STREAMS:-}"
[[ -z "$H2_STREAMS" || "$H2_STREAMS" =~ ^[1-9][0-9]*$ ]] || die "H2_STREAMS must be a positive number, got '$H2_STREAMS'"
BUILD="${BUILD:-1}"
GATEHOUSE_BIN="${GATEHOUSE_BIN:-$ROOT/target/release/gatehouse}"
GRPC_BENCH_BIN="${GRPC_BENCH_BIN:-$ROOT/target/release/examples/grpc_bench}"
RESULTS="${RESULTS:-$HERE/results}"
QUIET_MAX="${QUIET_MAX:-0.15}"
QUIET_TIMEOUT="${QUIET_TIMEOUT:-30}"
NOISE_MAX="${NOISE_MAX:-0.25}"
REDO="${REDO:-2}"
DURATION="${DURATION%s}" WARMUP="${WARMUP%s}"   # plain seconds (run.sh's "10s" accepted too)

need_tools curl:curl python3:python3 taskset:util-linux getconf:libc-bin
CLK_TCK="$(getconf CLK_TCK)"
export CLK_TCK
if [[ "$BUILD" == 1 ]]; then
    log "building gatehouse and examples/grpc_bench.rs (cargo build --release --locked [--example grpc_bench])…"
    (cd "$ROOT" && cargo build --release --locked) || die "cargo build --release --locked failed"
    (cd "$ROOT" && cargo build --release --locked --example grpc_bench) ||
        die "cargo build --release --locked --example grpc_bench failed"
fi
[[ -x "$GATEHOUSE_BIN" ]] || die "no gatehouse binary at $GATEHOUSE_BIN"
[[ -x "$GRPC_BENCH_BIN" ]] || die "no grpc_bench binary at $GRPC_BENCH_BIN (BUILD=1 builds it)"

make_tmp grpc
pin_layout "the Echo server and the client (grpc_bench)"
read -r SERVER_PORT GH_PORT < <(free_ports 2)

# gatehouse: the minimal peer with h2c on its listener, the server as an h2 upstream and
# one gRPC route for every method of echo.Echo (H2_STREAMS: its `h2_streams`).
UPSTREAM_EXTRA=""
[[ -z "$H2_STREAMS" ]] || UPSTREAM_EXTRA=$'\n'"    h2_streams: $H2_STREAMS"
{
    gatehouse_head gatehouse "$GH_PORT"
    cat <<EOF
h2c: true
upstreams:
  echo:
    targets: ["127.0.0.1:$SERVER_PORT"]
    h2: true
    keepalive_timeout: 60s$UPSTREAM_EXTRA
routes:
  - name: echo
    grpc: { service: echo.Echo }
    upstream: echo
EOF
} > "$TMP/gatehouse.yaml"

log "temp dir: $TMP"
log "layout: $LAYOUT"
"${LOAD_PIN[@]}" "$GRPC_BENCH_BIN" server "127.0.0.1:$SERVER_PORT" > "$TMP/server.log" 2>&1 &
SERVER_PID=$!
started "$SERVER_PID" grpc-server "$TMP/server.log"
for _ in $(seq 100); do
    grep -q '^listening' "$TMP/server.log" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/server.log" >&2; die "the gRPC server did not start"; }
    sleep 0.1
done
grep -q '^listening' "$TMP/server.log" || die "the gRPC server is not listening after 10 s"
start_gatehouse gatehouse "$GH_PORT"
GH_PID=$STARTED_PID

peer_url() { if [[ "$1" == gatehouse ]]; then echo "http://127.0.0.1:$GH_PORT"; else echo "http://127.0.0.1:$SERVER_PORT"; fi; }
peer_pid() { if [[ "$1" == gatehouse ]]; then echo "$GH_PID"; else echo 0; fi; }

# Check: calls through gatehouse and direct succeed, every answer echoing its request (the
# client counts a wrong echo as an error).
for peer in gatehouse direct; do
    out="$("${LOAD_PIN[@]}" "$GRPC_BENCH_BIN" client "$(peer_url "$peer")" 4 0.5 2 2>"$TMP/check.err")" ||
        { cat "$TMP/check.err" >&2; die "gRPC calls to $peer failed: $out"; }
    [[ "$out" == *'"errors": 0,'* ]] || { cat "$TMP/check.err" >&2; die "gRPC calls to $peer had errors: $out"; }
    log "$peer: $out"
done

# ---------------------------------------------------------------------------------------
# Measure: reps outermost, peers interleaved
# ---------------------------------------------------------------------------------------
STAMP="$(date +%Y%m%d-%H%M%S)"
mkdir -p "$RESULTS"
CSV="$RESULTS/$STAMP-grpc.csv" MD="$RESULTS/$STAMP-grpc.md" RAW="$RESULTS/$STAMP-grpc.raw"
log "measuring: $REPS rep(s) × 2 peers × ${DURATION}s (after ${WARMUP}s warm-up), $CONCURRENCY concurrent calls over $CHANNELS connections; runs → $CSV"
for rep in $(seq "$REPS"); do
    for peer in gatehouse direct; do
        python3 "$HERE/features.py" grpc-run --peer "$peer" --rep "$rep" --url "$(peer_url "$peer")" \
            --client-cmd "${LOAD_PIN[*]} $GRPC_BENCH_BIN client" \
            --concurrency "$CONCURRENCY" --channels "$CHANNELS" \
            --duration "$DURATION" --warmup "$WARMUP" \
            --proxy-pid "$(peer_pid "$peer")" --server-pid "$SERVER_PID" --ours "$GH_PID,$SERVER_PID" \
            --quiet-max "$QUIET_MAX" --quiet-timeout "$QUIET_TIMEOUT" \
            --noise-max "$NOISE_MAX" --redo "$REDO" --csv "$CSV" --raw "$RAW"
    done
done

# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------
report_meta
tonic_ver="$(sed -n '/^name = "tonic"$/{n;s/^version = "\(.*\)"$/\1/p;q}' "$ROOT/Cargo.lock" 2>/dev/null || true)"
args=(--stamp "$STAMP" --noise-max "$NOISE_MAX" "${META[@]}"
    --meta "gatehouse config: \`h2c: true\`, upstream \`{ targets: [server], h2: true$([[ -z "$H2_STREAMS" ]] || echo ", h2_streams: $H2_STREAMS") }\`, route \`grpc: { service: echo.Echo }\`"
    --meta "server: examples/grpc_bench.rs \`server\` (tonic ${tonic_ver:-?}, h2c, Unary echoes Msg { text, n }), binary built $(date -r "$GRPC_BENCH_BIN" '+%F %H:%M')"
    --meta "client: examples/grpc_bench.rs \`client\`: $CONCURRENCY tasks over $CHANNELS h2c connections, each calling Unary in a closed loop; direct = client → server"
    --meta "runs: $REPS rep(s) × ${DURATION}s after ${WARMUP}s warm-up, peers interleaved; medians; CPU µs/call = utime+stime during the run ÷ successful calls"
)
# How many h2 connections gatehouse keeps to the server after the runs (its pool; the
# direct runs' connections are closed by then), next to the client's CHANNELS.
if command -v ss >/dev/null 2>&1; then
    up_conns="$(ss -Htn state established "( dport = :$SERVER_PORT )" | wc -l)"
    args+=(--note "gatehouse → server: $up_conns established h2 connections after the runs, for $CONCURRENCY concurrent calls on $CHANNELS client connections (the upstream's \`h2_streams\`: ${H2_STREAMS:-unset, the default})")
fi
n="$(python3 "$HERE/helper.py" logsummary gatehouse "$TMP/gatehouse.log")"
[[ -z "$n" ]] || args+=(--note "$n")
echo
python3 "$HERE/features.py" grpc-report "$CSV" "$MD" "${args[@]}"
log "saved: $MD, $CSV (client output: $RAW)"
