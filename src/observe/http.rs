//! The small HTTP server behind `--http HOST:PORT`: `/metrics`, `/healthz`, `/readyz`, `/status`,
//! `/scaling`, and at `/` a status page for people.
//!
//! Liveness and readiness answer different questions, as Kubernetes expects:
//! - `/healthz` — is the process turning? The lag loop beats every `lag.interval_ms`; a beat
//!   older than a few intervals means something is wedged and a restart is the cure.
//! - `/readyz` — is it doing its job? See [`crate::observe::readiness`]; `kafka2redis_ready`
//!   exports the same answer.
//! - `/status` — the per-partition picture as JSON, for people and scripts.
//! - `/scaling` — the backlog per destination as JSON, shaped for KEDA's `metrics-api` scaler
//!   ([`crate::observe::backlog::Scaling`]).
//! - `/` — `status_page.html`: one self-contained page (no external assets, so it works on an
//!   isolated network) that polls `/status` and draws it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::Config;
use crate::observe::backlog::Scaling;
use crate::observe::lag::{Readout, Snapshot};
use crate::observe::metrics::Collector;
use crate::observe::readiness::{heartbeat_limit, not_ready_reasons};
use crate::observe::shared::Shared;
use crate::observe::state::{now_ms, LeaseState, Registry};

/// What the handlers read.
#[derive(Clone)]
pub struct App {
    config: Arc<Config>,
    readout: Arc<Readout>,
    registry: Arc<Registry>,
    collector: Arc<Collector>,
}

impl App {
    pub(crate) fn new(config: Arc<Config>, shared: &Shared) -> App {
        App {
            config: config.clone(),
            readout: shared.readout.clone(),
            registry: shared.registry.clone(),
            collector: Arc::new(Collector {
                stats: shared.stats.clone(),
                registry: shared.registry.clone(),
                readout: shared.readout.clone(),
                heartbeat_limit: heartbeat_limit(config.lag_interval),
            }),
        }
    }

    /// The heartbeat may be this old before `/healthz` fails.
    fn heartbeat_limit(&self) -> Duration {
        heartbeat_limit(self.config.lag_interval)
    }
}

/// Serves until `stop`.
pub async fn serve(listener: tokio::net::TcpListener, app: App, stop: CancellationToken) {
    let router = Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/scaling", get(scaling))
        .with_state(app);
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        warn!(error = %e, "the HTTP server stopped");
    }
}

async fn metrics(State(app): State<App>) -> Response {
    let text = crate::observe::metrics::render(app.collector.clone());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn healthz(State(app): State<App>) -> Response {
    let age = now_ms() - app.readout.health.heartbeat_ms();
    if age <= app.heartbeat_limit().as_millis() as i64 {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("lag loop has not turned for {age} ms\n"),
        )
            .into_response()
    }
}

#[derive(Serialize)]
struct Readiness {
    ready: bool,
    reasons: Vec<String>,
}

async fn readyz(State(app): State<App>) -> Response {
    let snapshot = app.readout.latest();
    let reasons = not_ready_reasons(
        &app.readout,
        &app.registry,
        &snapshot,
        app.heartbeat_limit(),
    );
    let ready = reasons.is_empty();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(Readiness { ready, reasons })).into_response()
}

/// `/status`: everything the status page shows, read at request time. Addresses are shown as
/// `host:port` only: a configured URL may carry credentials, and this endpoint has no auth.
#[derive(Serialize)]
struct Status<'a> {
    group: &'a str,
    lease: LeaseState,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_key: Option<&'a str>,
    redis_up: bool,
    kafka_up: bool,
    ready: bool,
    not_ready: Vec<String>,
    redis: RedisStatus<'a>,
    kafka: KafkaStatus<'a>,
    topics: Vec<TopicStatus<'a>>,
    #[serde(flatten)]
    snapshot: &'a Snapshot,
}

#[derive(Serialize)]
struct RedisStatus<'a> {
    topology: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    master_name: Option<&'a str>,
    addresses: Vec<String>,
    tls: bool,
    db: i64,
}

#[derive(Serialize)]
struct KafkaStatus<'a> {
    brokers: Vec<String>,
    security_protocol: &'a str,
}

