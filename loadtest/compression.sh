#!/usr/bin/env bash
# Response compression: what gzip costs gatehouse per ~1 MiB JSON response, next to nginx
# `gzip on` at the same level, in one interleaved run.
#
#   bash loadtest/compression.sh                 # full run (≈ 3 min): 4 peers × 3 reps × 10 s
#   QUICK=1 bash loadtest/compression.sh         # smoke run (≈ 30 s)
#   PEERS="gatehouse-gzip gatehouse-br gatehouse-zstd gatehouse-identity" bash loadtest/compression.sh
#                                                # + brotli and zstd (gatehouse only)
#
# What it does (method: /work/shared/benchmarking.md, summary in loadtest/README.md):
#   1. builds gatehouse (cargo build --release --locked) and checks the tools it needs;
#   2. in a temp dir, starts an nginx ORIGIN (1 worker) serving /data.json, a ≈ 1 MiB JSON
#      document (Content-Type: application/json, no compression of its own); gatehouse
#      (threads 1, minimal config) whose one route has
#      `compression: { encodings: [gzip], level: 6 }`; an nginx REVERSE PROXY (1 worker,
#      upstream keepalive) with `gzip on; gzip_comp_level 6; gzip_types application/json`;
#   3. iso layout: the proxy alone on core 0, origin + wrk on core 1;
#   4. checks that each proxy answers `Accept-Encoding: gzip` with `Content-Encoding: gzip`
#      and a gzip stream that decodes to the origin's bytes, and a request without
#      Accept-Encoding with the origin's bytes as they are;
#   5. runs the peers interleaved, REPS times: wrk -t1 -cCONNS --timeout 10s (a gzip
#      response takes tens of ms of one core, so queued ones can outlast wrk's 2 s), with `-H "Accept-Encoding:
#      gzip"` for the *-gzip peers and without it for the *-identity ones (same processes,
#      same route: the baseline is the proxy passing the body through), the proxy's CPU from
#      /proc before and after (helper.py run-one: quiet wait, warm-up, noise check);
#   6. prints a Markdown table and saves it as loadtest/results/<stamp>-compression.md (the
#      runs in <stamp>-compression.csv, wrk's output in .raw).
#
# Peers: gatehouse-gzip nginx-gzip gatehouse-identity nginx-identity (default), and
# gatehouse-br gatehouse-zstd (nginx here has no brotli or zstd module: Debian's nginx and
# nginx-light build neither). Knobs (environment):
#   DURATION=10s WARMUP=2s REPS=3 CONNS=8 LEVEL=6 BYTES=1048576 (size of the JSON)
#   PEERS="gatehouse-gzip nginx-gzip gatehouse-identity nginx-identity"  QUICK=0 PIN=1
#   BUILD=1 GATEHOUSE_BIN=target/release/gatehouse RESULTS=loadtest/results KEEP_TMP=0
#   QUIET_MAX=0.15 QUIET_TIMEOUT=30 NOISE_MAX=0.25 REDO=2 (QUICK: QUIET_TIMEOUT=3 REDO=0)
# Needs: nginx (nginx-light is enough), wrk, curl (with brotli/zstd for those peers'
# check), python3, taskset. Every process it starts is stopped on exit, Ctrl-C or failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source=loadtest/common.sh
source "$HERE/common.sh"

if [[ "${QUICK:-0}" == 1 ]]; then
    DURATION="${DURATION:-3s}" WARMUP="${WARMUP:-1s}" REPS="${REPS:-1}"
    QUIET_TIMEOUT="${QUIET_TIMEOUT:-3}" REDO="${REDO:-0}"
