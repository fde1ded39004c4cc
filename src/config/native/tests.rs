use std::path::PathBuf;

use super::*;
use crate::config::{Envelope, Structure, TlsConfig};

fn load(toml: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let config = parse(
        toml,
        Path::new("k2r.toml"),
        &Vars::from_pairs(vars.iter().copied()),
    )?;
    config.validate()?;
    Ok(config)
}

const MINIMAL: &str = r#"
topics = ["a", { name = "b", list = "jobs:b", envelope = "json", cap = 10 }]
[kafka]
brokers = ["127.0.0.1:9092"]
group = "g"
properties = { "fetch.wait.max.ms" = 50, "enable.partition.eof" = false }
[redis]
addresses = ["127.0.0.1:6379"]
"#;

#[test]
fn minimal_file_with_overrides() {
    let c = load(MINIMAL, &[]).unwrap();
    assert_eq!(c.topics[0].list_key, "queues:a");
    assert_eq!(c.topics[0].envelope, Envelope::Raw);
    assert_eq!(c.topics[1].list_key, "jobs:b");
    assert_eq!(c.topics[1].envelope, Envelope::Json);
    assert_eq!(
        c.topics[1].cap,
        Some(Cap {
            max: 10,
            low_water: 5
        })
    );
    assert_eq!(c.kafka.properties["fetch.wait.max.ms"], "50");
    assert_eq!(c.kafka.properties["enable.partition.eof"], "false");
    assert_eq!(c.lease_key, None);
}

/// The defaults docs/configuration.md lists, for absent sections and for keys absent from a
/// present section.
#[test]
fn absent_keys_take_the_documented_defaults() {
    let ms = Duration::from_millis;
    for extra in [
        "",
        "[batch]\n[retry]\n[shutdown]\n[flow]\n[lag]\n[defaults]\n",
    ] {
        let c = load(&format!("{MINIMAL}{extra}"), &[]).unwrap();
        assert_eq!(c.kafka.commit_interval, ms(1000));
        assert_eq!(c.redis.connect_timeout, ms(5000));
        assert_eq!(c.redis.response_timeout, ms(10000));
        assert_eq!(c.redis.wait_timeout, ms(1000));
        assert_eq!(c.redis.db, 0);
        assert_eq!(c.topics[0].list_key, "queues:a");
        assert_eq!(c.topics[0].envelope, Envelope::Raw);
        assert_eq!(c.topics[0].cap, None);
        assert_eq!(c.batch.max_messages, 1000);
        assert_eq!(c.batch.max_bytes, 1_048_576);
        assert_eq!(c.batch.linger, ms(0));
        assert_eq!(c.retry.backoff_min, ms(100));
        assert_eq!(c.retry.backoff_max, ms(5000));
        assert_eq!(c.shutdown_timeout, ms(10000));
        assert_eq!(c.flow_check_interval, ms(100));
        assert_eq!(c.lag_hash, "topics_queue_len");
        assert_eq!(c.lag_interval, ms(5000));
        assert_eq!(c.lease_key, None);
    }
    let c = load(
        &format!("{MINIMAL}[batch]\nmax_messages = 7\n[lease]\n"),
        &[],
    )
    .unwrap();
    assert_eq!(c.batch.max_messages, 7);
    assert_eq!(c.batch.max_bytes, 1_048_576);
    assert_eq!(c.batch.in_flight, None, "the default, one");
    assert_eq!(c.lease_key.as_deref(), Some("kafka_consumers_run"));
    assert_eq!(c.lease_ttl, ms(10000));
}

#[test]
fn lag_lease_and_http_sections() {
    let c = load(
        &format!(
            "{MINIMAL}[lag]\nhash = \"lag\"\ninterval_ms = 250\n[lease]\nttl_ms = 3000\n\
             [http]\naddress = \"127.0.0.1:9100\"\n"
        ),
        &[],
    )
    .unwrap();
    assert_eq!(c.lag_hash, "lag");
    assert_eq!(c.lag_interval, Duration::from_millis(250));
    assert_eq!(c.lease_key.as_deref(), Some("kafka_consumers_run"));
    assert_eq!(c.lease_ttl, Duration::from_millis(3000));
    assert_eq!(c.http, Some("127.0.0.1:9100".parse().unwrap()));
    let err = |extra: &str| {
        load(&format!("{MINIMAL}{extra}"), &[])
            .unwrap_err()
            .to_string()
    };
    assert!(err("[http]\naddress = \"nowhere\"").contains("`http.address`"));
    assert!(err("[lease]\nttl_ms = 10").contains("`lease.ttl_ms`"));
    assert!(err("[lag]\ninterval_ms = 0").contains("`lag.interval_ms`"));
}

