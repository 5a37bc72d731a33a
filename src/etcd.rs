//! The etcd client of fleet mode, kept thin: where the store is, listing a prefix at one
//! revision, and a blocking form of it for the config loader (which runs outside any
//! async runtime, or on a blocking thread). Knows nothing of gatehouse's config: keys and
//! bytes in, keys and bytes out.

use etcd_client::{Client, ConnectOptions, EventType, GetOptions, OpenSslClientConfig, WatchResponse};
use std::time::Duration;

/// Where the fleet's config lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    /// `http://host:2379`, one per cluster member.
    pub endpoints: Vec<String>,
    /// Every key of the fleet's config starts with it; ends with `/`.
    pub prefix: String,
    /// `(user, password)` when etcd has authentication on.
    pub credentials: Option<(String, String)>,
    /// Files for `https://` endpoints; none: the system's CAs, no client certificate.
    pub tls: EtcdTls,
    /// Bound on connecting and on each request.
    pub timeout: Duration,
}

/// PEM files for TLS to etcd.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdTls {
    /// CAs that sign the members' certificates (default: the system's).
    pub ca_file: Option<String>,
    /// A client certificate and its key, for etcd run with `--client-cert-auth`.
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

impl EtcdTls {
    /// The OpenSSL client setup: peer and host name verified, against `ca_file` when given.
    fn client_config(&self) -> Result<OpenSslClientConfig, String> {
        let read = |path: &str| std::fs::read(path).map_err(|e| format!("{path}: {e}"));
        let ca = self.ca_file.as_deref().map(read).transpose()?;
        let identity = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
            _ => None,
        };
        Ok(OpenSslClientConfig::default().manually(move |builder| {
            if let Some(pem) = &ca {
                for cert in openssl::x509::X509::stack_from_pem(pem)? {
                    builder.cert_store_mut().add_cert(cert)?;
                }
            }
            if let Some((cert, key)) = &identity {
                let mut chain = openssl::x509::X509::stack_from_pem(cert)?.into_iter();
                if let Some(leaf) = chain.next() {
                    builder.set_certificate(&leaf)?;
                }
                for intermediate in chain {
                    builder.add_extra_chain_cert(intermediate)?;
                }
                let key = openssl::pkey::PKey::private_key_from_pem(key)?;
                builder.set_private_key(&key)?;
                builder.check_private_key()?;
            }
            Ok(())
        }))
    }
}

/// Default prefix of the fleet's keys.
pub const DEFAULT_PREFIX: &str = "/gatehouse/";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

impl EtcdSettings {
    pub fn new(endpoints: Vec<String>, prefix: Option<&str>) -> Self {
        let mut prefix = prefix.unwrap_or(DEFAULT_PREFIX).to_string();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        EtcdSettings {
            endpoints,
            prefix,
            credentials: None,
            tls: EtcdTls::default(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// `etcd http://a:2379,http://b:2379/gatehouse/`, for messages.
    pub fn describe(&self) -> String {
        format!("etcd {}{}", self.endpoints.join(","), self.prefix)
    }
}

/// The keys under a prefix, read at one revision.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub revision: i64,
    /// Sorted by key.
    pub entries: Vec<Entry>,
}

/// One key under the prefix.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Without the prefix.
    pub key: String,
    pub value: Vec<u8>,
    /// The revision of its last change (compare-and-swap writes compare it).
    pub mod_revision: i64,
}

impl Listing {
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// Applies one watch response's events in place, in order: the listing then reads as a
    /// fresh list at the revision of its last event would.
    pub fn apply(&mut self, response: &WatchResponse, prefix: &str) {
        for event in response.events() {
            let Some(kv) = event.kv() else {
                continue;
            };
            let full = String::from_utf8_lossy(kv.key());
            let key = full.strip_prefix(prefix).unwrap_or(&full);
            let at = self.entries.binary_search_by(|e| e.key.as_str().cmp(key));
            match (event.event_type(), at) {
                (EventType::Put, Ok(i)) => {
                    self.entries[i].value = kv.value().to_vec();
                    self.entries[i].mod_revision = kv.mod_revision();
                }
                (EventType::Put, Err(i)) => self.entries.insert(
                    i,
                    Entry {
                        key: key.to_string(),
                        value: kv.value().to_vec(),
                        mod_revision: kv.mod_revision(),
                    },
                ),
                (EventType::Delete, Ok(i)) => {
                    self.entries.remove(i);
                }
                (EventType::Delete, Err(_)) => {}
            }
            self.revision = self.revision.max(kv.mod_revision());
        }
    }

