//! TLS at the edge, with a throwaway CA: certificates chosen by SNI and reloaded without a
//! restart, TLS 1.2 minimum, h2 by ALPN, h2c, the HTTP→HTTPS redirect, certificate checks
//! at load, and TLS to upstreams.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

struct Edge {
    gw: Gateway,
    tls_port: u16,
    _up: MockUpstream,
}

fn tls_block(tls_port: u16, certs: &[(&std::path::Path, &std::path::Path)], extra: &str) -> String {
    let certs: Vec<String> = certs
        .iter()
        .map(|(c, k)| format!("{{ cert: \"{}\", key: \"{}\" }}", c.display(), k.display()))
        .collect();
    format!(
        "tls: {{ listen: [\"127.0.0.1:{tls_port}\"], certs: [{}]{extra} }}\n",
        certs.join(", ")
    )
}

async fn edge(pki: &TestPki, extra_tls: &str, extra_top: &str) -> Edge {
    let up = MockUpstream::start("api").await;
    let (a_cert, a_key) = pki.leaf("a", "a.test", 0, 10);
    let (b_cert, b_key) = pki.leaf("b", "b.test", 0, 10);
    let tls_port = free_port();
    let body = format!(
        "{}{extra_top}upstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes: [{{ prefix: /, upstream: api }}]\n",
        tls_block(tls_port, &[(&a_cert, &a_key), (&b_cert, &b_key)], extra_tls),
        up.addr()
    );
    Edge {
        gw: Gateway::start(&body).await,
        tls_port,
        _up: up,
    }
}

#[tokio::test]
async fn sni_picks_the_certificate_and_alpn_offers_h2() {
    let pki = TestPki::new();
    let e = edge(&pki, "", "").await;
    let client = pki.client(&[("a.test", e.tls_port), ("b.test", e.tls_port), ("c.test", e.tls_port)]);
    for host in ["a.test", "b.test"] {
        // The client verifies the certificate against the host name: only the right one passes.
        let r = client
            .get(format!("https://{host}:{}/x", e.tls_port))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{host}");
        assert_eq!(
            r.version(),
            reqwest::Version::HTTP_2,
            "h2 negotiated by ALPN for {host}"
        );
    }
    // An unknown name gets the first (default) certificate, which does not match it.
    let err = client
        .get(format!("https://c.test:{}/x", e.tls_port))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err}");
    // Forwarded headers say https.
    client
        .get(format!("https://a.test:{}/p", e.tls_port))
        .send()
        .await
        .unwrap();
    assert_eq!(e._up.last().headers["x-forwarded-proto"], "https");
}

fn s_client(port: u16, args: &[&str]) -> String {
    s_client_to(&format!("127.0.0.1:{port}"), "a.test", args)
}

#[tokio::test]
async fn tls_1_1_is_refused_and_1_2_accepted() {
    let pki = TestPki::new();
    let e = edge(&pki, "", "").await;
    let port = e.tls_port;
    let old = tokio::task::spawn_blocking(move || s_client(port, &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]))
        .await
        .unwrap();
    // The attempt is made (the client offers TLS 1.1) and no cipher is ever agreed.
    assert!(
        old.contains("Cipher is (NONE)"),
        "a TLS 1.1 handshake completed:\n{old}"
    );
    let v12 = tokio::task::spawn_blocking(move || s_client(port, &["-tls1_2"]))
        .await
        .unwrap();
    assert!(v12.contains("TLSv1.2") && !v12.contains("Cipher is (NONE)"), "{v12}");
}

#[tokio::test]
async fn the_plain_listener_redirects_to_https_except_health() {
    let pki = TestPki::new();
    let e = edge(&pki, ", redirect_http: true", "").await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client
        .post(e.gw.url("/orders?id=7"))
        .header("Host", "shop.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        format!("https://shop.test:{}/orders?id=7", e.tls_port).as_str()
    );
    assert_eq!(
        e.gw.get("/health").await.status(),
        200,
        "load balancers probe the health path in clear text"
    );
}