#[test]
fn environment_overrides_file() {
    let c = load(
        MINIMAL,
        &[
            ("K2R_KAFKA_BROKERS", "b1:1,b2:2"),
            ("K2R_REDIS_PASSWORD", "pw"),
        ],
    )
    .unwrap();
    assert_eq!(c.kafka.brokers, vec!["b1:1", "b2:2"]);
    assert_eq!(c.redis.password, Some("pw".into()));
    // Sentinel variables with a standalone Redis: an error naming the variable.
    let err = load(MINIMAL, &[("K2R_REDIS_SENTINEL_PASSWORD", "spw")]).unwrap_err();
    assert!(
        err.to_string().contains("K2R_REDIS_SENTINEL_PASSWORD"),
        "{err}"
    );
}

#[test]
fn environment_overrides_sentinel_settings() {
    let toml = MINIMAL.replace(
        "[redis]",
        "[redis]\nmode = \"sentinel\"\nmaster_name = \"from-file\"",
    );
    let c = load(
        &toml,
        &[
            ("K2R_REDIS_SENTINEL_MASTER", "from-env"),
            ("K2R_REDIS_SENTINEL_USERNAME", "watcher"),
            ("K2R_REDIS_SENTINEL_PASSWORD", "spw"),
        ],
    )
    .unwrap();
    match &c.redis.topology {
        RedisTopology::Sentinel { master_name, .. } => assert_eq!(master_name, "from-env"),
        other => panic!("not sentinel: {other:?}"),
    }
    assert_eq!(c.redis.sentinel_username.as_deref(), Some("watcher"));
    assert_eq!(c.redis.sentinel_password, Some("spw".into()));
}

#[test]
fn errors_name_the_key() {
    let err = |toml: &str| load(toml, &[]).unwrap_err().to_string();
    assert!(err(&MINIMAL.replace("group = \"g\"", "group = \"g\"\ngruop = 1")).contains("gruop"));
    // Every topic error names its key `topics.<name>.<key>`, wherever it is found.
    let topic_errors = [
        ("cap = 0", "`topics.b.cap` must be greater than 0"),
        ("cap = \"ten\"", "`topics.b.cap` invalid type"),
        (
            "cap = 10, partitions = 3",
            "`topics.b.partitions` unknown field",
        ),
        (
            "cap = 10, low_water = 10",
            "`topics.b.low_water` must be below the cap (10)",
        ),
        ("low_water = 1", "`topics.b.low_water` needs a cap"),
        (
            "cap = 10, delivery = \"twice\"",
            "`topics.b.delivery` unknown variant",
        ),
        ("cap = 10, job = \"J\"", "`topics.b.job` only applies"),
    ];
    for in_flight in [0, 65] {
        let e = err(&format!("{MINIMAL}[batch]\nin_flight = {in_flight}\n"));
        assert!(
            e.contains("batch.in_flight") && e.contains("between 1 and 64"),
            "{e}"
        );
    }
    for (replacement, expected) in topic_errors {
        let e = err(&MINIMAL.replace("cap = 10", replacement));
        assert!(e.contains(expected), "{expected:?} in {e}");
    }
    let e = err(&MINIMAL.replace("\"jobs:b\"", "\"\""));
    assert!(e.contains("`topics.b.list` must not be empty"), "{e}");
    // Only an entry without a name is named by its place.
    let e = err(&MINIMAL.replace("name = \"b\", ", ""));
    assert!(e.contains("`topics[1]` missing field `name`"), "{e}");
    assert!(err(&MINIMAL.replace("[\"127.0.0.1:9092\"]", "[]")).contains("`kafka.brokers`"));
    assert!(
        err(&MINIMAL.replace("127.0.0.1:6379", "127.0.0.1:notaport")).contains("`redis.addresses`")
    );
    assert!(
        err(&MINIMAL.replace("[redis]", "[redis]\nmode = \"sentinel\""))
            .contains("redis.master_name")
    );
    assert!(err("[kafka\n").contains("line 1"));
    for mode in ["standalone", "sentinel\"\nmaster_name = \"m", "cluster"] {
        let e = err(&MINIMAL.replace(
            "[redis]\naddresses = [\"127.0.0.1:6379\"]",
            &format!("[redis]\nmode = \"{mode}\"\naddresses = []"),
        ));
        assert!(e.contains("`redis.addresses` must"), "{e}");
    }
}

