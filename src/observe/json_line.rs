//! A JSON object written field by field into a byte buffer, for the access log.
//!
//! serde_json wrote the same line through its generic serializer and passed every key
//! through its escaping loop (≈ 5,400 instructions per line, 3,000 of them escaping). Here
//! keys are literals written as they are, numbers go through `itoa`, and only string values
//! are escaped, with the same escapes serde_json uses, so a line is byte-for-byte the text
//! serde_json wrote (a test holds the two to it).

/// A field's key as written after another field: `,"name":`. Made by [`key!`].
#[derive(Clone, Copy)]
pub struct Key(&'static str);

/// The [`Key`] of the field `name` (a literal that needs no escaping).
macro_rules! key {
    ($name:literal) => {
        $crate::observe::json_line::Key::new(concat!(",\"", $name, "\":"))
    };
}
pub(crate) use key;

impl Key {
    #[doc(hidden)]
    pub const fn new(text: &'static str) -> Key {
        Key(text)
    }
}

/// Writes one JSON object into `out`: `{`, then a field per call, then `}` from [`finish`].
///
/// [`finish`]: JsonLine::finish
pub struct JsonLine<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> JsonLine<'a> {
    pub fn start(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        JsonLine { out, first: true }
    }

    /// `"key":`, after a comma unless it is the first field: one copy of the key's text.
    fn key(&mut self, key: Key) -> &mut Vec<u8> {
        self.out.extend_from_slice(&key.0.as_bytes()[usize::from(self.first)..]);
        self.first = false;
        self.out
    }

    pub fn str(&mut self, key: Key, value: &str) {
        let out = self.key(key);
        write_str(out, value);
    }

    /// Text gatehouse wrote itself with nothing to escape (an address, a timestamp): copied
    /// without the scan, and without the UTF-8 check a `&str` of it would cost.
    pub fn own_text(&mut self, key: Key, text: &[u8]) {
        debug_assert!(!text.iter().any(|&b| needs_escape(b) || !b.is_ascii()));
        let out = self.key(key);
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text);
        out.push(b'"');
    }

    /// The value, or `null`.
    pub fn opt_str(&mut self, key: Key, value: Option<&str>) {
        match value {
            Some(value) => self.str(key, value),
            None => self.key(key).extend_from_slice(b"null"),
        }
    }

    pub fn uint(&mut self, key: Key, value: u64) {
        let mut digits = itoa::Buffer::new();
        let text = digits.format(value);
        self.key(key).extend_from_slice(text.as_bytes());
    }

    /// `micros` as milliseconds with up to three decimals: the text serde_json writes for
    /// the `f64` `micros / 1000.0` (`12.5`, `3.0`, `0.042`).
    pub fn millis(&mut self, key: Key, micros: u64) {
        let mut digits = itoa::Buffer::new();
        let out = self.key(key);
        out.extend_from_slice(digits.format(micros / 1000).as_bytes());
        out.push(b'.');
        let fraction = micros % 1000;
        if fraction == 0 {
            out.push(b'0');
            return;
        }
        let text = [
            b'0' + (fraction / 100) as u8,
            b'0' + (fraction / 10 % 10) as u8,
            b'0' + (fraction % 10) as u8,
        ];
        let used = 3 - text.iter().rev().take_while(|d| **d == b'0').count();
        out.extend_from_slice(&text[..used]);
    }

    /// A value written by `json` (which must write exactly one JSON value).
    pub fn raw(&mut self, key: Key, json: impl FnOnce(&mut Vec<u8>)) {
        json(self.key(key));
    }

    pub fn finish(self) {
        self.out.push(b'}');
    }
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether any byte of `bytes` needs escaping, eight bytes at a time: a byte-wise loop
/// (which the compiler does not vectorise here) cost ≈ 10 instructions a byte.
fn any_needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    /// A byte of `w` is below `n` (n ≤ 0x80): exact as a yes/no, for the whole word.
    fn has_below(w: u64, n: u8) -> u64 {
        w.wrapping_sub(ONES * u64::from(n)) & !w
    }
    fn has_byte(w: u64, b: u8) -> u64 {
        has_below(w ^ (ONES * u64::from(b)), 1)
    }
    let mut words = bytes.chunks_exact(8);
    let found = words.by_ref().fold(0, |found, word| {
        let mut w = [0; 8];
        w.copy_from_slice(word);
        let w = u64::from_ne_bytes(w);
        found | has_below(w, 0x20) | has_byte(w, b'"') | has_byte(w, b'\\')
    });
    found & HIGHS != 0 || words.remainder().iter().any(|&b| needs_escape(b))
}

