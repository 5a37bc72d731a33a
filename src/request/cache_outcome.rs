//! How the response cache took part in a request: recorded in the request's context,
//! answered as `X-Cache`, counted by result.

/// How the cache took part in a request: the `X-Cache` header and the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Served from the store, fresh.
    Hit,
    /// Fetched from the upstream (and stored if the response allowed it).
    Miss,
    /// Served from the store past its freshness (stale-while-revalidate / stale-if-error).
    Stale,
    /// The cache was not consulted: an unsafe method, or a stored answer that this
    /// request's credentials may not see.
    Bypass,
    /// The stored copy was confirmed by the upstream (304) and served.
    Revalidated,
}

impl CacheOutcome {
    pub fn header_value(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "HIT",
            CacheOutcome::Miss => "MISS",
            CacheOutcome::Stale => "STALE",
            CacheOutcome::Bypass => "BYPASS",
            CacheOutcome::Revalidated => "REVALIDATED",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Stale => "stale",
            CacheOutcome::Bypass => "bypass",
            CacheOutcome::Revalidated => "revalidated",
        }
    }
}
