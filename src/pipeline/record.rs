//! The parts of a Kafka message the envelopes use, and its JSON form: the `json` envelope, the
//! dead-letter record and the job envelopes' argument all write it. Text that is not UTF-8 is
//! carried as base64 with an `*_encoding: "base64"` marker, so it carries anything.

use base64::Engine;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

/// The parts of a Kafka message an envelope may use, borrowed from the consumer's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch, when the message has one.
    pub timestamp: Option<i64>,
    pub key: Option<&'a [u8]>,
    /// `None` for a tombstone.
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
}

impl Record<'_> {
    /// Appends the record as one JSON object; with `reason`, a dead-letter record.
    pub fn write_json(&self, reason: Option<&str>, out: &mut Vec<u8>) {
        serde_json::to_writer(
            &mut *out,
            &JsonRecord {
                record: self,
                reason,
            },
        )
        .expect("writing JSON to a Vec cannot fail");
    }
}

impl Record<'_> {
    /// Appends the headers as the `json` envelope carries them: a JSON array of `{"key", "value"}`
    /// objects, in order (a value that is not UTF-8 in base64 with `value_encoding`).
    pub fn write_headers_json(&self, out: &mut Vec<u8>) {
        let headers: Vec<Header<'_>> = self.headers.iter().map(|(k, v)| Header(k, *v)).collect();
        serde_json::to_writer(&mut *out, &headers).expect("writing JSON to a Vec cannot fail");
    }
}

struct JsonRecord<'a> {
    record: &'a Record<'a>,
    reason: Option<&'a str>,
}

/// Bytes as a JSON string when they are UTF-8, else base64 (and the caller adds the marker).
enum Text<'a> {
    Utf8(&'a str),
    Base64(String),
}

impl<'a> Text<'a> {
    fn of(bytes: &'a [u8]) -> Text<'a> {
        match std::str::from_utf8(bytes) {
            Ok(s) => Text::Utf8(s),
            Err(_) => Text::Base64(base64::engine::general_purpose::STANDARD.encode(bytes)),
        }
    }
}

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Text::Utf8(t) => s.serialize_str(t),
            Text::Base64(b) => s.serialize_str(b),
        }
    }
}

/// Writes `name` (null when absent) and, for binary bytes, `name_encoding: "base64"`.
fn entry_bytes<M: SerializeMap>(
    map: &mut M,
    name: &str,
    bytes: Option<&[u8]>,
) -> Result<(), M::Error> {
    match bytes.map(Text::of) {
        None => map.serialize_entry(name, &()),
        Some(text) => {
            map.serialize_entry(name, &text)?;
            if matches!(text, Text::Base64(_)) {
                map.serialize_entry(&format!("{name}_encoding"), "base64")?;
            }
            Ok(())
        }
    }
}

struct Header<'a>(&'a str, Option<&'a [u8]>);

impl Serialize for Header<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("key", self.0)?;
        entry_bytes(&mut map, "value", self.1)?;
        map.end()
    }
}

impl Serialize for JsonRecord<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.record;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("topic", r.topic)?;
        map.serialize_entry("partition", &r.partition)?;
        map.serialize_entry("offset", &r.offset)?;
        map.serialize_entry("timestamp", &r.timestamp)?;
        entry_bytes(&mut map, "key", r.key)?;
        let headers: Vec<Header<'_>> = r.headers.iter().map(|(k, v)| Header(k, *v)).collect();
        map.serialize_entry("headers", &headers)?;
        entry_bytes(&mut map, "value", r.value)?;
        if let Some(reason) = self.reason {
            map.serialize_entry("reason", reason)?;
        }
        map.end()
    }
}
