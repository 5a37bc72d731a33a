//! The etcd client of fleet mode, kept thin: where the store is, listing a prefix at one
//! revision, and a blocking form of it for the config loader (which runs outside any
//! async runtime, or on a blocking thread). Knows nothing of gatehouse's config: keys and
//! bytes in, keys and bytes out.

use etcd_client::{Client, ConnectOptions, GetOptions};
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
    /// Bound on connecting and on each request.
    pub timeout: Duration,
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
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// `etcd http://a:2379,http://b:2379/gatehouse/`, for messages.
    pub fn describe(&self) -> String {
        format!("etcd {}{}", self.endpoints.join(","), self.prefix)
    }
}

/// The keys under a prefix, read at one revision.
#[derive(Debug, Clone)]
pub struct Listing {
    pub revision: i64,
    /// Key without the prefix, and value; sorted by key.
    pub entries: Vec<(String, Vec<u8>)>,
}

pub async fn connect(s: &EtcdSettings) -> Result<Client, String> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(s.timeout)
        .with_timeout(s.timeout)
        .with_keep_alive(Duration::from_secs(10), s.timeout);
    if let Some((user, password)) = &s.credentials {
        options = options.with_user(user.clone(), password.clone());
    }
    let connecting = Client::connect(&s.endpoints, Some(options));
    tokio::time::timeout(s.timeout, connecting)
        .await
        .map_err(|_| format!("no connection to {} within {:?}", s.endpoints.join(","), s.timeout))?
        .map_err(|e| format!("cannot connect to {}: {e}", s.endpoints.join(",")))
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
            let key = key.strip_prefix(s.prefix.as_str()).unwrap_or(&key).to_string();
            (key, kv.value().to_vec())
        })
        .collect();
    Ok(Listing { revision, entries })
}

/// [`list`] for synchronous callers: on a thread of its own with its own runtime, so that
/// it works from `main`, from a blocking task, and never inside another runtime's worker.
pub fn list_blocking(s: &EtcdSettings) -> Result<Listing, String> {
    let s = s.clone();
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start the etcd client: {e}"))?;
                runtime.block_on(async {
                    let mut client = connect(&s).await?;
                    list(&mut client, &s).await
                })
            })
            .join()
            .unwrap_or_else(|_| Err("the etcd client thread failed".into()))
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
