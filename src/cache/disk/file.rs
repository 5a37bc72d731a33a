//! The on-disk format of one entry: `<dir>/<2 hex>/<32 hex>.body` holds the body bytes,
//! `.meta` beside it everything else. The meta file is the commit point: it is written
//! after the body, each through a temporary file that is fsynced and renamed into place,
//! then the directory is fsynced. So after a crash an entry is either whole or has no
//! meta (its body is an orphan, removed by the next start's scan).
//!
//! Meta layout (little-endian): `GHC1`, key (16), url (u32 len + bytes), tags (u16 count,
//! each u16 len + bytes), Pingora's internal meta (u32 len + bytes), Pingora's serialized
//! response header (u32 len + bytes), body length (u64), CRC-32 of everything before it
//! (u32). A meta that fails any check, or a body whose length is not the recorded one, is
//! a miss and is deleted: never a wrong answer.

use pingora::cache::key::HashBinary;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const MAGIC: &[u8; 4] = b"GHC1";

/// What the meta file records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub key: HashBinary,
    pub url: String,
    pub tags: Vec<String>,
    pub internal: Vec<u8>,
    pub header: Vec<u8>,
    pub body_len: u64,
}

pub fn paths(dir: &Path, key: &HashBinary) -> (PathBuf, PathBuf) {
    let name = hex::encode(key);
    let sub = dir.join(&name[..2]);
    (sub.join(format!("{name}.meta")), sub.join(format!("{name}.body")))
}

