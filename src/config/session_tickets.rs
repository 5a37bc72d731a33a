//! `tls.session_tickets`: whether tickets are issued, the secret their keys derive from
//! (shared by a fleet's nodes so a client resumes on any of them), and the rotation period.

use super::error::Problems;
use super::model::SessionTickets;
use super::raw::RawTls;
use super::units::parse_duration;
use std::time::Duration;

const DEFAULT_ROTATE: Duration = Duration::from_secs(12 * 3_600);
/// A secret shorter than a key is guessable faster than the keys it makes.
const MIN_SECRET: usize = 32;

pub fn session_tickets(raw: Option<&RawTls>, p: &mut Problems) -> SessionTickets {
    let path = "tls.session_tickets";
    let Some(raw) = raw.and_then(|t| t.session_tickets.as_ref()) else {
        return SessionTickets {
            enabled: true,
            secret: None,
            rotate: DEFAULT_ROTATE,
        };
    };
    let rotate = match &raw.rotate {
        Some(v) => parse_duration(v)
            .map_err(|e| p.push(format!("{path}.rotate"), e))
            .unwrap_or(DEFAULT_ROTATE),
        None => DEFAULT_ROTATE,
    };
    if rotate < Duration::from_secs(1) {
        p.push(format!("{path}.rotate"), "at least 1s");
    }
    let secret = match (&raw.secret, &raw.secret_file) {
        (Some(_), Some(_)) => {
            p.push(format!("{path}.secret"), "give secret or secret_file, not both");
            None
        }
        (Some(secret), None) => Some(secret.trim().as_bytes().to_vec()),
        (None, Some(file)) => match std::fs::read(file) {
            Ok(bytes) => Some(bytes.trim_ascii().to_vec()),
            Err(e) => {
                p.push(format!("{path}.secret_file"), format!("cannot read \"{file}\": {e}"));
                None
            }
        },
        (None, None) => None,
    };
    if secret.as_ref().is_some_and(|s| s.len() < MIN_SECRET) {
        let key = if raw.secret.is_some() { "secret" } else { "secret_file" };
        p.push(
            format!("{path}.{key}"),
            format!("at least {MIN_SECRET} bytes (e.g. `openssl rand -base64 48`)"),
        );
    }
    SessionTickets {
        enabled: raw.enabled.unwrap_or(true),
        secret,
        rotate,
    }
}
