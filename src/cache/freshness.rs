//! The numbers of RFC 9111 §4.2: a stored response's freshness lifetime and its age on
//! arrival, read from the origin's `Age`, `Date`, `Expires` and `Last-Modified`.
//!
//! Every time the origin writes is compared only with another time the origin wrote
//! (`Expires − Date`, `Date − Last-Modified`), never with the gateway's clock, so an
//! origin whose clock is far off gets the same freshness as one that is right.

use http::header::{AGE, DATE, EXPIRES, LAST_MODIFIED, VIA};
use http::HeaderMap;
use std::time::{Duration, SystemTime};

/// The `Age` field (RFC 9111 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Age {
    Absent,
    Seconds(u64),
    /// Present but not a non-negative integer: the response counts as stale.
    Invalid,
}

/// RFC 9111 §1.2.2: a delta-seconds too large to represent is sent as 2^31.
const DELTA_SECONDS_MAX: u64 = 1 << 31;

/// The first member of the first `Age` line ("a cache encountering a list-based Age
/// field value SHOULD use the first member"); digits only, as delta-seconds are.
pub fn age(headers: &HeaderMap) -> Age {
    let Some(line) = headers.get(AGE) else {
        return Age::Absent;
    };
    let Ok(line) = line.to_str() else {
        return Age::Invalid;
    };
    let first = line.split(',').next().unwrap_or("").trim();
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
        return Age::Invalid;
    }
    // All digits: the only parse failure left is overflow, which saturates.
    Age::Seconds(
        first
            .parse::<u64>()
            .map_or(DELTA_SECONDS_MAX, |s| s.min(DELTA_SECONDS_MAX)),
    )
}

/// An HTTP-date in any of its three forms (IMF-fixdate, RFC 850, asctime; RFC 9110
/// §5.6.7), letters in any case ("recipients … SHOULD" be lenient with case).
pub fn http_date(value: &str) -> Option<SystemTime> {
    let value = value.trim();
    if let Ok(t) = httpdate::parse_http_date(value) {
        return Some(t);
    }
    // Day and month names as httpdate expects them: `Thu`, `Jan`, `GMT`.
    let mut canonical = String::with_capacity(value.len());
    let mut word_start = true;
    for c in value.chars() {
        if c.is_ascii_alphabetic() {
            canonical.push(if word_start {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            });
            word_start = false;
        } else {
            canonical.push(c);
            word_start = true;
        }
    }
    let canonical = canonical.replace("Gmt", "GMT");
    httpdate::parse_http_date(&canonical).ok()
}

fn date_field(headers: &HeaderMap, name: &http::HeaderName) -> Option<SystemTime> {
    let mut lines = headers.get_all(name).iter();
    let first = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    http_date(first.to_str().ok()?)
}

/// The lifetime `Expires` gives (RFC 9111 §4.2.1: `Expires − Date`, Date being the
/// time of arrival when the origin sent none). `None` without Expires; zero when it is
/// invalid, repeated, or not after Date ("an invalid date … represents a time in the past").
pub fn expires_lifetime(headers: &HeaderMap, arrived: SystemTime) -> Option<Duration> {
    headers.get(EXPIRES)?;
    let Some(expires) = date_field(headers, &EXPIRES) else {
        return Some(Duration::ZERO);
    };
    let date = date_field(headers, &DATE).unwrap_or(arrived);
    Some(expires.duration_since(date).unwrap_or(Duration::ZERO))
}

/// The heuristic lifetime (RFC 9111 §4.2.2): a tenth of the time since `Last-Modified`,
/// measured on the origin's clock (`Date`), at most `max`. `None` without a usable
/// Last-Modified.
pub fn heuristic_lifetime(headers: &HeaderMap, arrived: SystemTime, max: Duration) -> Option<Duration> {
    let modified = date_field(headers, &LAST_MODIFIED)?;
    let date = date_field(headers, &DATE).unwrap_or(arrived);
    let since = date.duration_since(modified).ok()?;
    Some((since / 10).min(max))
}

/// How old the response was when it arrived (RFC 9111 §4.2.3 `corrected_initial_age`).
/// `response_delay` is the time between sending the request and receiving the answer.
///
/// The apparent age (`arrival − Date`) depends on the origin's clock being right; the
/// RFC lets a cache rely on `Age` alone when every hop is HTTP/1.1 or later, so the
/// apparent age counts only when `Via` shows an HTTP/1.0 hop (which may not have added
/// Age). `None` when Age is invalid: the caller treats the response as stale.
pub fn initial_age(headers: &HeaderMap, arrived: SystemTime, response_delay: Duration) -> Option<Duration> {
    let age = match age(headers) {
        Age::Absent => Duration::ZERO,
        Age::Seconds(s) => Duration::from_secs(s),
        Age::Invalid => return None,
    };
    let corrected_age = age.saturating_add(response_delay);
    if !via_http10(headers) {
        return Some(corrected_age);
    }
    let apparent = date_field(headers, &DATE)
        .and_then(|date| arrived.duration_since(date).ok())
        .unwrap_or(Duration::ZERO);
    Some(apparent.max(corrected_age))
}

