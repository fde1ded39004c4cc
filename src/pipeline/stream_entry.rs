//! A Kafka message as one stream entry's fields: `value` (the bytes unchanged; absent for a
//! tombstone), `topic`, `partition`, `offset`, `timestamp` (milliseconds, when the message has
//! one), and `key` (bytes unchanged) and `headers` (JSON, as the `json` envelope writes them) when
//! present.
//!
//! An entry is written into the batch as its field names and values in turn, each one part
//! ([`super::batch::write_part`]), which the stream push hands to `XADD` as they are.

use super::batch::write_part;
use super::record::Record;

/// Appends the fields of `record`'s entry to `out`.
pub fn encode(record: &Record<'_>, out: &mut Vec<u8>) {
    let mut field = |name: &str, value: &[u8]| {
        write_part(out, name.as_bytes());
        write_part(out, value);
    };
    if let Some(value) = record.value {
        field("value", value);
    }
    field("topic", record.topic.as_bytes());
    field("partition", record.partition.to_string().as_bytes());
    field("offset", record.offset.to_string().as_bytes());
    if let Some(timestamp) = record.timestamp {
        field("timestamp", timestamp.to_string().as_bytes());
    }
    if let Some(key) = record.key {
        field("key", key);
    }
    if !record.headers.is_empty() {
        let mut json = Vec::new();
        record.write_headers_json(&mut json);
        field("headers", &json);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::batch::parts;

    fn fields(record: &Record<'_>) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        encode(record, &mut out);
        let parts: Vec<&[u8]> = parts(&out).collect();
        parts
            .chunks(2)
            .map(|pair| {
                (
                    String::from_utf8(pair[0].to_vec()).unwrap(),
                    pair[1].to_vec(),
                )
            })
            .collect()
    }

    #[test]
    fn every_field_with_key_and_headers() {
        let headers = [("h", Some(&b"v"[..])), ("bin", Some(&b"\xff"[..]))];
        let record = Record {
            topic: "orders",
            partition: 3,
            offset: 42,
            timestamp: Some(1_700_000_000_000),
            key: Some(b"k\xff"),
            value: Some(b"\x00\xffbytes"),
            headers: &headers,
        };
        let f = fields(&record);
        let names: Vec<&str> = f.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "value",
                "topic",
                "partition",
                "offset",
                "timestamp",
                "key",
                "headers"
            ]
        );
        assert_eq!(f[0].1, b"\x00\xffbytes");
        assert_eq!(f[2].1, b"3");
        assert_eq!(f[3].1, b"42");
        assert_eq!(f[4].1, b"1700000000000");
        assert_eq!(f[5].1, b"k\xff");
        let h: serde_json::Value = serde_json::from_slice(&f[6].1).unwrap();
        assert_eq!(h[0]["key"], "h");
        assert_eq!(h[0]["value"], "v");
        assert_eq!(h[1]["value"], "/w==");
        assert_eq!(h[1]["value_encoding"], "base64");
    }

    #[test]
    fn a_tombstone_has_no_value_and_empty_parts_stay() {
        let record = Record {
            topic: "t",
            partition: 0,
            offset: 0,
            timestamp: None,
            key: None,
            value: None,
            headers: &[],
        };
        let names: Vec<String> = fields(&record).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["topic", "partition", "offset"]);
        let record = Record {
            value: Some(b""),
            ..record
        };
        assert_eq!(fields(&record)[0], ("value".to_string(), Vec::new()));
    }
}