pub fn encode(meta: &Meta) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + meta.url.len() + meta.internal.len() + meta.header.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&meta.key);
    put_bytes32(&mut out, meta.url.as_bytes());
    let tags = u16::try_from(meta.tags.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&tags.to_le_bytes());
    for tag in meta.tags.iter().take(usize::from(tags)) {
        let bytes = &tag.as_bytes()[..tag.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    put_bytes32(&mut out, &meta.internal);
    put_bytes32(&mut out, &meta.header);
    out.extend_from_slice(&meta.body_len.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn put_bytes32(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// `None` for anything but a well-formed meta file whose checksum holds.
pub fn decode(bytes: &[u8]) -> Option<Meta> {
    let (body, crc) = bytes.split_at(bytes.len().checked_sub(4)?);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return None;
    }
    let mut r = Reader(body);
    if r.take(4)? != MAGIC {
        return None;
    }
    let key: HashBinary = r.take(16)?.try_into().ok()?;
    let url = String::from_utf8(r.bytes32()?.to_vec()).ok()?;
    let count = u16::from_le_bytes(r.take(2)?.try_into().ok()?);
    let mut tags = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let len = u16::from_le_bytes(r.take(2)?.try_into().ok()?);
        tags.push(String::from_utf8(r.take(usize::from(len))?.to_vec()).ok()?);
    }
    let internal = r.bytes32()?.to_vec();
    let header = r.bytes32()?.to_vec();
    let body_len = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
    r.0.is_empty().then_some(Meta {
        key,
        url,
        tags,
        internal,
        header,
        body_len,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn bytes32(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
        self.take(usize::try_from(len).ok()?)
    }
}

/// Temporary file names unique across the processes sharing a directory (an old and a
/// new process during a graceful upgrade) and the writes of one process.
fn temp_path(target: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp.{}.{n}", std::process::id()));
    target.with_file_name(name)
}

/// Writes `bytes` to `target` atomically and durably: temp file, fsync, rename.
fn write_atomic(target: &Path, chunks: &[&[u8]]) -> io::Result<()> {
    let temp = temp_path(target);
    let result = (|| {
        let mut file = fs::File::create(&temp)?;
        for chunk in chunks {
            file.write_all(chunk)?;
        }
        file.sync_all()?;
        fs::rename(&temp, target)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Stores one entry: the body, then the meta (the commit point), then the directory.
pub fn write_entry(dir: &Path, meta: &Meta, body: &[bytes::Bytes]) -> io::Result<()> {
    let (meta_path, body_path) = paths(dir, &meta.key);
    let sub = meta_path.parent().unwrap_or(dir);
    if !sub.is_dir() {
        fs::create_dir_all(sub)?;
    }
    let chunks: Vec<&[u8]> = body.iter().map(|b| b.as_ref()).collect();
    write_atomic(&body_path, &chunks)?;
    write_atomic(&meta_path, &[&encode(meta)])?;
    fs::File::open(sub)?.sync_all()
}

/// Replaces only the meta (a 304 refresh, a soft purge); the body stays.
pub fn rewrite_meta(dir: &Path, meta: &Meta) -> io::Result<()> {
    let (meta_path, _) = paths(dir, &meta.key);
    write_atomic(&meta_path, &[&encode(meta)])?;
    fs::File::open(meta_path.parent().unwrap_or(dir))?.sync_all()
}

pub fn remove_entry(dir: &Path, key: &HashBinary) {
    let (meta_path, body_path) = paths(dir, key);
    // Meta first: without it the entry no longer exists, whatever happens next.
    let _ = fs::remove_file(meta_path);
    let _ = fs::remove_file(body_path);
}

/// Reads and checks one meta file; `None` (and the entry removed) when it is damaged or
/// its body is not the recorded length.
pub fn read_entry(dir: &Path, key: &HashBinary) -> Option<Meta> {
    let (meta_path, body_path) = paths(dir, key);
    let meta = fs::read(&meta_path)
        .ok()
        .and_then(|b| decode(&b))
        .filter(|m| m.key == *key);
    let body_ok = |m: &Meta| fs::metadata(&body_path).is_ok_and(|b| b.len() == m.body_len);
    match meta {
        Some(m) if body_ok(&m) => Some(m),
        _ => {
            remove_entry(dir, key);
            None
        }
    }
}

/// Every whole entry under `dir`; damaged ones, orphan bodies and leftover temporary
/// files are removed. `visit` gets each entry's meta.
pub fn scan(dir: &Path, mut visit: impl FnMut(Meta)) -> io::Result<ScanReport> {
    let mut report = ScanReport::default();
    for sub in fs::read_dir(dir)? {
        let sub = sub?.path();
        if !sub.is_dir() {
            continue;
        }
        for file in fs::read_dir(&sub)? {
            let path = file?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
            if name.contains(".tmp.") {
                let _ = fs::remove_file(&path);
                report.removed += 1;
                continue;
            }
            let Some(stem) = name.strip_suffix(".meta") else {
                if let Some(stem) = name.strip_suffix(".body") {
                    if !sub.join(format!("{stem}.meta")).exists() {
                        let _ = fs::remove_file(&path);
                        report.removed += 1;
                    }
                }
                continue;
            };
            let key: Option<HashBinary> = hex::decode(stem).ok().and_then(|k| k.try_into().ok());
            match key.and_then(|k| read_entry(dir, &k)) {
                Some(meta) => {
                    report.entries += 1;
                    visit(meta);
                }
                None => {
                    let _ = fs::remove_file(&path);
                    report.removed += 1;
                }
            }
        }
    }
    Ok(report)
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanReport {
    pub entries: usize,
    pub removed: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(key: u8) -> Meta {
        Meta {
            key: [key; 16],
            url: "a.test/x?y=1".into(),
            tags: vec!["t1".into(), "t2".into()],
            internal: vec![1, 2, 3],
            header: vec![4, 5],
            body_len: 5,
        }
    }

    #[test]
    fn meta_round_trips_and_damage_is_refused() {
        let m = meta(1);
        let bytes = encode(&m);
        assert_eq!(decode(&bytes), Some(m));
        for cut in [0, 1, 10, bytes.len() - 1] {
            assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[20] ^= 1;
        assert_eq!(decode(&flipped), None);
    }

    #[test]
    fn entries_survive_and_damaged_ones_are_removed_by_the_scan() {
        let dir = tempfile::tempdir().unwrap();
        let body = [bytes::Bytes::from_static(b"hel"), bytes::Bytes::from_static(b"lo")];
        for k in 1..=3 {
            write_entry(dir.path(), &meta(k), &body).unwrap();
        }
        // 2: a truncated body; 3: a damaged meta; plus an orphan body and a temp file.
        let (_, body2) = paths(dir.path(), &[2; 16]);
        fs::OpenOptions::new()
            .write(true)
            .open(&body2)
            .unwrap()
            .set_len(3)
            .unwrap();
        let (meta3, _) = paths(dir.path(), &[3; 16]);
        fs::write(&meta3, b"GHC1 garbage").unwrap();
        let (_, orphan) = paths(dir.path(), &[4; 16]);
        fs::create_dir_all(orphan.parent().unwrap()).unwrap();
        fs::write(&orphan, b"x").unwrap();
        fs::write(orphan.with_file_name("x.meta.tmp.1.2"), b"x").unwrap();

        let mut seen = Vec::new();
        let report = scan(dir.path(), |m| seen.push(m.key[0])).unwrap();
        assert_eq!(seen, [1]);
        assert_eq!(report.entries, 1);
        assert!(!body2.exists() && !meta3.exists() && !orphan.exists());
        assert_eq!(read_entry(dir.path(), &[1; 16]).map(|m| m.body_len), Some(5));
    }
}