/// `value` as a JSON string, escaped as serde_json escapes: `\"`, `\\`, `\b \f \n \r \t`,
/// other control bytes as `\u00XX`; everything else (UTF-8 included) as it is.
pub fn write_str(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    // Most values have nothing to escape and are copied whole.
    if !any_needs_escape(bytes) {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    out.push(b'"');
    let mut clean_from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        out.extend_from_slice(&bytes[clean_from..i]);
        clean_from = i + 1;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\x08' => out.extend_from_slice(b"\\b"),
            b'\x0c' => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
    }
    out.extend_from_slice(&bytes[clean_from..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::{any_needs_escape, needs_escape, write_str, JsonLine};

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut every_byte: String = (0u8..0x80).map(char::from).collect();
        every_byte.push_str("é ✓ \u{2028} 𝄞 / \u{7f}");
        for value in [every_byte.as_str(), "", "plain", "\"", "\\\\", "a\"b\\c\nd"] {
            let mut ours = Vec::new();
            write_str(&mut ours, value);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(value).unwrap(),
                "{value:?}"
            );
        }
    }

    #[test]
    fn the_word_at_a_time_scan_finds_every_byte_that_needs_escaping_wherever_it_is() {
        for len in 0..=17 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut bytes = vec![b'a'; len];
                    // Neighbours that are close to the limits, to catch borrows between bytes.
                    if at > 0 {
                        bytes[at - 1] = 0x20;
                    }
                    if at + 1 < len {
                        bytes[at + 1] = 0xff;
                    }
                    bytes[at] = b;
                    let expected = bytes.iter().any(|&b| needs_escape(b));
                    assert_eq!(any_needs_escape(&bytes), expected, "{bytes:?}");
                }
            }
        }
        assert!(!any_needs_escape("é ✓ \u{2028} 𝄞 / \u{7f} ÿ".as_bytes()));
    }

    #[test]
    fn own_text_is_written_as_a_string() {
        let mut out = Vec::new();
        let mut line = JsonLine::start(&mut out);
        line.own_text(key!("ip"), b"127.0.0.1");
        line.finish();
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"ip":"127.0.0.1"}"#);
    }

    #[test]
    fn milliseconds_read_as_serde_json_writes_the_f64() {
        for micros in [
            0u64, 1, 10, 42, 100, 120, 999, 1000, 1001, 1010, 1100, 3000, 12_500, 443_710, 98_765_432,
        ] {
            let mut ours = Vec::new();
            let mut line = JsonLine::start(&mut ours);
            line.millis(key!("d"), micros);
            line.finish();
            let theirs = serde_json::json!({ "d": micros as f64 / 1000.0 }).to_string();
            assert_eq!(String::from_utf8(ours).unwrap(), theirs, "{micros} µs");
        }
    }

    #[test]
    fn fields_are_separated_and_nulls_written() {
        let mut out = Vec::new();
        let mut line = JsonLine::start(&mut out);
        line.str(key!("a"), "x");
        line.opt_str(key!("b"), None);
        line.uint(key!("c"), 18_446_744_073_709_551_615);
        line.raw(key!("d"), |out| out.extend_from_slice(b"[1,2]"));
        line.finish();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":"x","b":null,"c":18446744073709551615,"d":[1,2]}"#
        );
    }
}
