//! TLS session tickets (RFC 5077 for TLS 1.2, RFC 8446 §4.6.1 for TLS 1.3) under keys that
//! gatehouse chooses, so that they rotate on a schedule and every node sharing
//! `tls.session_tickets.secret` can open a ticket another node issued.
//!
//! Keys are derived, not distributed: for each period `n = unix time / rotate`, the key is
//! HMAC-SHA256(secret, label ‖ n) for its 16-byte name, its 32-byte HMAC key and its
//! 32-byte AES-256 key. Nodes with the same secret and roughly the same clock have the same
//! keys with nothing to exchange. Tickets are issued under the current period's key and
//! accepted under the previous and the next one (clock skew), the previous one asking the
//! client to take a fresh ticket. Without a secret, a random one of this process is used:
//! tickets then resume on this process only.
//!
//! OpenSSL takes a key callback (`SSL_CTX_set_tlsext_ticket_key_cb`) for this, which the
//! `openssl` crate does not wrap: this module is the crate's only `unsafe` code, the
//! callback and its registration, kept to plain calls into OpenSSL on the pointers it
//! hands over.

use crate::config::model::SessionTickets;
use crate::snapshot::SharedSnapshot;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use openssl::ssl::SslContextBuilder;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::os::raw::{c_int, c_uchar};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const NAME_LEN: usize = 16;
const KEY_LEN: usize = 32;
/// `SSL_CTRL_SET_TLSEXT_TICKET_KEY_CB` (openssl/ssl.h): the control behind the macro.
const SET_TICKET_KEY_CB: c_int = 72;

struct TicketKey {
    name: [u8; NAME_LEN],
    hmac: [u8; KEY_LEN],
    aes: [u8; KEY_LEN],
}

/// The keys of the current period (first, issues tickets) and of its neighbours.
#[derive(Default)]
struct KeyRing {
    keys: Vec<TicketKey>,
    /// What the ring was derived from, to rebuild it only when that changes.
    made_from: Option<(Vec<u8>, u64)>,
}

/// One ring for the process: every TLS listener's callback reads it.
static RING: LazyLock<ArcSwap<KeyRing>> = LazyLock::new(|| ArcSwap::from_pointee(KeyRing::default()));

/// The secret used when the config gives none.
static PROCESS_SECRET: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut secret = vec![0u8; 48];
    if openssl::rand::rand_bytes(&mut secret).is_err() {
        log::error!("session tickets: no random secret; tickets will not be issued");
        secret.clear();
    }
    secret
});

/// Session tickets for the listener `builder` makes: under the ring's keys, or none.
pub fn install(builder: &mut SslContextBuilder, enabled: bool) {
    if !enabled {
        builder.set_options(openssl::ssl::SslOptions::NO_TICKET);
        return;
    }
    LazyLock::force(&RING);
    // SAFETY: the context pointer is valid for the builder's life; the callback has the
    // signature OpenSSL documents for SSL_CTX_set_tlsext_ticket_key_cb and the transmute
    // only erases it, as the C macro does.
    unsafe {
        let callback: unsafe extern "C" fn(
            *mut openssl_sys::SSL,
            *mut c_uchar,
            *mut c_uchar,
            *mut openssl_sys::EVP_CIPHER_CTX,
            *mut openssl_sys::HMAC_CTX,
            c_int,
        ) -> c_int = ticket_key_callback;
        openssl_sys::SSL_CTX_callback_ctrl__fixed_rust(
            builder.as_ptr(),
            SET_TICKET_KEY_CB,
            Some(std::mem::transmute::<
                unsafe extern "C" fn(
                    *mut openssl_sys::SSL,
                    *mut c_uchar,
                    *mut c_uchar,
                    *mut openssl_sys::EVP_CIPHER_CTX,
                    *mut openssl_sys::HMAC_CTX,
                    c_int,
                ) -> c_int,
                unsafe extern "C" fn(),
            >(callback)),
        );
    }
}

/// OpenSSL's ticket key callback. Encrypting (`enc == 1`): names the current key, draws
/// the IV, sets up AES-256-CBC and HMAC-SHA256; 1, or -1 to issue no ticket. Decrypting:
/// the ticket's key set up and 2 (renew: a fresh ticket goes out) when the key is not the
/// current one or the connection is TLS 1.3, whose clients use a ticket once (RFC 8446
/// §C.4) and without a new one could not resume next time; else 1. 0 when no key has the
/// ticket's name (the client gets a full handshake).
unsafe extern "C" fn ticket_key_callback(
    ssl: *mut openssl_sys::SSL,
    name: *mut c_uchar,
    iv: *mut c_uchar,
    cipher: *mut openssl_sys::EVP_CIPHER_CTX,
    hmac: *mut openssl_sys::HMAC_CTX,
    enc: c_int,
) -> c_int {
    let ring = RING.load();
    // SAFETY (whole body): OpenSSL passes a 16-byte name buffer, an IV buffer of the
    // cipher's IV length (16 for AES-256-CBC) and initialised contexts.
    unsafe {
        if enc == 1 {
            let Some(key) = ring.keys.first() else {
                return -1;
            };
            if openssl_sys::RAND_bytes(iv, 16) != 1 {
                return -1;
            }
            std::ptr::copy_nonoverlapping(key.name.as_ptr(), name, NAME_LEN);
            let ready = openssl_sys::EVP_EncryptInit_ex(
                cipher,
                openssl_sys::EVP_aes_256_cbc(),
                std::ptr::null_mut(),
                key.aes.as_ptr(),
                iv,
            ) == 1
                && init_hmac(hmac, key);
            return if ready { 1 } else { -1 };
        }
        let wanted = std::slice::from_raw_parts(name, NAME_LEN);
        let Some((at, key)) = ring.keys.iter().enumerate().find(|(_, k)| k.name == wanted) else {
            return 0;
        };
        let ready = init_hmac(hmac, key)
            && openssl_sys::EVP_DecryptInit_ex(
                cipher,
                openssl_sys::EVP_aes_256_cbc(),
                std::ptr::null_mut(),
                key.aes.as_ptr(),
                iv,
            ) == 1;
        let tls13 = openssl_sys::SSL_version(ssl) == openssl_sys::TLS1_3_VERSION;
        match (ready, at, tls13) {
            (false, _, _) => -1,
            (true, 0, false) => 1,
            (true, _, _) => 2,
        }
    }
}

