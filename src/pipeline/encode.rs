//! How a Kafka message becomes the bytes of one Redis list element.
//!
//! - `legacy`: the old tool's `{"attempts":1,"data":"<value>"}`, escaped the way Go's `encoding/json`
//!   escapes (including `<`, `>`, `&` as `\u003c`…), so workers see the old tool's exact bytes.
//! - `raw`: the value's bytes unchanged.
//! - `json`: topic, partition, offset, timestamp, key, headers and value. Text that is not UTF-8 is
//!   carried as base64 with an `*_encoding: "base64"` marker, so this envelope carries anything.
//!
//! A value the legacy envelope cannot carry (not UTF-8) is [`Unencodable`]; the lane sends it to the
//! dead-letter list as a [`dead_letter`] record instead of mangling it.
//!
//! Tombstones (null values) and empty values: `raw` pushes an empty element for both; `legacy` pushes
//! `"data":""` for both, as the old tool did; `json` keeps them apart (`"value":null` / `"value":""`).

use super::jobs::{HashJobTopic, JobTopic, PushTime};
use super::record::Record;
use crate::config::{Envelope, Structure, TopicConfig};

/// Why a record could not be put in its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unencodable {
    pub reason: String,
}

/// What a lane makes of each record, chosen once per topic: an element in one of the plain
/// envelopes, a job that is one list element ([`super::jobs::JobTopic`]: Laravel, Celery, Sidekiq)
/// or a job kept in a hash of its own ([`super::jobs::HashJobTopic`]: BullMQ, RQ), written as its
/// id and field values ([`super::batch::write_part`]).
#[derive(Debug, Clone)]
pub enum Encoder {
    Raw,
    Legacy,
    Json,
    Job(JobTopic),
    HashJob(HashJobTopic),
    /// A stream entry's fields ([`super::stream_entry`]).
    StreamEntry,
    /// A Symfony Messenger entry for the message class named ([`super::jobs::symfony_entry`]).
    SymfonyEntry(String),
}

impl Encoder {
    pub fn for_topic(topic: &TopicConfig) -> Encoder {
        if topic.structure == Structure::Stream {
            return match topic.envelope {
                Envelope::Symfony => Encoder::SymfonyEntry(topic.job.clone().unwrap_or_default()),
                _ => Encoder::StreamEntry,
            };
        }
        if let Some(jobs) = JobTopic::for_topic(topic) {
            return Encoder::Job(jobs);
        }
        if let Some(jobs) = HashJobTopic::for_topic(topic) {
            return Encoder::HashJob(jobs);
        }
        match topic.envelope {
            Envelope::Legacy => Encoder::Legacy,
            Envelope::Json => Encoder::Json,
            // The job envelopes were taken above.
            _ => Encoder::Raw,
        }
    }

    /// Whether [`Encoder::encode`] reads `Record::headers`; lanes only collect them when it does.
    pub fn uses_headers(&self) -> bool {
        match self {
            Encoder::Raw | Encoder::Legacy => false,
            // A job's argument is the `json` record.
            Encoder::Json
            | Encoder::Job(_)
            | Encoder::HashJob(_)
            | Encoder::StreamEntry
            | Encoder::SymfonyEntry(_) => true,
        }
    }

    /// Appends the element for `record` to `out` (which the caller clears). `now` is the batch's
    /// clock reading, which Sidekiq's, BullMQ's and RQ's jobs carry.
    pub fn encode(
        &self,
        record: &Record<'_>,
        now: &PushTime,
        out: &mut Vec<u8>,
    ) -> Result<(), Unencodable> {
        match self {
            Encoder::Raw => {
                out.extend_from_slice(record.value.unwrap_or_default());
                Ok(())
            }
            Encoder::Legacy => {
                let value = record.value.unwrap_or_default();
                let text = std::str::from_utf8(value).map_err(|e| Unencodable {
                    reason: format!(
                        "value is not valid UTF-8 (first bad byte at {}), which the legacy JSON envelope cannot carry",
                        e.valid_up_to()
                    ),
                })?;
                out.extend_from_slice(br#"{"attempts":1,"data":"#);
                write_go_json_string(text, out);
                out.push(b'}');
                Ok(())
            }
            Encoder::Json => {
                record.write_json(None, out);
                Ok(())
            }
            Encoder::Job(jobs) => {
                jobs.encode(record, now, out);
                Ok(())
            }
            Encoder::HashJob(jobs) => {
                jobs.encode(record, now, out);
                Ok(())
            }
            Encoder::StreamEntry => {
                super::stream_entry::encode(record, out);
                Ok(())
            }
            Encoder::SymfonyEntry(class) => {
                super::jobs::symfony_entry(class, record, out);
                Ok(())
            }
        }
    }
}

/// The dead-letter element for a record: its `json` envelope plus `"reason"`.
pub fn dead_letter(record: &Record<'_>, reason: &str, out: &mut Vec<u8>) {
    record.write_json(Some(reason), out);
}

/// The bytes [`write_go_json_string`] may have to escape: `"`, `\\`, control characters, `<`, `>`,
/// `&`, and 0xE2 (the first byte of U+2028 and U+2029).
static GO_JSON_SPECIAL: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table[b'<' as usize] = true;
    table[b'>' as usize] = true;
    table[b'&' as usize] = true;
    table[0xe2] = true;
    table
};

