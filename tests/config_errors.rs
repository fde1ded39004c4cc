//! Every bad config is one sentence naming the key, exit code 2, before connecting anywhere (the
//! addresses below are closed ports: a connection attempt would hang or fail differently).

use std::process::Command;

fn run(file: &str, text: &str, extra: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    if !text.is_empty() {
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_kafka2redis"))
        .current_dir(dir.path())
        .args(["--config", file])
        .args(extra)
        .env_remove("KAFKA_BROKERS")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

const GOOD_TOML: &str = "topics = [\"t\"]\n[kafka]\nbrokers = [\"127.0.0.1:1\"]\ngroup = \"g\"\n[redis]\naddresses = [\"127.0.0.1:1\"]\n";
const GOOD_JSON: &str = r#"{"kafka_addr":["127.0.0.1:1"],"redis_host":["127.0.0.1"],"redis_port":["1"],"topics":["t"],"consumer_group":"g"}"#;

#[test]
fn bad_configs_name_the_key_and_exit_2() {
    let cases: Vec<(&str, String, &str)> = vec![
        ("missing.json", String::new(), "cannot read config file"),
        ("conf.json", "{\n  \"topics\": [\"t\",\n}".into(), "line 3"),
        ("k2r.toml", "[kafka\n".into(), "invalid TOML"),
        (
            "conf.json",
            GOOD_JSON.replace(r#""topics":["t"],"#, ""),
            "`topics` is missing",
        ),
        (
            "conf.json",
            GOOD_JSON.replace(r#"["127.0.0.1:1"]"#, "[]"),
            "`kafka_addr` must list at least one broker",
        ),
        (
            "conf.json",
            GOOD_JSON.replace(r#""consumer_group""#, r#""cache_size":-1,"consumer_group""#),
            "`cache_size` must be greater than 0",
        ),
        (
            "conf.json",
            GOOD_JSON.replace(r#"["127.0.0.1:1"]"#, r#"["no-port-here"]"#),
            "`kafka_addr` \"no-port-here\" is not host:port",
        ),
        (
            "conf.json",
            GOOD_JSON.replace(r#"["1"]"#, r#"["1","2"]"#),
            "`redis_host/redis_port`",
        ),
        (
            "k2r.toml",
            GOOD_TOML.replace("group = \"g\"", "group = \"g\"\ngroupp = \"x\""),
            "groupp",
        ),
        (
            "k2r.toml",
            GOOD_TOML.replace("[\"t\"]", "[]"),
            "`topics` must name at least one topic",
        ),
        (
            "k2r.toml",
            GOOD_TOML.replace("[\"t\"]", "[{ name = \"t\", cap = 0 }]"),
            "`topics.t.cap` must be greater than 0",
        ),
        (
            "k2r.toml",
            GOOD_TOML.replace(
                "addresses = [\"127.0.0.1:1\"]",
                "addresses = [\"127.0.0.1:99999\"]",
            ),
            "`redis.addresses`",
        ),
        (
            "k2r.toml",
            GOOD_TOML.replace(
                "group = \"g\"",
                "group = \"g\"\nproperties = { \"enable.auto.offset.store\" = true }",
            ),
            "managed by kafka2redis",
        ),
        (
            "k2r.toml",
            GOOD_TOML.replace(
                "group = \"g\"",
                "group = \"g\"\nproperties = { \"no.such.property\" = 1 }",
            ),
            "rejected by librdkafka",
        ),
        (
            "k2r.toml",
            GOOD_TOML.replace(
                "group = \"g\"",
                "group = \"g\"\nproperties = { \"auto.offset.reset\" = \"sometimes\" }",
            ),
            "config key `kafka.properties.\"auto.offset.reset\"` rejected by librdkafka: Invalid value \"sometimes\"",
        ),
        (
            "k2r.toml",
            GOOD_TOML.replace("[\"t\"]", "[{ name = \"t\", envelope = \"xml\" }]"),
            "config key `topics.t.envelope` unknown variant `xml`, expected one of",
        ),
    ];
    for (file, text, expected) in cases {
        let (code, stderr) = run(file, &text, &[]);
        assert_eq!(code, Some(2), "{file} {text:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{file} {text:?}: expected {expected:?} in {stderr:?}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one sentence: {stderr:?}");
    }
}

/// The native config with `topics = <topics>`.
fn with_topics(topics: &str) -> String {
    GOOD_TOML.replace("[\"t\"]", topics)
}

/// The native config with `line` added to `[kafka]`.
fn with_kafka(line: &str) -> String {
    GOOD_TOML.replace("group = \"g\"", &format!("group = \"g\"\n{line}"))
}

/// The native config with `text` at its end (inside `[redis]`, or new tables).
fn with_end(text: &str) -> String {
    format!("{GOOD_TOML}{text}\n")
}

/// The old config with `"key":value` added.
fn with_json(pair: &str) -> String {
    GOOD_JSON.replace("\"consumer_group\"", &format!("{pair},\"consumer_group\""))
}

/// Mistaken or hostile settings that would otherwise run wrongly (or not at all) without saying
/// why: each is one sentence and exit code 2.
#[test]
fn mistaken_configs_are_refused_in_one_sentence() {
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "k2r.toml",
            with_topics("[{ name = \"t\", partitions = 3 }]"),
            "config key `topics.t.partitions` unknown field `partitions`",
        ),
        (
            "k2r.toml",
            with_topics("[{ list = \"q\" }]"),
            "config key `topics[0]` missing field `name`",
        ),
        (
            "k2r.toml",
            with_topics("[{ name = \"t\", low_water = 5 }]"),
            "config key `topics.t.low_water` needs a cap",
        ),
        (
            "k2r.toml",
            with_topics("[{ name = \"t\", cap = 10, low_water = 10 }]"),
            "config key `topics.t.low_water` must be below the cap (10), got 10",
        ),
        (
            "k2r.toml",
            with_kafka("commit_interval_ms = 0"),
            "config key `kafka.commit_interval_ms` must be greater than 0",
        ),
        (
            "k2r.toml",
            with_end("connect_timeout_ms = 0"),
            "config key `redis.connect_timeout_ms` must be greater than 0",
        ),
        (
            "k2r.toml",
            with_end("response_timeout_ms = 0"),
            "config key `redis.response_timeout_ms` must be greater than 0",
        ),
        (
            "k2r.toml",
            with_end("[shutdown]\ntimeout_ms = 0"),
            "config key `shutdown.timeout_ms` must be greater than 0",
        ),
        (
            "k2r.toml",
            with_end("[flow]\ncheck_interval_ms = 0"),
            "config key `flow.check_interval_ms` must be greater than 0",
        ),
        (
            "k2r.toml",
            with_end("[lag]\ninterval_ms = 0"),
            "config key `lag.interval_ms` must be greater than 0",
        ),
        (
            "k2r.toml",
            with_end("[lag]\nhash = \"\""),
            "config key `lag.hash` must not be empty",
        ),
        (
            "conf.json",
            with_json("\"topics_queue_len\":\"\""),
            "config key `topics_queue_len` must not be empty",
        ),
        (
            "k2r.toml",
            with_end("[lease]\nkey = \"\""),
            "config key `lease.key` must not be empty",
        ),
        (
            "conf.json",
            with_json("\"start_lock\":\"\""),
            "config key `start_lock` must not be empty",
        ),
        (
            "k2r.toml",
            with_topics("[\"^orders-.*\"]"),
            "config key `topics` names \"^orders-.*\", a regular expression (it starts with '^'): \
             subscribing by pattern is not supported",
        ),
        (
            "conf.json",
            GOOD_JSON.replace("[\"t\"]", "[\"^t\"]"),
            "subscribing by pattern is not supported",
        ),
        (
            "k2r.toml",
            with_kafka("properties = { \"metadata.broker.list\" = \"10.0.0.1:9092\" }"),
            "config key `kafka.properties.\"metadata.broker.list\"` is managed by kafka2redis: it is \
             librdkafka's alias of bootstrap.servers; use kafka.brokers",
        ),
        (
            "k2r.toml",
            with_kafka("properties = { \"auto.commit.enable\" = true }"),
            "`kafka.properties.\"auto.commit.enable\"` is managed by kafka2redis",
        ),
        (
            "k2r.toml",
            with_topics("[{ name = \"a\", list = \"q\", cap = 10 }, { name = \"b\", list = \"q\" }]"),
            "config key `topics` gives list \"q\" two caps: topic \"a\" has cap 10 (low water 5), \
             topic \"b\" has no cap",
        ),
        (
            "k2r.toml",
            with_topics(
                "[{ name = \"a\", list = \"q\", cap = 10 }, { name = \"b\", list = \"q\", cap = 20 }]",
            ),
            "topic \"b\" has cap 20 (low water 10); topics that share a list must give it the same cap",
        ),
        (
            "k2r.toml",
            with_topics("[\"a\", { name = \"b\", list = \"queues:a:dead\" }]"),
            "config key `topics` makes \"queues:a:dead\" both the dead-letter list of topic \"a\" and \
             the list of topic \"b\"; each needs a key of its own",
        ),
        (
            "k2r.toml",
            format!(
                "delivery = \"exactly-once\"\n{}",
                with_topics("[\"a\", { name = \"b\", list = \"{queues:a}:offsets\" }]")
            ),
            "makes \"{queues:a}:offsets\" both the exactly-once offsets of topic \"a\" and the list of \
             topic \"b\"",
        ),
        (
            "k2r.toml",
            with_end("[lag]\nhash = \"queues:t\""),
            "config key `lag.hash` makes \"queues:t\" both the list of topic \"t\" and the lag hash",
        ),
        (
            "k2r.toml",
            with_end("[lag]\nhash = \"lag\"\n[lease]\nkey = \"{lag}:partitions\""),
            "config key `lease.key` makes \"{lag}:partitions\" both the per-partition lag hash and the \
             lease key",
        ),
        (
            "conf.json",
            with_json("\"start_lock\":\"queues:t\""),
            "config key `start_lock` makes \"queues:t\" both the list of topic \"t\" and the lease key",
        ),
    ];
    for (file, text, expected) in cases {
        let (code, stderr) = run(file, &text, &[]);
        assert_eq!(code, Some(2), "{file} {text:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{file} {text:?}: expected {expected:?} in {stderr:?}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one sentence: {stderr:?}");
    }
}

/// The BullMQ and RQ topics' settings: a queue (without `:`), a handler, no `list` (the keys follow
/// from the queue and its prefix), RQ never on Redis Cluster, BullMQ there only with a hash-tagged
/// prefix.
#[test]
fn job_queue_settings_are_checked_in_one_sentence() {
    let cluster =
        |topics: &str| with_topics(topics).replace("[redis]", "[redis]\nmode = \"cluster\"");
    let cases: Vec<(String, &str)> = vec![
        (
            with_topics(r#"[{ name = "t", envelope = "bullmq", job = "record" }]"#),
            "config key `topics.t.queue` is required with envelope = \"bullmq\"",
        ),
        (
            with_topics(r#"[{ name = "t", envelope = "rq", job = "tasks.record" }]"#),
            "config key `topics.t.queue` is required with envelope = \"rq\"",
        ),
        (
            with_topics(r#"[{ name = "t", envelope = "bullmq", job = "record", queue = "a:b" }]"#),
            "config key `topics.t.queue` \"a:b\" contains ':'",
        ),
        (
            with_topics(r#"[{ name = "t", envelope = "rq", job = "f", queue = "q", list = "rq:queue:q" }]"#),
            "config key `topics.t.list` does not apply with envelope = \"rq\": the keys follow from `queue` and `queue_prefix`",
        ),
        (
            with_topics(r#"[{ name = "t", envelope = "bullmq", queue = "q" }]"#),
            "config key `topics.t.job` is required with envelope = \"bullmq\"",
        ),
        (
            with_topics(r#"[{ name = "t", envelope = "json", queue = "q" }]"#),
            "config key `topics.t.queue` only applies to the bullmq and rq envelopes",
        ),
        (
            cluster(r#"[{ name = "t", envelope = "rq", job = "f", queue = "q" }]"#),
            "config key `topics.t.envelope` = \"rq\" cannot run on Redis Cluster",
        ),
        (
            cluster(r#"[{ name = "t", envelope = "bullmq", job = "record", queue = "q" }]"#),
            "config key `topics.t.queue_prefix` \"bull\" has no {hash tag}",
        ),
    ];
    for (text, expected) in cases {
        let (code, stderr) = run("k2r.toml", &text, &[]);
        assert_eq!(code, Some(2), "{text:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{text:?}: expected {expected:?} in {stderr:?}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one sentence: {stderr:?}");
    }
}

#[test]
fn missing_env_file_is_a_config_error() {
    let (code, stderr) = run("conf.json", GOOD_JSON, &["--env", "nope.env"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("cannot read env file nope.env"), "{stderr}");
}
