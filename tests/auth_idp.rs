//! Tokens checked against a live identity provider on loopback: a JWKS endpoint that
//! rotates its key mid-test (and goes down), and an RFC 7662 introspection endpoint that
//! counts its calls.

mod common;

use common::*;
use jsonwebtoken::Algorithm;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

async fn call(gw: &Gateway, token: &str) -> (u16, String) {
    let r = client().get(gw.url("/api/x")).bearer_auth(token).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

#[tokio::test]
async fn jwks_keys_rotate_without_a_restart_and_survive_an_idp_outage() {
    // Which set the IdP serves: 0 = key A, 1 = key B, 2 = down (500).
    let phase = Arc::new(AtomicUsize::new(0));
    let p = phase.clone();
    let idp = FnServer::start(move |_, _, _| match p.load(Ordering::SeqCst) {
        0 => (200, jwks_document("rsa_a"), "application/json"),
        1 => (200, jwks_document("rsa_b"), "application/json"),
        _ => (500, "down".into(), "text/plain"),
    })
    .await;
    let up = MockUpstream::start("api").await;
    let gw = jwks_gateway(
        &idp.url("/.well-known/jwks.json"),
        ", jwks_refresh: 1h, jwks_min_refresh: 100ms",
        &up,
    )
    .await;
    let token_a = sign(Algorithm::RS256, &rsa_key("rsa_a"), Some("key-a"), &claims(json!({})));
    let token_b = sign(Algorithm::RS256, &rsa_key("rsa_b"), Some("key-b"), &claims(json!({})));

    assert_eq!(call(&gw, &token_a).await.0, 200);
    let fetches = idp.calls();
    for _ in 0..5 {
        assert_eq!(call(&gw, &token_a).await.0, 200);
    }
    assert_eq!(idp.calls(), fetches, "known keys are served from memory");

    // Key B is not published yet: refused, with at most one (rate-limited) refetch.
    let (status, body) = call(&gw, &token_b).await;
    assert_eq!((status, body.contains("token kid is unknown")), (401, true), "{body}");

    // The IdP rotates to key B: a token naming it triggers a refetch and passes.
    phase.store(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(call(&gw, &token_b).await.0, 200);

    // The IdP goes down: the last good set (key B) keeps working. Key A is unknown and
    // cannot be looked up: the IdP's fault, 503 `idp_unavailable`, as introspection says.
    phase.store(2, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (status, body) = call(&gw, &token_a).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"code\":\"idp_unavailable\""), "{body}");
    assert_eq!(
        call(&gw, &token_b).await.0,
        200,
        "the last good set is kept while the IdP is down"
    );

    // A burst of unknown kids costs the IdP at most one fetch per cooldown.
    let before = idp.calls();
    let started = std::time::Instant::now();
    let bogus = sign(Algorithm::RS256, &rsa_key("rsa_a"), Some("nope"), &claims(json!({})));
    for _ in 0..20 {
        assert_eq!(call(&gw, &bogus).await.0, 503, "the IdP is still down");
    }
    let allowed = 1 + started.elapsed().as_millis() as usize / 100;
    let fetched = idp.calls() - before;
    assert!(
        fetched <= allowed,
        "{fetched} fetches for 20 unknown-kid tokens in {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn jwks_tokens_need_a_kid_and_an_algorithm_matching_the_key() {
    let idp = FnServer::start(|_, _, _| (200, jwks_document("rsa_a"), "application/json")).await;
    let up = MockUpstream::start("api").await;
    let gw = jwks_gateway(&idp.url("/jwks"), "", &up).await;
    let no_kid = sign(Algorithm::RS256, &rsa_key("rsa_a"), None, &claims(json!({})));
    let (status, body) = call(&gw, &no_kid).await;
    assert_eq!(status, 401);
    assert!(body.contains("token has no kid"), "{body}");
    // The JWK pins RS256: a PS256 token signed by the same key is refused.
    let ps = sign(Algorithm::PS256, &rsa_key("rsa_a"), Some("key-a"), &claims(json!({})));
    assert_eq!(call(&gw, &ps).await.0, 401);
    // HS256 with the JWK's modulus as secret: refused before any signature check.
    let hs = sign(
        Algorithm::HS256,
        &jsonwebtoken::EncodingKey::from_secret(b"key-a"),
        Some("key-a"),
        &claims(json!({})),
    );
    assert_eq!(call(&gw, &hs).await.0, 401);
    assert_eq!(up.hits(), 0);
}

/// With an issuer and audience configured, JWKS-verified tokens must carry both claims.
#[tokio::test]
async fn jwks_tokens_must_carry_a_configured_issuer_and_audience() {
    let idp = FnServer::start(|_, _, _| (200, jwks_document("rsa_a"), "application/json")).await;
    let up = MockUpstream::start("api").await;
    let gw = jwks_gateway(
        &idp.url("/jwks"),
        ", issuer: https://idp.example, audience: my-api",
        &up,
    )
    .await;
    let token = |extra: serde_json::Value| sign(Algorithm::RS256, &rsa_key("rsa_a"), Some("key-a"), &claims(extra));
    // Neither claim: which one is named first is up to jsonwebtoken.
    let (status, body) = call(&gw, &token(json!({}))).await;
    assert_eq!(status, 401);
    assert!(body.contains("token lacks a required claim ("), "{body}");
    let (status, body) = call(&gw, &token(json!({ "aud": "my-api" }))).await;
    assert_eq!(status, 401);
    assert!(body.contains("token lacks a required claim (iss)"), "{body}");
    let (status, body) = call(&gw, &token(json!({ "iss": "https://idp.example" }))).await;
    assert_eq!(status, 401);
    assert!(body.contains("token lacks a required claim (aud)"), "{body}");
    let (status, _) = call(&gw, &token(json!({ "iss": "https://idp.example", "aud": "my-api" }))).await;
    assert_eq!(status, 200);
    assert_eq!(up.hits(), 1, "only the token with both claims reached the backend");
}

#[tokio::test]
async fn opaque_tokens_are_introspected_once_per_token() {
    let idp = FnServer::start(|method, _, body| {
        assert_eq!(method, "POST");
        let form = String::from_utf8_lossy(body).to_string();
        let answer = if form.contains("token=opaque-good") {
            json!({"active": true, "sub": "svc-7", "scope": "items:read items:write", "exp": now() + 600})
        } else {
            json!({"active": false})
        };
        (200, answer.to_string(), "application/json")
    })
    .await;
    let up = MockUpstream::start("api").await;
    let gw = Gateway::start(&format!(
        "auth: {{ introspection: {{ url: \"{}\", client_id: gatehouse, client_secret: s3cret }} }}\nupstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes: [{{ prefix: /api, auth: jwt, scopes: [\"items:write\"], upstream: api }}]\n",
        idp.url("/introspect"),
        up.addr()
    ))
    .await;
    for _ in 0..10 {
        assert_eq!(call(&gw, "opaque-good").await.0, 200);
    }
    assert_eq!(
        idp.calls(),
        1,
        "one introspection call for ten requests with the same token"
    );
    assert_eq!(up.last().headers["x-user-id"], "svc-7");
    for _ in 0..3 {
        assert_eq!(call(&gw, "opaque-bad").await.0, 401);
    }
    assert_eq!(idp.calls(), 2, "inactive answers are cached too");

    idp.stop();
    let (status, body) = call(&gw, "never-seen").await;
    assert_eq!(
        status, 503,
        "an unreachable IdP is the gateway's problem, not the caller's: {body}"
    );
    assert!(body.contains("\"code\":\"idp_unavailable\""), "{body}");
}
