//! Streaming fills: a response being written to the cache is readable while it arrives.
//! Pingora releases the cache lock as soon as the fill starts (the store says it supports
//! partial writes), so requests that were waiting for the same entry, and the request
//! doing the fill, all read the body from here as it comes in, instead of waiting for the
//! last byte. A reader may seek (a range request on a miss), waiting until the bytes it
//! wants have arrived. A fill that fails (the origin breaks off, the object grows past
//! `max_object_size`) makes its readers fail too: a truncated body is never passed off
//! as a whole one.

use bytes::Bytes;
use pingora::cache::key::HashBinary;
use pingora::cache::storage::{HandleHit, HandleMiss, MissFinishType};
use pingora::cache::trace::SpanHandle;
use pingora::cache::{CacheKey, Storage};
use pingora::http::ResponseHeader;
use pingora::{Error, ErrorType, Result};
use std::any::Any;
use std::sync::{Arc, RwLock};
use tokio::sync::watch;

/// How far a fill has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Writing(usize),
    Done(usize),
    Failed,
}

/// One body being written: the chunks as they came, and the offset each starts at.
pub struct Fill {
    /// A number unique to this fill, as bytes: the streaming-write tag Pingora uses to
    /// find this very fill again.
    tag: [u8; 8],
    pub key: HashBinary,
    /// Pingora's serialized meta fields and the parsed header, as an entry keeps them.
    pub internal: Vec<u8>,
    pub header: ResponseHeader,
    chunks: RwLock<Vec<(usize, Bytes)>>,
    progress: watch::Sender<Progress>,
}

impl Fill {
    pub fn new(id: u64, key: HashBinary, internal: Vec<u8>, header: ResponseHeader) -> Fill {
        Fill {
            tag: id.to_be_bytes(),
            key,
            internal,
            header,
            chunks: RwLock::new(Vec::new()),
            progress: watch::Sender::new(Progress::Writing(0)),
        }
    }

    /// Appends a chunk and wakes the readers.
    pub fn push(&self, data: Bytes) {
        let Progress::Writing(written) = *self.progress.borrow() else {
            return;
        };
        if data.is_empty() {
            return;
        }
        let len = data.len();
        self.chunks_mut().push((written, data));
        self.progress.send_replace(Progress::Writing(written + len));
    }

    pub fn has_tag(&self, tag: &[u8]) -> bool {
        self.tag == tag
    }

    pub fn written(&self) -> usize {
        match *self.progress.borrow() {
            Progress::Writing(n) | Progress::Done(n) => n,
            Progress::Failed => 0,
        }
    }

    /// The whole body in one buffer (what the store keeps).
    pub fn body(&self) -> Bytes {
        let chunks = self.chunks_read();
        match chunks.as_slice() {
            [] => Bytes::new(),
            // One exact-size buffer: the store's accounting is what memory really holds.
            [(_, only)] => Bytes::copy_from_slice(only),
            many => {
                let mut body = Vec::with_capacity(many.iter().map(|(_, c)| c.len()).sum());
                for (_, chunk) in many {
                    body.extend_from_slice(chunk);
                }
                Bytes::from(body)
            }
        }
    }

    pub fn finish(&self) {
        let written = self.written();
        self.progress.send_if_modified(|p| match p {
            Progress::Writing(_) => {
                *p = Progress::Done(written);
                true
            }
            _ => false,
        });
    }

    pub fn fail(&self) {
        self.progress.send_if_modified(|p| match p {
            Progress::Writing(_) => {
                *p = Progress::Failed;
                true
            }
            _ => false,
        });
    }

    pub fn reader(self: &Arc<Self>) -> FillReader {
        FillReader {
            fill: self.clone(),
            progress: self.progress.subscribe(),
            position: 0,
            end: None,
        }
    }

