//! `cargo` run from inside a test, as the build outside it would run.
//!
//! `cargo test` gives a test process variables of its own (CARGO_MANIFEST_DIR, CARGO_PKG_*,
//! OUT_DIR, ...). A nested cargo that inherits them sees a changed environment where a build
//! script watches one of them (ring's watches CARGO_MANIFEST_DIR), reruns it and rebuilds
//! everything above it: the release build CI has just made was built again inside the
//! performance guard (4 minutes, 7 CPU-minutes), and the outer build was stale after it.

use std::process::Command;

/// Variables cargo sets for the test process, not for the cargo that started it.
fn set_for_the_test(name: &str) -> bool {
    [
        "CARGO_MANIFEST_",
        "CARGO_PKG_",
        "CARGO_BIN_EXE_",
        "CARGO_CRATE_",
        "CARGO_TARGET_TMPDIR",
        "CARGO_PRIMARY_PACKAGE",
    ]
    .iter()
    .any(|prefix| name.starts_with(prefix))
        || name == "OUT_DIR"
}

/// A `cargo` command in the environment the suite's own cargo had.
pub fn cargo() -> Command {
    let mut command = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_for_the_test) {
            command.env_remove(name);
        }
    }
    command
}
