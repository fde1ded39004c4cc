//! The bridge's config files.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::kafka::Broker;
use super::redis_server::RedisServer;

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    path
}

/// A native config for one Redis and the shared broker; `topics` is the TOML `topics = …` value.
pub fn native_config(
    broker: &Broker,
    redis: &RedisServer,
    group: &str,
    topics: &str,
    extra: &str,
) -> String {
    format!(
        r#"topics = {topics}
[kafka]
brokers = ["{}"]
group = "{group}"
commit_interval_ms = 500
[redis]
addresses = ["{}"]
response_timeout_ms = 2000
[batch]
max_messages = 200
linger_ms = 5
[retry]
backoff_min_ms = 50
backoff_max_ms = 500
{extra}
"#,
        broker.address,
        redis.address()
    )
}
