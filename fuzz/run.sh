#!/usr/bin/env bash
# Fuzzing (#14): every libFuzzer target of fuzz/ runs for FUZZ_SECONDS (default 60), its
# committed corpus as seeds (read-only; new finds go to a temp dir), then a table of what
# ran. A crash stops the run with the input that caused it (fuzz/artifacts/<target>/):
# turn it into a regression test next to the code it broke.
#
#   make fuzz                                  # every target, 60 s each
#   FUZZ_SECONDS=600 FUZZ_TARGETS=framing make fuzz
#   FUZZ_SANITIZER=address make fuzz           # with AddressSanitizer (slower build and runs)
#   FUZZ_BUILD_ONLY=1 bash fuzz/run.sh         # build, run nothing
#
# The default build is `cargo build --release` of the fuzz crate (a member of the main
# workspace) with fuzz/instrument as RUSTC_WORKSPACE_WRAPPER: libFuzzer's coverage
# instrumentation, debug assertions and overflow checks go into gatehouse's own code and the
# targets only, and every dependency is the one `cargo build --release` already built, in
# the same target directory. Every target reads input with gatehouse's code (the framing
# target is gatehouse's own head check), so that is the code whose edges guide the search.
# Built from scratch like cargo-fuzz does, with every crate instrumented under its own
# target directory, this took 21.6 CPU minutes; after a release build it takes about 5.6.
# A sanitizer (FUZZ_SANITIZER=address, memory, thread or leak) needs every crate built with
# it: that build is cargo-fuzz's (installed when missing), under fuzz/target, with the
# system's OpenSSL (no target does TLS) and RUSTC_BOOTSTRAP=1 for the nightly -Zsanitizer.
# It suits a long campaign over Pingora's unsafe parsing code:
# FUZZ_SANITIZER=address FUZZ_SECONDS=3600 make fuzz.
set -euo pipefail
cd "$(dirname "$0")"

SECONDS_EACH="${FUZZ_SECONDS:-60}"
TARGETS="${FUZZ_TARGETS:-framing config routes_json router jwt jwks cache_policy}"
SANITIZER="${FUZZ_SANITIZER:-}"

if [[ -z "$SANITIZER" ]]; then
    RUSTC_WORKSPACE_WRAPPER="$PWD/instrument" \
        cargo build --release --locked -p gatehouse-fuzz --bins >&2
    bins="$(cargo metadata --format-version 1 --no-deps |
        grep -o '"target_directory":"[^"]*"' | cut -d '"' -f 4)/release"
else
    export RUSTC_BOOTSTRAP=1 OPENSSL_NO_VENDOR=1
    unset OPENSSL_DIR OPENSSL_LIB_DIR OPENSSL_INCLUDE_DIR OPENSSL_STATIC
    if ! cargo fuzz --version >/dev/null 2>&1; then
        echo "fuzz: installing cargo-fuzz" >&2
        # --debug: the tool only starts cargo; its unoptimised build takes a minute less.
        cargo install cargo-fuzz --locked --debug >&2
    fi
    # -O: optimised; -a: debug assertions (overflow checks) on; 16 codegen units, or
    # cargo-fuzz builds every crate as one and leaves a core idle through the big ones.
    cargo fuzz build -O -a --codegen-units 16 -s "$SANITIZER" --target-dir target >&2
    bins="target/$(rustc -vV | sed -n 's/^host: //p')/release"
    export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"
fi
if [[ "${FUZZ_BUILD_ONLY:-0}" == 1 ]]; then
    echo "fuzz: built ${TARGETS// /, } in $bins" >&2
    exit 0
fi

# Targets run side by side, one per core (FUZZ_JOBS): each is one single-threaded libFuzzer
# process, so on CI's 2 cores the run takes half the time of one after the other.
JOBS="${FUZZ_JOBS:-$(nproc)}"
rows="$(mktemp -d)"
trap 'rm -rf "$rows"' EXIT

# One target for SECONDS_EACH; its table row goes to $rows/<target>, its log's tail to
# stderr when it fails.
fuzz_one() {
    local target=$1 work log seeds runs secs after
    work="$(mktemp -d)"
    log="$work.log"
    local extra=()
    [[ "$target" == framing ]] && extra+=(-dict=dicts/http.dict)
    seeds=$(find "corpus/$target" -type f | wc -l)
    echo "fuzz: $target for ${SECONDS_EACH}s" >&2
    mkdir -p "artifacts/$target"
    if ! "$bins/$target" "$work" "corpus/$target" -artifact_prefix="artifacts/$target/" \
        -max_total_time="$SECONDS_EACH" -print_final_stats=1 "${extra[@]}" > "$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "fuzz: $target FAILED; the input is in fuzz/artifacts/$target/" >&2
        return 1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    secs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' || echo "$SECONDS_EACH")
    after=$(find "$work" -type f | wc -l)
    echo "| $target | $secs | $runs | $(( runs / (secs > 0 ? secs : 1) )) | $seeds → $((seeds + after)) |" > "$rows/$target"
    rm -rf "$work" "$log"
}

failed=0
running=0
for target in $TARGETS; do
    if (( running >= JOBS )); then
        wait -n || failed=1
        running=$((running - 1))
    fi
    fuzz_one "$target" &
    running=$((running + 1))
done
while (( running > 0 )); do
    wait -n || failed=1
    running=$((running - 1))
done
(( failed == 0 )) || exit 1

echo "| target | seconds | executions | per second | corpus (seeds → after) |"
echo "|---|---:|---:|---:|---|"
for target in $TARGETS; do
    cat "$rows/$target"
done
