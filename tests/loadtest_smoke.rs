//! A smoke run of the load-test harness (#8) with 1 s runs: `loadtest/run.sh` starts the
//! origin, nginx and two gatehouse peers (one through `gatehouse-alt`), drives them with
//! wrk and writes its report with the ratio tables. Not a measurement: the test suite runs
//! in parallel with it; it proves that `make bench` works on a fresh machine.

use std::process::Command;

mod nested_cargo;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn the_load_test_harness_runs_and_reports_ratios_to_nginx() {
    // run.sh installs nginx and wrk itself when it runs as root (as in CI).
    let missing: Vec<&str> = ["nginx", "wrk", "curl", "taskset"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    assert!(
        missing.is_empty() || is_root(),
        "the load-test smoke run needs {missing:?}: `make deps` installs them (a test that cannot run fails)"
    );
    let results = tempfile::tempdir().expect("tempdir");
    let out = Command::new("bash")
        .arg("loadtest/run.sh")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .envs([
            ("QUICK", "1"),
            ("DURATION", "1s"),
            ("WARMUP", "0"),
            ("REPS", "1"),
            ("SIZES", "2"),
            ("CONNS", "8"),
            ("PEERS", "gatehouse gatehouse-alt nginx"),
            ("ALT", "upstream_keepalive_pool: 64"),
            ("BUILD", "0"),
            ("CHART", "0"),
            ("PIN", "0"),
            ("QUIET_TIMEOUT", "0"),
            ("NOISE_MAX", "100"),
            ("GATEHOUSE_BIN", env!("CARGO_BIN_EXE_gatehouse")),
        ])
        .env("RESULTS", results.path())
        .output()
        .expect("run bash loadtest/run.sh");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "run.sh failed:\n{log}");
    let report = std::fs::read_dir(results.path())
        .expect("results dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| std::fs::read_to_string(p).expect("read report"))
        .unwrap_or_else(|| panic!("no Markdown report written; log:\n{log}"));
    for table in ["req/s ratio gatehouse/nginx", "req/s ratio alt/gatehouse"] {
        assert!(report.contains(table), "no `{table}` table in the report:\n{report}");
    }
    // One row per peer for the 2 B / 8 connections cell, with a req/s figure.
    for peer in ["gatehouse", "gatehouse-alt", "nginx"] {
        let row = format!("| 2 | 8 | {peer} | ");
        assert!(report.contains(&row), "no row for {peer}:\n{report}");
    }
}

#[test]
fn the_soak_harness_runs_mixed_traffic_and_reports() {
    let missing: Vec<&str> = ["nginx", "wrk", "curl", "python3"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    assert!(
        missing.is_empty() || is_root(),
        "the soak smoke run needs {missing:?}: `make deps` installs them (a test that cannot run fails)"
    );
    let results = tempfile::tempdir().expect("tempdir");
    let out = Command::new("bash")
        .arg("loadtest/soak.sh")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .envs([
            ("DURATION", "6"),
            ("WARMUP", "2"),
            ("EVERY", "1"),
            ("CONNS", "8"),
            ("WS_CONNS", "4"),
            ("LIMIT", "20"),
            ("BUILD", "0"),
            // Seconds into a run, memory is still growing: not what this smoke run checks.
            ("MAX_GROWTH", "1000"),
            ("GATEHOUSE_BIN", env!("CARGO_BIN_EXE_gatehouse")),
        ])
        .env("RESULTS", results.path())
        .output()
        .expect("run bash loadtest/soak.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "soak.sh failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("SOAK PASSED"), "{stdout}");
    for check in [
        "no socket error",
        "no WebSocket error",
        "the limited route did limit",
        "429s only where the limit is",
    ] {
        assert!(
            stdout.lines().any(|l| l.contains(check) && l.contains("| pass |")),
            "{check}: {stdout}"
        );
    }
    let report = std::fs::read_dir(results.path())
        .expect("results dir")
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with("-soak.md"));
    assert!(report.is_some(), "no -soak.md report written");
}

/// `examples/<name>.rs`, built in this test's profile and target dir (cargo test does not
/// build examples for a single test target).
fn example_binary(name: &str) -> std::path::PathBuf {
    let profile_dir = std::env::current_exe()
        .expect("test binary path")
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>")
        .to_path_buf();
    let target_dir = profile_dir.parent().expect("target dir");
    let mut build = nested_cargo::cargo();
    build
        .args(["build", "--locked", "--example", name, "--target-dir"])
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let built = build
        .output()
        .unwrap_or_else(|e| panic!("run cargo build --example {name}: {e}"));
    assert!(
        built.status.success(),
        "cargo build --example {name} failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    profile_dir.join("examples").join(name)
}

/// Runs `loadtest/<script>` (bash, or python3 for a `.py`) as a 1 s smoke (QUICK=1,
/// nothing pinned, no quiet wait, no noise redo, the debug gatehouse), its report in a temp
/// dir; returns the report.
fn smoke_run(script: &str, suffix: &str, extra: &[(&str, &str)]) -> String {
    let results = tempfile::tempdir().expect("tempdir");
    let interpreter = if script.ends_with(".py") { "python3" } else { "bash" };
    let out = Command::new(interpreter)
        .arg(format!("loadtest/{script}"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .envs([
            ("QUICK", "1"),
            ("DURATION", "1"),
            ("WARMUP", "0"),
            ("REPS", "1"),
            ("BUILD", "0"),
            ("PIN", "0"),
            ("QUIET_TIMEOUT", "0"),
            ("NOISE_MAX", "100"),
            ("GATEHOUSE_BIN", env!("CARGO_BIN_EXE_gatehouse")),
        ])
        .envs(extra.iter().copied())
        .env("RESULTS", results.path())
        .output()
        .unwrap_or_else(|e| panic!("run {interpreter} loadtest/{script}: {e}"));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed:\n{log}");
    std::fs::read_dir(results.path())
        .expect("results dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with(suffix))
        .map(|p| std::fs::read_to_string(p).expect("read report"))
        .unwrap_or_else(|| panic!("no *{suffix} report written; log:\n{log}"))
}

/// The cells of the first table row whose first cell is `first`.
fn row<'a>(report: &'a str, first: &str) -> Vec<&'a str> {
    let head = format!("| {first} |");
    let line = report
        .lines()
        .find(|l| l.starts_with(&head))
        .unwrap_or_else(|| panic!("no `{head}` row in the report:\n{report}"));
    line.trim_matches('|').split('|').map(str::trim).collect()
}

/// A number of the report (`1.2k`, `268,597`, `14975`), as f64.
fn num(cell: &str) -> f64 {
    let (digits, scale) = match cell.strip_suffix('k') {
        Some(d) => (d, 1000.0),
        None => (cell, 1.0),
    };
    digits
        .replace(',', "")
        .parse::<f64>()
        .unwrap_or_else(|_| panic!("not a number: {cell:?}"))
        * scale
}

fn need(tools: &[&str], what: &str) {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    assert!(
        missing.is_empty() || is_root(),
        "the {what} smoke run needs {missing:?}: `make test-deps` installs them (a test that cannot run fails)"
    );
}

#[test]
fn the_compression_harness_measures_gzip_against_nginx() {
    need(&["nginx", "wrk", "curl", "python3"], "compression");
    // 2 connections: the debug build compresses slowly, and a response must not outlast
    // wrk's 2 s timeout.
    let report = smoke_run("compression.sh", "-compression.md", &[("CONNS", "2")]);
    // | peer | coding | bytes/response | req/s | req/s range | proxy CPU µs/response | ...
    for peer in ["gatehouse-gzip", "nginx-gzip", "gatehouse-identity", "nginx-identity"] {
        let cells = row(&report, peer);
        assert!(
            num(cells[2]) > 0.0 && num(cells[3]) > 0.0 && num(cells[5]) > 0.0,
            "{peer}: {cells:?}"
        );
        assert_eq!(cells[10], "0", "{peer} had errors: {cells:?}");
    }
    // gzip is smaller on the wire than identity (checked to decode to the origin's bytes).
    assert!(num(row(&report, "gatehouse-gzip")[2]) < num(row(&report, "gatehouse-identity")[2]));
    for proxy in ["gatehouse", "nginx"] {
        let cells = row(&report, proxy);
        assert_eq!(cells[1], "gzip", "{cells:?}");
    }
}

#[test]
fn the_aggregate_harness_compares_one_aggregate_call_with_three_client_calls() {
    need(&["curl", "python3"], "aggregate");
    let report = smoke_run("aggregate.sh", "-aggregate.md", &[]);
    // | mode | what | ops | p50 ms | p99 ms | mean ms | p50 / aggregate p50 | CPU µs/op | errors | runs |
    let mut p50 = Vec::new();
    for mode in ["aggregate", "sequential", "parallel", "single"] {
        let cells = row(&report, mode);
        assert!(
            num(cells[2]) > 0.0 && num(cells[3]) > 0.0 && num(cells[4]) > 0.0,
            "{mode}: {cells:?}"
        );
        assert_eq!(cells[8], "0", "{mode} had errors: {cells:?}");
        p50.push(num(cells[3]));
    }
    // Three 20 ms parts one after the other take longer than the three at once.
    assert!(
        p50[1] > p50[0],
        "sequential p50 {} ms not above aggregate {} ms:\n{report}",
        p50[1],
        p50[0]
    );
}

#[test]
fn the_grpc_harness_measures_unary_calls_through_gatehouse_and_direct() {
    need(&["curl", "python3"], "gRPC");
    // The server and client of examples/grpc_bench.rs.
    let bin = example_binary("grpc_bench");
    let report = smoke_run(
        "grpc.sh",
        "-grpc.md",
        &[
            ("GRPC_BENCH_BIN", bin.to_str().expect("utf-8 path")),
            ("CONCURRENCY", "8"),
        ],
    );
    // | peer | calls | req/s | req/s range | p50 ms | p99 ms | gatehouse CPU µs/call | µs range | server CPU | errors | runs |
    for peer in ["gatehouse", "direct"] {
        let cells = row(&report, peer);
        assert!(
            num(cells[1]) > 0.0 && num(cells[2]) > 0.0 && num(cells[4]) > 0.0,
            "{peer}: {cells:?}"
        );
        assert_eq!(cells[9], "0", "{peer} had errors: {cells:?}");
    }
    assert!(
        num(row(&report, "gatehouse")[6]) > 0.0,
        "no gatehouse CPU per call:\n{report}"
    );
    assert!(report.contains("req/s ratio gatehouse/direct"), "{report}");
}

#[test]
fn the_outage_harness_counts_failed_requests_over_plain_and_tls_for_both_proxies() {
    need(&["nginx", "hey", "curl", "openssl", "python3"], "dead upstream");
    let report = smoke_run("dead_upstream.sh", "-dead-upstream.md", &[("CONNS", "4")]);
    // | proxy | scheme | answers/s | 502s | CPU µs per answer |
    for proxy in ["gatehouse", "nginx"] {
        for scheme in ["http", "https"] {
            let cells: Vec<&str> = report
                .lines()
                .find(|l| l.starts_with(&format!("| {proxy} | {scheme} |")))
                .unwrap_or_else(|| panic!("no {proxy} {scheme} row:\n{report}"))
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            assert!(num(cells[3]) > 0.0, "{proxy} {scheme}: {cells:?}");
            assert!(num(cells[4]) > 0.0, "{proxy} {scheme}: {cells:?}");
        }
    }
}

#[test]
fn the_connection_memory_harness_holds_idle_and_busy_connections_on_both_proxies() {
    need(&["nginx", "wrk", "curl", "python3", "ss"], "connection memory");
    let report = smoke_run("conn_memory.sh", "-conn-memory.md", &[("IDLE", "200"), ("BUSY", "32")]);
    // | proxy | RSS after start MiB | idle conns held | RSS with them MiB | KiB / idle conn |
    // busy conns (peak) | peak RSS MiB | KiB / busy conn | busy req/s |
    for proxy in ["gatehouse", "nginx"] {
        let cells = row(&report, proxy);
        assert!(num(cells[1]) > 0.0, "{proxy}: {cells:?}");
        // Every idle connection was held (the client fails the run if one is dropped).
        assert!(num(cells[2]) >= 200.0, "{proxy} held fewer idle connections: {cells:?}");
        assert!(num(cells[5]) >= 32.0, "{proxy} saw fewer busy connections: {cells:?}");
        assert!(num(cells[8]) > 0.0, "{proxy}: {cells:?}");
    }
}

#[test]
fn the_instruction_count_harness_runs_over_h2_for_nginx_bare_pingora_and_gatehouse() {
    need(
        &["valgrind", "nginx", "h2load", "openssl", "hey", "curl"],
        "h2 instruction count",
    );
    let bare = example_binary("bare_pingora_mimalloc");
    let report = smoke_run(
        "instructions.sh",
        "-instructions.md",
        &[
            ("PROTO", "h2"),
            ("PEERS", "nginx pingora gatehouse"),
            ("PINGORA_BIN", bare.to_str().expect("utf-8 path")),
            ("REQUESTS", "200"),
            ("WARMUP", "40"),
            ("TOP", "3"),
        ],
    );
    // The script itself stops unless h2 was negotiated and every answer was 2xx.
    assert!(report.contains("HTTP/2 over TLS"), "{report}");
    // | peer | instructions | per request | ratio to bare Pingora | ratio to nginx |
    for peer in ["nginx", "pingora", "gatehouse"] {
        let cells = row(&report, peer);
        assert!(num(cells[2]) > 1000.0, "{peer}: {cells:?}");
    }
}

#[test]
fn the_tls_and_h2_harness_measures_gatehouse_nginx_and_bare_pingora() {
    need(&["nginx", "wrk", "h2load", "openssl", "python3"], "TLS and h2");
    let bare = example_binary("bare_pingora_mimalloc");
    let report = smoke_run(
        "tls_h2.py",
        "-tls-h2.md",
        &[("RESUME", "0"), ("PINGORA_BIN", bare.to_str().expect("utf-8 path"))],
    );
    // The script stops unless every peer negotiated h2. Both tables have a row per body:
    // | test | gatehouse /s | nginx /s | gatehouse/nginx | gatehouse CPU µs/op | nginx CPU µs/op | errors |
    // | test | bare Pingora /s | bare Pingora/nginx | gatehouse/bare Pingora | bare Pingora CPU µs/op | errors |
    let rows: Vec<Vec<&str>> = report
        .lines()
        .filter(|l| l.starts_with("| h2 GET / (2 B) |"))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    assert_eq!(rows.len(), 2, "{report}");
    let (both, bare) = (&rows[0], &rows[1]);
    // A rate cell is the median and its range: `11630 (11007–12001)`.
    let rate = |cell: &str| num(cell.split_whitespace().next().unwrap_or_default());
    assert!(rate(both[1]) > 0.0 && rate(both[2]) > 0.0, "{both:?}");
    assert_eq!(both[6], "0", "errors: {both:?}");
    assert!(rate(bare[1]) > 0.0 && num(bare[4]) > 0.0, "{bare:?}");
    assert_eq!(bare[5], "0", "errors: {bare:?}");
}

#[test]
fn the_routes_scale_harness_measures_throughput_and_memory_per_route_count() {
    need(&["nginx", "wrk", "curl", "python3"], "routes scale");
    let report = smoke_run(
        "routes_scale.sh",
        "-routes-scale.md",
        &[
            ("DURATION", "1s"),
            ("WARMUP", "1s"),
            ("STARTS", "1"),
            ("ROUTES", "10 1000"),
        ],
    );
    // | routes | check ms | start ms | RSS MiB | KiB/route above 10 | req/s first | req/s last | ...
    for routes in ["10", "1,000"] {
        let cells = row(&report, routes);
        assert!(num(cells[1]) > 0.0, "{routes} routes, no check time: {cells:?}");
        assert!(num(cells[3]) > 0.0, "{routes} routes, no RSS: {cells:?}");
        assert!(
            num(cells[5]) > 0.0 && num(cells[6]) > 0.0,
            "{routes} routes, no req/s: {cells:?}"
        );
    }
    assert!(num(row(&report, "1,000")[4]) > 0.0, "no KiB per route:\n{report}");
}
