//! `MemoryStore`: the response cache's storage, a Pingora `Storage` in process memory with
//! a hard size bound. Entries are weighed in KiB and evicted by TinyUFO (Pingora's own
//! admission/eviction algorithm: S3-FIFO with TinyLFU), so a scan of one-off URLs cannot
//! push the popular ones out. A side index ([`Index`]) serves purges by URL, prefix and
//! cache tag; a soft purge marks entries stale instead of dropping them.

use super::disk::DiskTier;
use super::entry::{owned, weigh, Entry};
use super::fill::{Fill, FillSink, FillWriter};
use super::index::Index;
use super::tags;
use bytes::Bytes;
use pingora::cache::key::{CacheHashKey, HashBinary};
use pingora::cache::storage::{HandleHit, HitHandler, MissHandler, PurgeOutcome, PurgeTarget, PurgeType};
use pingora::cache::trace::SpanHandle;
use pingora::cache::{CacheKey, CacheMeta, Storage};
use pingora::{Error, ErrorType, Result};
use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};
use tinyufo::TinyUfo;

/// Hits stream the body in slices of this size (no copy: they share the stored buffer).
const READ_CHUNK: usize = 64 * 1024;
/// What TinyUFO holds for a key: a response, or the tombstone of a purged one.
#[derive(Clone)]
enum Slot {
    Live(Arc<Entry>),
    Purged,
}

pub struct MemoryStore {
    /// Made by the first lookup or store: its frequency sketch and buckets are sized for
    /// `max_size` (≈ 2.8 MiB at the default), which a gateway without caching routes
    /// should not hold.
    entries: OnceLock<TinyUfo<HashBinary, Slot>>,
    /// TinyUFO's capacity (KiB) and expected number of entries.
    entries_size: (usize, usize),
    /// Every live entry by key and by tag, for purges and the counters.
    index: Mutex<Index<Entry>>,
    /// Responses being written, readable as they arrive ([`Fill`]); usually one per key.
    fills: Mutex<HashMap<HashBinary, Vec<Arc<Fill>>>>,
    /// How many fills are in `fills`: lookups skip its lock when there are none.
    active_fills: AtomicUsize,
    next_fill: AtomicU64,
    /// The disk tier, when `cache.disk` is set: written through, read on a memory miss.
    disk: Option<&'static DiskTier>,
    bytes: AtomicU64,
    max_object_size: AtomicU64,
    limit: u64,
}

/// What the store holds, for metrics and the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    pub entries: usize,
    pub bytes: u64,
    pub limit: u64,
    /// The disk tier's, when there is one.
    pub disk: Option<DiskStats>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskStats {
    pub entries: usize,
    pub bytes: u64,
    pub limit: u64,
    /// Answers not written because the writer was behind.
    pub dropped: u64,
}

impl MemoryStore {
    /// A store holding at most `max_size` bytes (body, header and bookkeeping counted).
    pub fn new(max_size: u64, max_object_size: u64) -> Self {
        let kib = (max_size / 1024).max(1) as usize;
        // TinyLFU's frequency sketch is sized by the expected number of entries.
        let estimated_entries = (kib / 8).clamp(1024, 1 << 20);
        MemoryStore {
            entries: OnceLock::new(),
            entries_size: (kib, estimated_entries),
            index: Mutex::new(Index::default()),
            fills: Mutex::new(HashMap::new()),
            active_fills: AtomicUsize::new(0),
            next_fill: AtomicU64::new(1),
            disk: None,
            bytes: AtomicU64::new(0),
            max_object_size: AtomicU64::new(max_object_size),
            limit: max_size,
        }
    }

    fn entries(&self) -> &TinyUfo<HashBinary, Slot> {
        self.entries
            .get_or_init(|| TinyUfo::new(self.entries_size.0, self.entries_size.1))
    }