/// Whether any byte of `bytes` is one [`GO_JSON_SPECIAL`] marks. Compared, not looked up, and with
/// no early exit, so that the loop is vectorised.
fn needs_go_escaping(bytes: &[u8]) -> bool {
    bytes.iter().fold(false, |any, &b| {
        any | (b < 0x20)
            | (b == b'"')
            | (b == b'\\')
            | (b == b'<')
            | (b == b'>')
            | (b == b'&')
            | (b == 0xe2)
    })
}

/// Go's `encoding/json` string encoding (with its default HTML escaping), which the old tool used.
fn write_go_json_string(s: &str, out: &mut Vec<u8>) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    if !needs_go_escaping(bytes) {
        // Most values: one whole-string check and one copy.
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Most values need no escaping at all: skip the plain bytes with one table look-up each
        // (the match below is several comparisons a byte; this loop is the legacy envelope's cost).
        while i < bytes.len() && !GO_JSON_SPECIAL[bytes[i] as usize] {
            i += 1;
        }
        let Some(&b) = bytes.get(i) else { break };
        let escape: Option<&[u8]> = match b {
            b'"' => Some(br#"\""#),
            b'\\' => Some(br"\\"),
            b'\n' => Some(br"\n"),
            b'\r' => Some(br"\r"),
            b'\t' => Some(br"\t"),
            0x00..=0x1f | b'<' | b'>' | b'&' => Some(&[]),
            // U+2028 and U+2029 (E2 80 A8 / E2 80 A9) break JavaScript; Go escapes them too.
            0xe2 if bytes.get(i + 1) == Some(&0x80)
                && matches!(bytes.get(i + 2), Some(0xa8 | 0xa9)) =>
            {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(if bytes[i + 2] == 0xa8 {
                    br"\u2028"
                } else {
                    br"\u2029"
                });
                i += 3;
                start = i;
                continue;
            }
            _ => None,
        };
        if let Some(seq) = escape {
            out.extend_from_slice(&bytes[start..i]);
            if seq.is_empty() {
                super::json::write_u00(b, out);
            } else {
                out.extend_from_slice(seq);
            }
            start = i + 1;
        }
        i += 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(
        value: Option<&'a [u8]>,
        headers: &'a [(&'a str, Option<&'a [u8]>)],
    ) -> Record<'a> {
        Record {
            topic: "t",
            partition: 2,
            offset: 7,
            timestamp: Some(1_700_000_000_000),
            key: Some(b"k\xff"),
            value,
            headers,
        }
    }

    fn encode(encoder: Encoder, value: Option<&[u8]>) -> Result<String, Unencodable> {
        let mut out = Vec::new();
        encoder.encode(
            &record(value, &[("h", Some(b"v")), ("n", None)]),
            &PushTime::at(0.0),
            &mut out,
        )?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn the_whole_string_check_marks_the_bytes_the_table_marks() {
        for b in 0..=255u8 {
            assert_eq!(
                needs_go_escaping(&[b]),
                GO_JSON_SPECIAL[b as usize],
                "{b:#04x}"
            );
            assert_eq!(
                needs_go_escaping(&[b'x', b'y', b, b'z']),
                GO_JSON_SPECIAL[b as usize]
            );
        }
    }

    #[test]
    fn legacy_matches_go_encoding() {
        assert_eq!(
            encode(
                Encoder::Legacy,
                Some("a\"b\\c\n<&>\u{1}é\u{2028}".as_bytes())
            )
            .unwrap(),
            r#"{"attempts":1,"data":"a\"b\\c\n\u003c\u0026\u003e\u0001é\u2028"}"#
        );
        assert_eq!(
            encode(Encoder::Legacy, None).unwrap(),
            r#"{"attempts":1,"data":""}"#
        );
        assert!(encode(Encoder::Legacy, Some(b"ok\xc3\x28"))
            .unwrap_err()
            .reason
            .contains("byte at 2"));
    }

    #[test]
    fn json_carries_binary_and_nulls() {
        let v: serde_json::Value =
            serde_json::from_str(&encode(Encoder::Json, Some(b"\xff\x00")).unwrap()).unwrap();
        assert_eq!(v["value"], "/wA=");
        assert_eq!(v["value_encoding"], "base64");
        assert_eq!(v["key"], "a/8=");
        assert_eq!(v["key_encoding"], "base64");
        assert_eq!(v["headers"][0]["value"], "v");
        assert!(v["headers"][1]["value"].is_null());
        assert_eq!(v["offset"], 7);
        let v: serde_json::Value =
            serde_json::from_str(&encode(Encoder::Json, None).unwrap()).unwrap();
        assert!(v["value"].is_null() && v.get("value_encoding").is_none());
    }

    #[test]
    fn raw_is_unchanged() {
        let mut out = Vec::new();
        Encoder::Raw
            .encode(
                &record(Some(b"\xff\x00x"), &[]),
                &PushTime::at(0.0),
                &mut out,
            )
            .unwrap();
        assert_eq!(out, b"\xff\x00x");
    }
}