fi
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
REPS="${REPS:-3}"
CONNS="${CONNS:-8}"
LEVEL="${LEVEL:-6}"
BYTES="${BYTES:-1048576}"
PEERS="${PEERS:-gatehouse-gzip nginx-gzip gatehouse-identity nginx-identity}"
BUILD="${BUILD:-1}"
GATEHOUSE_BIN="${GATEHOUSE_BIN:-$ROOT/target/release/gatehouse}"
RESULTS="${RESULTS:-$HERE/results}"
QUIET_MAX="${QUIET_MAX:-0.15}"
QUIET_TIMEOUT="${QUIET_TIMEOUT:-30}"
NOISE_MAX="${NOISE_MAX:-0.25}"
REDO="${REDO:-2}"

ALL_PEERS="gatehouse-gzip gatehouse-br gatehouse-zstd gatehouse-identity nginx-gzip nginx-identity"
for peer in $PEERS; do
    [[ " $ALL_PEERS " == *" $peer "* ]] || die "unknown peer '$peer' in PEERS (${ALL_PEERS// /, })"
done
has_peer() { [[ " $PEERS " == *" $1 "* ]]; }
[[ "$LEVEL" =~ ^[1-9]$ ]] || die "LEVEL must be 1..9, got '$LEVEL'"

need_tools nginx:nginx-light wrk:wrk curl:curl python3:python3 taskset:util-linux getconf:libc-bin
CLK_TCK="$(getconf CLK_TCK)"
export CLK_TCK
if [[ "$BUILD" == 1 ]]; then
    log "building gatehouse (cargo build --release --locked)…"
    (cd "$ROOT" && cargo build --release --locked) || die "cargo build --release --locked failed"
fi
[[ -x "$GATEHOUSE_BIN" ]] || die "no gatehouse binary at $GATEHOUSE_BIN"

make_tmp compression
pin_layout "origin and wrk -t1"
read -r ORIGIN_PORT GH_PORT NGX_PORT < <(free_ports 3)

# The document: ≈ BYTES of JSON records (ids, names, addresses, prose), the same every run.
mkdir -p "$TMP/www"
python3 "$HERE/features.py" json-file "$TMP/www/data.json" "$BYTES"
chmod -R a+rX "$TMP/www"
ORIGIN_BYTES="$(stat -c %s "$TMP/www/data.json")"
DOC=/data.json

# Origin: static file, application/json, no gzip (nginx's default), sendfile.
{
    nginx_head origin
    cat <<EOF
    default_type application/json;
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

# nginx reverse proxy with gzip at LEVEL. Buffers hold a whole response in memory and
# proxy_max_temp_file_size 0 keeps it from spilling a slow client's response to disk.
{
    nginx_head nginx-proxy
    cat <<EOF
    gzip on;
    gzip_comp_level $LEVEL;
    gzip_types application/json;
    gzip_min_length 1024;
    gzip_proxied any;
    gzip_vary on;
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 128;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }
    server {
        listen 127.0.0.1:$NGX_PORT;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffer_size 64k;
            proxy_buffers 16 64k;
            proxy_busy_buffers_size 128k;
            proxy_max_temp_file_size 0;
        }
    }
}
EOF
} > "$TMP/nginx-proxy.conf"

# gatehouse: run.sh's minimal peer, its one route compressing at LEVEL: gzip, plus br and
# zstd when those peers run (the client's Accept-Encoding picks the coding).
ENCODINGS=gzip
if has_peer gatehouse-br; then ENCODINGS+=", br"; fi
if has_peer gatehouse-zstd; then ENCODINGS+=", zstd"; fi
COMPRESSION="compression: { encodings: [$ENCODINGS], level: $LEVEL }"
{
    gatehouse_head gatehouse "$GH_PORT"
    cat <<EOF
upstreams:
  origin:
    targets: ["127.0.0.1:$ORIGIN_PORT"]
    keepalive_timeout: 60s
routes:
  - name: bench
    prefix: /
    upstream: origin
    $COMPRESSION
EOF
} > "$TMP/gatehouse.yaml"

