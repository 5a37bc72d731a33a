//! Partial entries (`cache.range_miss: pass`): a range request on a miss is forwarded with
//! its `Range`, the origin's 206 is stored as it is, and later requests for a range it
//! covers are served from it (the stored part re-cut to the asked range). A request the
//! part does not cover (another range, or the whole object) goes to the origin, and its
//! answer replaces the part. With the default `whole`, Pingora fetches the whole object
//! on a miss and serves every range from it.

use http::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::RangeType;

/// `bytes first-last/complete` of a stored 206 (a known complete length only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub first: u64,
    pub last: u64,
    pub complete: u64,
}

pub fn stored_part(resp: &ResponseHeader) -> Option<Part> {
    let value = resp.headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let (range, complete) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let part = Part {
        first: first.trim().parse().ok()?,
        last: last.trim().parse().ok()?,
        complete: complete.trim().parse().ok()?,
    };
    (part.first <= part.last && part.last < part.complete).then_some(part)
}

/// The one byte range a request asks for, resolved against `complete` (`first..=last`);
/// `None` without a Range, with several ranges, or one that cannot be satisfied.
pub fn requested(req: &RequestHeader, complete: u64) -> Option<(u64, u64)> {
    let value = req.headers.get(RANGE)?.to_str().ok()?;
    let spec = value.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') || complete == 0 {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    let (first, last) = match (first.is_empty(), last.is_empty()) {
        (true, false) => {
            let suffix: u64 = last.parse().ok()?;
            (complete.saturating_sub(suffix), complete - 1)
        }
        (false, true) => (first.parse().ok()?, complete - 1),
        (false, false) => (first.parse().ok()?, last.parse::<u64>().ok()?.min(complete - 1)),
        (true, true) => return None,
    };
    (first <= last && first < complete).then_some((first, last))
}

/// May this stored part answer this request?
pub fn covers(part: Part, req: &RequestHeader) -> bool {
    requested(req, part.complete).is_some_and(|(first, last)| part.first <= first && last <= part.last)
}

/// For a hit on a stored part: rewrites the answer's `Content-Range`/`Content-Length` to
/// the asked range and says which bytes of the stored body to send.
pub fn serve_from_part(req: &RequestHeader, resp: &mut ResponseHeader) -> RangeType {
    let Some(part) = stored_part(resp) else {
        return RangeType::None;
    };
    let Some((first, last)) = requested(req, part.complete).filter(|_| covers(part, req)) else {
        return RangeType::None;
    };
    let content_range = format!("bytes {first}-{last}/{}", part.complete);
    if resp.insert_header(CONTENT_RANGE, content_range).is_err()
        || resp
            .insert_header(CONTENT_LENGTH, (last - first + 1).to_string())
            .is_err()
    {
        return RangeType::None;
    }
    let (Ok(start), Ok(end)) = (
        usize::try_from(first - part.first),
        usize::try_from(last - part.first + 1),
    ) else {
        return RangeType::None;
    };
    RangeType::Single(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(range: &str) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        r.insert_header("range", range).unwrap();
        r
    }

    #[test]
    fn ranges_resolve_and_parts_cover_what_they_hold() {
        assert_eq!(requested(&req("bytes=10-19"), 100), Some((10, 19)));
        assert_eq!(requested(&req("bytes=90-"), 100), Some((90, 99)));
        assert_eq!(requested(&req("bytes=-5"), 100), Some((95, 99)));
        assert_eq!(requested(&req("bytes=50-500"), 100), Some((50, 99)));
        assert_eq!(requested(&req("bytes=100-"), 100), None);
        assert_eq!(requested(&req("bytes=1-2,5-6"), 100), None);
        let part = Part {
            first: 10,
            last: 59,
            complete: 100,
        };
        assert!(covers(part, &req("bytes=10-59")) && covers(part, &req("bytes=20-29")));
        assert!(!covers(part, &req("bytes=0-19")) && !covers(part, &req("bytes=50-")));

        let mut stored = ResponseHeader::build(206, None).unwrap();
        stored.insert_header("content-range", "bytes 10-59/100").unwrap();
        stored.insert_header("content-length", "50").unwrap();
        assert_eq!(stored_part(&stored), Some(part));
        assert_eq!(
            serve_from_part(&req("bytes=20-29"), &mut stored),
            RangeType::Single(10..20)
        );
        assert_eq!(stored.headers["content-range"], "bytes 20-29/100");
        assert_eq!(stored.headers["content-length"], "10");
    }
}