/// Does `Via` name an HTTP/1.0 hop (`1.0 proxy`, `HTTP/1.0 proxy`)?
fn via_http10(headers: &HeaderMap) -> bool {
    headers
        .get_all(VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.split_whitespace().next())
        .any(|protocol| {
            let version = protocol.rsplit('/').next().unwrap_or(protocol);
            version == "1.0" || version == "0.9"
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn age_takes_the_first_member_and_refuses_what_is_not_an_integer() {
        assert_eq!(age(&headers(&[])), Age::Absent);
        assert_eq!(age(&headers(&[("age", "30")])), Age::Seconds(30));
        assert_eq!(age(&headers(&[("age", "7200, 0")])), Age::Seconds(7200));
        assert_eq!(age(&headers(&[("age", "5"), ("age", "99")])), Age::Seconds(5));
        assert_eq!(
            age(&headers(&[("age", "99999999999999999999999")])),
            Age::Seconds(1 << 31)
        );
        for bad in ["1.5", "-1", "", "abc", "+3", "0x10"] {
            assert_eq!(age(&headers(&[("age", bad)])), Age::Invalid, "{bad:?}");
        }
    }

    #[test]
    fn http_dates_in_every_form_and_case() {
        let t = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "sun, 06 nov 1994 08:49:37 gmt",
            "SUNDAY, 06-NOV-94 08:49:37 GMT",
        ] {
            assert_eq!(http_date(form), Some(t), "{form}");
        }
        assert_eq!(http_date("0"), None);
        assert_eq!(http_date("tomorrow"), None);
    }

    #[test]
    fn expires_counts_from_the_origins_date_not_the_local_clock() {
        let now = SystemTime::now();
        // An origin one day behind, one day ahead: the same 60 s.
        for skew in [-86_400i64, 0, 86_400] {
            let origin_now = if skew < 0 {
                now - Duration::from_secs(skew.unsigned_abs())
            } else {
                now + Duration::from_secs(skew as u64)
            };
            let h = headers(&[
                ("date", &httpdate::fmt_http_date(origin_now)),
                (
                    "expires",
                    &httpdate::fmt_http_date(origin_now + Duration::from_secs(60)),
                ),
            ]);
            assert_eq!(expires_lifetime(&h, now), Some(Duration::from_secs(60)), "skew {skew}");
            assert_eq!(
                initial_age(&h, now, Duration::ZERO),
                Some(Duration::ZERO),
                "skew {skew}"
            );
        }
        assert_eq!(
            expires_lifetime(&headers(&[("expires", "0")]), now),
            Some(Duration::ZERO)
        );
        let two = headers(&[
            ("expires", "Sun, 06 Nov 2094 08:49:37 GMT"),
            ("expires", "Sun, 06 Nov 2094 08:49:37 GMT"),
        ]);
        assert_eq!(expires_lifetime(&two, now), Some(Duration::ZERO));
        assert_eq!(expires_lifetime(&headers(&[]), now), None);
    }

    #[test]
    fn initial_age_adds_the_round_trip_and_trusts_the_date_only_through_http10() {
        let now = SystemTime::now();
        let h = headers(&[("age", "10")]);
        assert_eq!(
            initial_age(&h, now, Duration::from_secs(2)),
            Some(Duration::from_secs(12))
        );
        let old_date = httpdate::fmt_http_date(now - Duration::from_secs(100));
        let direct = headers(&[("age", "10"), ("date", &old_date)]);
        assert_eq!(initial_age(&direct, now, Duration::ZERO), Some(Duration::from_secs(10)));
        let via_10 = headers(&[("age", "10"), ("date", &old_date), ("via", "1.1 a, 1.0 b")]);
        let apparent = initial_age(&via_10, now, Duration::ZERO).unwrap().as_secs();
        assert!((99..=101).contains(&apparent), "{apparent}");
        assert_eq!(initial_age(&headers(&[("age", "1.5")]), now, Duration::ZERO), None);
    }

    #[test]
    fn heuristic_is_a_tenth_of_the_last_modified_interval_capped() {
        let now = SystemTime::now();
        let h = headers(&[
            ("date", &httpdate::fmt_http_date(now)),
            (
                "last-modified",
                &httpdate::fmt_http_date(now - Duration::from_secs(1000)),
            ),
        ]);
        assert_eq!(
            heuristic_lifetime(&h, now, Duration::from_secs(3600)),
            Some(Duration::from_secs(100))
        );
        assert_eq!(
            heuristic_lifetime(&h, now, Duration::from_secs(30)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(heuristic_lifetime(&headers(&[]), now, Duration::from_secs(30)), None);
    }
}
