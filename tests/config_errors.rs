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
            "`topics[0].cap` must be greater than 0",
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
            GOOD_TOML.replace("[\"t\"]", "[{ name = \"t\", envelope = \"xml\" }]"),
            "topics",
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

#[test]
fn missing_env_file_is_a_config_error() {
    let (code, stderr) = run("conf.json", GOOD_JSON, &["--env", "nope.env"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("cannot read env file nope.env"), "{stderr}");
}