    /// This listing with `key` set to `value` (or removed, with `None`), as it would read
    /// after the write.
    pub fn with(&self, key: &str, value: Option<Vec<u8>>) -> Listing {
        let mut next = self.clone();
        next.entries.retain(|e| e.key != key);
        if let Some(value) = value {
            next.entries.push(Entry {
                key: key.to_string(),
                value,
                mod_revision: 0,
            });
            next.entries.sort_by(|a, b| a.key.cmp(&b.key));
        }
        next
    }
}

/// A client on the first member that answers, trying them in turn. One member per client:
/// a client balancing over every endpoint keeps sending requests to a member that died
/// (each fails with a connect error) until it notices, which is exactly when a node must
/// catch up.
pub async fn connect(s: &EtcdSettings) -> Result<Client, String> {
    let mut failures = Vec::new();
    for endpoint in &s.endpoints {
        match connect_one(s, endpoint).await {
            Ok(client) => return Ok(client),
            Err(e) => failures.push(format!("{endpoint}: {e}")),
        }
    }
    Err(format!("no etcd member answers ({})", failures.join("; ")))
}

async fn connect_one(s: &EtcdSettings, endpoint: &str) -> Result<Client, String> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(s.timeout)
        .with_timeout(s.timeout)
        .with_keep_alive(Duration::from_secs(2), s.timeout);
    if let Some((user, password)) = &s.credentials {
        options = options.with_user(user.clone(), password.clone());
    }
    if endpoint.starts_with("https://") {
        options = options.with_openssl_tls(s.tls.client_config()?);
    }
    let attempt = async {
        let mut client = Client::connect([endpoint], Some(options))
            .await
            .map_err(|e| e.to_string())?;
        // A member cut off from the others answers too, but cannot serve a linearizable
        // read: ask for one, so that only a member of the quorum is chosen.
        client.get(s.prefix.as_str(), None).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(client)
    };
    tokio::time::timeout(s.timeout, attempt)
        .await
        .map_err(|_| format!("no answer within {:?}", s.timeout))?
}

/// Every key under the prefix, at the store's current revision.
pub async fn list(client: &mut Client, s: &EtcdSettings) -> Result<Listing, String> {
    let response = tokio::time::timeout(
        s.timeout,
        client.get(s.prefix.as_str(), Some(GetOptions::new().with_prefix())),
    )
    .await
    .map_err(|_| format!("no answer from {} within {:?}", s.describe(), s.timeout))?
    .map_err(|e| format!("cannot read {}: {e}", s.describe()))?;
    let revision = response.header().map_or(0, |h| h.revision());
    let entries = response
        .kvs()
        .iter()
        .map(|kv| {
            let key = String::from_utf8_lossy(kv.key());
            Entry {
                key: key.strip_prefix(s.prefix.as_str()).unwrap_or(&key).to_string(),
                value: kv.value().to_vec(),
                mod_revision: kv.mod_revision(),
            }
        })
        .collect();
    Ok(Listing { revision, entries })
}

/// [`list`] for synchronous callers: on a thread of its own with its own runtime, so that
/// it works from `main`, from a blocking task, and never inside another runtime's worker.
pub fn list_blocking(s: &EtcdSettings) -> Result<Listing, String> {
    let s = s.clone();
    on_own_runtime(async move {
        let mut client = connect(&s).await?;
        list(&mut client, &s).await
    })
}