log "temp dir: $TMP"
log "layout: $LAYOUT"
start_nginx origin "${LOAD_PIN[@]}"
ORIGIN_PID=$STARTED_PID
wait_ready origin "$ORIGIN_PID" "http://127.0.0.1:$ORIGIN_PORT$DOC" "$TMP/origin/logs/error.log"
GH_PID=0 NGX_PID=0
if [[ "$PEERS" == *gatehouse-* ]]; then
    start_gatehouse gatehouse "$GH_PORT"
    GH_PID=$STARTED_PID
fi
if [[ "$PEERS" == *nginx-* ]]; then
    start_nginx nginx-proxy "${PROXY_PIN[@]}"
    NGX_PID=$STARTED_PID
    wait_ready nginx-proxy "$NGX_PID" "http://127.0.0.1:$NGX_PORT$DOC" "$TMP/nginx-proxy/logs/error.log"
fi

peer_port() { if [[ "$1" == gatehouse-* ]]; then echo "$GH_PORT"; else echo "$NGX_PORT"; fi; }
peer_pid() { if [[ "$1" == gatehouse-* ]]; then echo "$GH_PID"; else echo "$NGX_PID"; fi; }
peer_coding() { echo "${1#*-}"; }
peer_header() {
    local c; c="$(peer_coding "$1")"
    [[ "$c" == identity ]] || echo "Accept-Encoding: $c"
}

# ---------------------------------------------------------------------------------------
# Check: the coded answers decode to the origin's bytes; identity is the origin's bytes.
# ---------------------------------------------------------------------------------------
declare -A WIRE   # peer -> bytes on the wire per response
for peer in $PEERS; do
    url="http://127.0.0.1:$(peer_port "$peer")$DOC"
    coding="$(peer_coding "$peer")"
    hdr=()
    [[ "$coding" == identity ]] || hdr=(-H "Accept-Encoding: $coding")
    got="$(curl -s "${hdr[@]}" -D "$TMP/headers" -o "$TMP/body" -w '%{http_code} %{size_download}' "$url" || echo curl-failed)"
    [[ "$got" == "200 "* ]] || die "$peer $url: expected 200, got '$got'"
    WIRE[$peer]="${got#200 }"
    ce="$(tr -d '\r' < "$TMP/headers" | sed -n 's/^[Cc]ontent-[Ee]ncoding: *//p')"
    ctype="$(tr -d '\r' < "$TMP/headers" | sed -n 's/^[Cc]ontent-[Tt]ype: *//p')"
    [[ "$ctype" == application/json* ]] || die "$peer $url: Content-Type '$ctype', expected application/json"
    if [[ "$coding" == identity ]]; then
        [[ -z "$ce" ]] || die "$peer $url without Accept-Encoding: Content-Encoding '$ce', expected none"
        python3 "$HERE/features.py" check-body --encoding identity "$TMP/body" "$TMP/www/data.json" ||
            die "$peer $url: the body is not the origin's"
    else
        [[ "$ce" == "$coding" ]] || die "$peer $url with Accept-Encoding: $coding: Content-Encoding '${ce:-none}'"
        if [[ "$coding" == gzip ]]; then
            python3 "$HERE/features.py" check-body --encoding gzip "$TMP/body" "$TMP/www/data.json" ||
                die "$peer $url: the gzip body does not decode to the origin's bytes"
        else
            # br / zstd: curl decodes what it was built with (curl -V lists brotli, zstd).
            lib=zstd; [[ "$coding" == br ]] && lib=brotli
            [[ "$(curl -V)" == *"$lib/"* ]] || die "this curl cannot decode $coding (no $lib in curl -V), needed to check $peer"
            curl -s --compressed -H "Accept-Encoding: $coding" -o "$TMP/decoded" "$url" ||
                die "$peer $url: curl could not decode the $coding answer"
            cmp -s "$TMP/decoded" "$TMP/www/data.json" || die "$peer $url: the $coding body does not decode to the origin's bytes"
        fi
    fi
    log "$peer: 200, Content-Encoding ${ce:-none}, ${WIRE[$peer]} bytes on the wire, decodes to the origin's $ORIGIN_BYTES"
