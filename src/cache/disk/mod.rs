//! The disk tier (`cache.disk`): every stored answer is also written to files (off the
//! request path), answers larger than the memory tier takes live there alone, and a
//! lookup that misses memory is served from disk, streamed from the file. What is in
//! memory per entry is a small index record (key, URL, tags, size); the headers are
//! read from the meta file on each disk hit. Entries survive a restart and a graceful
//! upgrade: a new process scans the directory before it serves. Eviction is TinyUFO's,
//! as in memory, with its own byte bound. File format and fsync discipline: [`file`].

mod file;
mod reader;

pub use reader::DiskReader;

use super::index::{Index, Indexed};
use bytes::Bytes;
use pingora::cache::key::HashBinary;
use pingora::cache::CacheMeta;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};
use tinyufo::TinyUfo;

/// Entries are weighed in units of this many bytes (TinyUFO weights are 16-bit: at most
/// 256 MiB per entry).
const UNIT: u64 = 4096;
/// The largest object the disk tier can weigh.
pub const MAX_OBJECT_SIZE_LIMIT: u64 = UNIT * u16::MAX as u64;
/// Writes waiting for the writer thread, at most this many and this many body bytes:
/// past either, an answer is not written to disk (and counted), so a burst of misses
/// costs bounded memory instead of queueing without end.
const QUEUE_ENTRIES: usize = 64;
const QUEUE_BYTES: u64 = 64 << 20;

/// Work for the writer thread.
enum Job {
    Write(file::Meta, Bytes),
    RewriteMeta(file::Meta),
}

/// One entry on disk, as the index remembers it.
pub struct DiskEntry {
    key: HashBinary,
    url: Arc<str>,
    tags: Arc<[Arc<str>]>,
    body_len: u64,
    weight: u16,
}

impl Indexed for DiskEntry {
    fn key(&self) -> HashBinary {
        self.key
    }

    fn url(&self) -> &str {
        &self.url
    }

    fn tags(&self) -> &[Arc<str>] {
        &self.tags
    }
}

#[derive(Clone)]
enum Slot {
    Live(Arc<DiskEntry>),
    Purged,
}

pub struct DiskTier {
    dir: Arc<PathBuf>,
    slots: TinyUfo<HashBinary, Slot>,
    index: Mutex<Index<DiskEntry>>,
    bytes: AtomicU64,
    limit: u64,
    pub max_object_size: u64,
    /// To the one writer thread (set by [`DiskTier::start_writer`]).
    jobs: OnceLock<SyncSender<Job>>,
    queued_bytes: AtomicU64,
    dropped: AtomicU64,
}

impl DiskTier {
    /// Opens (creating) `dir` and loads the entries already there; damaged files are
    /// removed. Runs before the process serves, so the first request sees them all.
    pub fn open(dir: &Path, limit: u64, max_object_size: u64) -> std::io::Result<DiskTier> {
        std::fs::create_dir_all(dir)?;
        Self::make_subdirs(dir)?;
        let units = (limit / UNIT).max(1) as usize;
        let tier = DiskTier {
            dir: Arc::new(dir.to_path_buf()),
            slots: TinyUfo::new(units, (units / 4).clamp(1024, 1 << 22)),
            index: Mutex::new(Index::default()),
            bytes: AtomicU64::new(0),
            limit,
            max_object_size,
            jobs: OnceLock::new(),
            queued_bytes: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        };
        let started = std::time::Instant::now();
        let report = file::scan(dir, |meta| {
            let tags: Vec<Arc<str>> = meta.tags.iter().map(|t| Arc::from(t.as_str())).collect();
            tier.admit(meta.key, meta.url.into(), tags.into(), meta.body_len);
        })?;
        log::info!(
            "cache.disk {}: {} entries loaded, {} damaged or partial files removed, {} ms",
            dir.display(),
            report.entries,
            report.removed,
            started.elapsed().as_millis()
        );
        Ok(tier)
    }

    /// Creates the 256 subdirectories once, so writes do not ask for them every time.
    fn make_subdirs(dir: &Path) -> std::io::Result<()> {
        for i in 0..=255u8 {
            std::fs::create_dir_all(dir.join(hex::encode([i])))?;
        }
        Ok(())
    }

