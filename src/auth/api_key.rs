//! API keys: the presented key's SHA-256 is compared, in constant time, with every
//! configured hash (no early exit), and names a consumer.

use super::{AuthFailure, Identity};
use crate::config::model::ApiKeysConfig;
use http::HeaderName;
use pingora::http::RequestHeader;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub struct ApiKeyStore {
    header: HeaderName,
    query: Option<String>,
    /// Each key's hash and the identity it names, made once at config load.
    keys: Vec<([u8; 32], Arc<Identity>)>,
}

/// Hex SHA-256 of `key`, as the config stores it (`gatehouse hash-key`).
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl ApiKeyStore {
    pub fn new(config: &ApiKeysConfig) -> Self {
        ApiKeyStore {
            header: config.header.clone(),
            query: config.query.clone(),
            keys: config
                .keys
                .iter()
                .map(|(hash, consumer)| (*hash, Arc::new(Identity::consumer(consumer))))
                .collect(),
        }
    }

    pub fn authenticate(&self, req: &RequestHeader) -> Result<Arc<Identity>, AuthFailure> {
        let presented = self.presented(req).ok_or(AuthFailure::missing("missing API key"))?;
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut found: Option<&Arc<Identity>> = None;
        for (hash, identity) in &self.keys {
            // Every hash is compared, whatever matched before.
            if bool::from(hash.ct_eq(&digest)) {
                found = Some(identity);
            }
        }
        found.cloned().ok_or(AuthFailure::invalid("unknown API key"))
    }

    fn presented<'a>(&self, req: &'a RequestHeader) -> Option<&'a [u8]> {
        if let Some(v) = req.headers.get(&self.header) {
            return Some(v.as_bytes()).filter(|v| !v.is_empty());
        }
        let name = self.query.as_deref()?;
        req.uri.query()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == name && !v.is_empty()).then_some(v.as_bytes())
        })
    }

    /// The header the key travels in, for the challenge.
    pub fn header(&self) -> &HeaderName {
        &self.header
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> ApiKeyStore {
        let mut digest = [0u8; 32];
        hex::decode_to_slice(hash_key("s3cret"), &mut digest).unwrap();
        ApiKeyStore::new(&ApiKeysConfig {
            header: HeaderName::from_static("x-api-key"),
            query: Some("api_key".into()),
            keys: vec![(digest, "alice".into())],
        })
    }

    fn req(uri: &str, header: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        if let Some(h) = header {
            r.insert_header("x-api-key", h).unwrap();
        }
        r
    }

    #[test]
    fn keys_from_header_or_query_name_their_consumer() {
        let s = store();
        assert_eq!(
            s.authenticate(&req("/", Some("s3cret"))).unwrap().consumer.as_deref(),
            Some("alice")
        );
        assert_eq!(
            s.authenticate(&req("/?a=1&api_key=s3cret", None))
                .unwrap()
                .consumer
                .as_deref(),
            Some("alice")
        );
        assert_eq!(
            s.authenticate(&req("/", Some("wrong"))).unwrap_err().code,
            Some("invalid_token")
        );
        assert_eq!(s.authenticate(&req("/", None)).unwrap_err().code, None);
    }

    #[test]
    fn hash_key_is_hex_sha256() {
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