done

# ---------------------------------------------------------------------------------------
# Measure: reps outermost, peers interleaved
# ---------------------------------------------------------------------------------------
STAMP="$(date +%Y%m%d-%H%M%S)"
mkdir -p "$RESULTS"
CSV="$RESULTS/$STAMP-compression.csv" MD="$RESULTS/$STAMP-compression.md" RAW="$RESULTS/$STAMP-compression.raw"
OURS="$ORIGIN_PID,$GH_PID,$NGX_PID"
log "measuring: $REPS rep(s) × $(wc -w <<<"$PEERS") peers × $DURATION (after $WARMUP warm-up) at $CONNS connections; runs → $CSV"
for rep in $(seq "$REPS"); do
    for peer in $PEERS; do
        python3 "$HERE/helper.py" run-one \
            --peer "$peer" --size json --conns "$CONNS" --rep "$rep" \
            --url "http://127.0.0.1:$(peer_port "$peer")$DOC" --header "$(peer_header "$peer")" \
            --client wrk --client-cmd "${LOAD_PIN[*]} wrk --timeout 10s" \
            --duration "$DURATION" --warmup "$WARMUP" \
            --proxy-pid "$(peer_pid "$peer")" --origin-pid "$ORIGIN_PID" --ours "$OURS" \
            --quiet-max "$QUIET_MAX" --quiet-timeout "$QUIET_TIMEOUT" \
            --noise-max "$NOISE_MAX" --redo "$REDO" --csv "$CSV" --raw "$RAW"
    done
done

# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------
report_meta
nginx_version="$(nginx -v 2>&1 | sed 's/^nginx version: //' || true)"
args=(--stamp "$STAMP" --origin-bytes "$ORIGIN_BYTES" --level "$LEVEL" --noise-max "$NOISE_MAX" "${META[@]}"
    --meta "gatehouse route: \`$COMPRESSION\` (types and min_size at their defaults); nginx: $nginx_version, 1 worker, \`gzip on; gzip_comp_level $LEVEL; gzip_types application/json\`, upstream keepalive, proxy_buffers 16 64k, no temp files"
    --meta "origin: nginx, 1 worker, /data.json: $ORIGIN_BYTES bytes of JSON records, Content-Type application/json, not compressed by the origin"
    --meta "client: $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2 || true) -t1 -c$CONNS --timeout 10s, \`-H 'Accept-Encoding: <coding>'\` for the coded peers, no Accept-Encoding for identity (the same proxies and route passing the body through)"
    --meta "runs: $REPS rep(s) × $DURATION after $WARMUP warm-up, peers interleaved; CPU µs/response = the proxy's utime+stime (nginx: master + worker) during the run ÷ responses"
    --note "Each coded answer was checked before measuring: Content-Encoding as asked, decoding to the origin's bytes (gzip: python's gzip module; br/zstd: curl --compressed); identity answers byte for byte."
    --note "nginx here has no brotli or zstd module (Debian's nginx / nginx-light build neither), so br and zstd are measured for gatehouse only."
    --note "MB/s compressed per core = origin bytes ÷ extra µs per response: the compressor's speed as the proxy pays for it (read, compress, write)."
)
for peer in $PEERS; do args+=(--bytes "$peer=${WIRE[$peer]}"); done
if [[ -f "$TMP/gatehouse.log" ]]; then
    args+=(--note "$(python3 "$HERE/helper.py" logsummary gatehouse "$TMP/gatehouse.log")")
fi
for name in nginx-proxy origin; do
    f="$TMP/$name/logs/error.log"
    if [[ -f "$f" ]]; then args+=(--note "$(python3 "$HERE/helper.py" logsummary "$name" "$f")"); fi
done
echo
python3 "$HERE/features.py" compression-report "$CSV" "$MD" "${args[@]}"
log "saved: $MD, $CSV (raw wrk output: $RAW)"
