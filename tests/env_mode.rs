//! The seeds' way to configure: no YAML, only PORT + BACKEND_URL(S), and routes.json
//! through ROUTES_CONFIG_PATH.

mod common;

use common::*;

#[tokio::test]
async fn backend_urls_alone_give_a_catch_all_gateway() {
    let a = MockUpstream::start("a").await;
    let b = MockUpstream::start("b").await;
    let urls = format!("http://{},http://{}", a.addr(), b.addr());
    let gw = Gateway::start_env_mode(&[("BACKEND_URLS", &urls)]).await;
    let counts = distribution(&gw, "/anything/at/all", 10).await;
    assert_eq!((counts.get("a"), counts.get("b")), (Some(&5), Some(&5)), "{counts:?}");
    assert_eq!(gw.health().await["services"]["backend"]["total_instances"], 2);
}

#[tokio::test]
async fn backend_url_names_a_single_backend() {
    let a = MockUpstream::start("a").await;
    let url = format!("http://localhost:{}", a.addr().port());
    let gw = Gateway::start_env_mode(&[("BACKEND_URL", &url)]).await;
    assert_eq!(gw.get("/x").await.status(), 200);
    assert_eq!(a.last().uri, "/x");
}

#[tokio::test]
async fn routes_json_loads_as_the_seeds_write_it() {
    let users = MockUpstream::start("users").await;
    let orders = MockUpstream::start("orders").await;
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.json");
    std::fs::write(
        &routes,
        format!(
            r#"{{
  "routes": [
    {{ "path": "/api/users/*path", "targetURL": "http://{}", "methods": ["GET", "POST"], "requireAuth": false, "stripPrefix": "/api/users" }},
    {{ "path": "/api/orders/:id", "targetURL": "http://{}", "methods": ["GET"], "timeout": 5 }}
  ]
}}"#,
            users.addr(),
            orders.addr()
        ),
    )
    .unwrap();
    let gw = Gateway::start_env_mode(&[("ROUTES_CONFIG_PATH", routes.to_str().unwrap())]).await;

    assert_eq!(gw.get("/api/users/42").await.status(), 200);
    assert_eq!(users.last().uri, "/42");
    assert_eq!(gw.get("/api/orders/7").await.status(), 200);
    assert_eq!(orders.last().uri, "/api/orders/7");
    assert_eq!(
        client().delete(gw.url("/api/orders/7")).send().await.unwrap().status(),
        405
    );
    assert_eq!(gw.get("/elsewhere").await.status(), 404);
}