#[tokio::test]
async fn certificates_are_replaced_by_a_reload() {
    let pki = TestPki::new();
    let up = MockUpstream::start("api").await;
    let (old_cert, old_key) = pki.leaf("old", "old.test", 0, 10);
    let (new_cert, new_key) = pki.leaf("new", "new.test", 0, 10);
    let tls_port = free_port();
    let config = |c: &std::path::Path, k: &std::path::Path| {
        format!(
            "{}upstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes: [{{ prefix: /, upstream: api }}]\n",
            tls_block(tls_port, &[(c, k)], ""),
            up.addr()
        )
    };
    let gw = Gateway::start(&config(&old_cert, &old_key)).await;
    let client = pki.client(&[("new.test", tls_port)]);
    assert!(
        client
            .get(format!("https://new.test:{tls_port}/"))
            .send()
            .await
            .is_err(),
        "only old.test is served"
    );

    gw.write_config(&config(&new_cert, &new_key));
    gw.signal("HUP");
    eventually(Duration::from_secs(5), "the new certificate served", || async {
        // A fresh client: no TLS session to resume.
        let client = pki.client(&[("new.test", tls_port)]);
        client
            .get(format!("https://new.test:{tls_port}/"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
}

#[tokio::test]
async fn check_refuses_expired_mismatched_and_missing_certificates() {
    let pki = TestPki::new();
    let (expired, expired_key) = pki.leaf("expired", "old.test", -10, -1);
    let (good, _) = pki.leaf("good", "good.test", 0, 10);
    let (_, other_key) = pki.leaf("other", "other.test", 0, 10);
    let body = |c: &str, k: &str| {
        format!(
            "tls: {{ listen: [\"127.0.0.1:1\"], certs: [{{ cert: \"{c}\", key: \"{k}\" }}] }}\nupstreams: {{ u: {{ targets: [\"127.0.0.1:2\"] }} }}\nroutes: [{{ prefix: /, upstream: u }}]\n"
        )
    };
    let check = |text: String| {
        let file = pki.dir.path().join(format!("cfg-{}.yaml", rand_name()));
        std::fs::write(&file, text).unwrap();
        let out = Command::new(BIN).args(["check", "-c"]).arg(&file).output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let s = |p: &std::path::Path| p.display().to_string();
    assert!(
        check(body(&s(&expired), &s(&expired_key))).contains("tls.certs[0].cert: ")
            && check(body(&s(&expired), &s(&expired_key))).contains("expired on")
    );
    assert!(check(body(&s(&good), &s(&other_key))).contains("does not match the certificate"));
    assert!(check(body("/nonexistent/cert.pem", &s(&other_key)))
        .contains("tls.certs[0].cert: cannot read \"/nonexistent/cert.pem\""));
}

fn rand_name() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[tokio::test]
async fn h2c_with_prior_knowledge_on_the_plain_listener() {
    let pki = TestPki::new();
    let e = edge(&pki, "", "h2c: true\n").await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = client.get(e.gw.url("/h2c")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);

    // Per-request values are sent "never indexed" (out of HPACK's table): on one
    // connection, each response still decodes to its own id and timing.
    let mut ids = std::collections::HashSet::new();
    for _ in 0..5 {
        let r = client.get(e.gw.url("/h2c")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_eq!(id.len(), 36, "a UUID: {id}");
        assert!(r.headers()["server-timing"]
            .to_str()
            .unwrap()
            .starts_with("gateway;dur="));
        assert!(ids.insert(id), "ids are distinct");
    }
}

async fn tls_upstream(pki: &TestPki) -> TlsUpstream {
    let (cert, key) = pki.leaf("upstream", "upstream.test", 0, 10);
    s_server(free_port(), &cert, &key).await
}

#[tokio::test]
async fn upstreams_are_reached_over_verified_tls() {
    let pki = TestPki::new();
    let upstream = tls_upstream(&pki).await;
    let config = |ca: &std::path::Path, sni: &str| {
        format!(
            "upstreams: {{ secure: {{ targets: [\"127.0.0.1:{}\"], tls: true, sni: {sni}, ca_file: \"{}\", retries: 0 }} }}\nroutes: [{{ prefix: /, upstream: secure }}]\n",
            upstream.port,
            ca.display()
        )
    };
    let gw = Gateway::start(&config(&pki.ca_path(), "upstream.test")).await;
    let r = gw.get("/").await;
    assert_eq!(r.status(), 200);
    assert!(
        r.text().await.unwrap().contains("s_server"),
        "the answer came from the TLS upstream"
    );

    // The wrong name, or a CA that did not sign it: refused, 502.
    let wrong_name = Gateway::start(&config(&pki.ca_path(), "elsewhere.test")).await;
    assert_eq!(wrong_name.get("/").await.status(), 502);
    let other = TestPki::new();
    let wrong_ca = Gateway::start(&config(&other.ca_path(), "upstream.test")).await;
    assert_eq!(wrong_ca.get("/").await.status(), 502);
}

#[tokio::test]
async fn environment_mode_reaches_an_https_backend_over_verified_tls() {
    let pki = TestPki::new();
    let (cert, key) = pki.leaf("localhost", "localhost", 0, 10);
    let port = free_port();
    let _server = s_server(port, &cert, &key).await;
    // The system trust store is replaced by the test CA the usual OpenSSL way.
    let ca = pki.ca_path().display().to_string();
    let url = format!("https://localhost:{port}");
    let gw = Gateway::start_env_mode(&[("BACKEND_URL", url.as_str()), ("SSL_CERT_FILE", ca.as_str())]).await;
    let r = gw.get("/").await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("s_server"), "the answer came over TLS");
}

#[tokio::test]
async fn ocsp_responses_are_checked_stapled_and_replaced_by_a_reload() {
    let pki = TestPki::new();
    let up = MockUpstream::start("api").await;
    let (cert, key) = pki.leaf("a", "a.test", 0, 10);
    let chain = pki.full_chain(&cert);
    let good = pki.ocsp_response(&cert, false);
    let (other, _) = pki.leaf("other", "other.test", 0, 10);
    let foreign = pki.ocsp_response(&other, false);
    let tls_port = free_port();
    let config = |cert: &std::path::Path, ocsp: Option<&std::path::Path>| {
        let ocsp = ocsp.map_or(String::new(), |o| format!(", ocsp: \"{}\"", o.display()));
        format!(
            "tls: {{ listen: [\"127.0.0.1:{tls_port}\"], certs: [{{ cert: \"{}\", key: \"{}\"{ocsp} }}] }}\nupstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes: [{{ prefix: /, upstream: api }}]\n",
            cert.display(),
            key.display(),
            up.addr()
        )
    };
    let status = |port: u16| tokio::task::spawn_blocking(move || s_client(port, &["-status"]));

    // Without `ocsp:` nothing is stapled.
    let gw = Gateway::start(&config(&chain, None)).await;
    let out = status(tls_port).await.unwrap();
    assert!(out.contains("OCSP response: no response sent"), "{out}");

    // With it, a client asking for the status gets the response, verified as good.
    gw.write_config(&config(&chain, Some(&good)));
    gw.signal("HUP");
    eventually(Duration::from_secs(5), "the OCSP response stapled", || async {
        let out = status(tls_port).await.unwrap();
        out.contains("OCSP Response Status: successful") && out.contains("Cert Status: good")
    })
    .await;
    let plain = tokio::task::spawn_blocking(move || s_client(tls_port, &[]))
        .await
        .unwrap();
    assert!(!plain.contains("OCSP Response Status"), "only sent when asked for");

    // A revoked status, a response about another certificate, or no issuer to check it
    // with: refused with the reason, and the running config keeps stapling.
    let revoked = pki.ocsp_response(&cert, true);
    for (cert_file, ocsp, reason) in [
        (&chain, &revoked, "says the certificate is revoked"),
        (&chain, &foreign, "is not about this certificate"),
        (&cert, &good, "needs the issuer's certificate after the leaf"),
    ] {
        gw.write_config(&config(cert_file, Some(ocsp)));
        let answer = client().post(gw.admin_url("/admin/reload")).send().await.unwrap();
        assert_eq!(answer.status(), 422, "{reason}");
        let text = answer.text().await.unwrap();
        assert!(text.contains("tls.certs[0].ocsp") && text.contains(reason), "{text}");
    }
    let out = status(tls_port).await.unwrap();
    assert!(out.contains("Cert Status: good"), "{out}");
}

#[tokio::test]
async fn ocsp_auto_fetches_from_the_responder_in_the_background() {
    let pki = TestPki::new();
    let up = MockUpstream::start("api").await;
    let responder_port = free_port();
    let (cert, key) = pki.leaf_with_ocsp_url("a", "a.test", &format!("http://127.0.0.1:{responder_port}"));
    let chain = pki.full_chain(&cert);
    let tls_port = free_port();
    let body = format!(
        "tls: {{ listen: [\"127.0.0.1:{tls_port}\"], certs: [{{ cert: \"{}\", key: \"{}\", ocsp: auto }}] }}\nupstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes: [{{ prefix: /, upstream: api }}]\n",
        chain.display(),
        key.display(),
        up.addr()
    );
    let status = |port: u16| tokio::task::spawn_blocking(move || s_client(port, &["-status"]));

    // The responder is down: handshakes go on, with nothing stapled, and the failure is logged.
    let gw = Gateway::start(&body).await;
    let mut out = String::new();
    for _ in 0..20 {
        out = status(tls_port).await.unwrap();
        if out.contains("a.test") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        out.contains("OCSP response: no response sent") && out.contains("a.test"),
        "{out}"
    );
    eventually(Duration::from_secs(10), "the failed fetch logged", || async {
        gw.logs().contains("nothing stapled")
    })
    .await;

    // Once it answers, the fetched response is stapled (checked and signature-verified).
    let mut responder = pki.ocsp_responder(responder_port, &[(&cert, false)]);
    eventually(Duration::from_secs(30), "the fetched response stapled", || async {
        let out = status(tls_port).await.unwrap();
        out.contains("OCSP Response Status: successful") && out.contains("Cert Status: good")
    })
    .await;
    let _ = responder.kill();
    let _ = responder.wait();

    // `auto` on a certificate that names no responder is refused at load.
    let (plain, plain_key) = pki.leaf("plain", "plain.test", 0, 10);
    let file = pki.dir.path().join("auto-without-aia.yaml");
    std::fs::write(
        &file,
        format!(
            "tls: {{ listen: [\"127.0.0.1:1\"], certs: [{{ cert: \"{}\", key: \"{}\", ocsp: auto }}] }}\nupstreams: {{ u: {{ targets: [\"127.0.0.1:2\"] }} }}\nroutes: [{{ prefix: /, upstream: u }}]\n",
            pki.full_chain(&plain).display(),
            plain_key.display()
        ),
    )
    .unwrap();
    let out = Command::new(BIN).args(["check", "-c"]).arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("names no OCSP responder"),
        "{err}"
    );
}

/// The certificate a.test is served with, as PEM.
fn served_cert(port: u16) -> String {
    let out = s_client(port, &[]);
    let start = out.find("-----BEGIN CERTIFICATE-----").expect("a certificate");
    let end = out.find("-----END CERTIFICATE-----").expect("its end") + "-----END CERTIFICATE-----".len();
    out[start..end].to_string()
}

#[tokio::test]
async fn with_watch_a_renewed_certificate_file_is_served_without_a_signal() {
    let pki = TestPki::new();
    let up = MockUpstream::start("api").await;
    let (cert, key) = pki.leaf("a", "a.test", -1, 10);
    let tls_port = free_port();
    let _gw = Gateway::start(&format!(
        "watch: true\n{}upstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes: [{{ prefix: /, upstream: api }}]\n",
        tls_block(tls_port, &[(&cert, &key)], ""),
        up.addr()
    ))
    .await;
    let first = tokio::task::spawn_blocking(move || served_cert(tls_port))
        .await
        .unwrap();
    assert_eq!(first.trim(), std::fs::read_to_string(&cert).unwrap().trim());

    // The renewal writes new files over the old (same names, a new key and serial).
    let (renewed, _) = pki.leaf("a", "a.test", -1, 20);
    let want = std::fs::read_to_string(&renewed).unwrap();
    eventually(Duration::from_secs(5), "the renewed certificate is served", || {
        let want = want.clone();
        async move {
            tokio::task::spawn_blocking(move || served_cert(tls_port).trim() == want.trim())
                .await
                .unwrap()
        }
    })
    .await;
}

#[tokio::test]
async fn hsts_is_on_by_default_over_https_only_and_configurable() {
    let pki = TestPki::new();
    let hsts = |extra_top: &'static str| {
        let pki = &pki;
        async move {
            let e = edge(pki, "", extra_top).await;
            let client = pki.client(&[("a.test", e.tls_port)]);
            let mut over_tls = Vec::new();
            for path in ["/x", "/health"] {
                let r = client
                    .get(format!("https://a.test:{}{path}", e.tls_port))
                    .send()
                    .await
                    .unwrap();
                over_tls.push(
                    r.headers()
                        .get("strict-transport-security")
                        .map(|v| v.to_str().unwrap().to_string()),
                );
            }
            let plain = e.gw.get("/x").await;
            assert!(
                plain.headers().get("strict-transport-security").is_none(),
                "never over plain HTTP"
            );
            over_tls
        }
    };
    let default = Some("max-age=63072000".to_string());
    assert_eq!(
        hsts("").await,
        [default.clone(), default],
        "proxied and the gateway's own answers"
    );
    let custom = Some("max-age=600; includeSubDomains".to_string());
    assert_eq!(
        hsts("security_headers: { hsts: \"max-age=600; includeSubDomains\" }\n").await,
        [custom.clone(), custom]
    );
    assert_eq!(hsts("security_headers: { hsts: off }\n").await, [None, None]);
}

#[tokio::test]
async fn tls_policy_sets_versions_and_suites() {
    let pki = TestPki::new();
    let handshake = |port: u16, args: &'static [&'static str]| async move {
        let out = tokio::task::spawn_blocking(move || s_client(port, args)).await.unwrap();
        let agreed = !out.contains("Cipher is (NONE)") && out.contains("Cipher is ");
        (agreed, out)
    };

    // Default (intermediate): TLS 1.2 with an AEAD ECDHE suite, not a CBC one.
    let e = edge(&pki, "", "").await;
    let (ok, out) = handshake(e.tls_port, &["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"]).await;
    assert!(ok, "{out}");
    let (ok, out) = handshake(e.tls_port, &["-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA"]).await;
    assert!(!ok, "a CBC suite was agreed under the intermediate profile:\n{out}");

    // min_version 1.3 (and profile modern): TLS 1.2 refused, 1.3 agreed.
    for tls in [", min_version: \"1.3\"", ", profile: modern"] {
        let e = edge(&pki, tls, "").await;
        let (ok, out) = handshake(e.tls_port, &["-tls1_2"]).await;
        assert!(!ok, "{tls}: TLS 1.2 agreed:\n{out}");
        let (ok, out) = handshake(e.tls_port, &["-tls1_3"]).await;
        assert!(ok && out.contains("TLSv1.3"), "{tls}:\n{out}");
    }

    // custom: exactly the named suite and group.
    let e = edge(
        &pki,
        ", profile: custom, ciphers: \"ECDHE-RSA-AES256-GCM-SHA384\", groups: [P-256]",
        "",
    )
    .await;
    let (ok, out) = handshake(e.tls_port, &["-tls1_2", "-cipher", "ECDHE-RSA-AES256-GCM-SHA384"]).await;
    assert!(ok, "{out}");
    let (ok, _) = handshake(e.tls_port, &["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"]).await;
    assert!(!ok, "a suite outside the custom list was agreed");
    let (ok, _) = handshake(e.tls_port, &["-tls1_3", "-groups", "X25519"]).await;
    assert!(!ok, "a group outside the custom list was agreed");
    let (ok, out) = handshake(e.tls_port, &["-tls1_3", "-groups", "P-256"]).await;
    assert!(ok, "{out}");
}

/// The upstream TLS context, and the system CA bundle it loads, is made at the first TLS
/// connection to an upstream, not at the first connection of any kind: a gateway with plain
/// HTTP upstreams never reads the bundle (it used to, on its first request: ≈ 30 ms and
/// ≈ 3 MiB). `SSL_CERT_FILE` names a FIFO here, and opening a FIFO to read blocks until a
/// writer comes, so a health check or request that made the context would hang.
#[tokio::test]
async fn plain_upstreams_never_load_the_ca_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("ca-bundle.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(made.success());
    let up = MockUpstream::start("plain").await;
    let gw = Gateway::start_with_env(
        &format!(
            "upstreams: {{ u: {{ targets: [\"{}\"], health_check: {{ path: /health, interval: 100ms }} }} }}\nroutes: [{{ prefix: /, upstream: u }}]\n",
            up.addr()
        ),
        &[("SSL_CERT_FILE", fifo.to_str().unwrap())],
    )
    .await;
    eventually(Duration::from_secs(5), "two health checks", || {
        let n = up.health_hits();
        async move { n >= 2 }
    })
    .await;
    for i in 0..3 {
        let answered = tokio::time::timeout(Duration::from_secs(5), gw.get(&format!("/r{i}"))).await;
        let r = answered.expect("answered: the CA bundle was not opened");
        assert_eq!(r.status(), 200);
    }
}