/// Writes `puts` and deletes `deletes` (keys without the prefix) in one transaction: every
/// node sees all of it at one revision, or none of it. The new revision.
pub async fn write(
    client: &mut Client,
    s: &EtcdSettings,
    puts: &[(String, Vec<u8>)],
    deletes: &[String],
) -> Result<i64, String> {
    use etcd_client::{Txn, TxnOp};
    let mut ops: Vec<TxnOp> = puts
        .iter()
        .map(|(k, v)| TxnOp::put(format!("{}{k}", s.prefix), v.clone(), None))
        .collect();
    ops.extend(deletes.iter().map(|k| TxnOp::delete(format!("{}{k}", s.prefix), None)));
    let response = tokio::time::timeout(s.timeout, client.txn(Txn::new().and_then(ops)))
        .await
        .map_err(|_| format!("no answer from {} within {:?}", s.describe(), s.timeout))?
        .map_err(|e| {
            format!(
                "the transaction failed ({e}); etcd refuses more than --max-txn-ops (128 by default) changes at once"
            )
        })?;
    Ok(response.header().map_or(0, |h| h.revision()))
}

/// Sets `key` to `value` (deletes it with `None`) if its last change is still
/// `mod_revision` (0: the key must not exist). `Ok(Ok(new revision))` when written,
/// `Ok(Err(its mod revision now))` when someone else changed it first.
pub async fn write_if_unchanged(
    client: &mut Client,
    s: &EtcdSettings,
    key: &str,
    value: Option<Vec<u8>>,
    mod_revision: i64,
) -> Result<Result<i64, i64>, String> {
    use etcd_client::{Compare, CompareOp, Txn, TxnOp};
    let full = format!("{}{key}", s.prefix);
    let change = match value {
        Some(v) => TxnOp::put(full.clone(), v, None),
        None => TxnOp::delete(full.clone(), None),
    };
    let txn = Txn::new()
        .when(vec![Compare::mod_revision(
            full.clone(),
            CompareOp::Equal,
            mod_revision,
        )])
        .and_then(vec![change])
        .or_else(vec![TxnOp::get(full, None)]);
    let response = tokio::time::timeout(s.timeout, client.txn(txn))
        .await
        .map_err(|_| format!("no answer from {} within {:?}", s.describe(), s.timeout))?
        .map_err(|e| format!("cannot write {key}: {e}"))?;
    if response.succeeded() {
        return Ok(Ok(response.header().map_or(0, |h| h.revision())));
    }
    let now = response
        .op_responses()
        .into_iter()
        .find_map(|op| match op {
            etcd_client::TxnOpResponse::Get(get) => Some(get.kvs().first().map_or(0, |kv| kv.mod_revision())),
            _ => None,
        })
        .unwrap_or(0);
    Ok(Err(now))
}

/// [`write_if_unchanged`] for synchronous callers (see [`list_blocking`]).
pub fn write_if_unchanged_blocking(
    s: &EtcdSettings,
    key: &str,
    value: Option<Vec<u8>>,
    mod_revision: i64,
) -> Result<Result<i64, i64>, String> {
    let (s, key) = (s.clone(), key.to_string());
    on_own_runtime(async move {
        let mut client = connect(&s).await?;
        write_if_unchanged(&mut client, &s, &key, value, mod_revision).await
    })
}

/// Runs `work` on a thread and runtime of its own: callable from `main`, from a blocking
/// task, and never inside another runtime's worker.
fn on_own_runtime<T: Send>(work: impl std::future::Future<Output = Result<T, String>> + Send) -> Result<T, String> {
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start the etcd client: {e}"))?
                    .block_on(work)
            })
            .join()
            .unwrap_or_else(|_| Err("the etcd client thread failed".into()))
    })
}
