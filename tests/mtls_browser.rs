//! A client certificate presented by a real browser: headless Chromium with the
//! certificate in its NSS database (`pk12util`, as a user imports one) and the
//! `AutoSelectCertificateForUrls` policy (as an administrator deploys one, so no picker
//! dialog waits) loads a route that requires a verified certificate (`client_cert:
//! required` on an `optional` listener). With the certificate the page is the upstream's
//! answer and the upstream learns who it is; without it, the gateway's 403.
//!
//! Needs `chromium` and `pk12util`/`certutil` (Debian libnss3-tools), which `make deps`
//! installs, and root to write the policy under /etc/chromium; otherwise it fails.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

const HOST: &str = "mtls.gatehouse.test";
const POLICY_DIR: &str = "/etc/chromium/policies/managed";
/// Certificates are chosen without a dialog for the tests' names only.
const POLICY: &str =
    r#"{"AutoSelectCertificateForUrls": ["{\"pattern\":\"https://[*.]gatehouse.test\",\"filter\":{}}"]}"#;

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A HOME whose NSS database holds `identity` (none: an empty database).
fn browser_home(dir: &Path, identity: Option<(&Path, &Path)>) -> tempfile::TempDir {
    let home = tempfile::tempdir_in(dir).unwrap();
    let db = home.path().join(".pki/nssdb");
    std::fs::create_dir_all(&db).unwrap();
    let db_arg = format!("sql:{}", db.display());
    run(Command::new("certutil").args(["-N", "--empty-password", "-d", &db_arg]));
    if let Some((cert, key)) = identity {
        let p12 = home.path().join("client.p12");
        run(Command::new("openssl")
            .args(["pkcs12", "-export", "-passout", "pass:", "-in"])
            .arg(cert)
            .arg("-inkey")
            .arg(key)
            .arg("-out")
            .arg(&p12));
        run(Command::new("pk12util").args(["-W", "", "-d", &db_arg, "-i"]).arg(&p12));
    }
    home
}

/// The DOM of `url` as headless Chromium renders it with `home`'s certificates.
fn load(url: &str, port: u16, home: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = headless_chromium(profile.path())
        .env("HOME", home)
        // The server certificate is not what is tested here.
        .args([
            "--ignore-certificate-errors",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("--host-resolver-rules=MAP {HOST}:{port} 127.0.0.1:{port}"))
        .arg(url)
        .output()
        .expect("run chromium");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test]
async fn chromium_presents_a_client_certificate_and_the_route_requires_it() {
    require_tool("chromium", "chromium");
    require_tool("pk12util", "libnss3-tools");
    std::fs::create_dir_all(POLICY_DIR).expect("root writes the Chromium policy");
    std::fs::write(Path::new(POLICY_DIR).join("gatehouse-tests.json"), POLICY).expect("policy written");

    let pki = TestPki::new();
    let (server_cert, server_key) = pki.leaf("server", HOST, 0, 10);
    let alice = pki.leaf("alice", "alice.browser", 0, 10);
    let up = MockUpstream::start("api").await;
    let port = free_port();
    let _gw = Gateway::start(&format!(
        "tls: {{ listen: [\"127.0.0.1:{port}\"], certs: [{{ cert: \"{}\", key: \"{}\" }}], client_auth: {{ ca_file: \"{}\", mode: optional }} }}\nupstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes: [{{ prefix: /whoami, upstream: api, client_cert: required }}]\n",
        server_cert.display(),
        server_key.display(),
        pki.ca_path().display(),
        up.addr()
    ))
    .await;
    let url = format!("https://{HOST}:{port}/whoami");

    let with_cert = browser_home(pki.dir.path(), Some((&alice.0, &alice.1)));
    let (u, home) = (url.clone(), with_cert.path().to_path_buf());
    let page = tokio::task::spawn_blocking(move || load(&u, port, &home))
        .await
        .unwrap();
    assert!(page.contains("\"upstream\":\"api\""), "the upstream's answer: {page}");
    let seen = up.last();
    assert_eq!(
        seen.headers.get("x-client-cert-subject").and_then(|v| v.to_str().ok()),
        Some("CN=alice.browser")
    );

    let without = browser_home(pki.dir.path(), None);
    let (u, home) = (url.clone(), without.path().to_path_buf());
    let page = tokio::task::spawn_blocking(move || load(&u, port, &home))
        .await
        .unwrap();
    assert!(
        page.contains("client_certificate_required"),
        "the gateway's 403: {page}"
    );
    assert_eq!(up.hits(), 1, "only the request with a certificate reached the upstream");
}
