//! Kafka secured end to end, with the exact `[kafka.properties]` docs/operations.md gives:
//! - SASL/SCRAM-SHA-512 against Tansu started with `--authentication` (SASL_PLAINTEXT);
//! - SASL_SSL with a client certificate through a TLS front (`socat openssl-listen`, which
//!   requires a certificate signed by the test CA), since Tansu 0.6.0 serves no TLS itself
//!   (docs/kafka-security-notes.md);
//! - `kafka2redis check` names the part that failed: authentication for a wrong password, the TLS
//!   handshake for an untrusted CA, an unreachable broker for a port nobody listens on.
//!
//! Needs `openssl` and `socat` (scripts/install-deps.sh installs them).

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use common::*;

const USER: &str = "kafka2redis";
const PASSWORD: &str = "s3cret";

/// The test CA with its server certificate for 127.0.0.1 and client certificate (the ones the
/// Redis TLS tests use), plus a second CA, beside them, that signed nothing here.
fn certificates() -> Certs {
    let certs = Certs::generate();
    run_ok(
        certs.ca.parent().unwrap(),
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=k2r test other CA",
            "-keyout",
            "other-ca.key",
            "-out",
            "other-ca.pem",
        ],
    );
    certs
}

/// Tansu with SCRAM user `USER` and `topic`, then restarted with `--authentication`, advertising
/// `advertised` (the TLS front's port, or its own). Users and topics come first because
/// `tansu user create` speaks Kafka without SASL; the storage keeps both.
fn secure_broker(topic: &str, partitions: i32, advertised: Option<u16>) -> Tansu {
    let mut tansu = Tansu::start();
    tansu.create_user(USER, PASSWORD);
    tansu.broker.create_topic(topic, partitions);
    tansu.restart_authenticating(advertised.unwrap_or(tansu.port));
    tansu
}

/// `socat` terminating TLS on `port` for `backend`, requiring a client certificate from ca.pem.
struct TlsFront(Child);

