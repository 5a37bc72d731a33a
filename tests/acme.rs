//! Certificates from a real ACME CA: Pebble (Let's Encrypt's test server) started by each
//! test, names resolved by pebble-challtestsrv's DNS to 127.0.0.1, its validation ports
//! pointed at the gateway's listeners. Issuance with HTTP-01 and with TLS-ALPN-01, renewal,
//! a failed renewal keeping the certificate, a restart reusing the stored one, and two
//! nodes sharing a storage ordering once.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const NAME: &str = "acme.test";

struct Pebble {
    children: Vec<Child>,
    port: u16,
    management: u16,
    _pki: TestPki,
    ca: PathBuf,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Pebble {
    /// Pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port` of 127.0.0.1.
    async fn start(http_port: u16, tls_port: u16) -> Pebble {
        Self::start_with_validity(http_port, tls_port, None).await
    }

    /// The same, issuing certificates valid for `validity` seconds (Pebble's default: 5 years).
    async fn start_with_validity(http_port: u16, tls_port: u16, validity: Option<u64>) -> Pebble {
        require_tool("pebble", "pebble");
        require_tool("pebble-challtestsrv", "pebble");
        let pki = TestPki::new();
        let (cert, key) = pki.leaf("pebble", "127.0.0.1", 0, 10);
        let (port, management, dns, dns_management) = (free_port(), free_port(), free_port(), free_port());
        let config = pki.dir.path().join("pebble.json");
        let json = serde_json::json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": cert,
            "privateKey": key,
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        let mut json = json;
        if let Some(seconds) = validity {
            json["pebble"]["certificateValidityPeriod"] = seconds.into();
        }
        std::fs::write(&config, json.to_string()).unwrap();
        let dns_server = Command::new("pebble-challtestsrv")
            .args([
                "-dns01",
                &format!("127.0.0.1:{dns}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
            ])
            .args([
                "-management",
                &format!("127.0.0.1:{dns_management}"),
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv");
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(&config)
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            // No random 0-15 s pause before validating, no refused nonces.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble");
        let pebble = Pebble {
            children: vec![dns_server, pebble],
            port,
            management,
            ca: pki.ca_path(),
            _pki: pki,
        };
        eventually(Duration::from_secs(10), "pebble listening", || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
                && tokio::net::TcpStream::connect(("127.0.0.1", dns_management))
                    .await
                    .is_ok()
        })
        .await;
        pebble
    }

    /// The directory URL and the CA of its HTTPS certificate.
    fn directory(&self) -> (String, PathBuf) {
        (format!("https://127.0.0.1:{}/dir", self.port), self.ca.clone())
    }

    /// Pebble's root: what a client must trust for the certificates it issues.
    async fn root(&self) -> reqwest::Certificate {
        let client = reqwest::Client::builder()
            .no_proxy()
            .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&self.ca).unwrap()).unwrap())
            .build()
            .unwrap();
        let pem = client
            .get(format!("https://127.0.0.1:{}/roots/0", self.management))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        reqwest::Certificate::from_pem(&pem).unwrap()
    }