    /// Objects above this size are not stored (reloadable; `max_size` is not).
    pub fn set_max_object_size(&self, bytes: u64) {
        // Read first: in the steady state no request writes the shared cache line.
        if self.max_object_size.load(Ordering::Relaxed) != bytes {
            self.max_object_size.store(bytes, Ordering::Relaxed);
        }
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats {
            entries: self.lock_index().len(),
            bytes: self.bytes.load(Ordering::Relaxed),
            limit: self.limit,
            disk: self.disk.map(|d| DiskStats {
                entries: d.entries(),
                bytes: d.bytes(),
                limit: d.limit(),
                dropped: d.dropped(),
            }),
        }
    }

    /// Adds the disk tier (at start, before the store is shared).
    pub fn with_disk(mut self, disk: &'static DiskTier) -> Self {
        self.disk = Some(disk);
        self
    }

    /// The largest answer either tier stores.
    pub fn max_storable(&self) -> u64 {
        let memory = self.max_object_size.load(Ordering::Relaxed);
        self.disk.map_or(memory, |d| d.max_object_size.max(memory))
    }

    /// Purges every entry whose URL (`host/path?query`) is `url` or, with `prefix`,
    /// starts with it. A `url` starting with `/` matches any host. Returns how many.
    pub fn purge_urls(&self, url: &str, prefix: bool, soft: bool) -> usize {
        let matches = |stored: &str| {
            let stored = if url.starts_with('/') {
                stored.find('/').map_or(stored, |i| &stored[i..])
            } else {
                stored
            };
            if prefix {
                stored.starts_with(url)
            } else {
                stored == url
            }
        };
        let mut doomed: Vec<HashBinary> = self.lock_index().matching_urls(matches);
        if let Some(disk) = self.disk {
            doomed.extend(disk.matching_urls(matches));
            doomed.sort_unstable();
            doomed.dedup();
        }
        self.purge_keys(&doomed, soft)
    }

    /// Purges every entry carrying any of `tags`; costs the entries with those tags.
    pub fn purge_tags(&self, tags: &[String], soft: bool) -> usize {
        let mut doomed: Vec<HashBinary> = {
            let index = self.lock_index();
            tags.iter().flat_map(|t| index.tagged(t)).collect()
        };
        if let Some(disk) = self.disk {
            doomed.extend(disk.tagged(tags));
        }
        doomed.sort_unstable();
        doomed.dedup();
        self.purge_keys(&doomed, soft)
    }

    /// A hard purge drops the entries; a soft one marks them stale, so the next use
    /// revalidates and `stale-while-revalidate` / `stale-if-error` still apply.
    fn purge_keys(&self, keys: &[HashBinary], soft: bool) -> usize {
        let on_disk = |key: &HashBinary| {
            self.disk
                .is_some_and(|d| if soft { d.expire(key) } else { d.remove(key) })
        };
        if soft {
            keys.iter().filter(|key| self.expire(key) | on_disk(key)).count()
        } else {
            keys.iter().filter(|key| self.remove(key) | on_disk(key)).count()
        }
    }

    fn expire(&self, key: &HashBinary) -> bool {
        let Some(old) = self.lock_index().get(key).cloned() else {
            return false;
        };
        let Ok(mut meta) = old.meta() else {
            return self.remove(key);
        };
        let now = SystemTime::now();
        meta.expire_at(now.checked_sub(Duration::from_secs(1)).unwrap_or(now));
        let Ok((internal, _)) = meta.serialize() else {
            return self.remove(key);
        };
        // The body and tags are shared, not copied.
        self.insert(Entry {
            internal,
            ..(*old).clone()
        });
        true
    }

    /// The newest fill in progress for `key` (or the one with the streaming-write `tag`).
    fn current_fill(&self, key: &HashBinary, tag: Option<&[u8]>) -> Option<Arc<Fill>> {
        if self.active_fills.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let fills = self.lock_fills();
        let list = fills.get(key)?;
        match tag {
            Some(tag) => list.iter().find(|f| f.has_tag(tag)).cloned(),
            None => list.last().cloned(),
        }
    }

