//! What happens to a partition's messages between Kafka and Redis: gather a batch, encode each
//! message, deliver the batch in one Redis call, store the next offset, and pause while the list
//! is full.

pub mod backoff;
pub mod backpressure;
pub mod batch;
pub mod deliver;
mod deliver_checked;
pub mod deliver_jobs;
pub mod deliver_sequenced;
pub mod deliver_stream;
pub mod encode;
pub mod jobs;
mod json;
pub mod key_types;
pub mod lane;
pub mod partition;
pub mod plan;
pub mod record;
pub mod stream_entry;

#[cfg(test)]
mod tests;
