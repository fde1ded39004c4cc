use super::*;

fn load(json: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let config = parse(
        json,
        Path::new("conf.json"),
        &Vars::from_pairs(vars.iter().copied()),
    )?;
    config.validate()?;
    Ok(config)
}

const OLD_README_EXAMPLE: &str = r#"{
    "kafka_addr":["127.0.0.1:9092","127.0.0.1:9093"],
    "redis_host":[
        "10.91.49.20","10.91.49.21","10.91.49.22"
    ],
    "redis_port":[
        "27000"
    ],
    "sentinel_master_name":"redis_cache_master",    // redis sentinel模式下必填
    "cache_size":5,                                 // redis list允许堆积的数量
    "topics":["lkl_test","lkl_make"],
    "consumer_group":"test-group",
    "start_lock":"kafka_consumers_run",
    "prefix_redis":"queues:",
    "consumer_num":2,                               // 每个topic的消费者数量，该值应<=partition
    "topics_queue_len":"topics_queue_len"          // 记录topic堆积情况key, 这个是预估值
}"#;

#[test]
fn old_readme_example_loads_as_sentinel() {
    let c = load(OLD_README_EXAMPLE, &[]).unwrap();
    assert_eq!(c.kafka.brokers, vec!["127.0.0.1:9092", "127.0.0.1:9093"]);
    assert_eq!(
        c.redis.topology,
        RedisTopology::Sentinel {
            master_name: "redis_cache_master".into(),
            addresses: vec![
                "10.91.49.20:27000".into(),
                "10.91.49.21:27000".into(),
                "10.91.49.22:27000".into()
            ],
        }
    );
    assert_eq!(c.topics[1].list_key, "queues:lkl_make");
    assert_eq!(
        c.topics[0].cap,
        Some(Cap {
            max: 5,
            low_water: 2
        })
    );
    assert_eq!(c.topics[0].envelope, Envelope::Legacy);
    assert_eq!(c.lease_key.as_deref(), Some("kafka_consumers_run"));
    assert!(c.warnings.iter().any(|w| w.contains("consumer_num")));
    // Sentinel is spoken now: nothing about it is "not yet active".
}

#[test]
fn env_keys_override_the_file() {
    let c = load(
        OLD_README_EXAMPLE,
        &[
            ("KAFKA_BROKERS", "k1:9092, k2:9092"),
            ("REDIS_HOST", "r1"),
            ("REDIS_PORT", "6380"),
        ],
    )
    .unwrap();
    assert_eq!(c.kafka.brokers, vec!["k1:9092", "k2:9092"]);
    assert_eq!(
        c.redis.topology,
        RedisTopology::Standalone {
            address: "r1:6380".into()
        }
    );
    // The file's master name no longer applies to one host and one port: said, not ignored.
    assert!(c
        .warnings
        .iter()
        .any(|w| w.contains("sentinel_master_name = \"redis_cache_master\" is unused")));
}

#[test]
fn cluster_when_ports_match_hosts() {
    let c = load(
        r#"{"kafka_addr":["k:1"],"redis_host":["a","b"],"redis_port":[7000,7001],"topics":["t"],"consumer_group":"g"}"#,
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
fn defaults_match_the_old_tool() {
    let c = load(
        r#"{"kafka_addr":"k:9092","redis_host":"r","redis_port":"6379","topics":["t"],"consumer_group":"g","extra":1}"#,
        &[],
    )
    .unwrap();
    assert_eq!(c.topics[0].list_key, "queues:t");
    assert_eq!(c.lag_hash, "topics_queue_len");
    assert!(c
        .warnings
        .iter()
        .any(|w| w.contains("unknown config keys ignored: extra")));
}

#[test]
fn errors_name_the_key() {
    let base =
        r#""kafka_addr":["k:9092"],"redis_host":["r"],"redis_port":["6379"],"consumer_group":"g""#;
    let err = |json: String| load(&json, &[]).unwrap_err().to_string();
    assert!(err(format!("{{{base}}}")).contains("`topics` is missing"));
    assert!(err(format!(r#"{{{base},"topics":["t"],"cache_size":0}}"#))
        .contains("`cache_size` must be greater than 0"));
    assert!(
        err(format!(r#"{{{base},"topics":["t"],"cache_size":"x"}}"#))
            .contains("`cache_size` has the wrong type")
    );
    assert!(err(r#"{"kafka_addr":[],"redis_host":["r"],"redis_port":["1"],"topics":["t"],"consumer_group":"g"}"#.into())
        .contains("`kafka_addr`"));
    assert!(err(r#"{"kafka_addr":["k:1"],"redis_host":["a","b"],"redis_port":["1","2","3"],"topics":["t"],"consumer_group":"g"}"#.into())
        .contains("redis_host/redis_port"));
    assert!(err(r#"{"kafka_addr":["k:1"],"redis_host":["a","b"],"redis_port":["1"],"topics":["t"],"consumer_group":"g"}"#.into())
        .contains("sentinel_master_name"));
    assert!(err("{\n\"topics\": [\n}".into()).contains("line 3"));
}

#[test]
fn comments_inside_strings_survive() {
    assert_eq!(
        strip_line_comments("{\"a\":\"x//y\"} // c\n"),
        "{\"a\":\"x//y\"} \n"
    );
}

#[test]
fn sentinel_variables_need_sentinel() {
    let standalone = r#"{"kafka_addr":"k:9092","redis_host":"r","redis_port":"6379","topics":["t"],"consumer_group":"g"}"#;
    for variable in [
        "K2R_REDIS_SENTINEL_MASTER",
        "K2R_REDIS_SENTINEL_USERNAME",
        "K2R_REDIS_SENTINEL_PASSWORD",
    ] {
        let err = load(standalone, &[(variable, "x")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "`{variable}` only applies when Redis is reached through Sentinel"
            )),
            "{err}"
        );
    }
    let c = load(
        OLD_README_EXAMPLE,
        &[("K2R_REDIS_SENTINEL_PASSWORD", "spw")],
    )
    .unwrap();
    assert_eq!(c.redis.sentinel_password, Some("spw".into()));
}

/// The old format takes the native default (derived at start, with its lease: the id the holder
/// and its standbys share) and the same variable to change it.
#[test]
fn group_instance_id_defaults_and_the_variable_applies() {
    let c = load(OLD_README_EXAMPLE, &[]).unwrap();
    assert!(matches!(
        c.kafka.group_instance_id,
        GroupInstanceId::Derived { .. }
    ));
    let c = load(OLD_README_EXAMPLE, &[("K2R_KAFKA_GROUP_INSTANCE_ID", "")]).unwrap();
    assert_eq!(c.kafka.group_instance_id, GroupInstanceId::Dynamic);
    let c = load(OLD_README_EXAMPLE, &[("K2R_KAFKA_GROUP_INSTANCE_ID", "x")]).unwrap();
    assert_eq!(
        c.kafka.group_instance_id,
        GroupInstanceId::Named("x".into())
    );
}