/// A configured topic with this instance's running totals (counters since start).
#[derive(Serialize)]
struct TopicStatus<'a> {
    topic: &'a str,
    list: &'a str,
    dead_letter_list: String,
    delivery: &'static str,
    envelope: crate::config::Envelope,
    cap: Option<u64>,
    low_water: Option<u64>,
    delivered_messages: u64,
    delivered_bytes: u64,
    dead_letters: u64,
    batches: u64,
}

/// `host:port` out of an address that may be a URL: scheme, user info and path dropped.
fn endpoint(address: &str) -> String {
    let rest = address.split_once("://").map_or(address, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    host.to_string()
}

async fn status(State(app): State<App>) -> Response {
    use crate::config::{Delivery, RedisTopology};
    use std::sync::atomic::Ordering::Relaxed;

    let snapshot = app.readout.latest();
    let health = &app.readout.health;
    let config = &app.config;
    let not_ready = not_ready_reasons(
        &app.readout,
        &app.registry,
        &snapshot,
        app.heartbeat_limit(),
    );
    let (topology, master_name, addresses) = match &config.redis.topology {
        RedisTopology::Standalone { address } => ("standalone", None, vec![endpoint(address)]),
        RedisTopology::Sentinel {
            master_name,
            addresses,
        } => (
            "sentinel",
            Some(master_name.as_str()),
            addresses.iter().map(|a| endpoint(a)).collect(),
        ),
        RedisTopology::Cluster { addresses } => (
            "cluster",
            None,
            addresses.iter().map(|a| endpoint(a)).collect(),
        ),
    };
    let totals: std::collections::HashMap<String, _> = app.registry.totals().into_iter().collect();
    let topics = config
        .topics
        .iter()
        .map(|t| {
            let total = totals.get(&t.name);
            let count =
                |f: &dyn Fn(&crate::observe::state::TopicTotals) -> u64| total.map_or(0, |v| f(v));
            TopicStatus {
                topic: &t.name,
                list: &t.list_key,
                dead_letter_list: t.dead_letter_key(),
                delivery: match t.delivery {
                    Delivery::AtLeastOnce => "at-least-once",
                    Delivery::ExactlyOnce => "exactly-once",
                },
                envelope: t.envelope,
                cap: t.cap.map(|c| c.max),
                low_water: t.cap.map(|c| c.low_water),
                delivered_messages: count(&|v| v.messages.load(Relaxed)),
                delivered_bytes: count(&|v| v.bytes.load(Relaxed)),
                dead_letters: count(&|v| v.dead_letters.load(Relaxed)),
                batches: count(&|v| v.batches.load(Relaxed)),
            }
        })
        .collect();
    axum::Json(Status {
        group: &config.kafka.group,
        lease: health.lease(),
        lease_key: config.lease_key.as_deref(),
        redis_up: health.redis_ok(),
        kafka_up: health.kafka_ok(),
        ready: not_ready.is_empty(),
        not_ready,
        redis: RedisStatus {
            topology,
            master_name,
            addresses,
            tls: config.redis.tls.is_some(),
            db: config.redis.db,
        },
        kafka: KafkaStatus {
            brokers: config.kafka.brokers.iter().map(|b| endpoint(b)).collect(),
            security_protocol: config
                .kafka
                .properties
                .get("security.protocol")
                .map_or("plaintext", String::as_str),
        },
        topics,
        snapshot: &snapshot,
    })
    .into_response()
}

/// `/scaling`: the backlog per destination, from the last lag round.
async fn scaling(State(app): State<App>) -> Response {
    let snapshot = app.readout.latest();
    axum::Json(Scaling::new(snapshot.at_ms, &snapshot.destinations)).into_response()
}

/// `/`: the status page, one self-contained file that polls `/status`.
async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("status_page.html"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::endpoint;

    #[test]
    fn endpoints_show_host_and_port_only() {
        assert_eq!(endpoint("127.0.0.1:6379"), "127.0.0.1:6379");
        assert_eq!(endpoint("redis://user:secret@r1:6380/0"), "r1:6380");
        assert_eq!(endpoint("rediss://:secret@[::1]:6380"), "[::1]:6380");
        assert_eq!(endpoint("SASL_SSL://k1:9093"), "k1:9093");
        assert_eq!(endpoint("k1:9092?x=y"), "k1:9092");
    }
}