#[tokio::test]
async fn require_auth_routes_verify_tokens_signed_with_jwt_secret() {
    let up = MockUpstream::start("api").await;
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.json");
    std::fs::write(
        &routes,
        format!(
            r#"{{"routes":[{{"path":"/api/*path","targetURL":"http://{}","requireAuth":true}},{{"path":"/public","targetURL":"http://{}"}}]}}"#,
            up.addr(),
            up.addr()
        ),
    )
    .unwrap();
    let secret = "seed-secret-seed-secret-seed-secret!";
    let gw = Gateway::start_env_mode(&[
        ("ROUTES_CONFIG_PATH", routes.to_str().unwrap()),
        ("JWT_SECRET", secret),
        ("JWT_ISSUER", "api-gateway"),
        ("ALLOWED_ORIGINS", "https://app.example.com"),
    ])
    .await;
    assert_eq!(gw.get("/api/x").await.status(), 401);
    let token = hs256(secret, &claims(serde_json::json!({"iss": "api-gateway"})));
    let r = client().get(gw.url("/api/x")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let wrong_iss = hs256(secret, &claims(serde_json::json!({"iss": "elsewhere"})));
    assert_eq!(
        client()
            .get(gw.url("/api/x"))
            .bearer_auth(&wrong_iss)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let r = client()
        .get(gw.url("/public"))
        .header("Origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "https://app.example.com");
}

#[tokio::test]
async fn routes_json_that_asks_for_auth_without_jwt_secret_is_refused_rather_than_served_open() {
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.json");
    std::fs::write(
        &routes,
        r#"{"routes":[{"path":"/a","targetURL":"http://127.0.0.1:1","requireAuth":true}]}"#,
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .arg("check")
        .env_remove("JWT_SECRET")
        .env("ROUTES_CONFIG_PATH", &routes)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("routes[0].requireAuth: needs JWT_SECRET"), "{stderr}");
    // One message, in environment-mode words: nothing about a YAML `auth.jwt` block.
    assert!(stderr.contains("1 problem") && !stderr.contains("auth.jwt"), "{stderr}");
}

/// `gatehouse` in an empty directory with only `vars` set.
fn bare(args: &[&str], vars: &[(&str, &str)]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(args).current_dir(dir.path());
    for var in [
        "PORT",
        "BACKEND_URL",
        "BACKEND_URLS",
        "ROUTES_CONFIG_PATH",
        "JWT_SECRET",
        "JWT_ISSUER",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn token_signs_with_jwt_secret_when_there_is_no_config_file() {
    let secret = "env-secret-0123456789abcdef0123456789";
    let out = bare(
        &["token", "--sub", "alice"],
        &[("JWT_SECRET", secret), ("JWT_ISSUER", "seed-issuer")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_issuer(&["seed-issuer"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .expect("signed with JWT_SECRET, issued by JWT_ISSUER");
    assert_eq!(data.claims["sub"], "alice");

    // Neither a config nor JWT_SECRET: the answer says what to set.
    let out = bare(&["token"], &[]);
    assert!(!out.status.success());
}

#[test]
fn run_with_no_config_and_no_environment_says_what_to_set() {
    let out = bare(&["run"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for hint in ["-c FILE", "BACKEND_URL=http://host:port", "ROUTES_CONFIG_PATH"] {
        assert!(stderr.contains(hint), "no `{hint}` in: {stderr}");
    }
}

#[test]
fn a_bad_backend_url_is_named_by_the_variable_it_came_from() {
    let out = bare(&["check"], &[("BACKEND_URL", "ftp://files:21")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("BACKEND_URL: \"ftp://files:21\" must start with http:// or https://"),
        "{stderr}"
    );
    assert!(!stderr.contains("BACKEND_URLS"), "{stderr}");
    let out = bare(&["check"], &[("BACKEND_URLS", "http://a:1,ftp://b:2")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("BACKEND_URLS[1]: \"ftp://b:2\""), "{stderr}");
    let out = bare(&["check"], &[("BACKEND_URLS", "http://a:1,https://b")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("BACKEND_URLS: mixes http:// and https://"), "{stderr}");
}

#[tokio::test]
async fn cacheable_routes_cache_for_cache_ttl() {
    let origin = MockUpstream::start("origin").await;
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.json");
    std::fs::write(
        &routes,
        format!(
            r#"{{ "routes": [
    {{ "path": "/catalog/*rest", "targetURL": "http://{0}", "cacheable": true }},
    {{ "path": "/live/*rest", "targetURL": "http://{0}" }}
] }}"#,
            origin.addr()
        ),
    )
    .unwrap();
    let gw = Gateway::start_env_mode(&[("ROUTES_CONFIG_PATH", routes.to_str().unwrap()), ("CACHE_TTL", "60")]).await;
    for _ in 0..3 {
        assert_eq!(gw.get("/catalog/items").await.status(), 200);
        assert_eq!(gw.get("/live/items").await.status(), 200);
    }
    assert_eq!(gw.get("/catalog/items").await.headers()["x-cache"], "HIT");
    let hits = |path: &str| origin.recorded().iter().filter(|r| r.uri == path).count();
    assert_eq!(
        hits("/catalog/items"),
        1,
        "cacheable: one origin request, then the cache"
    );
    assert_eq!(hits("/live/items"), 3);
}