    fn chunks_mut(&self) -> std::sync::RwLockWriteGuard<'_, Vec<(usize, Bytes)>> {
        // Plain data: a panic elsewhere cannot leave it half-updated.
        self.chunks.write().unwrap_or_else(|p| p.into_inner())
    }

    fn chunks_read(&self) -> std::sync::RwLockReadGuard<'_, Vec<(usize, Bytes)>> {
        self.chunks.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The bytes from `position` up to `limit` within the chunk holding `position`.
    fn slice(&self, position: usize, limit: usize) -> Option<Bytes> {
        let chunks = self.chunks_read();
        let i = chunks.partition_point(|(start, _)| *start <= position).checked_sub(1)?;
        let (start, chunk) = &chunks[i];
        let from = position - start;
        let to = chunk.len().min(limit - start);
        (from < to).then(|| chunk.slice(from..to))
    }
}

/// Reads a fill as it is written (a hit on an entry still arriving, or the filling
/// request's own downstream).
pub struct FillReader {
    fill: Arc<Fill>,
    progress: watch::Receiver<Progress>,
    position: usize,
    end: Option<usize>,
}

#[async_trait::async_trait]
impl HandleHit for FillReader {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        loop {
            let progress = *self.progress.borrow_and_update();
            let (available, done) = match progress {
                Progress::Writing(n) => (n, false),
                Progress::Done(n) => (n, true),
                Progress::Failed => {
                    return Error::e_explain(ErrorType::InternalError, "the cache fill this body came from failed")
                }
            };
            let limit = self.end.map_or(available, |end| end.min(available));
            if self.position < limit {
                if let Some(chunk) = self.fill.slice(self.position, limit) {
                    self.position += chunk.len();
                    return Ok(Some(chunk));
                }
            }
            if done || self.end.is_some_and(|end| self.position >= end) {
                return Ok(None);
            }
            if self.progress.changed().await.is_err() {
                // The writer is gone without saying it finished.
                return Error::e_explain(ErrorType::InternalError, "the cache fill this body came from stopped");
            }
        }
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

    /// Positions may lie beyond what has arrived: reads wait for them.
    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        if let Progress::Done(total) = *self.progress.borrow() {
            if start >= total {
                return Error::e_explain(
                    ErrorType::InternalError,
                    format!("seek start {start} beyond {total} bytes"),
                );
            }
        }
        self.position = start;
        self.end = end;
        Ok(())
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

/// What the store does when a fill ends.
pub trait FillSink: Send + Sync {
    /// The fill is complete: keep it as an entry.
    fn complete(&'static self, fill: &Arc<Fill>, url: Arc<str>, tags: Arc<[Arc<str>]>) -> usize;
    /// The fill is over (complete or not): stop offering it to lookups.
    fn forget(&self, fill: &Arc<Fill>);
}

/// Writes a fill; stores it as an entry at `finish`, fails its readers if dropped before.
pub struct FillWriter {
    pub sink: &'static dyn FillSink,
    pub fill: Arc<Fill>,
    pub url: Arc<str>,
    pub tags: Arc<[Arc<str>]>,
    pub max_size: u64,
    pub finished: bool,
}

#[async_trait::async_trait]
impl HandleMiss for FillWriter {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        if (self.fill.written() + data.len()) as u64 > self.max_size {
            self.fill.fail();
            return Error::e_explain(ErrorType::InternalError, "response larger than cache.max_object_size");
        }
        self.fill.push(data);
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<MissFinishType> {
        let size = self.sink.complete(&self.fill, self.url.clone(), self.tags.clone());
        self.fill.finish();
        self.finished = true;
        self.sink.forget(&self.fill);
        Ok(MissFinishType::Created(size))
    }

    fn streaming_write_tag(&self) -> Option<&[u8]> {
        Some(&self.fill.tag)
    }
}

impl Drop for FillWriter {
    fn drop(&mut self) {
        if !self.finished {
            self.fill.fail();
            self.sink.forget(&self.fill);
        }
    }
}