#[test]
fn topics_may_share_a_list_with_one_cap() {
    let c = load(
        &MINIMAL.replace(
            "topics = [\"a\", { name = \"b\", list = \"jobs:b\", envelope = \"json\", cap = 10 }]",
            "delivery = \"exactly-once\"\ntopics = [{ name = \"a\", list = \"jobs\", cap = 10 }, \
             { name = \"b\", list = \"jobs\", cap = 10 }]",
        ),
        &[],
    )
    .unwrap();
    assert_eq!(c.topics[0].list_key, c.topics[1].list_key);
    assert_eq!(c.topics[0].cap, c.topics[1].cap);
}

#[test]
fn stream_topics_take_raw_and_share_a_stream() {
    let topics = |entries: &str| {
        MINIMAL.replace(
            "topics = [\"a\", { name = \"b\", list = \"jobs:b\", envelope = \"json\", cap = 10 }]",
            &format!("topics = [{entries}]"),
        )
    };
    let c = load(
        &topics(
            "\"a\", { name = \"b\", structure = \"stream\", cap = 10 }, \
             { name = \"c\", structure = \"stream\", list = \"queues:b\", cap = 10 }",
        ),
        &[],
    )
    .unwrap();
    assert_eq!(c.topics[0].structure, Structure::List, "the default");
    assert_eq!(c.topics[1].structure, Structure::Stream);
    assert_eq!(c.topics[1].list_key, "queues:b", "named as a list is");
    assert_eq!(c.topics[2].list_key, c.topics[1].list_key);

    let err = |entries: &str| load(&topics(entries), &[]).unwrap_err().to_string();
    let e = err("{ name = \"b\", structure = \"stream\", envelope = \"json\" }");
    assert!(
        e.contains(
            "`topics.b.envelope` is \"json\" but structure = \"stream\" takes envelope = \"raw\""
        ),
        "{e}"
    );
    let e = err("{ name = \"b\", structure = \"heap\" }");
    assert!(e.contains("`topics.b.structure` unknown variant"), "{e}");
    let e = err("\"b\", { name = \"c\", structure = \"stream\", list = \"queues:b\" }");
    assert!(
        e.contains("makes \"queues:b\" a list for topic \"b\" and a stream for topic \"c\""),
        "{e}"
    );
}

