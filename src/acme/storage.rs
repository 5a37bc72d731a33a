//! Where ACME state lives on disk, shared by every node that names the same `storage`:
//!
//! ```text
//! <storage>/account-<hash>.json   the account's credentials, per CA directory (0600)
//! <storage>/certs/<name>/cert.pem the certificate chain, leaf first
//! <storage>/certs/<name>/key.pem  its private key (0600)
//! <storage>/lock                  held while one node orders (pid, host, time)
//! <storage>/challenges/<token>    HTTP-01 answers while an order waits, for every node
//! ```
//!
//! Files are written to a temporary name, synced and renamed, so a reader (another node)
//! sees the old pair or the new one, never half a file.

use crate::config::model::LoadedCert;
use openssl::pkey::PKey;
use openssl::x509::X509;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A lock older than this was left by a node that died mid-order: taken over.
const STALE_LOCK: Duration = Duration::from_secs(600);

pub struct Storage {
    root: PathBuf,
}

impl Storage {
    pub fn new(root: &Path) -> Self {
        Storage {
            root: root.to_path_buf(),
        }
    }

    /// One account per CA directory: moving from a staging CA to the real one (same
    /// storage) registers a new account instead of sending orders to the old CA.
    pub fn account_file(&self, directory: &str) -> PathBuf {
        let digest = openssl::sha::sha256(directory.as_bytes());
        self.root.join(format!("account-{}.json", hex::encode(&digest[..6])))
    }

    fn cert_dir(&self, name: &str) -> PathBuf {
        self.root.join("certs").join(name)
    }

    /// The stored certificate for `name` and when its files last changed.
    pub fn load(&self, name: &str) -> Option<(LoadedCert, SystemTime)> {
        let dir = self.cert_dir(name);
        let cert_path = dir.join("cert.pem");
        let changed = fs::metadata(&cert_path).and_then(|m| m.modified()).ok()?;
        let (chain_pem, key_pem) = (fs::read(&cert_path).ok()?, fs::read(dir.join("key.pem")).ok()?);
        match parse(name, &cert_path, &chain_pem, &key_pem) {
            Ok(cert) => Some((cert, changed)),
            Err(e) => {
                log::warn!("acme: stored certificate for {name} not usable: {e}");
                None
            }
        }
    }

    pub fn changed(&self, name: &str) -> Option<SystemTime> {
        fs::metadata(self.cert_dir(name).join("cert.pem"))
            .and_then(|m| m.modified())
            .ok()
    }

    /// Stores a new pair: the key first, so a reader that sees the new certificate finds
    /// its key (a reader between the two renames gets a mismatch and keeps what it has).
    pub fn save(&self, name: &str, chain_pem: &str, key_pem: &str) -> std::io::Result<()> {
        let dir = self.cert_dir(name);
        create_private_dir(&dir)?;
        write_atomically(&dir.join("key.pem"), key_pem.as_bytes())?;
        write_atomically(&dir.join("cert.pem"), chain_pem.as_bytes())
    }

    pub fn save_http_answer(&self, token: &str, answer: &str) -> std::io::Result<()> {
        let dir = self.root.join("challenges");
        create_private_dir(&dir)?;
        write_atomically(&dir.join(token), answer.as_bytes())
    }

    pub fn remove_http_answer(&self, token: &str) {
        let _ = fs::remove_file(self.root.join("challenges").join(token));
    }

    /// An HTTP-01 answer another node (the one ordering) stored. Tokens are base64url
    /// (RFC 8555 §8.3), so anything else is not looked up.
    pub async fn http_answer(&self, token: &str) -> Option<String> {
        let valid = !token.is_empty()
            && token.len() <= 128
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return None;
        }
        tokio::fs::read_to_string(self.root.join("challenges").join(token))
            .await
            .ok()
    }

    pub fn save_account(&self, directory: &str, json: &[u8]) -> std::io::Result<()> {
        create_private_dir(&self.root)?;
        write_atomically(&self.account_file(directory), json)
    }

    /// The ordering lock, unless another node holds it (and is not dead).
    pub fn try_lock(&self) -> std::io::Result<Option<LockGuard>> {
        create_private_dir(&self.root)?;
        let path = self.root.join("lock");
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
                Ok(mut file) => {
                    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
                    let _ = writeln!(
                        file,
                        "pid {} host {} since {:?}",
                        std::process::id(),
                        host.trim(),
                        SystemTime::now()
                    );
                    return Ok(Some(LockGuard { path }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok());
                    if age.is_some_and(|age| age > STALE_LOCK) {
                        log::warn!(
                            "acme: taking over {} (left {age:?} ago by a node that stopped)",
                            path.display()
                        );
                        let _ = fs::remove_file(&path);
                        continue;
                    }
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

/// Removes the lock file when the order is over.
pub struct LockGuard {
    path: PathBuf,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.path) {
            log::warn!("acme: cannot remove {}: {e}", self.path.display());
        }
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A chain and key as a served certificate for `name`.
pub fn parse(name: &str, path: &Path, chain_pem: &[u8], key_pem: &[u8]) -> Result<LoadedCert, String> {
    let mut chain = X509::stack_from_pem(chain_pem).map_err(|e| format!("certificate: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate in the chain".into());
    }
    let cert = chain.remove(0);
    let key = PKey::private_key_from_pem(key_pem).map_err(|e| format!("key: {e}"))?;
    if !cert.public_key().is_ok_and(|public| public.public_eq(&key)) {
        return Err("the key does not match the certificate".into());
    }
    Ok(LoadedCert {
        cert_path: path.display().to_string(),
        names: vec![name.to_string()],
        cert,
        chain,
        key,
        ocsp: None,
        ocsp_auto: false,
    })
}

/// Seconds from now until `cert` expires (negative once it has).
pub fn seconds_left(cert: &X509) -> i64 {
    let now = openssl::asn1::Asn1Time::days_from_now(0);
    match now.and_then(|now| now.diff(cert.not_after())) {
        Ok(diff) => i64::from(diff.days) * 86_400 + i64::from(diff.secs),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_ca_directory_has_its_own_account_file() {
        let storage = Storage::new(Path::new("/var/lib/gatehouse/acme"));
        let staging = storage.account_file("https://acme-staging-v02.api.letsencrypt.org/directory");
        let production = storage.account_file("https://acme-v02.api.letsencrypt.org/directory");
        assert_ne!(staging, production);
        assert_eq!(
            staging,
            storage.account_file("https://acme-staging-v02.api.letsencrypt.org/directory")
        );
        assert!(staging
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("account-")));
    }
}
