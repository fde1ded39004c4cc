//! Symfony Messenger's Redis transport entry.
//!
//! Messenger 5.4's `RedisSender` with the JSON serializer (`messenger.transport.symfony_serializer`)
//! writes one stream entry per message, `XADD <stream> * message <value>`, where the value is
//!
//! ```text
//! serialize(json_encode(['body' => $body, 'headers' => ['type' => $class, 'Content-Type' => 'application/json']]))
//! ```
//!
//! `$body` is Symfony's Serializer's JSON of the message, `json_encode` with no flags: `/` written
//! `\/`, every character outside ASCII as `\uXXXX` (UTF-16, lower-case hex), so the body is
//! ASCII. The outer `json_encode` escapes the body once more as a JSON string, and phpredis, which
//! the transport sets to `Redis::SERIALIZER_PHP`, stores PHP's `serialize()` of that text:
//! `s:<bytes>:"<text>";`. The receiver undoes the three layers and denormalizes the body into
//! `$class`.
//!
//! The message here is the `json` envelope's record: its keys and values, in its order, are what the
//! stock sender writes for a message class whose public properties are the record's keys (the
//! `*_encoding` markers typed and without a default, so that they are left out when absent; see
//! tests/workers/symfony/src/KafkaRecord.php). The entry id is the stream's own (`*`), as Messenger's
//! sender uses it; no header carries anything of the message's coordinates, which are in the body.

use super::write_record;
use crate::pipeline::batch::write_part;
use crate::pipeline::record::Record;

/// The one field of a Messenger entry: the receiver reads `message` and ignores any other.
pub const SYMFONY_FIELD: &str = "message";

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `record`'s entry as the stream writes take it ([`crate::pipeline::stream_entry`]): the
/// field name `message` and its value ([`symfony`]), each one part
/// ([`crate::pipeline::batch::write_part`]: four little-endian length bytes, then the bytes).
pub fn symfony_entry(class: &str, record: &Record<'_>, out: &mut Vec<u8>) {
    write_part(out, SYMFONY_FIELD.as_bytes());
    // The value is written in place, its length filled in after.
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    symfony(class, record, out);
    let len = u32::try_from(out.len() - at - 4).expect("an entry under 4 GiB");
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// Appends the value of the `message` field of the entry that sends `record` as a message of the
/// PHP class `class` (e.g. `App\Message\KafkaRecord`, without a leading `\`).
pub fn symfony(class: &str, record: &Record<'_>, out: &mut Vec<u8>) {
    let mut json = Vec::with_capacity(160 + record.value.map_or(0, <[u8]>::len));
    write_record(record, &mut json);
    let json = std::str::from_utf8(&json).expect("serde_json writes UTF-8");

    let mut class_json = Vec::with_capacity(class.len() + 8);
    write_php_json_string(class, &mut class_json);

    let mut body_len = 0;
    write_body_twice_escaped(json, |bytes| body_len += bytes.len());
    let text_len = OPEN.len() + body_len + HEADERS.len() + class_json.len() + CONTENT_TYPE.len();

    out.reserve(text_len + 16);
    out.extend_from_slice(b"s:");
    out.extend_from_slice(text_len.to_string().as_bytes());
    out.extend_from_slice(b":\"");
    out.extend_from_slice(OPEN);
    write_body_twice_escaped(json, |bytes| out.extend_from_slice(bytes));
    out.extend_from_slice(HEADERS);
    out.extend_from_slice(&class_json);
    out.extend_from_slice(CONTENT_TYPE);
    out.extend_from_slice(b"\";");
}

const OPEN: &[u8] = br#"{"body":""#;
const HEADERS: &[u8] = br#"","headers":{"type":"#;
const CONTENT_TYPE: &[u8] = br#","Content-Type":"application\/json"}}"#;

/// Emits serde_json's compact `json` as PHP's `json_encode` (no flags) writes the same value, and
/// that text escaped again as a JSON string's contents, in one pass. serde_json already escapes
/// `"`, `\` and the C0 controls as PHP does (`\n`, `\u001f`…, lower-case hex), and it writes no `/`
/// or non-ASCII outside strings; so the first encoding only adds `\/` for `/` and `\uXXXX` for each
/// UTF-16 unit of a non-ASCII character, and the second escapes the result's `"`, `\` and `/`.
fn write_body_twice_escaped(json: &str, mut emit: impl FnMut(&[u8])) {
    let bytes = json.as_bytes();
    let mut start = 0;
    for (i, c) in json.char_indices() {
        let escaped: &[u8] = match c {
            '"' => br#"\""#,
            '\\' => br"\\",
            '/' => br"\\\/",
            c if c.is_ascii() => continue,
            c => {
                emit(&bytes[start..i]);
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    emit(br"\\u");
                    emit(&hex4(*unit));
                }
                start = i + c.len_utf8();
                continue;
            }
        };
        emit(&bytes[start..i]);
        emit(escaped);
        start = i + 1;
    }
    emit(&bytes[start..]);
}