#[test]
fn formatted_config_hides_secrets() {
    let toml = MINIMAL
        .replace("127.0.0.1:6379", "redis://:urlpw@127.0.0.1:6379")
        .replace(
            "\"enable.partition.eof\" = false",
            "\"enable.partition.eof\" = false, \"sasl.password\" = \"kafkapw\", \
             \"ssl.key.password\" = \"keypw\"",
        );
    let c = load(&toml, &[("K2R_REDIS_PASSWORD", "settingpw")]).unwrap();
    let shown = format!("{c:?} {c:#?} {} {:?}", c.redis.topology, c.redis.topology);
    for secret in ["urlpw", "kafkapw", "keypw", "settingpw"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(shown.contains("redis://:***@127.0.0.1:6379"), "{shown}");
    assert!(shown.contains("\"sasl.password\": \"***\""), "{shown}");
    assert!(shown.contains("\"fetch.wait.max.ms\": \"50\""), "{shown}");
    assert_eq!(c.redis.password, Some("settingpw".into()));
    let mut secrets = c.secrets();
    secrets.sort();
    assert_eq!(secrets, ["kafkapw", "keypw", "settingpw", "urlpw"]);
}

#[test]
fn errors_hide_secrets() {
    let err = |toml: &str| load(toml, &[]).unwrap_err().to_string();
    let cases = [
        MINIMAL.replace("[redis]", "[redis]\npassword = 86420731"),
        MINIMAL.replace("[redis]", "[redis]\npassword = \"86420731"),
        MINIMAL.replace(
            "[\"127.0.0.1:6379\"]",
            "\"redis://:86420731@127.0.0.1:6379\"",
        ),
        MINIMAL.replace("127.0.0.1:6379", "redis://:86420731@127.0.0.1:notaport"),
        MINIMAL.replace(
            "\"enable.partition.eof\" = false",
            "\"sasl.password\" = [\"86420731\"]",
        ),
    ];
    for toml in cases {
        let e = err(&toml);
        assert!(!e.contains("86420731"), "{e}");
        assert!(
            e.contains("redis") || e.contains("sasl") || e.contains("TOML"),
            "{e}"
        );
    }
    // A syntax error is located by line, not quoted: the line may be a password.
    let e = err("topics = [\"t\"]\n[redis]\npassword = \"86420731\n");
    assert!(
        e.contains("invalid TOML at line 3") && !e.contains("86420731"),
        "{e}"
    );
}

/// A PEM file in a temporary directory, for the TLS keys.
fn pem_file(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

#[test]
fn sentinel_with_auth_tls_and_wait() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pem_file(dir.path(), "ca.pem", CERT);
    let cert = pem_file(dir.path(), "client.pem", CERT);
    let key = pem_file(dir.path(), "client.key", KEY);
    let redis = format!(
        r#"[redis]
mode = "sentinel"
master_name = "mymaster"
addresses = ["s1:26379", "s2:26379", "s3:26379"]
username = "bridge"
password = "pw"
sentinel_username = "watcher"
sentinel_password = "spw"
tls_ca_file = "{}"
tls_cert_file = "{}"
tls_key_file = "{}"
wait_replicas = 1
wait_timeout_ms = 250
"#,
        ca.display(),
        cert.display(),
        key.display()
    );
    let c = load(
        &MINIMAL.replace("[redis]\naddresses = [\"127.0.0.1:6379\"]\n", &redis),
        &[],
    )
    .unwrap();
    assert_eq!(
        c.redis.topology,
        RedisTopology::Sentinel {
            master_name: "mymaster".into(),
            addresses: vec!["s1:26379".into(), "s2:26379".into(), "s3:26379".into()],
        }
    );
    assert_eq!(c.redis.username.as_deref(), Some("bridge"));
    assert_eq!(c.redis.password, Some("pw".into()));
    assert_eq!(c.redis.sentinel_username.as_deref(), Some("watcher"));
    assert_eq!(c.redis.sentinel_password, Some("spw".into()));
    assert_eq!(
        c.redis.tls,
        Some(TlsConfig {
            ca_file: Some(ca),
            cert_file: Some(cert),
            key_file: Some(key),
            insecure_skip_verify: false,
        })
    );
    assert!(c.redis.tls_enabled());
    assert_eq!(c.redis.wait_replicas, Some(1));
    assert_eq!(c.redis.wait_timeout, Duration::from_millis(250));
}

#[test]
fn tls_defaults_and_insecure_warning() {
    let c = load(MINIMAL, &[]).unwrap();
    assert_eq!(c.redis.tls, None);
    assert!(!c.redis.tls_enabled());
    assert_eq!(c.redis.wait_replicas, None);
    assert_eq!(c.redis.sentinel_password, None);

    let c = load(
        &MINIMAL.replace("127.0.0.1:6379", "rediss://127.0.0.1:6379"),
        &[],
    )
    .unwrap();
    assert_eq!(c.redis.tls, None, "rediss:// alone uses the system's CAs");
    assert!(c.redis.tls_enabled());

    let c = load(
        &MINIMAL.replace("[redis]", "[redis]\ntls_insecure_skip_verify = true"),
        &[],
    )
    .unwrap();
    assert!(c.redis.tls.as_ref().unwrap().insecure_skip_verify);
    assert!(c.redis.tls_enabled());
    assert!(c.warnings.iter().any(|w| w.contains("NOT verified")));

    let c = load(
        &MINIMAL.replace(
            "[redis]\naddresses = [\"127.0.0.1:6379\"]",
            "[redis]\nmode = \"cluster\"\naddresses = [\"a:7000\", \"b:7001\"]",
        ),
        &[],
    )
    .unwrap();
    assert_eq!(
        c.redis.topology,
        RedisTopology::Cluster {
            addresses: vec!["a:7000".into(), "b:7001".into()]
        }
    );
}

#[test]
fn redis_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let err = |extra: &str| {
        load(
            &MINIMAL.replace("[redis]", &format!("[redis]\n{extra}")),
            &[],
        )
        .unwrap_err()
        .to_string()
    };
    let missing = dir.path().join("nope.pem");
    assert!(err(&format!("tls_ca_file = \"{}\"", missing.display()))
        .contains("`redis.tls_ca_file` names"));
    assert!(err(&format!("tls_ca_file = \"{}\"", missing.display())).contains("cannot be read"));
    let not_pem = pem_file(dir.path(), "x.txt", "hello");
    assert!(err(&format!("tls_ca_file = \"{}\"", not_pem.display()))
        .contains("holds no PEM certificate"));
    let cert = pem_file(dir.path(), "c.pem", CERT);
    assert!(err(&format!("tls_cert_file = \"{}\"", cert.display()))
        .contains("`redis.tls_key_file` is required"));
    let rsa = pem_file(
        dir.path(),
        "rsa.key",
        "-----BEGIN RSA PRIVATE KEY-----\nx\n-----END RSA PRIVATE KEY-----\n",
    );
    assert!(err(&format!(
        "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"",
        cert.display(),
        rsa.display()
    ))
    .contains("openssl pkcs8"));
    assert!(err(&format!(
        "tls_insecure_skip_verify = true\ntls_cert_file = \"{0}\"\ntls_key_file = \"{0}\"",
        cert.display()
    ))
    .contains("`redis.tls_insecure_skip_verify` cannot be combined"));
    assert!(err("sentinel_password = \"x\"").contains("`redis.sentinel_password` only applies"));
    assert!(err("wait_replicas = 1\nwait_timeout_ms = 0").contains("`redis.wait_timeout_ms`"));
    assert!(err("wait_replicas = 1\nwait_timeout_ms = 20000").contains("`redis.wait_timeout_ms`"));
    assert!(err("wait_replicas = -1").contains("redis.wait_replicas"));
    assert!(err("mode = \"cluster\"\ndb = 2").contains("`redis.db` must be 0 in cluster mode"));
    assert!(err("tls_ca = \"x\"").contains("tls_ca"));
    assert!(load(
        &MINIMAL
            .replace("[\"127.0.0.1:6379\"]", "[\"rediss://a:1\", \"b:2\"]")
            .replace("[redis]", "[redis]\nmode = \"cluster\""),
        &[]
    )
    .unwrap_err()
    .to_string()
    .contains("mixes rediss://"));
}

