//! JSON strings and numbers written straight into an element's buffer, byte for byte as
//! `serde_json` writes them (compact; `"`, `\` and control characters escaped, control characters
//! other than `\b \t \n \f \r` as lower-case `\u00xx`; nothing else escaped).
//!
//! Hand-written because this is the job envelopes' and the `json` envelope's inner loop: a
//! message's value is almost always plain text, and checking a whole string at once (a loop the
//! compiler vectorises) then copying it in one piece costs a fraction of `serde_json`'s byte-by-byte
//! escaping through its `Serializer` (the largest item of the Laravel envelope's profile,
//! docs/benchmarks.md). The record's tests hold the output against `serde_json`'s.

/// For each byte, what follows the backslash when it must be escaped; 0 when it is written as is.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// Appends `s` as a JSON string, quotes included.
pub fn write_str(s: &str, out: &mut Vec<u8>) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    write_str_contents(s, out);
    out.push(b'"');
}

/// Appends `s` as the inside of a JSON string: escaped, without the quotes.
pub fn write_str_contents(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    if !needs_escaping(bytes) {
        out.extend_from_slice(bytes);
    } else {
        write_escaped(bytes, out);
    }
}

/// Whether any byte of `bytes` must be escaped. No early exit, so that the loop is vectorised:
/// for the short strings of a message this is faster than stopping at the first special byte.
fn needs_escaping(bytes: &[u8]) -> bool {
    bytes.iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    })
}

fn write_escaped(bytes: &[u8], out: &mut Vec<u8>) {
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = ESCAPE[b as usize];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        if escape == b'u' {
            write_u00(b, out);
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends `\u00xx` for the byte `b` (lower-case hex), as `serde_json` and Go write a control
/// character that has no short escape.
pub fn write_u00(b: u8, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(&[
        b'\\',
        b'u',
        b'0',
        b'0',
        HEX[(b >> 4) as usize],
        HEX[(b & 0xf) as usize],
    ]);
}

/// A string that goes into every element of a topic (a job's class, its queue), quoted and escaped
/// once rather than per message: PHP class names carry backslashes, which take the slow path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quoted(Vec<u8>);

impl Quoted {
    pub fn new(s: &str) -> Quoted {
        let mut quoted = Vec::with_capacity(s.len() + 2);
        write_str(s, &mut quoted);
        Quoted(quoted)
    }

    /// Appends the JSON string, quotes included.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}

/// Appends `bytes` in standard, padded base64, written straight into the buffer: inside a JSON
/// string it needs no escaping.
pub fn write_base64(bytes: &[u8], out: &mut Vec<u8>) {
    use base64::Engine;
    let start = out.len();
    let len = base64::encoded_len(bytes.len(), true).expect("a record fits in memory as base64");
    out.resize(start + len, 0);
    base64::engine::general_purpose::STANDARD
        .encode_slice(bytes, &mut out[start..])
        .expect("the buffer has the base64 length");
}

/// Appends an integer in decimal.
pub fn write_int(n: impl itoa::Integer, out: &mut Vec<u8>) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde(s: &str) -> Vec<u8> {
        serde_json::to_vec(s).unwrap()
    }

    fn ours(s: &str) -> Vec<u8> {
        let mut out = b"before ".to_vec();
        write_str(s, &mut out);
        out.drain(..7);
        out
    }

    #[test]
    fn every_ascii_byte_alone_and_in_text_as_serde_json_writes_it() {
        for b in 0u8..0x80 {
            let c = char::from(b);
            for s in [c.to_string(), format!("ab{c}cd{c}"), format!("{c}{c}x")] {
                assert_eq!(ours(&s), serde(&s), "byte {b:#04x} in {s:?}");
            }
        }
    }

    #[test]
    fn text_beyond_ascii_is_written_as_is() {
        for s in [
            "",
            "plain",
            "héllo wörld",
            "日本語のテキスト",
            "emoji 🎉 and \u{2028} \u{2029}",
            "<html>&amp;</html>",
            "tab\tand\nnew\r\n\"quoted\" \\back\\ \u{7f} \u{1f} \u{0}",
        ] {
            assert_eq!(ours(s), serde(s), "{s:?}");
        }
        // Long strings: the whole-string check, then one copy; an escape at the very end.
        let long = "x".repeat(10_000) + "\"";
        assert_eq!(ours(&long), serde(&long));
    }

    #[test]
    fn a_quoted_string_is_the_string_written() {
        for s in [r"App\Jobs\Record@handle", "tasks.record", ""] {
            let mut out = Vec::new();
            Quoted::new(s).write(&mut out);
            assert_eq!(out, serde(s));
        }
    }

    #[test]
    fn integers_as_serde_json_writes_them() {
        for n in [0i64, -1, 7, i64::MIN, i64::MAX, 1_700_000_000_000] {
            let mut out = Vec::new();
            write_int(n, &mut out);
            assert_eq!(out, serde_json::to_vec(&n).unwrap());
        }
        let mut out = Vec::new();
        write_int(i32::MIN, &mut out);
        assert_eq!(out, b"-2147483648");
    }
}
