//! The small HTTP server behind `--http HOST:PORT`: `/metrics`, `/healthz`, `/readyz`, `/status`.
//!
//! Liveness and readiness answer different questions, as Kubernetes expects:
//! - `/healthz` — is the process turning? The lag loop beats every `lag.interval_ms`; a beat
//!   older than a few intervals means something is wedged and a restart is the cure.
//! - `/readyz` — is it doing its job? See [`crate::observe::readiness`]; `kafka2redis_ready`
//!   exports the same answer.
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
use crate::observe::lag::{Board, Snapshot};
use crate::observe::metrics::Collector;
use crate::observe::readiness::{heartbeat_limit, not_ready_reasons};
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
            config: config.clone(),
            board: shared.board.clone(),
            registry: shared.registry.clone(),
            collector: Arc::new(Collector {
                stats: shared.stats.clone(),
                registry: shared.registry.clone(),
                board: shared.board.clone(),
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
