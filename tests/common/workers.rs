//! What the stock job-framework workers the tests run report back.

use std::path::Path;

use base64::Engine;
use serde_json::Value;

/// What a worker's handler recorded in `out`, one JSON object per job run, in the order they ran.
pub fn ran(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

/// Sets `value` in `line` as the `json` envelope's record carries it: text as a string, other bytes
/// as base64 with `value_encoding`, a tombstone as null.
pub fn set_record_value(line: &mut Value, value: Option<&[u8]>) {
    match value.map(std::str::from_utf8) {
        None => line["value"] = Value::Null,
        Some(Ok(text)) => line["value"] = text.into(),
        Some(Err(_)) => {
            line["value"] = base64::engine::general_purpose::STANDARD
                .encode(value.unwrap_or_default())
                .into();
            line["value_encoding"] = "base64".into();
        }
    }
}
