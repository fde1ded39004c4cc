//! The small HTTP server behind `--http HOST:PORT`: `/metrics`, `/healthz`, `/readyz`, `/status`.
//!
//! Liveness and readiness answer different questions, as Kubernetes expects:
//! - `/healthz` — is the process turning? The lag loop beats every `lag.interval_ms`; a beat
//!   older than a few intervals means something is wedged and a restart is the cure.
//! - `/readyz` — is it doing its job? Kafka and Redis reached in the last round, and either
//!   partitions assigned (none STALLed) or standing by for the lease. Not ready is not a reason to
//!   restart: Redis may simply be down.
//! - `/status` — the per-partition picture as JSON, for people and scripts.

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
use crate::observe::lag::{Board, Rating, Snapshot};
use crate::observe::metrics::Collector;
use crate::observe::shared::Shared;
use crate::observe::state::{now_ms, LeaseState, Registry};

/// What the handlers read.
#[derive(Clone)]
pub struct App {
    config: Arc<Config>,
    board: Arc<Board>,
    registry: Arc<Registry>,
    collector: Arc<Collector>,
}

impl App {
    pub(crate) fn new(config: Arc<Config>, shared: &Shared) -> App {
        App {
            config,
            board: shared.board.clone(),
            registry: shared.registry.clone(),
            collector: Arc::new(Collector {
                stats: shared.stats.clone(),
                registry: shared.registry.clone(),
                board: shared.board.clone(),
            }),
        }
    }

    /// The heartbeat may be this old before `/healthz` fails.
    fn heartbeat_limit(&self) -> Duration {
        (self.config.lag_interval * 3).max(Duration::from_secs(10))
    }
}

/// Serves until `stop`.
pub async fn serve(listener: tokio::net::TcpListener, app: App, stop: CancellationToken) {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
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
    let age = now_ms() - app.board.health.heartbeat_ms();
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

/// Why the instance is not ready (empty: ready).
pub fn not_ready_reasons(
    board: &Board,
    registry: &Registry,
    snapshot: &Snapshot,
    heartbeat_limit: Duration,
) -> Vec<String> {
    let health = &board.health;
    let mut reasons = Vec::new();
    if now_ms() - health.heartbeat_ms() > heartbeat_limit.as_millis() as i64 {
        reasons.push("the lag loop is not turning".to_string());
    }
    if snapshot.at_ms == 0 {
        reasons.push("no lag round yet".to_string());
    }
    if !health.redis_ok() {
        reasons.push("Redis not reachable".to_string());
    }
    match health.lease() {
        LeaseState::Standby => {} // a standby is ready: it is doing exactly its job
        LeaseState::Shared | LeaseState::Held => {
            if !health.kafka_ok() {
                reasons.push("Kafka not reachable".to_string());
            }
            if registry.snapshot().is_empty() {
                reasons.push("no partitions assigned".to_string());
            }
            let stalled: Vec<String> = snapshot
                .partitions
                .iter()
                .filter(|p| p.state == Rating::Stall)
                .map(|p| format!("{}/{}", p.topic, p.partition))
                .collect();
            if !stalled.is_empty() {
                reasons.push(format!("stalled partitions: {}", stalled.join(",")));
            }
        }
    }
    reasons
}

async fn readyz(State(app): State<App>) -> Response {
    let snapshot = app.board.latest();
    let reasons = not_ready_reasons(&app.board, &app.registry, &snapshot, app.heartbeat_limit());
    let ready = reasons.is_empty();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(Readiness { ready, reasons })).into_response()
}

#[derive(Serialize)]
struct Status<'a> {
    group: &'a str,
    lease: LeaseState,
    redis_up: bool,
    kafka_up: bool,
    #[serde(flatten)]
    snapshot: &'a Snapshot,
}

async fn status(State(app): State<App>) -> Response {
    let snapshot = app.board.latest();
    let health = &app.board.health;
    axum::Json(Status {
        group: &app.config.kafka.group,
        lease: health.lease(),
        redis_up: health.redis_ok(),
        kafka_up: health.kafka_ok(),
        snapshot: &snapshot,
    })
    .into_response()
}