    fn lock_fills(&self) -> std::sync::MutexGuard<'_, HashMap<HashBinary, Vec<Arc<Fill>>>> {
        self.fills.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_index(&self) -> std::sync::MutexGuard<'_, Index<Entry>> {
        // The index holds plain data: a panic elsewhere cannot leave it half-updated.
        self.index.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, key: &HashBinary) -> Option<Arc<Entry>> {
        // Nothing stored yet: no TinyUFO either.
        match self.entries.get()?.get(key)? {
            // TinyUFO keys on a 64-bit hash of the key: check it is really ours.
            Slot::Live(entry) if entry.key == *key => Some(entry),
            _ => None,
        }
    }

    fn insert(&self, entry: Entry) {
        let entry = Arc::new(entry);
        let mut index = self.lock_index();
        if let Some(old) = index.insert(entry.clone()) {
            self.bytes.fetch_sub(old.bytes(), Ordering::Relaxed);
        }
        self.bytes.fetch_add(entry.bytes(), Ordering::Relaxed);
        self.put_locked(&mut index, entry.key, Slot::Live(entry.clone()), entry.weight_kib);
    }

    /// Purges by overwriting with a tombstone (1 KiB, evicted in time like anything else).
    /// TinyUFO's own `remove` leaves the key in its FIFO queues: when the key comes back
    /// it is queued twice and the weight counters go wrong.
    fn remove(&self, key: &HashBinary) -> bool {
        let mut index = self.lock_index();
        let Some(old) = index.remove(key) else {
            return false;
        };
        self.bytes.fetch_sub(old.bytes(), Ordering::Relaxed);
        self.put_locked(&mut index, *key, Slot::Purged, 1);
        true
    }

    /// Every write to TinyUFO happens under the index lock: its weight accounting is not
    /// safe when writes race on one key. Writes are misses, far rarer than hits, and reads
    /// (`get`) stay lock-free.
    fn put_locked(&self, index: &mut Index<Entry>, key: HashBinary, slot: Slot, weight: u16) {
        for kv in self.entries().force_put(key, slot, weight) {
            let Slot::Live(evicted) = kv.data else { continue };
            // Only if the index still points at this very entry (not a newer one).
            if index.get(&evicted.key).is_some_and(|live| Arc::ptr_eq(live, &evicted)) {
                index.remove(&evicted.key);
                self.bytes.fetch_sub(evicted.bytes(), Ordering::Relaxed);
            }
        }
    }
}

#[async_trait::async_trait]
impl Storage for MemoryStore {
    async fn lookup(&'static self, key: &CacheKey, _trace: &SpanHandle) -> Result<Option<(CacheMeta, HitHandler)>> {
        let key = key.combined_bin();
        // A fill in progress is newer than any stored copy (which is stale, or it would
        // not be refilled): read it as it arrives.
        if let Some(fill) = self.current_fill(&key, None) {
            return fill_hit(&fill).map(Some);
        }
        let Some(entry) = self.get(&key) else {
            return Ok(match self.disk {
                Some(disk) => disk
                    .lookup(&key)
                    .await
                    .map(|(meta, reader)| (meta, Box::new(reader) as HitHandler)),
                None => None,
            });
        };
        let meta = entry.meta()?;
        let end = entry.body.len();
        let hit = BodyReader {
            body: entry.body.clone(),
            position: 0,
            end,
        };
        Ok(Some((meta, Box::new(hit))))
    }

    async fn lookup_streaming_write(
        &'static self,
        key: &CacheKey,
        tag: Option<&[u8]>,
        trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        match tag {
            Some(tag) => match self.current_fill(&key.combined_bin(), Some(tag)) {
                Some(fill) => fill_hit(&fill).map(Some),
                None => Ok(None),
            },
            None => self.lookup(key, trace).await,
        }
    }

