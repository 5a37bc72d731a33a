//! JWT header and claims handling: tokens whose header and claims are arbitrary bytes,
//! correctly signed with the configured HS256 secret, so that everything after the
//! signature check (header fields, exp/nbf/iss/aud of any JSON type, scopes, nested
//! roles) is exercised. Also arbitrary token strings. Never a panic; a token accepted
//! must carry the configured issuer and audience.
#![no_main]

use base64::Engine;
use gatehouse::config::parse_yaml;
use gatehouse::snapshot::Snapshot;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const SECRET: &str = "a-fuzzing-secret-of-32-bytes-long!";

fn snapshot() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        let yaml = format!(
            "admin: {{ listen: \"\" }}\nauth: {{ jwt: {{ secret: \"{SECRET}\", algorithms: [HS256, HS384], issuer: fuzz, audience: api, roles_claim: realm.access.roles }} }}\nupstreams: {{ u: {{ targets: [\"127.0.0.1:9\"] }} }}\nroutes: [{{ prefix: /, auth: jwt, upstream: u }}]\n"
        );
        let config = parse_yaml(&yaml, "jwt.yaml", &|_| None).expect("loads");
        Snapshot::build(config, None).expect("builds")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(verifier) = snapshot().edge.tokens.as_ref() else {
        return;
    };
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    // header \0 claims: signed; the raw input as a token string too.
    let (header, claims) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&br#"{"alg":"HS256","typ":"JWT"}"#[..], data),
    };
    let message = format!("{}.{}", b64(header), b64(claims));
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    let Ok(signature) = jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::HS256) else {
        return;
    };
    let token = format!("{message}.{signature}");
    if futures::executor::block_on(verifier.verify(&token)).is_ok() {
        let claims: serde_json::Value = serde_json::from_slice(claims).expect("accepted claims are JSON");
        assert_eq!(claims["iss"], "fuzz", "accepted without the issuer: {claims}");
        let aud_ok = claims["aud"] == "api" || claims["aud"].as_array().is_some_and(|a| a.iter().any(|v| v == "api"));
        assert!(aud_ok, "accepted without the audience: {claims}");
    }
    if let Ok(raw) = std::str::from_utf8(data) {
        let _ = futures::executor::block_on(verifier.verify(raw));
    }
});
