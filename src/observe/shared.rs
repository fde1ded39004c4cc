//! What the daemon's loops and the HTTP server share. It lives below both, so that neither imports
//! the other: lanes and the lag loop write it, the server and the metrics read it.

use std::sync::Arc;

use super::lag::Readout;
use super::state::{Gate, Registry};
use super::stats::Stats;

#[derive(Default)]
pub struct Shared {
    pub stats: Arc<Stats>,
    /// Every assigned partition's state.
    pub registry: Arc<Registry>,
    /// The lag loop's latest snapshot and the health facts.
    pub readout: Arc<Readout>,
    /// Closed while this instance may not push (exclusive lease not held).
    pub gate: Gate,
}