    fn support_streaming_partial_write(&self) -> bool {
        true
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        let (internal, _) = meta.serialize()?;
        let url: Arc<str> = key.primary_key_str().map_or("", super::key_url).into();
        let id = self.next_fill.fetch_add(1, Ordering::Relaxed);
        let fill = Arc::new(Fill::new(
            id,
            key.combined_bin(),
            internal,
            owned(meta.response_header()),
        ));
        self.lock_fills().entry(fill.key).or_default().push(fill.clone());
        self.active_fills.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(FillWriter {
            sink: self,
            fill,
            url,
            tags: tags::of(meta),
            max_size: self.max_storable(),
            finished: false,
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        let key = target.key().combined_bin();
        let removed = self.remove(&key) | self.disk.is_some_and(|d| d.remove(&key));
        Ok(if removed {
            PurgeOutcome::Purged(None)
        } else {
            PurgeOutcome::NotFound
        })
    }

    /// A revalidation (the origin said 304) refreshes the entry's freshness and headers.
    async fn update_meta(&'static self, key: &CacheKey, meta: &CacheMeta, _trace: &SpanHandle) -> Result<bool> {
        let key = key.combined_bin();
        if let Some(disk) = self.disk {
            disk.update_meta(key, meta);
        }
        let Some(old) = self.get(&key) else {
            return Ok(self.disk.is_some());
        };
        let (internal, _) = meta.serialize()?;
        let header = owned(meta.response_header());
        let weight_kib = weigh(&header, &internal, &old.url, old.body.len());
        self.insert(Entry {
            key,
            url: old.url.clone(),
            internal,
            header,
            body: old.body.clone(),
            weight_kib,
            tags: tags::of(meta),
        });
        Ok(true)
    }

    /// Soft purge of one entry (Pingora's own purge API).
    async fn expire(&'static self, target: PurgeTarget<'_>, _trace: &SpanHandle) -> Result<PurgeOutcome> {
        let key = target.key().combined_bin();
        Ok(if self.expire(&key) | self.disk.is_some_and(|d| d.expire(&key)) {
            PurgeOutcome::Expired
        } else {
            PurgeOutcome::NotFound
        })
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

fn fill_meta(fill: &Fill) -> Result<CacheMeta> {
    let mut meta = CacheMeta::deserialize(&fill.internal, &super::entry::EMPTY_HEADER)?;
    *meta.response_header_mut() = fill.header.clone();
    Ok(meta)
}

fn fill_hit(fill: &Arc<Fill>) -> Result<(CacheMeta, HitHandler)> {
    Ok((fill_meta(fill)?, Box::new(fill.reader())))
}

impl FillSink for MemoryStore {
    fn complete(&'static self, fill: &Arc<Fill>, url: Arc<str>, tags: Arc<[Arc<str>]>) -> usize {
        let body = fill.body();
        let size = body.len();
        if let Some(disk) = self.disk.filter(|d| size as u64 <= d.max_object_size) {
            if let Ok(meta) = fill_meta(fill) {
                disk.store(fill.key, url.clone(), tags.clone(), &meta, body.clone());
            }
        }
        if size as u64 > self.max_object_size.load(Ordering::Relaxed) {
            // On disk alone; an older, smaller version in memory must not shadow it.
            self.remove(&fill.key);
            return size;
        }
        let weight_kib = weigh(&fill.header, &fill.internal, &url, size);
        self.insert(Entry {
            key: fill.key,
            url,
            internal: fill.internal.clone(),
            header: fill.header.clone(),
            body,
            weight_kib,
            tags,
        });
        size
    }

    fn forget(&self, fill: &Arc<Fill>) {
        let mut fills = self.lock_fills();
        if let Some(list) = fills.get_mut(&fill.key) {
            let before = list.len();
            list.retain(|f| !Arc::ptr_eq(f, fill));
            if list.len() < before {
                self.active_fills.fetch_sub(1, Ordering::Relaxed);
            }
            if list.is_empty() {
                fills.remove(&fill.key);
            }
        }
    }
}

/// Streams a stored body (or a byte range of it) to one hit.
struct BodyReader {
    body: Bytes,
    position: usize,
    end: usize,
}

#[async_trait::async_trait]
impl HandleHit for BodyReader {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.position >= self.end {
            return Ok(None);
        }
        let stop = self.end.min(self.position + READ_CHUNK);
        let chunk = self.body.slice(self.position..stop);
        self.position = stop;
        Ok(Some(chunk))
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    /// `end` is exclusive; past the body it stops at the body's end.
    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        if start >= self.body.len() {
            return Error::e_explain(
                ErrorType::InternalError,
                format!("seek start {start} beyond the body ({} bytes)", self.body.len()),
            );
        }
        self.position = start;
        self.end = end.map_or(self.body.len(), |e| e.min(self.body.len()));
        Ok(())
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::cache::trace::Span;

    fn store(max: u64) -> &'static MemoryStore {
        Box::leak(Box::new(MemoryStore::new(max, max)))
    }

    fn meta() -> CacheMeta {
        let now = std::time::SystemTime::now();
        let header = pingora::http::ResponseHeader::build(200, None).unwrap();
        CacheMeta::new(now + std::time::Duration::from_secs(60), now, 0, 0, header)
    }

    async fn put(store: &'static MemoryStore, url: &str, body: &[u8]) {
        put_tagged(store, url, body, &[]).await
    }

    async fn put_tagged(store: &'static MemoryStore, url: &str, body: &[u8], tags: &[&str]) {
        let key = CacheKey::new(url, "");
        let mut meta = meta();
        let tags: Vec<Arc<str>> = tags.iter().map(|t| Arc::from(*t)).collect();
        super::tags::attach(&mut meta, super::tags::CacheTags(tags.into()));
        let mut miss = store
            .get_miss_handler(&key, &meta, &Span::inactive().handle())
            .await
            .unwrap();
        miss.write_body(Bytes::copy_from_slice(body), true).await.unwrap();
        miss.finish().await.unwrap();
    }

    async fn read(store: &'static MemoryStore, url: &str) -> Option<Vec<u8>> {
        let key = CacheKey::new(url, "");
        let (_, mut hit) = store.lookup(&key, &Span::inactive().handle()).await.unwrap()?;
        let mut body = Vec::new();
        while let Some(chunk) = hit.read_body().await.unwrap() {
            body.extend_from_slice(&chunk);
        }
        Some(body)
    }

    #[tokio::test]
    async fn stores_reads_and_seeks() {
        let s = store(1 << 20);
        let body: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        put(s, "a.test/x", &body).await;
        assert_eq!(read(s, "a.test/x").await.unwrap(), body);
        let (_, mut hit) = s
            .lookup(&CacheKey::new("a.test/x", ""), &Span::inactive().handle())
            .await
            .unwrap()
            .unwrap();
        hit.seek(10, Some(20)).unwrap();
        assert_eq!(&hit.read_body().await.unwrap().unwrap()[..], &body[10..20]);
        assert!(hit.read_body().await.unwrap().is_none());
        assert!(hit.seek(body.len(), None).is_err());
    }

    #[tokio::test]
    async fn stays_under_its_bound() {
        let s = store(256 * 1024);
        for i in 0..200 {
            put(s, &format!("a.test/{i}"), &[7u8; 10_000]).await;
        }
        let stats = s.stats();
        assert!(stats.bytes <= 256 * 1024, "{stats:?}");
        assert!(stats.entries < 200 && stats.entries > 5, "{stats:?}");
    }

    #[tokio::test]
    async fn refuses_objects_over_the_max() {
        let s = Box::leak(Box::new(MemoryStore::new(1 << 20, 1000)));
        let key = CacheKey::new("a.test/big", "");
        let mut miss = s
            .get_miss_handler(&key, &meta(), &Span::inactive().handle())
            .await
            .unwrap();
        assert!(miss.write_body(Bytes::from(vec![0u8; 1001]), true).await.is_err());
    }

    /// Readers, writers, purges and evictions from several threads at once: the byte
    /// counter always equals what the index holds, and stays under the bound.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn consistent_under_concurrent_use() {
        let s = store(512 * 1024);
        let tasks = (0..8).map(|t| {
            tokio::spawn(async move {
                for i in 0..3000usize {
                    let url = format!("a.test/{}", (i * 7 + t) % 64);
                    match i % 5 {
                        0 => {
                            s.purge_urls(&url, false, false);
                        }
                        1 | 2 => put(s, &url, &vec![t as u8; 1000 + (i % 9) * 4000]).await,
                        _ => {
                            if let Some(body) = read(s, &url).await {
                                assert!(body.iter().all(|b| *b == body[0]), "a body is never torn");
                            }
                        }
                    }
                }
            })
        });
        for t in futures::future::join_all(tasks).await {
            t.unwrap();
        }
        let held: u64 = s.lock_index().values().map(|e| e.bytes()).sum();
        let stats = s.stats();
        assert_eq!(stats.bytes, held);
        assert!(stats.bytes <= 512 * 1024, "{stats:?}");
    }

    #[tokio::test]
    async fn purges_by_url_and_prefix() {
        let s = store(1 << 20);
        for url in ["a.test/p/1", "a.test/p/2", "a.test/q", "b.test/p/1"] {
            put(s, url, b"x").await;
        }
        assert_eq!(s.purge_urls("a.test/q", false, false), 1);
        assert!(read(s, "a.test/q").await.is_none());
        assert_eq!(s.purge_urls("/p/", true, false), 3);
        assert_eq!(s.stats().entries, 0);
        assert_eq!(s.stats().bytes, 0);
    }

    async fn fresh(store: &'static MemoryStore, url: &str) -> Option<bool> {
        let key = CacheKey::new(url, "");
        let (meta, _) = store.lookup(&key, &Span::inactive().handle()).await.unwrap()?;
        Some(meta.is_fresh(std::time::SystemTime::now()))
    }

    #[tokio::test]
    async fn purges_by_tag_hard_and_soft_and_forgets_tags_of_evicted_entries() {
        let s = store(1 << 20);
        put_tagged(s, "a.test/1", b"1", &["product-1", "catalog"]).await;
        put_tagged(s, "a.test/2", b"2", &["product-2", "catalog"]).await;
        put_tagged(s, "a.test/3", b"3", &[]).await;
        assert_eq!(s.purge_tags(&["product-1".into()], false), 1);
        assert!(read(s, "a.test/1").await.is_none());
        assert_eq!(fresh(s, "a.test/2").await, Some(true));
        // Soft: still there, stale, body intact.
        assert_eq!(s.purge_tags(&["catalog".into(), "nothing".into()], true), 1);
        assert_eq!(fresh(s, "a.test/2").await, Some(false));
        assert_eq!(read(s, "a.test/2").await.unwrap(), b"2");
        assert_eq!(fresh(s, "a.test/3").await, Some(true));
        // A replaced entry keeps only its new tags; a removed one leaves no tag behind.
        put_tagged(s, "a.test/2", b"2b", &["product-2"]).await;
        assert_eq!(s.purge_tags(&["catalog".into()], false), 0);
        s.purge_urls("a.test/2", false, false);
        assert_eq!(s.lock_index().tag_count(), 0);

        let small = store(64 * 1024);
        for i in 0..200 {
            put_tagged(small, &format!("a.test/{i}"), &[1u8; 4000], &[&format!("t{i}"), "all"]).await;
        }
        let index = small.lock_index();
        assert!(index.tag_count() <= index.len() + 1, "evicted entries' tags are gone");
    }
}