impl TlsFront {
    fn start(certs: &Path, port: u16, backend: u16) -> TlsFront {
        let file = |f: &str| certs.join(f).display().to_string();
        let mut cmd = Command::new("socat");
        cmd.arg(format!(
            "openssl-listen:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},cafile={},verify=1",
            file("server.pem"),
            file("server.key"),
            file("ca.pem")
        ))
        .arg(format!("tcp:127.0.0.1:{backend}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        die_with_parent(&mut cmd);
        let front = TlsFront(cmd.spawn().expect("socat (scripts/install-deps.sh)"));
        wait_until("the TLS front listens", Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        front
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `[kafka.properties]` lines, in the order docs/operations.md lists them.
fn properties(pairs: &[(&str, String)]) -> String {
    let mut toml = String::new();
    for (k, v) in pairs {
        toml.push_str(&format!("\"{k}\" = \"{v}\"\n"));
    }
    toml
}

fn sasl(protocol: &str, password: &str) -> Vec<(&'static str, String)> {
    vec![
        ("security.protocol", protocol.to_string()),
        ("sasl.mechanism", "SCRAM-SHA-512".to_string()),
        ("sasl.username", USER.to_string()),
        ("sasl.password", password.to_string()),
    ]
}

fn tls(certs: &Path, ca: &str) -> Vec<(&'static str, String)> {
    let file = |f: &str| certs.join(f).display().to_string();
    vec![
        ("ssl.ca.location", file(ca)),
        ("ssl.certificate.location", file("client.pem")),
        ("ssl.key.location", file("client.key")),
    ]
}

/// Produces `count` numbered messages to partition 0 with the same client settings.
fn produce(address: &str, props: &[(&str, String)], topic: &str, count: usize) {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", address);
    for (k, v) in props {
        cc.set(*k, v);
    }
    let producer: BaseProducer = cc.create().unwrap();
    for i in 0..count {
        let value = format!("{topic}:0:{i}");
        producer
            .send(BaseRecord::<(), _>::to(topic).partition(0).payload(&value))
            .unwrap();
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("the secured broker acknowledged every message");
}

fn config(dir: &Path, name: &str, address: &str, redis: &RedisServer, topic: &str, props: &str) {
    let broker = Broker {
        address: address.to_string(),
    };
    Config::new(&broker, redis, topic, &format!(r#"["{topic}"]"#))
        .kafka_properties(props)
        .write(dir, name);
}

/// `kafka2redis check` with `config`: exit code and its report.
fn check(dir: &Path, config: &str) -> (i32, String) {
    let out = run_bridge(dir, &["--config", config, "check"]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn kafka_line(report: &str) -> &str {
    eprintln!("{report}");
    report
        .lines()
        .find(|l| l.starts_with("kafka: "))
        .unwrap_or_else(|| panic!("no kafka line in: {report}"))
}

fn moves_end_to_end(dir: &Path, config: &str, redis: &RedisServer, topic: &str, count: usize) {
    let bridge = Bridge::start(dir, &["--config", config]);
    bridge.wait_assigned();
    let list = format!("queues:{topic}");
    wait_until("every message on the list", Duration::from_secs(60), || {
        redis.llen(&list) == count
    });
    let elements = redis.list(&list);
    let expected: Vec<Vec<u8>> = (0..count)
        .map(|i| format!("{topic}:0:{i}").into_bytes())
        .collect();
    assert_eq!(elements, expected, "every message once, in order");
}

/// SASL_PLAINTEXT with SCRAM-SHA-512 moves messages; a wrong password is reported as an
/// authentication failure, and a port nobody listens on as an unreachable broker.
#[test]
fn sasl_scram_moves_messages_and_check_names_the_failure() {
    let topic = unique("sasl");
    let broker = secure_broker(&topic, 1, None);
    let address = format!("127.0.0.1:{}", broker.port);
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();

    // Without SASL the broker refuses: proof that authentication is on.
    config(dir.path(), "none.toml", &address, &redis, &topic, "");
    let (code, report) = check(dir.path(), "none.toml");
    assert_eq!(code, 1, "{report}");
    assert!(kafka_line(&report).starts_with("kafka: FAILED"), "{report}");

    let good = properties(&sasl("SASL_PLAINTEXT", PASSWORD));
    config(dir.path(), "k.toml", &address, &redis, &topic, &good);
    let (code, report) = check(dir.path(), "k.toml");
    assert_eq!(code, 0, "{report}");
    assert!(kafka_line(&report).starts_with("kafka: ok"), "{report}");

    produce(&address, &sasl("SASL_PLAINTEXT", PASSWORD), &topic, 200);
    moves_end_to_end(dir.path(), "k.toml", &redis, &topic, 200);

    let wrong = properties(&sasl("SASL_PLAINTEXT", "not-the-password"));
    config(dir.path(), "wrong.toml", &address, &redis, &topic, &wrong);
    let (code, report) = check(dir.path(), "wrong.toml");
    assert_eq!(code, 1, "{report}");
    let line = kafka_line(&report);
    assert!(
        line.contains("FAILED") && line.contains("authentication failed (SASL)"),
        "{report}"
    );
    assert!(report.contains("redis: ok"), "only Kafka fails: {report}");
    assert!(
        !report.contains("not-the-password"),
        "the password stays out of the report: {report}"
    );

    let nobody = format!("127.0.0.1:{}", free_port());
    config(dir.path(), "gone.toml", &nobody, &redis, &topic, &good);
    let (code, report) = check(dir.path(), "gone.toml");
    assert_eq!(code, 1, "{report}");
    let line = kafka_line(&report);
    assert!(
        line.contains("FAILED") && line.contains("broker unreachable"),
        "{report}"
    );
}

/// SASL_SSL with a client certificate through the TLS front moves messages; trusting another CA
/// is reported as a TLS handshake failure.
#[test]
fn sasl_ssl_with_client_certificate_moves_messages_and_check_names_a_bad_ca() {
    let certs = certificates();
    let certs_dir = certs.ca.parent().unwrap();
    let topic = unique("tls");
    let tls_port = free_port();
    let broker = secure_broker(&topic, 1, Some(tls_port));
    let _front = TlsFront::start(certs_dir, tls_port, broker.port);
    let address = format!("127.0.0.1:{tls_port}");
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();

    let mut props = sasl("SASL_SSL", PASSWORD);
    props.extend(tls(certs_dir, "ca.pem"));
    config(
        dir.path(),
        "k.toml",
        &address,
        &redis,
        &topic,
        &properties(&props),
    );
    let (code, report) = check(dir.path(), "k.toml");
    assert_eq!(code, 0, "{report}");

    produce(&address, &props, &topic, 200);
    moves_end_to_end(dir.path(), "k.toml", &redis, &topic, 200);

    let mut wrong_ca = sasl("SASL_SSL", PASSWORD);
    wrong_ca.extend(tls(certs_dir, "other-ca.pem"));
    config(
        dir.path(),
        "wrong-ca.toml",
        &address,
        &redis,
        &topic,
        &properties(&wrong_ca),
    );
    let (code, report) = check(dir.path(), "wrong-ca.toml");
    assert_eq!(code, 1, "{report}");
    let line = kafka_line(&report);
    assert!(
        line.contains("FAILED") && line.contains("TLS handshake failed"),
        "{report}"
    );
    assert!(report.contains("redis: ok"), "only Kafka fails: {report}");
}
