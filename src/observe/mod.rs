//! What the daemon shows about itself: the state lanes keep current, lag, metrics, health, and
//! the HTTP server that serves them.

pub mod continuity;
pub mod http;
pub mod lag;
pub mod metrics;
pub mod readiness;
pub mod shared;
pub mod state;
pub mod stats;
