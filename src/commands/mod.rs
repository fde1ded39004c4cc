//! The commands beside the daemon: `check` (is this config ready to run?), `status` (where is
//! every partition?) and the hidden `generate-assets` (man page and completions for the package).

pub mod assets;
pub mod check;
pub mod status;

use std::time::Duration;

/// What a command found: the text to print, and how many problems (0: exit 0).
pub struct Report {
    pub text: String,
    pub problems: usize,
}

/// Bound on each request the commands make to Kafka.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);
