//! Client certificates (mTLS), with a throwaway CA and CRLs made by `openssl ca` as an
//! operator would: `tls.client_auth` in `require` and `optional` mode, per listener,
//! revocation, expiry, a foreign CA, the certificate as the identity (headers upstream,
//! rate-limit key, template variable, access log), reload of the CRL, upstream mTLS, and
//! the load-time checks.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const HOST: &str = "gw.test";

/// A client trusting `pki`'s CA for `gw.test` on `ports`, presenting `identity` if given.
fn client(pki: &TestPki, ports: &[u16], identity: Option<&(PathBuf, PathBuf)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .add_root_certificate(reqwest::Certificate::from_pem(&pki.ca_pem()).unwrap());
    for port in ports {
        b = b.resolve(HOST, std::net::SocketAddr::from(([127, 0, 0, 1], *port)));
    }
    if let Some((cert, key)) = identity {
        let identity =
            reqwest::Identity::from_pkcs8_pem(&std::fs::read(cert).unwrap(), &std::fs::read(key).unwrap()).unwrap();
        b = b.identity(identity);
    }
    b.build().unwrap()
}

fn url(port: u16, path: &str) -> String {
    format!("https://{HOST}:{port}{path}")
}

fn der(cert: &Path) -> Vec<u8> {
    openssl::x509::X509::from_pem(&std::fs::read(cert).unwrap())
        .unwrap()
        .to_der()
        .unwrap()
}

fn header(r: &Recorded, name: &str) -> Option<String> {
    r.headers.get(name).map(|v| v.to_str().unwrap().to_string())
}

struct Setup {
    pki: TestPki,
    up: MockUpstream,
    server: (PathBuf, PathBuf),
}

async fn setup() -> Setup {
    let pki = TestPki::new();
    let server = pki.leaf("server", HOST, 0, 10);
    Setup {
        up: MockUpstream::start("api").await,
        pki,
        server,
    }
}

impl Setup {
    /// `tls:` with the server certificate on `ports` and `client_auth`.
    fn tls(&self, ports: &[u16], client_auth: &str) -> String {
        let listen: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
        format!(
            "tls: {{ listen: [{}], certs: [{{ cert: \"{}\", key: \"{}\" }}], client_auth: {client_auth} }}\n",
            listen.join(", "),
            self.server.0.display(),
            self.server.1.display()
        )
    }

    fn upstreams(&self) -> String {
        format!("upstreams: {{ api: {{ targets: [\"{}\"] }} }}\n", self.up.addr())
    }
}

