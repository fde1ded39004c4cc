//! Turning SIGTERM/SIGINT into an orderly stop, and a second signal into an immediate exit.
//!
//! An immediate exit loses nothing either: offsets are only ever stored after Redis acknowledged,
//! so whatever was in flight is delivered again after the restart.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Exit code used when a second signal cuts the orderly stop short (128 + SIGINT, by convention).
pub const FORCED_EXIT_CODE: i32 = 130;

/// A stop request shared by everything that must wind down.
#[derive(Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    /// When the stop was asked for: what is left of the shutdown bound is measured from it.
    since: Arc<OnceLock<Instant>>,
}

impl Shutdown {
    /// Listens for SIGTERM and SIGINT on the current runtime.
    pub fn listen() -> std::io::Result<Shutdown> {
        let shutdown = Shutdown::default();
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let token = shutdown.token.clone();
        let since = shutdown.since.clone();
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            info!(
                signal = name,
                "stopping: finishing in-flight batches (send the signal again to exit at once)"
            );
            let _ = since.set(Instant::now());
            token.cancel();
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            warn!(
                signal = name,
                "second signal: exiting now; uncommitted messages will be delivered again"
            );
            std::process::exit(FORCED_EXIT_CODE);
        });
        Ok(shutdown)
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// What is left of `bound` since the stop was asked for (all of it before then).
    pub fn left_of(&self, bound: Duration) -> Duration {
        self.since
            .get()
            .map_or(bound, |since| bound.saturating_sub(since.elapsed()))
    }

    pub async fn wait(&self) {
        self.token.cancelled().await
    }

    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }
}
