//! JWT authentication and authorization through the real gateway, with tokens signed by the
//! jsonwebtoken library: every rejection is a 401 (403 for missing scopes/roles) with a
//! WWW-Authenticate challenge, and the backend only ever sees verified identity headers.

mod common;

use base64::Engine;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;

const SECRET: &str = "a-test-secret-that-is-32-bytes-long!";

struct Setup {
    gw: Gateway,
    up: MockUpstream,
}

async fn hs_gateway(jwt_extra: &str) -> Setup {
    let up = MockUpstream::start("api").await;
    let gw = Gateway::start(&format!(
        r#"
auth:
  jwt: {{ secret: "{SECRET}", issuer: gatehouse-tests, audience: my-api, leeway: 30s, cookie: token {jwt_extra} }}
upstreams: {{ api: {{ targets: ["{}"] }} }}
routes:
  - {{ name: open, path: /open, upstream: api }}
  - {{ name: secure, prefix: /secure, auth: jwt, upstream: api }}
  - {{ name: writer, prefix: /write, auth: jwt, scopes: ["items:write"], upstream: api }}
  - {{ name: admin, prefix: /admin, auth: jwt, roles: [admin, ops], upstream: api }}
"#,
        up.addr()
    ))
    .await;
    Setup { gw, up }
}

fn good_claims() -> serde_json::Value {
    claims(json!({ "iss": "gatehouse-tests", "aud": "my-api", "scope": "items:read", "roles": ["dev"] }))
}

async fn call(gw: &Gateway, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = client().get(gw.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

/// Asserts a 401 with an `invalid_token` challenge and the expected description.
async fn assert_invalid(gw: &Gateway, token: &str, description: &str) {
    let r = call(gw, "/secure/x", Some(token)).await;
    assert_eq!(r.status(), 401, "token should be refused: {description}");
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(
        challenge.starts_with("Bearer realm=\"gatehouse\", error=\"invalid_token\""),
        "{challenge}"
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], description);
    assert_eq!(body["status"], 401);
}

#[tokio::test]
async fn a_valid_token_passes_and_the_backend_sees_verified_identity_only() {
    let s = hs_gateway("").await;
    let token = hs256(SECRET, &good_claims());
    let r = client()
        .get(s.gw.url("/secure/profile"))
        .bearer_auth(&token)
        .header("X-User-ID", "spoofed-admin")
        .header("X-User-Roles", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = s.up.last().headers;
    assert_eq!(seen["x-user-id"], "user-1");
    assert_eq!(seen["x-user-scopes"], "items:read");
    assert_eq!(
        seen["x-user-roles"], "dev",
        "the client's X-User-Roles: admin was dropped"
    );

    // Identity headers are stripped on open routes too.
    client()
        .get(s.gw.url("/open"))
        .header("X-User-ID", "spoofed")
        .send()
        .await
        .unwrap();
    assert!(!s.up.last().headers.contains_key("x-user-id"));
}

#[tokio::test]
async fn a_missing_token_is_a_401_without_error_code() {
    let s = hs_gateway("").await;
    let r = call(&s.gw, "/secure/x", None).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"gatehouse\"");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "missing bearer token");
    assert_eq!(s.up.hits(), 0);
}

#[tokio::test]
async fn every_kind_of_bad_token_is_refused() {
    let s = hs_gateway("").await;
    let gw = &s.gw;
    let b64 = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());

    // alg: none, unsigned.
    let none = format!("{}.{}.", b64(json!({"alg": "none", "typ": "JWT"})), b64(good_claims()));
    assert_invalid(gw, &none, "malformed token").await;
    // A valid HS384 signature, but only HS256 is accepted.
    let hs384 = sign(
        Algorithm::HS384,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        None,
        &good_claims(),
    );
    assert_invalid(gw, &hs384, "token algorithm not accepted").await;
    // RS256 against an HMAC secret.
    let rs = sign(Algorithm::RS256, &rsa_key("rsa_a"), None, &good_claims());
    assert_invalid(gw, &rs, "token algorithm not accepted").await;
    // Wrong secret.
    assert_invalid(
        gw,
        &hs256("another-secret-another-secret-xx", &good_claims()),
        "token signature is invalid",
    )
    .await;
    // Tampered payload, original signature.
    let token = hs256(SECRET, &good_claims());
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(claims(
            json!({"iss": "gatehouse-tests", "aud": "my-api", "sub": "admin"})
        )),
        parts[2]
    );
    assert_invalid(gw, &forged, "token signature is invalid").await;
    // Expired beyond the leeway, not yet valid, wrong issuer, wrong audience, no exp.
    let expired = claims(json!({"iss": "gatehouse-tests", "aud": "my-api", "exp": now() - 120}));
    assert_invalid(gw, &hs256(SECRET, &expired), "token expired").await;
    let future = claims(json!({"iss": "gatehouse-tests", "aud": "my-api", "nbf": now() + 600}));
    assert_invalid(gw, &hs256(SECRET, &future), "token not yet valid").await;
    let wrong_iss = claims(json!({"iss": "someone-else", "aud": "my-api"}));
    assert_invalid(gw, &hs256(SECRET, &wrong_iss), "token issuer not accepted").await;
    let wrong_aud = claims(json!({"iss": "gatehouse-tests", "aud": "other-api"}));
    assert_invalid(gw, &hs256(SECRET, &wrong_aud), "token audience not accepted").await;
    let no_exp = json!({"sub": "u", "iss": "gatehouse-tests", "aud": "my-api"});
    assert_invalid(gw, &hs256(SECRET, &no_exp), "token lacks a required claim (exp)").await;
    assert_invalid(gw, "not-a-token", "malformed token").await;
    assert_eq!(s.up.hits(), 0, "no refused token reached the backend");
}

