//! Streams a body from its file to one hit, 64 KiB at a time: a disk hit never holds the
//! whole body in memory (a body of one chunk or less is read with the meta, in the same
//! trip to the blocking pool). A file that ends before its recorded length (cut while
//! being read) fails the read, so the answer is broken off rather than served short.

use bytes::{Bytes, BytesMut};
use pingora::cache::storage::HandleHit;
use pingora::cache::trace::SpanHandle;
use pingora::cache::{CacheKey, Storage};
use pingora::{Error, ErrorType, Result};
use std::any::Any;
use std::io::SeekFrom;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

const CHUNK: usize = 64 * 1024;

/// A body as opened: read already (small), or a file to stream.
pub enum Body {
    Read(Bytes),
    File(std::fs::File),
}

impl Body {
    /// Blocking: runs on the blocking pool.
    pub fn open(path: &Path, len: u64) -> std::io::Result<Body> {
        use std::io::Read;
        let mut file = std::fs::File::open(path)?;
        if len > CHUNK as u64 {
            return Ok(Body::File(file));
        }
        let mut buf = Vec::with_capacity(len as usize);
        file.read_to_end(&mut buf)?;
        if buf.len() as u64 != len {
            return Err(std::io::Error::other("cached body is not its recorded length"));
        }
        Ok(Body::Read(Bytes::from(buf)))
    }
}

enum Source {
    Read(Bytes),
    File(tokio::fs::File),
}

pub struct DiskReader {
    source: Source,
    len: u64,
    position: u64,
    end: u64,
    /// A seek asked for (the trait's `seek` is synchronous), done before the next read.
    pending_seek: Option<u64>,
}

impl DiskReader {
    pub fn new(body: Body, len: u64) -> DiskReader {
        let source = match body {
            Body::Read(bytes) => Source::Read(bytes),
            Body::File(file) => Source::File(tokio::fs::File::from_std(file)),
        };
        DiskReader {
            source,
            len,
            position: 0,
            end: len,
            pending_seek: None,
        }
    }
}

#[async_trait::async_trait]
impl HandleHit for DiskReader {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.position >= self.end {
            return Ok(None);
        }
        let file = match &mut self.source {
            Source::Read(bytes) => {
                let (from, to) = (self.position as usize, (self.end as usize).min(bytes.len()));
                self.position = self.end;
                return Ok((from < to).then(|| bytes.slice(from..to)));
            }
            Source::File(file) => file,
        };
        if let Some(to) = self.pending_seek.take() {
            file.seek(SeekFrom::Start(to))
                .await
                .map_err(|e| Error::because(ErrorType::InternalError, "seeking a cached body", e))?;
        }
        let want = usize::try_from(self.end - self.position).unwrap_or(CHUNK).min(CHUNK);
        let mut buf = BytesMut::zeroed(want);
        let mut filled = 0;
        while filled < want {
            let n = file
                .read(&mut buf[filled..])
                .await
                .map_err(|e| Error::because(ErrorType::InternalError, "reading a cached body", e))?;
            if n == 0 {
                return Error::e_explain(
                    ErrorType::InternalError,
                    format!(
                        "cached body file ended at {} of {} bytes",
                        self.position + filled as u64,
                        self.len
                    ),
                );
            }
            filled += n;
        }
        self.position += filled as u64;
        Ok(Some(buf.freeze()))
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

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        let start = start as u64;
        if start >= self.len {
            return Error::e_explain(
                ErrorType::InternalError,
                format!("seek start {start} beyond {} bytes", self.len),
            );
        }
        self.position = start;
        self.end = end.map_or(self.len, |e| (e as u64).min(self.len));
        self.pending_seek = Some(start);
        Ok(())
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}
