#!/usr/bin/env bash
# Fuzzing (#14): every libFuzzer target of fuzz/ runs for FUZZ_SECONDS (default 60), its
# committed corpus as seeds (read-only; new finds go to a temp dir), then a table of what
# ran. A crash stops the run with the input that caused it (fuzz/artifacts/<target>/):
# turn it into a regression test next to the code it broke.
#
#   make fuzz                                  # every target, 60 s each
#   FUZZ_SECONDS=600 FUZZ_TARGETS=framing make fuzz
#   FUZZ_SANITIZER=address make fuzz           # with AddressSanitizer (slower build and runs)
#   FUZZ_BUILD_ONLY=1 bash fuzz/run.sh         # install cargo-fuzz and build, run nothing
#
# The targets build with cargo-fuzz (installed when missing) on the stable toolchain:
# RUSTC_BOOTSTRAP=1 lets it pass the sanitizer flags that need nightly (FUZZ_SANITIZER).
set -euo pipefail
cd "$(dirname "$0")"

SECONDS_EACH="${FUZZ_SECONDS:-60}"
TARGETS="${FUZZ_TARGETS:-framing config routes_json router jwt jwks cache_policy}"
export RUSTC_BOOTSTRAP=1
# Link the system's OpenSSL (libssl-dev) rather than build Pingora's vendored copy from
# source: no target does TLS, and that C build took 19 of the fuzzers' build minutes in a
# CI-like run (the gateway itself keeps the vendored, newer OpenSSL).
export OPENSSL_NO_VENDOR=1
# Whatever OpenSSL the caller points the main crate's builds at (.ci/run builds the vendored
# one once for them): the fuzzers' build and their runs must see the same environment, or
# openssl-sys's build script runs again and everything above it is rebuilt.
unset OPENSSL_DIR OPENSSL_LIB_DIR OPENSSL_INCLUDE_DIR OPENSSL_STATIC
# -O: optimised; -a: debug assertions (overflow checks) on. --codegen-units 16: cargo-fuzz
# builds every crate as one codegen unit unless told, which leaves one of the two cores idle
# through the big crates (Pingora's, gatehouse's own); its help says 16 builds faster for
# somewhat slower runs, the trade CI's 30 s per target wants.
# No sanitizer unless FUZZ_SANITIZER names one (address, memory, thread, leak): gatehouse's
# code is safe Rust, checked for bounds and (-a) overflow without one, and AddressSanitizer
# made the build take 10 more CPU minutes and the targets run 5 to 7 times fewer inputs in
# CI's 30 s (fuzz/Cargo.toml has the figures). For a long campaign over Pingora's unsafe
# parsing code: FUZZ_SANITIZER=address FUZZ_SECONDS=3600 make fuzz.
FLAGS=(-O -a --codegen-units 16 -s "${FUZZ_SANITIZER:-none}")

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    # --debug: the tool only starts cargo; its unoptimised build takes a minute less.
    cargo install cargo-fuzz --locked --debug >&2
fi
cargo fuzz build "${FLAGS[@]}" >&2
if [[ "${FUZZ_BUILD_ONLY:-0}" == 1 ]]; then
    echo "fuzz: built ${TARGETS// /, }" >&2
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
    if ! cargo fuzz run "${FLAGS[@]}" "$target" "$work" "corpus/$target" -- \
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