/// SAFETY: `hmac` is the context OpenSSL handed to the callback.
unsafe fn init_hmac(hmac: *mut openssl_sys::HMAC_CTX, key: &TicketKey) -> bool {
    unsafe {
        openssl_sys::HMAC_Init_ex(
            hmac,
            key.hmac.as_ptr().cast(),
            KEY_LEN as c_int,
            openssl_sys::EVP_sha256(),
            std::ptr::null_mut(),
        ) == 1
    }
}

/// The period `now` falls in.
fn period(now: SystemTime, rotate: Duration) -> u64 {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    secs / rotate.as_secs().max(1)
}

fn derive(secret: &[u8], period: u64) -> Option<TicketKey> {
    let part = |label: &[u8]| -> Option<[u8; KEY_LEN]> {
        let key = PKey::hmac(secret).ok()?;
        let mut signer = Signer::new(openssl::hash::MessageDigest::sha256(), &key).ok()?;
        signer.update(b"gatehouse session ticket ").ok()?;
        signer.update(label).ok()?;
        signer.update(&period.to_be_bytes()).ok()?;
        signer.sign_to_vec().ok()?.try_into().ok()
    };
    let name = part(b"name")?;
    Some(TicketKey {
        name: name[..NAME_LEN].try_into().ok()?,
        hmac: part(b"hmac")?,
        aes: part(b"aes")?,
    })
}

/// The ring for `settings` at `now`: current period first, then the previous, then the next.
fn ring(settings: &SessionTickets, now: SystemTime) -> KeyRing {
    let secret = settings.secret.as_deref().unwrap_or(&PROCESS_SECRET);
    let current = period(now, settings.rotate);
    if secret.is_empty() {
        return KeyRing::default();
    }
    let keys = [Some(current), current.checked_sub(1), current.checked_add(1)]
        .into_iter()
        .flatten()
        .filter_map(|n| derive(secret, n))
        .collect();
    KeyRing {
        keys,
        made_from: Some((secret.to_vec(), current)),
    }
}

/// Rebuilds the ring when the period turns or a reload brings another secret or period.
pub struct TicketKeyRotation {
    snapshot: SharedSnapshot,
}

impl TicketKeyRotation {
    pub fn new(snapshot: SharedSnapshot) -> Self {
        TicketKeyRotation { snapshot }
    }
}

#[async_trait]
impl BackgroundService for TicketKeyRotation {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let snapshot = self.snapshot.load();
            let settings = &snapshot.session_tickets;
            let now = SystemTime::now();
            let secret = settings.secret.as_deref().unwrap_or(&PROCESS_SECRET);
            let current = period(now, settings.rotate);
            let up_to_date = RING
                .load()
                .made_from
                .as_ref()
                .is_some_and(|(made_secret, made_period)| made_secret == secret && *made_period == current);
            if !up_to_date {
                RING.store(Arc::new(ring(settings, now)));
                log::debug!("session tickets: keys for period {current}");
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// Sets the ring from the first config, before any listener accepts.
pub fn prime(settings: &SessionTickets) {
    RING.store(Arc::new(ring(settings, SystemTime::now())));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(secret: &[u8], rotate: u64) -> SessionTickets {
        SessionTickets {
            enabled: true,
            secret: Some(secret.to_vec()),
            rotate: Duration::from_secs(rotate),
        }
    }

    #[test]
    fn the_same_secret_and_period_give_the_same_keys_elsewhere() {
        let at = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let a = ring(&settings(&[7; 32], 3_600), at);
        let b = ring(&settings(&[7; 32], 3_600), at + Duration::from_secs(10));
        let other = ring(&settings(&[8; 32], 3_600), at);
        assert_eq!(a.keys.len(), 3);
        assert!(a
            .keys
            .iter()
            .zip(&b.keys)
            .all(|(x, y)| x.name == y.name && x.aes == y.aes));
        assert!(a.keys[0].name != other.keys[0].name);
        // The next period's current key was this period's "next" key.
        let later = ring(&settings(&[7; 32], 3_600), at + Duration::from_secs(3_600));
        assert!(later.keys[0].name == a.keys[2].name && later.keys[1].name == a.keys[0].name);
        assert!(a.keys[0].hmac != a.keys[0].aes);
    }
}
