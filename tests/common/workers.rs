//! What the stock job-framework workers the tests run report back.

use std::path::Path;

use serde_json::Value;

/// What a worker's handler recorded in `out`, one JSON object per job run, in the order they ran.
pub fn ran(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}
