//! The wait between retries: doubling from `retry.backoff_min_ms` up to `retry.backoff_max_ms`,
//! so a brief outage is retried quickly and a long one does not flood Redis or the logs.

use std::time::Duration;

use crate::config::RetryConfig;

#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(retry: &RetryConfig) -> Backoff {
        Backoff {
            next: retry.backoff_min,
            max: retry.backoff_max,
        }
    }

    /// How long the coming wait is, without taking it.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// The coming wait; the one after it is twice as long, up to the maximum.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_maximum() {
        let mut backoff = Backoff::new(&RetryConfig {
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_millis(350),
        });
        let waits: Vec<u128> = (0..4).map(|_| backoff.next_wait().as_millis()).collect();
        assert_eq!(waits, [100, 200, 350, 350]);
    }
}
