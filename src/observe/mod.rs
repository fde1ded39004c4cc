//! What the daemon shows about itself: the state lanes keep current, lag, the backlog per
//! destination, metrics, health, and the HTTP server that serves them.

pub mod backlog;
pub mod continuity;
pub mod http;
pub mod lag;
pub mod metrics;
pub mod pushlog;
pub mod readiness;
pub mod shared;
pub mod state;
pub mod stats;