    fn stop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The certificate the gateway serves on `port` for `name` (None: no handshake).
fn served(port: u16, name: &str) -> Option<openssl::x509::X509> {
    let text = s_client_to(&format!("127.0.0.1:{port}"), name, &[]);
    let start = text.find("-----BEGIN CERTIFICATE-----")?;
    let end = text.find("-----END CERTIFICATE-----")? + "-----END CERTIFICATE-----".len();
    openssl::x509::X509::from_pem(&text.as_bytes()[start..end]).ok()
}

fn issued_by_pebble(cert: &openssl::x509::X509) -> bool {
    let issuer: Vec<String> = cert
        .issuer_name()
        .entries()
        .filter_map(|e| e.data().to_string().ok())
        .collect();
    issuer.iter().any(|i| i.contains("Pebble"))
}

fn serial(cert: &openssl::x509::X509) -> String {
    cert.serial_number().to_bn().unwrap().to_hex_str().unwrap().to_string()
}

async fn wait_for_pebble_cert(port: u16, different_from: Option<&str>) -> openssl::x509::X509 {
    let mut found = None;
    for _ in 0..240 {
        if let Some(cert) = served(port, NAME) {
            if issued_by_pebble(&cert) && different_from.is_none_or(|old| serial(&cert) != old) {
                found = Some(cert);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    found.unwrap_or_else(|| panic!("no (new) certificate from Pebble for {NAME} on port {port} within 60 s"))
}

fn acme_config(up: &MockUpstream, tls_port: u16, ca: &(String, PathBuf), storage: &Path, extra: &str) -> String {
    format!(
        "tls: {{ listen: [\"127.0.0.1:{tls_port}\"], acme: {{ directory: \"{}\", ca_file: \"{}\", email: ops@example.com, domains: [{NAME}], storage: \"{}\", check_interval: 1s{extra} }} }}\nupstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes: [{{ prefix: /, upstream: api }}]\n",
        ca.0,
        ca.1.display(),
        storage.display(),
        up.addr()
    )
}

async fn orders(gw: &Gateway, result: &str) -> u64 {
    let text = gw.metrics_text().await;
    let line = format!("gateway_acme_orders_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn http_01_issues_renews_keeps_the_certificate_on_failure_and_reuses_it_after_a_restart() {
    let (http_port, tls_port) = (free_port(), free_port());
    let mut pebble = Pebble::start(http_port, tls_port).await;
    let up = MockUpstream::start("api").await;
    let storage_dir = tempfile::tempdir().unwrap();
    let storage = storage_dir.path().join("acme");
    let directory = pebble.directory();
    let config = |extra: &str| acme_config(&up, tls_port, &directory, &storage, extra);
    let gw = Gateway::start_on(http_port, tempfile::tempdir().unwrap(), &config("")).await;

    // Issued in the background, served by SNI without a restart, trusted through Pebble's root.
    let first = wait_for_pebble_cert(tls_port, None).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(pebble.root().await)
        .resolve(NAME, std::net::SocketAddr::from(([127, 0, 0, 1], tls_port)))
        .build()
        .unwrap();
    let r = client.get(format!("https://{NAME}:{tls_port}/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(orders(&gw, "success").await, 1);
    let key = storage.join("certs").join(NAME).join("key.pem");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let accounts: Vec<_> = std::fs::read_dir(&storage)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("account-"))
        .collect();
    assert_eq!(accounts.len(), 1, "one account for the one CA");
    assert_eq!(accounts[0].metadata().unwrap().permissions().mode() & 0o777, 0o600);
    let metrics = gw.metrics_text().await;
    let left: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("gateway_cert_expiry_seconds{{name=\"{NAME}\"}} ")))
        .and_then(|v| v.trim().parse().ok())
        .expect("an expiry gauge for the certificate");
    assert!(left > 30 * 86_400, "{left}");

    // Renewal: with renew_before longer than the certificate's life it is due at once.
    gw.write_config(&config(", renew_before: 100000d"));
    gw.signal("HUP");
    let renewed = wait_for_pebble_cert(tls_port, Some(&serial(&first))).await;
    assert!(orders(&gw, "success").await >= 2);

    // The CA gone: renewals fail, are counted and logged, and the certificate stays.
    pebble.stop();
    eventually(Duration::from_secs(30), "a failed renewal", || async {
        orders(&gw, "failure").await >= 1
    })
    .await;
    // Log lines reach the file through the gateway's log writer: moments later.
    eventually(Duration::from_secs(5), "the kept certificate logged", || async {
        gw.logs().contains("keeping the current certificate")
    })
    .await;
    let kept = served(tls_port, NAME).expect("still serving");
    assert!(issued_by_pebble(&kept));
    let latest = serial(&kept);
    assert_ne!(
        latest,
        serial(&first),
        "the renewed certificate (or a later renewal) is kept"
    );
    assert!(renewed.not_after() <= kept.not_after());

    // A restart on the same storage (normal renew_before) serves the stored certificate
    // without ordering: the CA is still down, so an order could not succeed anyway.
    let mut gw = gw;
    gw.signal("TERM");
    gw.wait_exit(Duration::from_secs(15)).await;
    let gw = Gateway::start_on(free_port(), tempfile::tempdir().unwrap(), &config("")).await;
    let again = wait_for_pebble_cert(tls_port, None).await;
    assert_eq!(serial(&again), latest);
    assert!(!gw.logs().contains("acme: ordering"), "{}", gw.logs());
    assert_eq!(orders(&gw, "failure").await, 0);
}

#[tokio::test]
async fn short_lived_certificates_are_renewed_before_they_expire() {
    // 100 s certificates, renewed when less than 95 s are left: within seconds of issuance,
    // with no change to the config.
    let (http_port, tls_port) = (free_port(), free_port());
    let pebble = Pebble::start_with_validity(http_port, tls_port, Some(100)).await;
    let up = MockUpstream::start("api").await;
    let storage = tempfile::tempdir().unwrap();
    let config = acme_config(
        &up,
        tls_port,
        &pebble.directory(),
        storage.path(),
        ", renew_before: 95s",
    );
    let gw = Gateway::start_on(http_port, tempfile::tempdir().unwrap(), &config).await;
    let first = wait_for_pebble_cert(tls_port, None).await;
    let lifetime = first.not_before().diff(first.not_after()).unwrap();
    assert!(lifetime.days == 0 && lifetime.secs <= 100, "{lifetime:?}");
    let renewed = wait_for_pebble_cert(tls_port, Some(&serial(&first))).await;
    assert!(renewed.not_after() > first.not_after());
    assert!(orders(&gw, "success").await >= 2);
}

#[tokio::test]
async fn tls_alpn_01_is_answered_in_the_handshake() {
    let (http_port, tls_port) = (free_port(), free_port());
    let pebble = Pebble::start(http_port, tls_port).await;
    let up = MockUpstream::start("api").await;
    let storage = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&acme_config(
        &up,
        tls_port,
        &pebble.directory(),
        storage.path(),
        ", challenge: tls-alpn-01",
    ))
    .await;
    let cert = wait_for_pebble_cert(tls_port, None).await;
    let names: Vec<String> = cert
        .subject_alt_names()
        .iter()
        .flatten()
        .filter_map(|n| n.dnsname().map(String::from))
        .collect();
    assert_eq!(names, vec![NAME.to_string()]);
    assert_eq!(orders(&gw, "success").await, 1);
    eventually(Duration::from_secs(5), "the challenge type logged", || async {
        gw.logs().contains("tls-alpn-01")
    })
    .await;
}

#[tokio::test]
async fn nodes_sharing_a_storage_order_once_and_both_serve_the_result() {
    // Pebble validates HTTP-01 on node a's plain port; node b may be the one ordering: a
    // answers from the shared storage then.
    let (a_http, a_tls, b_tls) = (free_port(), free_port(), free_port());
    let pebble = Pebble::start(a_http, a_tls).await;
    let up = MockUpstream::start("api").await;
    let storage = tempfile::tempdir().unwrap();
    let a = Gateway::start_on(
        a_http,
        tempfile::tempdir().unwrap(),
        &acme_config(&up, a_tls, &pebble.directory(), storage.path(), ""),
    )
    .await;
    let b = Gateway::start(&acme_config(&up, b_tls, &pebble.directory(), storage.path(), "")).await;
    let on_a = wait_for_pebble_cert(a_tls, None).await;
    let on_b = wait_for_pebble_cert(b_tls, None).await;
    assert_eq!(
        serial(&on_a),
        serial(&on_b),
        "one certificate, loaded by the other node"
    );
    assert_eq!(orders(&a, "success").await + orders(&b, "success").await, 1);
    assert_eq!(orders(&a, "failure").await + orders(&b, "failure").await, 0);
}

#[tokio::test]
async fn check_explains_acme_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let check = |acme: &str, routes: &str| {
        let file = dir.path().join(format!("cfg-{}.yaml", uuid::Uuid::new_v4().simple()));
        std::fs::write(
            &file,
            format!("tls: {{ listen: [\"127.0.0.1:1\"], acme: {acme} }}\nupstreams: {{ u: {{ targets: [\"127.0.0.1:2\"] }} }}\nroutes: [{routes}]\n"),
        )
        .unwrap();
        let out = Command::new(BIN).args(["check", "-c"]).arg(&file).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (ok, err) = check("{ domains: [a.test] }", "{ prefix: /, upstream: u }");
    assert!(!ok && err.contains("tls.acme.directory: required"), "{err}");
    let (ok, err) = check(
        "{ directory: \"https://ca/dir\", challenge: dns-01, domains: [a.test] }",
        "{ prefix: /, upstream: u }",
    );
    assert!(!ok && err.contains("unknown challenge \"dns-01\""), "{err}");
    let (ok, err) = check(
        "{ directory: \"https://ca/dir\", domains: [\"*.a.test\"] }",
        "{ prefix: /, upstream: u }",
    );
    assert!(!ok && err.contains("no wildcards"), "{err}");
    let (ok, err) = check("{ directory: \"https://ca/dir\" }", "{ prefix: /, upstream: u }");
    assert!(!ok && err.contains("no names to certify"), "{err}");
    // The names default to the routes' hosts; no static certificate is needed.
    let (ok, err) = check(
        "{ directory: \"https://ca/dir\" }",
        "{ host: api.a.test, prefix: /, upstream: u }",
    );
    assert!(ok, "{err}");
}