#[tokio::test]
async fn leeway_accepts_a_token_that_just_expired() {
    let s = hs_gateway("").await;
    let just = claims(json!({"iss": "gatehouse-tests", "aud": "my-api", "exp": now() - 10}));
    assert_eq!(
        call(&s.gw, "/secure/x", Some(&hs256(SECRET, &just))).await.status(),
        200
    );
}

#[tokio::test]
async fn the_token_cookie_becomes_an_authorization_header() {
    let s = hs_gateway("").await;
    let token = hs256(SECRET, &good_claims());
    let r = client()
        .get(s.gw.url("/secure/x"))
        .header("Cookie", format!("theme=dark; token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(s.up.last().headers["authorization"], format!("Bearer {token}").as_str());
}

#[tokio::test]
async fn scopes_and_roles_are_enforced_with_403() {
    let s = hs_gateway("").await;
    let reader = hs256(SECRET, &good_claims());
    let r = call(&s.gw, "/write/item", Some(&reader)).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"gatehouse\", error=\"insufficient_scope\", scope=\"items:write\""
    );
    let writer = hs256(
        SECRET,
        &claims(json!({"iss": "gatehouse-tests", "aud": "my-api", "scp": ["items:read", "items:write"]})),
    );
    assert_eq!(call(&s.gw, "/write/item", Some(&writer)).await.status(), 200);

    assert_eq!(call(&s.gw, "/admin/x", Some(&reader)).await.status(), 403);
    let ops = hs256(
        SECRET,
        &claims(json!({"iss": "gatehouse-tests", "aud": "my-api", "roles": ["ops"]})),
    );
    assert_eq!(
        call(&s.gw, "/admin/x", Some(&ops)).await.status(),
        200,
        "any one of the roles is enough"
    );
}

#[tokio::test]
async fn rs256_and_es256_public_keys_verify_their_own_tokens_only() {
    let up = MockUpstream::start("api").await;
    let route = |key: &str| {
        format!(
            "auth: {{ jwt: {{ public_key: \"{}\" }} }}\nupstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes: [{{ prefix: /, auth: jwt, upstream: api }}]\n",
            fixture(&format!("keys/{key}.pub")).display(),
            up.addr()
        )
    };
    let rsa_gw = Gateway::start(&route("rsa_a")).await;
    let rs_a = sign(Algorithm::RS256, &rsa_key("rsa_a"), None, &claims(json!({})));
    let rs_b = sign(Algorithm::RS256, &rsa_key("rsa_b"), None, &claims(json!({})));
    assert_eq!(call(&rsa_gw, "/x", Some(&rs_a)).await.status(), 200);
    assert_eq!(
        call(&rsa_gw, "/x", Some(&rs_b)).await.status(),
        401,
        "another RSA key's token"
    );
    // HS/RS confusion: an HS256 token whose "secret" is the public key PEM.
    let pem = std::fs::read(fixture("keys/rsa_a.pub")).unwrap();
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&pem),
        None,
        &claims(json!({})),
    );
    assert_eq!(call(&rsa_gw, "/x", Some(&confused)).await.status(), 401);

    let ec_gw = Gateway::start(&route("ec_p256")).await;
    let ec_key = EncodingKey::from_ec_pem(&std::fs::read(fixture("keys/ec_p256.key")).unwrap()).unwrap();
    let es = sign(Algorithm::ES256, &ec_key, None, &claims(json!({})));
    assert_eq!(call(&ec_gw, "/x", Some(&es)).await.status(), 200);
    assert_eq!(call(&ec_gw, "/x", Some(&rs_a)).await.status(), 401);
}

