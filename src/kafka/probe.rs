//! Reaching Kafka once, for `kafka2redis check`: metadata from a client that joins no group, and,
//! when that fails, which part failed. librdkafka's metadata call only says it timed out; the
//! reason (refused connection, TLS handshake, SASL authentication) arrives as error events on the
//! client's queue (a code) and as log lines (the words), so both are collected: the most specific
//! code names the part, and the log line about it says why.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;
use rdkafka::types::RDKafkaErrorCode;

/// Which part of reaching the brokers failed, most specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    /// SASL: wrong user, password or mechanism.
    Authentication,
    /// TLS: handshake failed (certificate not trusted, no or wrong client certificate, plain
    /// TCP spoken to a TLS port or the other way round).
    Tls,
    /// No connection: refused, unresolvable, timed out.
    Unreachable,
    /// Anything else librdkafka reported.
    Other,
}

impl Part {
    fn of(code: RDKafkaErrorCode) -> Part {
        match code {
            RDKafkaErrorCode::Authentication => Part::Authentication,
            RDKafkaErrorCode::SSL => Part::Tls,
            RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::Resolve
            | RDKafkaErrorCode::OperationTimedOut => Part::Unreachable,
            _ => Part::Other,
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Authentication => "authentication failed (SASL)",
            Part::Tls => "TLS handshake failed",
            Part::Unreachable => "broker unreachable",
            Part::Other => "Kafka error",
        })
    }
}

/// Why the metadata could not be read: the failing part and librdkafka's own words.
#[derive(Debug)]
pub struct Failure {
    pub part: Part,
    pub detail: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.part, self.detail)
    }
}

/// Keeps the errors librdkafka reports and its warning and error log lines while the probe runs.
#[derive(Default)]
struct Collect {
    errors: Mutex<Vec<(RDKafkaErrorCode, String)>>,
    logs: Mutex<Vec<String>>,
}

impl ClientContext for Collect {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(code) = error.rdkafka_error_code() {
            self.errors
                .lock()
                .expect("probe lock")
                .push((code, reason.to_string()));
        }
    }

    fn log(&self, level: RDKafkaLogLevel, _facility: &str, message: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            self.logs
                .lock()
                .expect("probe lock")
                .push(message.to_string());
        }
    }
}

impl ConsumerContext for Collect {}

/// Fetches metadata for every topic within `timeout`; blocking.
pub fn metadata(config: &ClientConfig, timeout: Duration) -> Result<Metadata, Failure> {
    let consumer: BaseConsumer<Collect> =
        config
            .create_with_context(Collect::default())
            .map_err(|e| Failure {
                part: Part::Other,
                detail: e.to_string(),
            })?;
    let error = match consumer.fetch_metadata(None, timeout) {
        Ok(metadata) => return Ok(metadata),
        Err(e) => e,
    };
    // The error events wait on the client's queue until it is polled.
    let mut codes = Vec::new();
    for _ in 0..5 {
        if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
            codes.extend(e.rdkafka_error_code());
        }
    }
    let context = consumer.context();
    // Errors' own reasons first, in the order they came, then the log lines.
    let mut lines = Vec::new();
    for (code, reason) in std::mem::take(&mut *context.errors.lock().expect("probe lock")) {
        codes.push(code);
        lines.push(reason);
    }
    lines.extend(std::mem::take(
        &mut *context.logs.lock().expect("probe lock"),
    ));
    Err(explain(&error, &codes, &lines))
}

/// The most specific reported code names the part (without any, the metadata error's own), and
/// the first reason or log line that speaks of that part says why.
fn explain(error: &KafkaError, codes: &[RDKafkaErrorCode], logs: &[String]) -> Failure {
    let part = codes
        .iter()
        .map(|c| Part::of(*c))
        .min()
        .or_else(|| error.rdkafka_error_code().map(Part::of))
        .unwrap_or(Part::Other);
    let words: &[&str] = match part {
        Part::Authentication => &["SASL", "uthentication"],
        Part::Tls => &["SSL", "TLS", "certificate"],
        Part::Unreachable => &["Connect", "resolve", "refused", "timed out", "down"],
        Part::Other => &[],
    };
    let detail = logs
        .iter()
        .find(|l| words.iter().any(|w| l.contains(w)))
        .or(logs.first())
        .cloned()
        .unwrap_or_else(|| error.to_string());
    Failure { part, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_error_names_the_part() {
        let timeout = KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut);
        let logs = vec![
            "127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed".to_string(),
            "bootstrap: SASL authentication error: invalid-proof".to_string(),
        ];
        let codes = [
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::Authentication,
        ];
        let failure = explain(&timeout, &codes, &logs);
        assert_eq!(failure.part, Part::Authentication);
        assert_eq!(
            failure.to_string(),
            "authentication failed (SASL): bootstrap: SASL authentication error: invalid-proof"
        );
        let failure = explain(&timeout, &codes[..1], &logs);
        assert_eq!(failure.part, Part::Unreachable);
        assert!(failure.detail.contains("Connect to"), "{failure}");
        let failure = explain(&timeout, &[], &[]);
        assert_eq!(failure.part, Part::Unreachable, "{failure}");
        assert!(failure.detail.contains("Timed out"), "{failure}");
    }
}