    pub fn entries(&self) -> usize {
        self.lock_index().len()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Starts the thread that does every write, one at a time: disk writes never run on
    /// the request path, and their number in flight is bounded.
    pub fn start_writer(&'static self) -> std::io::Result<()> {
        let (tx, rx) = sync_channel(QUEUE_ENTRIES);
        std::thread::Builder::new()
            .name("gatehouse-cache-disk".into())
            .spawn(move || self.write_loop(rx))?;
        let _ = self.jobs.set(tx);
        Ok(())
    }

    fn write_loop(&'static self, jobs: Receiver<Job>) {
        while let Ok(job) = jobs.recv() {
            match job {
                Job::Write(record, body) => {
                    let len = body.len() as u64;
                    match file::write_entry(&self.dir, &record, &[body]) {
                        Ok(()) => {
                            let tags: Vec<Arc<str>> = record.tags.iter().map(|t| Arc::from(t.as_str())).collect();
                            self.admit(record.key, record.url.as_str().into(), tags.into(), record.body_len);
                        }
                        Err(e) => log::warn!("cache.disk: writing {}: {e}", record.url),
                    }
                    self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                }
                Job::RewriteMeta(record) => {
                    if let Err(e) = file::rewrite_meta(&self.dir, &record) {
                        log::warn!("cache.disk: updating {}: {e}", record.url);
                        self.remove(&record.key);
                    }
                }
            }
        }
    }

    fn submit(&self, job: Job, bytes: u64) {
        let Some(jobs) = self.jobs.get() else { return };
        if self.queued_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes > QUEUE_BYTES {
            self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = jobs.try_send(job) {
            self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Answers not written to disk because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Queues an answer for the disk; it becomes visible to lookups once its files are
    /// durable.
    pub fn store(&self, key: HashBinary, url: Arc<str>, tags: Arc<[Arc<str>]>, meta: &CacheMeta, body: Bytes) {
        let Ok((internal, header)) = meta.serialize() else {
            return;
        };
        let record = file::Meta {
            key,
            url: url.to_string(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            internal,
            header,
            body_len: body.len() as u64,
        };
        let len = body.len() as u64;
        self.submit(Job::Write(record, body), len);
    }

    /// A 304 or a soft purge changed an entry's meta: rewrite it, body untouched.
    pub fn update_meta(&self, key: HashBinary, meta: &CacheMeta) {
        let Some(entry) = self.get(&key) else { return };
        let Ok((internal, header)) = meta.serialize() else {
            return;
        };
        self.submit(
            Job::RewriteMeta(file::Meta {
                key,
                url: entry.url.to_string(),
                tags: entry.tags.iter().map(|t| t.to_string()).collect(),
                internal,
                header,
                body_len: entry.body_len,
            }),
            0,
        );
    }

    /// The entry's meta and an open reader of its body; `None` when it is not on disk or
    /// its files are damaged (then it is forgotten and deleted).
    pub async fn lookup(&'static self, key: &HashBinary) -> Option<(CacheMeta, DiskReader)> {
        let entry = self.get(key)?;
        let dir = self.dir.clone();
        let key = *key;
        // One trip to the blocking pool: the meta, the body's length check, the open, and
        // for a small body the bytes themselves.
        let opened = tokio::task::spawn_blocking(move || {
            let record = file::read_entry(&dir, &key)?;
            let (_, body_path) = file::paths(&dir, &key);
            let body = reader::Body::open(&body_path, record.body_len).ok()?;
            Some((record, body))
        })
        .await
        .ok()
        .flatten();
        let Some((record, body)) = opened.filter(|(r, _)| r.body_len == entry.body_len) else {
            self.remove(&key);
            return None;
        };
        let meta = CacheMeta::deserialize(&record.internal, &record.header).ok()?;
        Some((meta, DiskReader::new(body, record.body_len)))
    }

    /// Keys on disk whose URL passes `matches`, and those carrying a tag.
    pub fn matching_urls(&self, matches: impl Fn(&str) -> bool) -> Vec<HashBinary> {
        self.lock_index().matching_urls(matches)
    }

    pub fn tagged(&self, tags: &[String]) -> Vec<HashBinary> {
        let index = self.lock_index();
        tags.iter().flat_map(|t| index.tagged(t)).collect()
    }

    /// Drops an entry (index and files).
    pub fn remove(&self, key: &HashBinary) -> bool {
        let mut index = self.lock_index();
        let Some(old) = index.remove(key) else {
            return false;
        };
        self.bytes.fetch_sub(u64::from(old.weight) * UNIT, Ordering::Relaxed);
        self.put_locked(&mut index, *key, Slot::Purged, 1);
        drop(index);
        file::remove_entry(&self.dir, key);
        true
    }

    /// Marks an entry stale (a soft purge), keeping its body. Blocking file I/O: called
    /// from the admin API, not from the request path.
    pub fn expire(&self, key: &HashBinary) -> bool {
        if self.get(key).is_none() {
            return false;
        }
        let Some(mut record) = file::read_entry(&self.dir, key) else {
            self.remove(key);
            return false;
        };
        let Ok(mut meta) = CacheMeta::deserialize(&record.internal, &record.header) else {
            self.remove(key);
            return false;
        };
        let now = SystemTime::now();
        meta.expire_at(now.checked_sub(Duration::from_secs(1)).unwrap_or(now));
        let Ok((internal, _)) = meta.serialize() else {
            return false;
        };
        record.internal = internal;
        file::rewrite_meta(&self.dir, &record).is_ok()
    }

    fn get(&self, key: &HashBinary) -> Option<Arc<DiskEntry>> {
        match self.slots.get(key)? {
            Slot::Live(entry) if entry.key == *key => Some(entry),
            _ => None,
        }
    }

    /// Indexes an entry whose files are on disk; TinyUFO may evict others (their files
    /// are deleted) or refuse nothing (`force_put`, as the memory tier does).
    fn admit(&self, key: HashBinary, url: Arc<str>, tags: Arc<[Arc<str>]>, body_len: u64) {
        let weight = (body_len / UNIT + 1).min(u64::from(u16::MAX)) as u16;
        let entry = Arc::new(DiskEntry {
            key,
            url,
            tags,
            body_len,
            weight,
        });
        let mut index = self.lock_index();
        if let Some(old) = index.insert(entry.clone()) {
            self.bytes.fetch_sub(u64::from(old.weight) * UNIT, Ordering::Relaxed);
        }
        self.bytes.fetch_add(u64::from(weight) * UNIT, Ordering::Relaxed);
        self.put_locked(&mut index, key, Slot::Live(entry), weight);
    }

    fn put_locked(&self, index: &mut Index<DiskEntry>, key: HashBinary, slot: Slot, weight: u16) {
        for kv in self.slots.force_put(key, slot, weight) {
            let Slot::Live(evicted) = kv.data else { continue };
            if index.get(&evicted.key).is_some_and(|live| Arc::ptr_eq(live, &evicted)) {
                index.remove(&evicted.key);
                self.bytes
                    .fetch_sub(u64::from(evicted.weight) * UNIT, Ordering::Relaxed);
                file::remove_entry(&self.dir, &evicted.key);
            }
        }
    }

    fn lock_index(&self) -> std::sync::MutexGuard<'_, Index<DiskEntry>> {
        self.index.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
