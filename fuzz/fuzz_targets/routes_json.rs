//! The seeds' routes.json loader (environment mode) on arbitrary JSON.
#![no_main]

use gatehouse::config::parse_routes_json;
use gatehouse::snapshot::Snapshot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lookup = |name: &str| match name {
        "JWT_SECRET" => Some("a-fuzzing-secret-of-32-bytes-long!".to_string()),
        "ADMIN_LISTEN" => Some(String::new()),
        _ => None,
    };
    if let Ok(config) = parse_routes_json(text, "routes.json", &lookup) {
        let _ = Snapshot::build(config, None);
    }
});
