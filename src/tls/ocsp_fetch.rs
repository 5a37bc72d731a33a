//! `ocsp: auto`: OCSP responses fetched from each certificate's responder (its
//! authorityInfoAccess URL) and refreshed in the background, never during a handshake.
//!
//! A response is stapled while it is current; it is fetched again when it is not (first
//! start, expiry, a responder that was down: after 2 s more per failure in a row, at most
//! a minute apart) and hourly otherwise, so a responder's newer answer (a revocation) is picked
//! up within the hour. Responses are checked like response files (about this certificate,
//! "good", current) and their signature verified against the certificate's issuer. They
//! are kept by certificate, so a reload that keeps a certificate keeps its response.

use crate::config::model::LoadedCert;
use crate::config::ocsp::{OcspStaple, Refused};
use crate::snapshot::SharedSnapshot;
use async_trait::async_trait;
use openssl::hash::MessageDigest;
use openssl::ocsp::{OcspCertId, OcspFlag, OcspRequest, OcspResponse};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::X509;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How often certificates are looked at (cheap: nothing is fetched unless due).
const TICK: Duration = Duration::from_secs(2);
/// A current response is fetched again after this.
const REFRESH: Duration = Duration::from_secs(3_600);
/// After a failed fetch: this, times the failures in a row, up to a minute.
const RETRY_STEP: Duration = Duration::from_secs(2);
const MAX_RETRY: Duration = Duration::from_secs(60);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The fetched responses, by the certificate's SHA-256 fingerprint.
#[derive(Default)]
pub struct FetchedStaples {
    by_cert: RwLock<HashMap<Vec<u8>, Arc<OcspStaple>>>,
}

impl FetchedStaples {
    /// The response for `cert`: only for clients that ask for the certificate status.
    pub fn get(&self, cert: &X509) -> Option<Arc<OcspStaple>> {
        let key = fingerprint(cert)?;
        self.by_cert.read().ok()?.get(&key).cloned()
    }

    fn set(&self, key: Vec<u8>, staple: Arc<OcspStaple>) {
        if let Ok(mut map) = self.by_cert.write() {
            map.insert(key, staple);
        }
    }
}

fn fingerprint(cert: &X509) -> Option<Vec<u8>> {
    cert.digest(MessageDigest::sha256()).ok().map(|d| d.to_vec())
}

pub struct OcspRefresh {
    staples: Arc<FetchedStaples>,
    snapshot: SharedSnapshot,
}

impl OcspRefresh {
    pub fn new(staples: Arc<FetchedStaples>, snapshot: SharedSnapshot) -> Self {
        OcspRefresh { staples, snapshot }
    }
}

/// Per certificate: when it was last fetched, and failures in a row with the next try.
#[derive(Default)]
struct Due {
    fetched: Option<Instant>,
    failures: u32,
    next_try: Option<Instant>,
}

#[async_trait]
impl BackgroundService for OcspRefresh {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let client = match reqwest::Client::builder().timeout(FETCH_TIMEOUT).build() {
            Ok(client) => client,
            Err(e) => {
                log::error!("ocsp: no HTTP client, responses will not be fetched: {e}");
                return;
            }
        };
        let mut due: HashMap<Vec<u8>, Due> = HashMap::new();
        loop {
            let snapshot = self.snapshot.load_full();
            for cert in snapshot.certs.iter().filter(|c| c.ocsp_auto) {
                let Some(key) = fingerprint(&cert.cert) else { continue };
                let state = due.entry(key.clone()).or_default();
                let current = self.staples.get(&cert.cert).is_some_and(|s| s.current().is_some());
                let stale = state.fetched.is_none_or(|at| at.elapsed() >= REFRESH);
                let waiting = state.next_try.is_some_and(|at| Instant::now() < at);
                if (current && !stale) || waiting {
                    continue;
                }
                match fetch(&client, cert).await {
                    Ok(staple) => {
                        log::info!("ocsp: response for {} fetched and stapled", cert.cert_path);
                        self.staples.set(key, Arc::new(staple));
                        *state = Due {
                            fetched: Some(Instant::now()),
                            ..Due::default()
                        };
                    }
                    Err(e) => {
                        state.failures += 1;
                        let delay = RETRY_STEP.saturating_mul(state.failures).min(MAX_RETRY);
                        state.next_try = Some(Instant::now() + delay);
                        let keeping = if current {
                            "the current response stays stapled"
                        } else {
                            "nothing stapled"
                        };
                        log::warn!(
                            "ocsp: fetching the response for {} failed ({keeping}; next try in {delay:?}): {e}",
                            cert.cert_path
                        );
                    }
                }
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }
}

/// One request to the certificate's responder, its answer verified and checked.
async fn fetch(client: &reqwest::Client, cert: &LoadedCert) -> Result<OcspStaple, String> {
    let issuer = cert.chain.first().ok_or("no issuer certificate after the leaf")?;
    let url = cert
        .cert
        .ocsp_responders()
        .ok()
        .and_then(|urls| urls.iter().next().map(|u| u.to_string()))
        .ok_or("the certificate names no OCSP responder")?;
    let id = OcspCertId::from_cert(MessageDigest::sha1(), &cert.cert, issuer).map_err(|e| e.to_string())?;
    let mut request = OcspRequest::new().map_err(|e| e.to_string())?;
    request.add_id(id).map_err(|e| e.to_string())?;
    let body = request.to_der().map_err(|e| e.to_string())?;
    let response = client
        .post(&url)
        .header(http::header::CONTENT_TYPE, "application/ocsp-request")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url} answered {}", response.status()));
    }
    let der = response.bytes().await.map_err(|e| format!("{url}: {e}"))?.to_vec();
    verify_signature(&der, issuer).map_err(|e| format!("{url}: {e}"))?;
    OcspStaple::check(der, &cert.cert, issuer).map_err(|refused| match refused {
        Refused::Invalid(why) => format!("{url}: {why}"),
        Refused::NotCurrent(until) => format!("{url}: the response is not current (next update {until})"),
    })
}

/// The response is signed by the issuer or by a responder the issuer certified.
fn verify_signature(der: &[u8], issuer: &X509) -> Result<(), String> {
    let response = OcspResponse::from_der(der).map_err(|_| "not a DER OCSP response".to_string())?;
    let basic = response.basic().map_err(|_| "not a basic OCSP response".to_string())?;
    let mut store = X509StoreBuilder::new().map_err(|e| e.to_string())?;
    store.add_cert(issuer.clone()).map_err(|e| e.to_string())?;
    // The issuer may be an intermediate: it is the anchor here.
    store
        .set_flags(X509VerifyFlags::PARTIAL_CHAIN)
        .map_err(|e| e.to_string())?;
    let store = store.build();
    let certs = Stack::new().map_err(|e| e.to_string())?;
    basic
        .verify(&certs, &store, OcspFlag::empty())
        .map_err(|e| format!("the signature does not verify: {e}"))
}
