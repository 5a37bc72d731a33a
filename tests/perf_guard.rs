//! The performance guard (#21): instructions per proxied request, counted by callgrind on
//! the release binary for the minimal and the full-chain config (loadtest/instructions.sh),
//! must stay within 3 % of the budgets committed in loadtest/instructions-budget.txt.
//! Instruction counts do not depend on the machine's load, so the guard holds while the
//! rest of the suite runs beside it. A change that makes a figure cheaper lowers its
//! budget in the same commit (`bash loadtest/instructions.sh` prints the figure).

use std::path::{Path, PathBuf};
use std::process::Command;

mod nested_cargo;

/// How far above its budget a figure may be.
const TOLERANCE: f64 = 0.03;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `config budget` lines; `#` starts a comment.
fn budgets() -> Vec<(String, u64)> {
    let path = root().join("loadtest/instructions-budget.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (config, budget) = line
                .split_once(char::is_whitespace)
                .unwrap_or_else(|| panic!("{}: `{line}` is not `config budget`", path.display()));
            let budget = budget
                .trim()
                .replace(',', "")
                .parse()
                .unwrap_or_else(|e| panic!("{}: `{line}`: {e}", path.display()));
            (config.to_string(), budget)
        })
        .collect()
}

/// The release binary, built into this test's target dir (the instruction counts of a
/// debug build say nothing about what operators run).
fn release_binary() -> PathBuf {
    let target_dir = std::env::current_exe()
        .expect("test binary path")
        .ancestors()
        .nth(3)
        .expect("target dir")
        .to_path_buf();
    let built = nested_cargo::cargo()
        .args(["build", "--release", "--locked", "--bin", "gatehouse", "--target-dir"])
        .arg(&target_dir)
        .current_dir(root())
        .output()
        .expect("run cargo build --release");
    assert!(
        built.status.success(),
        "cargo build --release failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    target_dir.join("release/gatehouse")
}

/// Runs loadtest/instructions.sh for `config` and returns its instructions per request.
fn instructions_per_request(bin: &Path, config: &str, results: &Path) -> u64 {
    let out = Command::new("bash")
        .arg(root().join("loadtest/instructions.sh"))
        .envs([
            ("PEERS", "gatehouse"),
            ("CONFIG", config),
            ("REQUESTS", "2000"),
            ("WARMUP", "400"),
            ("TOP", "15"),
            ("BUILD", "0"),
        ])
        .env("GATEHOUSE_BIN", bin)
        .env("RESULTS", results)
        .current_dir(root())
        .output()
        .expect("run bash loadtest/instructions.sh");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "instructions.sh ({config}) failed:\n{log}");
    // "gatehouse: 231319132 instructions, 115659 per request"
    log.lines()
        .find_map(|line| {
            let rest = line.strip_prefix("gatehouse: ")?;
            let (_, per) = rest.split_once(", ")?;
            per.strip_suffix(" per request")?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no per-request figure in the output of instructions.sh:\n{log}"))
}

#[test]
fn instructions_per_request_stay_within_their_budgets() {
    let budgets = budgets();
    assert!(
        ["minimal", "full"].iter().all(|c| budgets.iter().any(|(b, _)| b == c)),
        "the budget file must give `minimal` and `full`: {budgets:?}"
    );
    let bin = release_binary();
    let results = tempfile::tempdir().expect("tempdir");
    let mut over = Vec::new();
    let mut report = Vec::new();
    for (config, budget) in &budgets {
        let measured = instructions_per_request(&bin, config, results.path());
        let limit = (*budget as f64 * (1.0 + TOLERANCE)) as u64;
        report.push(format!(
            "{config}: {measured} per request (budget {budget}, limit {limit})"
        ));
        if measured > limit {
            over.push(format!(
                "{config}: {measured} instructions per request, {:.1} % over the budget of {budget}",
                (measured as f64 / *budget as f64 - 1.0) * 100.0
            ));
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(
        over.is_empty(),
        "over budget (loadtest/instructions-budget.txt; the profile is in the output of \
         `CONFIG=<config> bash loadtest/instructions.sh`):\n{}\n{}",
        over.join("\n"),
        report.join("\n")
    );
}