/// `kafka.group_instance_id`, the `group.instance.id` property (the same setting) and the variable.
#[test]
fn group_instance_id_has_one_meaning_under_each_name() {
    let with = |line: &str| MINIMAL.replace("group = \"g\"", &format!("group = \"g\"\n{line}"));
    let id =
        |toml: &str, vars: &[(&str, &str)]| load(toml, vars).map(|c| c.kafka.group_instance_id);
    assert!(matches!(
        id(MINIMAL, &[]).unwrap(),
        GroupInstanceId::Derived { config_path } if config_path.is_absolute()
    ));
    let named = |s: &str| GroupInstanceId::Named(s.to_string());
    assert_eq!(
        id(&with("group_instance_id = \"a-1\""), &[]).unwrap(),
        named("a-1")
    );
    assert_eq!(
        id(&with("group_instance_id = \"\""), &[]).unwrap(),
        GroupInstanceId::Dynamic
    );
    let property = MINIMAL.replace(
        "properties = {",
        "properties = { \"group.instance.id\" = \"p\",",
    );
    let c = load(&property, &[]).unwrap();
    assert_eq!(c.kafka.group_instance_id, named("p"));
    assert!(!c.kafka.properties.contains_key("group.instance.id"));
    let both = property.replace("group = \"g\"", "group = \"g\"\ngroup_instance_id = \"q\"");
    let e = id(&both, &[]).unwrap_err().to_string();
    assert!(
        e.contains("kafka.group_instance_id") && e.contains("one setting"),
        "{e}"
    );
    assert_eq!(
        id(MINIMAL, &[("K2R_KAFKA_GROUP_INSTANCE_ID", "")]).unwrap(),
        GroupInstanceId::Dynamic
    );
    assert_eq!(
        id(MINIMAL, &[("K2R_KAFKA_GROUP_INSTANCE_ID", "v")]).unwrap(),
        named("v")
    );
    let e = id(&with("group_instance_id = \"a b\""), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a valid group.instance.id"), "{e}");
}
