//! One certificate from the CA: account, order, challenges, finalization (RFC 8555 §7),
//! done by instant-acme; this module only publishes the challenge answers where the CA
//! will look and takes them down afterwards.

use super::challenges::{ChallengeCert, Challenges};
use super::storage::Storage;
use crate::config::model::{AcmeChallenge, AcmeSettings};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use std::time::Duration;

/// How long the CA may take to validate and issue.
const ISSUE_TIMEOUT: Duration = Duration::from_secs(90);

/// The account in `storage`, else a new one registered with the CA and stored.
pub async fn account(settings: &AcmeSettings, storage: &Storage) -> Result<Account, String> {
    let builder = || match &settings.ca_file {
        Some(ca) => Account::builder_with_root(ca),
        None => Account::builder(),
    };
    let file = storage.account_file(&settings.directory);
    if let Ok(json) = std::fs::read(&file) {
        let credentials: AccountCredentials =
            serde_json::from_slice(&json).map_err(|e| format!("{}: {e}", file.display()))?;
        let builder = builder().map_err(|e| format!("ACME client: {e}"))?;
        return builder
            .from_credentials(credentials)
            .await
            .map_err(|e| format!("account from {}: {e}", file.display()));
    }
    let contact = settings.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let new = NewAccount {
        contact: &contacts,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let builder = builder().map_err(|e| format!("ACME client: {e}"))?;
    let (account, credentials) = builder
        .create(&new, settings.directory.clone(), None)
        .await
        .map_err(|e| format!("new account at {}: {e}", settings.directory))?;
    let json = serde_json::to_vec(&credentials).map_err(|e| format!("account credentials: {e}"))?;
    storage
        .save_account(&settings.directory, &json)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    log::info!(
        "acme: new account at {} stored in {}",
        settings.directory,
        file.display()
    );
    Ok(account)
}

/// Orders a certificate for `name`: (chain PEM, key PEM).
pub async fn order(
    account: &Account,
    name: &str,
    challenge: AcmeChallenge,
    challenges: &Challenges,
    storage: &Storage,
) -> Result<(String, String), String> {
    let mut published = Published {
        challenges,
        storage,
        tokens: Vec::new(),
        names: Vec::new(),
    };
    let identifiers = [Identifier::Dns(name.to_string())];
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| format!("new order: {e}"))?;
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization.map_err(|e| format!("authorization: {e}"))?;
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => return Err(format!("authorization is {other:?}")),
        }
        let kind = match challenge {
            AcmeChallenge::Http01 => ChallengeType::Http01,
            AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        };
        let mut handle = authorization
            .challenge(kind)
            .ok_or_else(|| format!("the CA offers no {} challenge for {name}", challenge.name()))?;
        let key_authorization = handle.key_authorization();
        match challenge {
            AcmeChallenge::Http01 => {
                // Also in storage: the CA may ask any node sharing it (behind a balancer).
                challenges.set_http(&handle.token, key_authorization.as_str());
                published.tokens.push(handle.token.clone());
                storage
                    .save_http_answer(&handle.token, key_authorization.as_str())
                    .map_err(|e| format!("storing the HTTP-01 answer: {e}"))?;
            }
            AcmeChallenge::TlsAlpn01 => {
                challenges.set_tls_alpn(name, alpn_certificate(name, key_authorization.digest().as_ref())?);
                published.names.push(name.to_string());
            }
        }
        handle.set_ready().await.map_err(|e| format!("challenge ready: {e}"))?;
    }
    let retry = RetryPolicy::new().timeout(ISSUE_TIMEOUT);
    let status = order.poll_ready(&retry).await.map_err(|e| format!("validation: {e}"))?;
    if status != OrderStatus::Ready {
        return Err(format!("the CA did not validate {name} (order {status:?})"));
    }
    let key = order.finalize().await.map_err(|e| format!("finalize: {e}"))?;
    let chain = order
        .poll_certificate(&retry)
        .await
        .map_err(|e| format!("certificate: {e}"))?;
    drop(published);
    Ok((chain, key))
}

/// RFC 8737 §3: a self-signed certificate for `name` carrying the key authorization's
/// digest in a critical acmeIdentifier extension.
fn alpn_certificate(name: &str, digest: &[u8]) -> Result<ChallengeCert, String> {
    let failed = |e: rcgen::Error| format!("TLS-ALPN-01 certificate: {e}");
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).map_err(failed)?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(failed)?;
    let cert = params.self_signed(&key).map_err(failed)?;
    Ok(ChallengeCert {
        cert: openssl::x509::X509::from_der(cert.der()).map_err(|e| format!("TLS-ALPN-01 certificate: {e}"))?,
        key: openssl::pkey::PKey::private_key_from_pem(key.serialize_pem().as_bytes())
            .map_err(|e| format!("TLS-ALPN-01 key: {e}"))?,
    })
}

/// Takes the challenge answers down when the order ends, however it ends.
struct Published<'a> {
    challenges: &'a Challenges,
    storage: &'a Storage,
    tokens: Vec<String>,
    names: Vec<String>,
}

impl Drop for Published<'_> {
    fn drop(&mut self) {
        self.challenges.clear(&self.tokens, &self.names);
        self.tokens.iter().for_each(|t| self.storage.remove_http_answer(t));
    }
}
