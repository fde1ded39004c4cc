//! The parts of a Kafka message the envelopes use, and its JSON form: the `json` envelope, the
//! dead-letter record and the job envelopes' argument all write it. Text that is not UTF-8 is
//! carried as base64 with an `*_encoding: "base64"` marker, so it carries anything. Written field
//! by field ([`super::json`]) in the order and bytes `serde_json` gave it, which its tests hold.

use super::json::{write_base64, write_int, write_str};

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
    /// Appends the record as one JSON object; with `reason`, a dead-letter record:
    /// `{"topic","partition","offset","timestamp","key","headers","value"[,"reason"]}`.
    pub fn write_json(&self, reason: Option<&str>, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"topic":"#);
        write_str(self.topic, out);
        out.extend_from_slice(br#","partition":"#);
        write_int(self.partition, out);
        out.extend_from_slice(br#","offset":"#);
        write_int(self.offset, out);
        out.extend_from_slice(br#","timestamp":"#);
        match self.timestamp {
            Some(ms) => write_int(ms, out),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b',');
        write_bytes_entry("key", self.key, out);
        out.extend_from_slice(br#","headers":"#);
        self.write_headers_json(out);
        out.push(b',');
        write_bytes_entry("value", self.value, out);
        if let Some(reason) = reason {
            out.extend_from_slice(br#","reason":"#);
            write_str(reason, out);
        }
        out.push(b'}');
    }

    /// Appends the headers as the `json` envelope carries them: a JSON array of `{"key", "value"}`
    /// objects, in order (a value that is not UTF-8 in base64 with `value_encoding`).
    pub fn write_headers_json(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, (key, value)) in self.headers.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(br#"{"key":"#);
            write_str(key, out);
            out.push(b',');
            write_bytes_entry("value", *value, out);
            out.push(b'}');
        }
        out.push(b']');
    }
}

/// Writes `"name":` and the bytes as a JSON string when they are UTF-8, else in base64 followed by
/// `,"name_encoding":"base64"`; `null` when absent. `name` needs no escaping.
fn write_bytes_entry(name: &str, bytes: Option<&[u8]>, out: &mut Vec<u8>) {
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    let Some(bytes) = bytes else {
        out.extend_from_slice(b"null");
        return;
    };
    match std::str::from_utf8(bytes) {
        Ok(text) => write_str(text, out),
        Err(_) => {
            out.push(b'"');
            write_base64(bytes, out);
            out.extend_from_slice(b"\",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(br#"_encoding":"base64""#);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The record's JSON against `serde_json` serialising the same fields: the envelopes were
    //! written by `serde_json` before, and workers' parsers and stored jobs expect these bytes.

    use base64::Engine;
    use serde::ser::{SerializeMap, Serializer};
    use serde::Serialize;

    use super::Record;

    struct Reference<'a>(&'a Record<'a>, Option<&'a str>);

    fn entry<M: SerializeMap>(
        map: &mut M,
        name: &str,
        bytes: Option<&[u8]>,
    ) -> Result<(), M::Error> {
        match bytes {
            None => map.serialize_entry(name, &()),
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => map.serialize_entry(name, text),
                Err(_) => {
                    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
                    map.serialize_entry(name, &b64)?;
                    map.serialize_entry(&format!("{name}_encoding"), "base64")
                }
            },
        }
    }

    struct Header<'a>(&'a str, Option<&'a [u8]>);

    impl Serialize for Header<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(None)?;
            map.serialize_entry("key", self.0)?;
            entry(&mut map, "value", self.1)?;
            map.end()
        }
    }

    impl Serialize for Reference<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let r = self.0;
            let mut map = s.serialize_map(None)?;
            map.serialize_entry("topic", r.topic)?;
            map.serialize_entry("partition", &r.partition)?;
            map.serialize_entry("offset", &r.offset)?;
            map.serialize_entry("timestamp", &r.timestamp)?;
            entry(&mut map, "key", r.key)?;
            let headers: Vec<Header<'_>> = r.headers.iter().map(|(k, v)| Header(k, *v)).collect();
            map.serialize_entry("headers", &headers)?;
            entry(&mut map, "value", r.value)?;
            if let Some(reason) = self.1 {
                map.serialize_entry("reason", reason)?;
            }
            map.end()
        }
    }

    #[test]
    fn the_record_reads_byte_for_byte_as_serde_json_wrote_it() {
        let texts: [Option<&[u8]>; 7] = [
            None,
            Some(b""),
            Some(b"plain"),
            Some("quote \" back \\ nl \n ctl \u{1} \u{1f} del \u{7f} \u{2028} é 🎉".as_bytes()),
            Some(b"\xff\x00binary"),
            Some(b"\xc3"),
            Some(b"{\"already\":\"json\"}"),
        ];
        type Headers<'a> = &'a [(&'a str, Option<&'a [u8]>)];
        let header_sets: [Headers<'_>; 3] = [
            &[],
            &[("trace", Some(b"abc"))],
            &[
                ("a\"b", None),
                ("bin", Some(b"\xfe")),
                ("ctl\t", Some(b"x\ny")),
            ],
        ];
        let mut checked = 0;
        for key in texts {
            for value in texts {
                for headers in header_sets {
                    for (timestamp, reason) in [
                        (None, None),
                        (Some(1_700_000_000_123), Some("not \"UTF-8\"\n")),
                        (Some(-1), None),
                    ] {
                        let record = Record {
                            topic: "orders.eu-1",
                            partition: i32::MAX,
                            offset: 42,
                            timestamp,
                            key,
                            value,
                            headers,
                        };
                        let mut ours = Vec::new();
                        record.write_json(reason, &mut ours);
                        let reference = serde_json::to_vec(&Reference(&record, reason)).unwrap();
                        assert_eq!(
                            String::from_utf8_lossy(&ours),
                            String::from_utf8_lossy(&reference)
                        );
                        assert_eq!(ours, reference);
                        let mut headers_only = Vec::new();
                        record.write_headers_json(&mut headers_only);
                        let hs: Vec<Header<'_>> =
                            headers.iter().map(|(k, v)| Header(k, *v)).collect();
                        assert_eq!(headers_only, serde_json::to_vec(&hs).unwrap());
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 7 * 7 * 3 * 3);
    }
}