#[tokio::test]
async fn require_mode_admits_only_verified_unrevoked_certificates() {
    let s = setup().await;
    let pki = &s.pki;
    let alice = pki.leaf("alice", "alice.client", 0, 10);
    let bob = pki.leaf("bob", "bob.client", 0, 10);
    let carol = pki.leaf("carol", "carol.client", -10, -1);
    let other = TestPki::new();
    let mallory = other.leaf("mallory", "mallory.client", 0, 10);
    let crl = pki.crl("crl", &[&bob.0], 1);
    let port = free_port();
    let client_auth = format!(
        "{{ ca_file: \"{}\", crl_file: \"{}\" }}",
        pki.ca_path().display(),
        crl.display()
    );
    let gw = Gateway::start(&format!(
        "{}{}routes: [{{ prefix: /, upstream: api }}]\n",
        s.tls(&[port], &client_auth),
        s.upstreams()
    ))
    .await;

    // A valid certificate: through, and the upstream learns who it is (a forged header
    // from the client replaced).
    let r = client(pki, &[port], Some(&alice))
        .get(url(port, "/hello"))
        .header("X-Client-Cert-Subject", "CN=admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = s.up.last();
    assert_eq!(
        header(&seen, "x-client-cert-subject").as_deref(),
        Some("CN=alice.client")
    );
    assert_eq!(header(&seen, "x-client-cert-san").as_deref(), Some("DNS:alice.client"));
    let fingerprint = hex::encode(openssl::sha::sha256(&der(&alice.0)));
    assert_eq!(header(&seen, "x-client-cert-fingerprint"), Some(fingerprint.clone()));
    let rfc9440 = format!(":{}:", openssl::base64::encode_block(&der(&alice.0)));
    assert_eq!(header(&seen, "client-cert"), Some(rfc9440));
    eventually(
        Duration::from_secs(5),
        "the access log names the certificate",
        || async {
            gw.access_log().iter().any(|l| {
                l["client_cert_subject"] == "CN=alice.client" && l["client_cert_fingerprint"] == fingerprint.as_str()
            })
        },
    )
    .await;

    // No certificate, a revoked one, an expired one, one from another CA: no connection.
    // (Both test CAs have the same name: the foreign one's signature is what fails.)
    for (who, identity, why) in [
        ("no certificate", None, None),
        ("revoked", Some(&bob), Some("revoked (CN=bob.client)")),
        ("expired", Some(&carol), Some("certificate has expired")),
        ("another CA", Some(&mallory), Some("certificate signature failure")),
    ] {
        let r = client(pki, &[port], identity).get(url(port, "/hello")).send().await;
        assert!(
            r.is_err(),
            "{who}: the handshake must fail, got {:?}",
            r.map(|r| r.status())
        );
        if let Some(why) = why {
            eventually(
                Duration::from_secs(5),
                &format!("{who}: the reason is logged"),
                || async { gw.logs().contains(why) },
            )
            .await;
        }
    }
    assert_eq!(s.up.hits(), 1, "only alice's request reached the upstream");
}

#[tokio::test]
async fn optional_mode_lets_routes_decide_and_the_certificate_keys_limits_and_templates() {
    let s = setup().await;
    let pki = &s.pki;
    let alice = pki.leaf("alice", "alice.client", 0, 10);
    let bob = pki.leaf("bob", "bob.client", 0, 10);
    let port = free_port();
    let client_auth = format!("{{ ca_file: \"{}\", mode: optional }}", pki.ca_path().display());
    let gw = Gateway::start(&format!(
        "{}{}routes:\n  - {{ prefix: /open, upstream: api, request_headers: {{ set: {{ X-Who: \"{{client_cert.san}}\" }} }} }}\n  - {{ prefix: /secure, upstream: api, client_cert: required, rate_limit: {{ requests: 2, per: 1m, key: client_cert.san }} }}\n",
        s.tls(&[port], &client_auth),
        s.upstreams()
    ))
    .await;

    // Without a certificate: the open route answers, forged identity headers removed; the
    // route that requires one refuses with a JSON 403.
    let anonymous = client(pki, &[port], None);
    let r = anonymous
        .get(url(port, "/open"))
        .header("X-Client-Cert-Fingerprint", "forged")
        .header("Client-Cert", ":Zm9yZ2Vk:")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = s.up.last();
    assert_eq!(header(&seen, "x-client-cert-fingerprint"), None);
    assert_eq!(header(&seen, "client-cert"), None);
    assert_eq!(header(&seen, "x-who").as_deref().unwrap_or(""), "");
    let r = anonymous.get(url(port, "/secure")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "client_certificate_required", "{body}");

    // With one: the template reads it, and the limit counts per certificate.
    let alice_client = client(pki, &[port], Some(&alice));
    let r = alice_client.get(url(port, "/open")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&s.up.last(), "x-who").as_deref(), Some("DNS:alice.client"));
    for _ in 0..2 {
        assert_eq!(
            alice_client.get(url(port, "/secure")).send().await.unwrap().status(),
            200
        );
    }
    assert_eq!(
        alice_client.get(url(port, "/secure")).send().await.unwrap().status(),
        429
    );
    let bob_client = client(pki, &[port], Some(&bob));
    assert_eq!(
        bob_client.get(url(port, "/secure")).send().await.unwrap().status(),
        200,
        "bob has his own budget"
    );
    drop(gw);
}

#[tokio::test]
async fn client_auth_applies_to_the_listeners_it_names_and_a_reload_revokes() {
    let s = setup().await;
    let pki = &s.pki;
    let alice = pki.leaf("alice", "alice.client", 0, 10);
    let (public, internal) = (free_port(), free_port());
    let config = |crl: Option<&Path>| {
        let crl = crl
            .map(|c| format!(", crl_file: \"{}\"", c.display()))
            .unwrap_or_default();
        let client_auth = format!(
            "{{ ca_file: \"{}\", listen: [\"127.0.0.1:{internal}\"]{crl} }}",
            pki.ca_path().display()
        );
        format!(
            "{}{}routes: [{{ prefix: /, upstream: api }}]\n",
            s.tls(&[public, internal], &client_auth),
            s.upstreams()
        )
    };
    let gw = Gateway::start(&config(None)).await;
    let anonymous = client(pki, &[public], None);
    assert_eq!(anonymous.get(url(public, "/")).send().await.unwrap().status(), 200);
    let anonymous = client(pki, &[internal], None);
    assert!(anonymous.get(url(internal, "/")).send().await.is_err());
    let alice_internal = || client(pki, &[internal], Some(&alice));
    assert_eq!(
        alice_internal().get(url(internal, "/")).send().await.unwrap().status(),
        200
    );

    // Alice's certificate revoked: after the reload, new handshakes refuse it.
    let crl = pki.crl("crl", &[&alice.0], 1);
    gw.write_config(&config(Some(&crl)));
    gw.signal("HUP");
    eventually(Duration::from_secs(5), "alice refused after the reload", || async {
        // A fresh client each time: no session to resume.
        alice_internal().get(url(internal, "/")).send().await.is_err()
    })
    .await;
}

