//! A JWKS document from an identity provider (untrusted bytes): parsed into keys or
//! refused, never a panic, and never a symmetric key.
#![no_main]

use gatehouse::auth::jwks::parse_document;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(keys) = parse_document(data) {
        assert!(!keys.is_empty());
    }
});
