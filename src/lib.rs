//! kafka2redis moves Kafka messages into Redis lists, so that any number of workers can pop them.
//!
//! One process is one steady member of a consumer group. For every partition it is assigned, a
//! *lane* ([`pipeline::lane`]) reads that partition's own queue, gathers a batch, encodes each message
//! ([`pipeline::encode`]) and pushes the batch onto the topic's list in one Redis round trip ([`redis`]).
//! Only after Redis acknowledged does the lane store the next offset, which librdkafka commits
//! periodically, on revoke and at shutdown ([`kafka::poll_thread`]) — so a crash re-delivers, never
//! loses. Settings come from the old tool's `conf.json`/`.env` or the native TOML ([`config`]).

pub mod bench;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod kafka;
pub mod keys;
pub mod lease;
pub mod logging;
pub mod observe;
pub mod pipeline;
pub mod redact;
pub mod redis;
pub mod shutdown;