#[tokio::test]
async fn an_expired_crl_refuses_every_certificate_of_its_ca() {
    let s = setup().await;
    let pki = &s.pki;
    let alice = pki.leaf("alice", "alice.client", 0, 10);
    let stale = pki.crl("stale", &[], -1);
    let port = free_port();
    let client_auth = format!(
        "{{ ca_file: \"{}\", crl_file: \"{}\" }}",
        pki.ca_path().display(),
        stale.display()
    );
    let gw = Gateway::start(&format!(
        "{}{}routes: [{{ prefix: /, upstream: api }}]\n",
        s.tls(&[port], &client_auth),
        s.upstreams()
    ))
    .await;
    assert!(client(pki, &[port], Some(&alice))
        .get(url(port, "/"))
        .send()
        .await
        .is_err());
    eventually(Duration::from_secs(5), "the stale CRL is named", || async {
        gw.logs().contains("the CRL of its issuer expired")
    })
    .await;
}

#[tokio::test]
async fn upstream_mtls_presents_the_gateways_certificate() {
    let pki = TestPki::new();
    let (up_cert, up_key) = pki.leaf("upstream", "upstream.test", 0, 10);
    let port = free_port();
    let ca = pki.ca_path();
    // -Verify: s_server requires a client certificate signed by the CA.
    let _upstream = s_server_with(
        port,
        &up_cert,
        &up_key,
        &["-Verify".as_ref(), "1".as_ref(), "-CAfile".as_ref(), ca.as_os_str()],
    )
    .await;
    let (gw_cert, gw_key) = pki.leaf("gateway", "gateway.internal", 0, 10);
    let config = |mtls: &str| {
        format!(
            "upstreams: {{ secure: {{ targets: [\"127.0.0.1:{port}\"], tls: true, sni: upstream.test, ca_file: \"{}\", retries: 0{mtls} }} }}\nroutes: [{{ prefix: /, upstream: secure }}]\n",
            ca.display()
        )
    };
    let without = Gateway::start(&config("")).await;
    assert_eq!(without.get("/").await.status(), 502, "the upstream wants a certificate");
    let with = Gateway::start(&config(&format!(
        ", client_cert: \"{}\", client_key: \"{}\"",
        gw_cert.display(),
        gw_key.display()
    )))
    .await;
    let r = with.get("/").await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("s_server"));
}

#[tokio::test]
async fn check_explains_client_auth_mistakes() {
    let pki = TestPki::new();
    let other = TestPki::new();
    let (cert, key) = pki.leaf("server", HOST, 0, 10);
    let foreign_crl = other.crl("foreign", &[], 1);
    let check = |tls_extra: &str, route_extra: &str| {
        let text = format!(
            "tls: {{ listen: [\"127.0.0.1:1\"], certs: [{{ cert: \"{}\", key: \"{}\" }}]{tls_extra} }}\nupstreams: {{ u: {{ targets: [\"127.0.0.1:2\"] }} }}\nroutes: [{{ prefix: /, upstream: u{route_extra} }}]\n",
            cert.display(),
            key.display()
        );
        let file = pki
            .dir
            .path()
            .join(format!("cfg-{}.yaml", uuid::Uuid::new_v4().simple()));
        std::fs::write(&file, text).unwrap();
        let out = Command::new(BIN).args(["check", "-c"]).arg(&file).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let ca = pki.ca_path().display().to_string();
    let (ok, err) = check("", ", client_cert: required");
    assert!(
        !ok && err.contains("routes[0].client_cert: required needs tls.client_auth"),
        "{err}"
    );
    let (ok, err) = check(
        &format!(
            ", client_auth: {{ ca_file: \"{ca}\", crl_file: \"{}\" }}",
            foreign_crl.display()
        ),
        "",
    );
    assert!(!ok && err.contains("CRL #1 is not signed by its issuer's key"), "{err}");
    let (ok, err) = check(
        &format!(", client_auth: {{ ca_file: \"{ca}\", listen: [\"127.0.0.1:3\"] }}"),
        "",
    );
    assert!(!ok && err.contains("\"127.0.0.1:3\" is not a TLS listener"), "{err}");
    let (ok, err) = check(&format!(", client_auth: {{ ca_file: \"{ca}\", mode: maybe }}"), "");
    assert!(!ok && err.contains("unknown mode \"maybe\""), "{err}");
    let (ok, err) = check(", client_auth: { mode: optional }", "");
    assert!(!ok && err.contains("tls.client_auth.ca_file: required"), "{err}");
    let (ok, err) = check(
        &format!(", client_auth: {{ ca_file: \"{ca}\", mode: optional }}"),
        ", client_cert: required, rate_limit: { requests: 1, per: 1s, key: client_cert.san }",
    );
    assert!(ok, "a valid mTLS config: {err}");
}
