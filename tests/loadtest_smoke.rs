//! A smoke run of the load-test harness (#8) with 1 s runs: `loadtest/run.sh` starts the
//! origin, nginx and two gatehouse peers (one through `gatehouse-alt`), drives them with
//! wrk and writes its report with the ratio tables. Not a measurement: the test suite runs
//! in parallel with it; it proves that `make bench` works on a fresh machine.

use std::process::Command;

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
