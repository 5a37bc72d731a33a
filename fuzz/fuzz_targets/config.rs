//! The config loader on arbitrary YAML: parse, `${VAR}` expansion, validation and the
//! snapshot build must refuse with problems, never panic.
#![no_main]

use gatehouse::config::parse_yaml;
use gatehouse::snapshot::Snapshot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Validation reads the files a config names (keys, certificates): never devices.
    if ["/dev", "/proc", "/sys"].iter().any(|p| text.contains(p)) {
        return;
    }
    let lookup = |name: &str| (name == "FUZZ_SECRET").then(|| "a-fuzzing-secret-of-32-bytes-long!".to_string());
    match parse_yaml(text, "fuzz.yaml", &lookup) {
        Ok(config) => {
            // Only configs that name no URL are built: nothing waits on the network.
            if !text.contains("://") {
                let _ = Snapshot::build(config, None);
            }
        }
        Err(e) => {
            assert!(!e.problems.is_empty(), "an error without a problem");
        }
    }
});