/// The four lower-case hex digits of `unit`.
fn hex4(unit: u16) -> [u8; 4] {
    [12, 8, 4, 0].map(|shift| HEX[usize::from((unit >> shift) & 0xf)])
}

/// PHP's `json_encode($s)` with no flags, for a string.
fn write_php_json_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(br#"\""#),
            '\\' => out.extend_from_slice(br"\\"),
            '/' => out.extend_from_slice(br"\/"),
            '\u{8}' => out.extend_from_slice(br"\b"),
            '\u{c}' => out.extend_from_slice(br"\f"),
            '\n' => out.extend_from_slice(br"\n"),
            '\r' => out.extend_from_slice(br"\r"),
            '\t' => out.extend_from_slice(br"\t"),
            c if c.is_ascii_control() && c != '\u{7f}' => {
                out.extend_from_slice(br"\u");
                out.extend_from_slice(&hex4(c as u16));
            }
            c if c.is_ascii() => out.push(c as u8),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.extend_from_slice(br"\u");
                    out.extend_from_slice(&hex4(*unit));
                }
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLASS: &str = r"App\Message\KafkaRecord";
    // The records of the other job envelopes' tests, which reference_records.jsonl holds too.
    use crate::pipeline::jobs::tests::records;

    fn entry(class: &str, record: &Record<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        symfony(class, record, &mut out);
        out
    }

    /// What Messenger 5.4's own sender stored for these records (`php client_send.php --print <
    /// reference_records.jsonl` in tests/workers/symfony, against redis-server 7.0, phpredis 5.3.7).
    #[test]
    fn matches_the_stock_sender_byte_for_byte() {
        let reference = include_str!("../../../tests/workers/symfony/reference_entries.txt");
        let expected: Vec<&str> = reference.lines().collect();
        assert_eq!(expected.len(), records().len());
        for (record, expected) in records().iter().zip(expected) {
            assert_eq!(
                String::from_utf8(entry(CLASS, record)).unwrap(),
                expected,
                "offset {}",
                record.offset
            );
        }
    }

    /// Undoes phpredis's `serialize()` and the transport's `json_encode`: the body and the headers.
    fn unwrap(entry: &[u8]) -> (String, serde_json::Value) {
        let text = std::str::from_utf8(entry).unwrap();
        let (len, rest) = text
            .strip_prefix("s:")
            .and_then(|t| t.split_once(':'))
            .unwrap();
        let inner = rest
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix("\";"))
            .unwrap();
        assert_eq!(inner.len(), len.parse::<usize>().unwrap());
        let outer: serde_json::Value = serde_json::from_str(inner).unwrap();
        (
            outer["body"].as_str().unwrap().to_string(),
            outer["headers"].clone(),
        )
    }

    #[test]
    fn body_is_the_json_record_and_ascii() {
        for record in records() {
            let (body, headers) = unwrap(&entry(CLASS, &record));
            assert!(body.is_ascii(), "{body}");
            let mut json = Vec::new();
            record.write_json(None, &mut json);
            let expected: serde_json::Value = serde_json::from_slice(&json).unwrap();
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&body).unwrap(),
                expected
            );
            assert_eq!(
                headers,
                serde_json::json!({"type": CLASS, "Content-Type": "application/json"})
            );
        }
    }

    #[test]
    fn entry_is_the_message_field_as_parts() {
        let record = &records()[1];
        let mut out = Vec::new();
        symfony_entry(CLASS, record, &mut out);
        let parts: Vec<&[u8]> = crate::pipeline::batch::parts(&out).collect();
        assert_eq!(parts, [SYMFONY_FIELD.as_bytes(), &entry(CLASS, record)]);
    }

    #[test]
    fn class_is_escaped_as_php_does() {
        let record = &records()[0];
        let text = String::from_utf8(entry("Shop\\Orders_2\\Placed", record)).unwrap();
        assert!(
            text.ends_with(r#"","headers":{"type":"Shop\\Orders_2\\Placed","Content-Type":"application\/json"}}";"#),
            "{text}"
        );
        // As `php -r 'echo json_encode("a/\"\x01\x7f\xc3\xa9\xf0\x9f\x98\x80\n\x08\x0c\x1f");'`.
        let mut out = Vec::new();
        write_php_json_string("a/\"\u{1}\u{7f}é😀\n\u{8}\u{c}\u{1f}", &mut out);
        assert_eq!(
            out,
            "\"a\\/\\\"\\u0001\u{7f}\\u00e9\\ud83d\\ude00\\n\\b\\f\\u001f\"".as_bytes()
        );
    }
}
