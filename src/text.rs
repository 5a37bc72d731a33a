//! Text forms written on every request (the client address in `X-Forwarded-For`, the
//! access log and rate-limit keys; the access log's timestamp), built in stack buffers.
//! `Ipv4Addr`'s `Display` goes through the formatting machinery (padding, width) at
//! ≈ 1,100 instructions an address, and a timestamp's at ≈ 2,700; these write the same
//! text for a tenth of that.

use std::fmt::Write as _;
use std::net::IpAddr;

/// Longest text of an IP address (`ffff:ffff:…` with an embedded IPv4).
const ADDR_MAX: usize = 47;

/// An address as text, in a stack buffer.
pub struct AddrText {
    buf: [u8; ADDR_MAX],
    len: usize,
}

impl AddrText {
    /// The same text as `ip.to_string()`.
    pub fn ip(ip: IpAddr) -> Self {
        let mut text = AddrText {
            buf: [0; ADDR_MAX],
            len: 0,
        };
        match ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push(b'.');
                    }
                    text.push_decimal(u32::from(octet));
                }
            }
            // Rare at the edge today, and its compressed form has rules: the standard one.
            IpAddr::V6(_) => {
                let _ = write!(text, "{ip}");
            }
        }
        text
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits, dots, colons, brackets and hex digits are ever written.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The text's bytes, without `as_str`'s UTF-8 check.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn push(&mut self, byte: u8) {
        if self.len < ADDR_MAX {
            self.buf[self.len] = byte;
            self.len += 1;
        }
    }

    fn push_decimal(&mut self, mut n: u32) {
        let mut digits = [0u8; 10];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for &d in &digits[at..] {
            self.push(d);
        }
    }
}

impl std::fmt::Write for AddrText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > ADDR_MAX {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// RFC 3339 in UTC as `jiff::Timestamp` displays it (`2026-11-30T15:20:01.123456789Z`,
/// trailing zeros of the fraction dropped), with the part up to the seconds made once per
/// second per thread.
pub struct TimestampText {
    buf: [u8; 48],
    len: usize,
}

thread_local! {
    /// The last second formatted on this thread and its text up to the seconds.
    static SECOND: std::cell::Cell<(i64, [u8; 32], usize)> = const { std::cell::Cell::new((i64::MIN, [0; 32], 0)) };
}

impl TimestampText {
    pub fn new(ts: jiff::Timestamp) -> Self {
        let (second, nanos) = (ts.as_second(), ts.subsec_nanosecond());
        // Before 1970 the fraction counts backwards: rare enough for the standard path.
        if nanos < 0 || second < 0 {
            return Self::from_display(ts);
        }
        let (cached, mut prefix, mut prefix_len) = SECOND.get();
        if cached != second {
            let Ok(whole) = jiff::Timestamp::from_second(second) else {
                return Self::from_display(ts);
            };
            let text = whole.to_string();
            // `…:SS` without the `Z`.
            let Some(head) = text.strip_suffix('Z').filter(|h| h.len() <= prefix.len()) else {
                return Self::from_display(ts);
            };
            prefix[..head.len()].copy_from_slice(head.as_bytes());
            prefix_len = head.len();
            SECOND.set((second, prefix, prefix_len));
        }
        let mut out = TimestampText { buf: [0; 48], len: 0 };
        out.buf[..prefix_len].copy_from_slice(&prefix[..prefix_len]);
        out.len = prefix_len;
        if nanos > 0 {
            let mut digits = [b'0'; 9];
            let mut n = nanos as u32;
            for d in digits.iter_mut().rev() {
                *d = b'0' + (n % 10) as u8;
                n /= 10;
            }
            let significant = 9 - digits.iter().rev().take_while(|&&d| d == b'0').count();
            out.buf[out.len] = b'.';
            out.buf[out.len + 1..out.len + 1 + significant].copy_from_slice(&digits[..significant]);
            out.len += 1 + significant;
        }
        out.buf[out.len] = b'Z';
        out.len += 1;
        out
    }

    fn from_display(ts: jiff::Timestamp) -> Self {
        let text = ts.to_string();
        let mut out = TimestampText { buf: [0; 48], len: 0 };
        let len = text.len().min(out.buf.len());
        out.buf[..len].copy_from_slice(&text.as_bytes()[..len]);
        out.len = len;
        out
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The text's bytes (ASCII), without `as_str`'s UTF-8 check.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn addresses_read_as_their_display() {
        let ips: Vec<IpAddr> = vec![
            Ipv4Addr::new(0, 0, 0, 0).into(),
            Ipv4Addr::new(127, 0, 0, 1).into(),
            Ipv4Addr::new(255, 255, 255, 255).into(),
            Ipv4Addr::new(10, 20, 3, 199).into(),
            Ipv6Addr::LOCALHOST.into(),
            "2001:db8::ff00:42:8329".parse().unwrap(),
            "::ffff:192.0.2.128".parse().unwrap(),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap(),
        ];
        for ip in ips {
            assert_eq!(AddrText::ip(ip).as_str(), ip.to_string());
            assert_eq!(AddrText::ip(ip).as_bytes(), ip.to_string().as_bytes());
        }
    }

    #[test]
    fn timestamps_read_as_jiffs_display() {
        let nanos = [0, 1, 10, 120_000_000, 123_456_789, 999_999_999, 500_000, 100];
        let seconds = [0, 1, 1_700_000_000, 1_795_000_000, 4_102_444_799];
        for s in seconds {
            for n in nanos {
                let ts = jiff::Timestamp::new(s, n).unwrap();
                assert_eq!(TimestampText::new(ts).as_str(), ts.to_string(), "{s}.{n}");
            }
        }
        // The cached second is replaced when the second changes, on the same thread.
        let a = jiff::Timestamp::new(1_700_000_000, 5).unwrap();
        let b = jiff::Timestamp::new(1_700_000_001, 5).unwrap();
        assert_eq!(TimestampText::new(a).as_str(), a.to_string());
        assert_eq!(TimestampText::new(b).as_str(), b.to_string());
        let before_1970 = jiff::Timestamp::new(-5, -7).unwrap();
        assert_eq!(TimestampText::new(before_1970).as_str(), before_1970.to_string());
    }
}
