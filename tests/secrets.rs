//! Secrets never leave the process: a Redis password in the address URL and a SASL password among
//! the Kafka properties appear nowhere in the logs (at debug level), in `check` and `status`, on
//! `/status` and `/metrics`, or in config errors — while the masked form shows where they were.

mod common;

use std::time::Duration;

use common::*;

const REDIS_PASSWORD: &str = "redis-pw-5618273";
const KAFKA_PASSWORD: &str = "kafka-pw-9402716";
const KEY_PASSWORD: &str = "key-pw-3381904";

/// A native config: Redis through a password URL, Kafka (a closed port, so nothing is ever
/// reached) with SASL credentials and a key passphrase, librdkafka's own config debugging on.
fn config(redis_port: u16, kafka_port: u16, http_port: u16) -> String {
    let kafka = Broker {
        address: format!("127.0.0.1:{kafka_port}"),
    };
    let redis =
        format!("[redis]\naddresses = [\"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_port}\"]\n");
    Config::new(&kafka, &redis, "secret-group", r#"["secret-topic"]"#)
        .kafka_properties(&format!(
            r#""security.protocol" = "SASL_PLAINTEXT"
"sasl.mechanism" = "PLAIN"
"sasl.username" = "bridge"
"sasl.password" = "{KAFKA_PASSWORD}"
"ssl.key.password" = "{KEY_PASSWORD}"
"debug" = "conf,security""#
        ))
        .sections(&format!("[http]\naddress = \"127.0.0.1:{http_port}\""))
        .to_string()
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [REDIS_PASSWORD, KAFKA_PASSWORD, KEY_PASSWORD] {
        assert!(!text.contains(secret), "{what} shows {secret:?}:\n{text}");
    }
}

fn with_password() -> RedisServer {
    RedisServer::start_with(
        Security {
            admin_password: Some(REDIS_PASSWORD.into()),
            ..Security::default()
        },
        &[],
    )
}

/// Runs the daemon at debug level until it is connected to Redis and waiting for Kafka, reads its
/// HTTP endpoints, stops it, and searches everything it wrote.
#[test]
fn running_daemon_shows_no_secret() {
    let redis = with_password();
    let http_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "k2r.toml",
        &config(redis.port, free_port(), http_port),
    );
    let mut bridge = Bridge::start_logging(dir.path(), &["--config", "k2r.toml"], "debug");
    wait_until(
        "the daemon connected to Redis and waits for Kafka",
        Duration::from_secs(30),
        || bridge.log_text().contains("joined the consumer group"),
    );
    let mut pages = String::new();
    for path in ["/status", "/metrics", "/readyz", "/healthz"] {
        let (_, body) = http_get(http_port, path).expect("the HTTP server answers");
        pages += &format!("--- {path}\n{body}\n");
    }
    bridge.signal(libc::SIGTERM);
    let status = bridge.wait_exit(Duration::from_secs(30));
    assert!(status.code().is_some(), "stopped by the signal handler");

    let stderr = bridge.log_text();
    let stdout = bridge.out_text();
    assert_no_secret("stderr", &stderr);
    assert_no_secret("stdout", &stdout);
    assert_no_secret("the HTTP endpoints", &pages);
    // The address is logged, with the password masked.
    let masked = format!("redis://:***@127.0.0.1:{}", redis.port);
    assert!(
        stderr.contains(&masked),
        "expected {masked} in the log:\n{stderr}"
    );
    assert!(stderr.contains("DEBUG"), "debug level was on:\n{stderr}");
}

/// `check` and `status` reach Redis with the password and report the address masked.
#[test]
fn check_and_status_show_no_secret() {
    let redis = with_password();
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "k2r.toml",
        &config(redis.port, free_port(), free_port()),
    );
    let run = |command: &'static str| {
        let dir = dir.path().to_path_buf();
        std::thread::spawn(move || {
            bridge_command(&dir, &["--config", "k2r.toml", command])
                .env("RUST_LOG", "debug")
                .output()
                .unwrap()
        })
    };
    let (check, status) = (run("check"), run("status"));
    let (check, status) = (check.join().unwrap(), status.join().unwrap());
    for (name, out) in [("check", &check), ("status", &status)] {
        assert_eq!(out.status.code(), Some(1), "{name}: Kafka is unreachable");
        assert_no_secret(name, &String::from_utf8_lossy(&out.stdout));
        assert_no_secret(name, &String::from_utf8_lossy(&out.stderr));
    }
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        report.contains(&format!(
            "redis: ok (standalone redis://:***@127.0.0.1:{}; password",
            redis.port
        )),
        "{report}"
    );
}

/// A config error about an address or a password value never quotes the password.
#[test]
fn config_errors_show_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let redis_port = free_port();
    let good = config(redis_port, free_port(), free_port());
    let url = format!("{REDIS_PASSWORD}@127.0.0.1:");
    let addresses = format!("[\"redis://:{url}{redis_port}\"]");
    let kafka = format!("\"{KAFKA_PASSWORD}\"");
    for bad in [
        // An ephemeral port with a 9 in front is out of range: the URL is invalid.
        good.replace(&url, &format!("{url}9")),
        // The addresses as a string instead of a list.
        good.replace(&addresses, &addresses[1..addresses.len() - 1]),
        good.replace(&kafka, &format!("[{kafka}]")),
        good.replace(&kafka, &format!("\"{KAFKA_PASSWORD}")),
    ] {
        write_file(dir.path(), "k2r.toml", &bad);
        let out = run_bridge(dir.path(), &["--config", "k2r.toml", "check"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}\n{stderr}");
        assert_no_secret("the config error", &stderr);
        assert!(stderr.starts_with("kafka2redis: "), "{stderr}");
    }
}