#[tokio::test]
async fn gatehouse_token_mints_a_token_the_gateway_accepts() {
    let s = hs_gateway("").await;
    let out = std::process::Command::new(BIN)
        .args(["token", "-c"])
        .arg(&s.gw.config_path)
        .args([
            "--sub",
            "cli-user",
            "--scope",
            "items:write",
            "--role",
            "admin",
            "--ttl",
            "5m",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(call(&s.gw, "/write/x", Some(&token)).await.status(), 200);
    assert_eq!(call(&s.gw, "/admin/x", Some(&token)).await.status(), 200);
    assert_eq!(s.up.last().headers["x-user-id"], "cli-user");
}

#[tokio::test]
async fn a_remembered_token_still_expires_on_time() {
    let up = MockUpstream::start("api").await;
    let gw = Gateway::start(&format!(
        "auth: {{ jwt: {{ secret: \"{SECRET}\", leeway: 0s }} }}\nupstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes: [{{ prefix: /, auth: jwt, upstream: api }}]\n",
        up.addr()
    ))
    .await;
    let token = hs256(SECRET, &claims(json!({"exp": now() + 2})));
    for _ in 0..3 {
        assert_eq!(call(&gw, "/x", Some(&token)).await.status(), 200);
    }
    // Waiting out the token's lifetime is the point of this test.
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let r = call(&gw, "/x", Some(&token)).await;
    assert_eq!(r.status(), 401, "verified tokens are remembered only until their exp");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "token expired");
}

/// RFC 8725 §3.8–3.9: once an issuer or audience is configured, a token must carry the
/// claim; a correctly signed token without it is refused, whatever the key kind.
#[tokio::test]
async fn a_configured_issuer_and_audience_are_required_claims_for_every_key_kind() {
    let up = MockUpstream::start("api").await;
    let with_iss = json!({ "iss": "gatehouse-tests" });
    let with_aud = json!({ "aud": "my-api" });
    let both = json!({ "iss": "gatehouse-tests", "aud": "my-api" });
    let expect = |gw: &Gateway, token: String, status: u16, error: &'static str| {
        let gw_url = gw.url("/x");
        async move {
            let r = client().get(gw_url).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status(), status, "{error}");
            if status == 401 {
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(body["error"], error);
            }
        }
    };

    // HS256 (a shared secret).
    let hs = Gateway::start(&format!(
        "auth: {{ jwt: {{ secret: \"{SECRET}\", issuer: gatehouse-tests, audience: my-api }} }}\nupstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes: [{{ prefix: /, auth: jwt, upstream: api }}]\n",
        up.addr()
    ))
    .await;
    expect(
        &hs,
        hs256(SECRET, &claims(with_aud.clone())),
        401,
        "token lacks a required claim (iss)",
    )
    .await;
    expect(
        &hs,
        hs256(SECRET, &claims(with_iss.clone())),
        401,
        "token lacks a required claim (aud)",
    )
    .await;
    expect(&hs, hs256(SECRET, &claims(both.clone())), 200, "both claims present").await;

    // RS256 and ES256 (public keys).
    let by_key = |key: &str| {
        format!(
            "auth: {{ jwt: {{ public_key: \"{}\", issuer: gatehouse-tests, audience: my-api }} }}\nupstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes: [{{ prefix: /, auth: jwt, upstream: api }}]\n",
            fixture(&format!("keys/{key}.pub")).display(),
            up.addr()
        )
    };
    let rsa = Gateway::start(&by_key("rsa_a")).await;
    let rs = |c: &serde_json::Value| sign(Algorithm::RS256, &rsa_key("rsa_a"), None, &claims(c.clone()));
    expect(&rsa, rs(&with_aud), 401, "token lacks a required claim (iss)").await;
    expect(&rsa, rs(&with_iss), 401, "token lacks a required claim (aud)").await;
    expect(&rsa, rs(&both), 200, "both claims present").await;

    let ec = Gateway::start(&by_key("ec_p256")).await;
    let ec_key = EncodingKey::from_ec_pem(&std::fs::read(fixture("keys/ec_p256.key")).unwrap()).unwrap();
    let es = |c: &serde_json::Value| sign(Algorithm::ES256, &ec_key, None, &claims(c.clone()));
    expect(&ec, es(&with_aud), 401, "token lacks a required claim (iss)").await;
    expect(&ec, es(&with_iss), 401, "token lacks a required claim (aud)").await;
    expect(&ec, es(&both), 200, "both claims present").await;

    // Only an issuer configured: `aud` stays optional.
    let iss_only = Gateway::start(&format!(
        "auth: {{ jwt: {{ secret: \"{SECRET}\", issuer: gatehouse-tests }} }}\nupstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes: [{{ prefix: /, auth: jwt, upstream: api }}]\n",
        up.addr()
    ))
    .await;
    expect(&iss_only, hs256(SECRET, &claims(with_iss)), 200, "aud not configured").await;
    expect(
        &iss_only,
        hs256(SECRET, &claims(with_aud)),
        401,
        "token lacks a required claim (iss)",
    )
    .await;
}
