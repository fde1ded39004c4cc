//! kafka2redis moves Kafka messages into Redis lists, so that any number of workers can pop them.
//!
//! # The path of one message
//!
//! One process is one steady member of a consumer group ([`kafka`]). For every partition it is
//! assigned, a *lane* ([`pipeline::lane`]) reads that partition's own queue, gathers a batch
//! ([`pipeline::batch`]), encodes each message ([`pipeline::encode`]) and delivers the batch in one
//! Redis call ([`pipeline::deliver`], scripts in [`redis`]) — at least once, or exactly once with
//! the partition's next offset recorded in the same atomic step. Only after Redis acknowledged
//! does the lane store the next offset, which librdkafka commits periodically, on revoke and at
//! shutdown ([`kafka::poll_thread`]) — so a crash re-delivers, never loses. A full list pauses the
//! partition until it drained ([`pipeline::backpressure`]); a failed push is retried with
//! [`pipeline::backoff`].
//!
//! # Layout
//!
//! ```text
//! main.rs, cli        the command line: run the daemon, check, status, bench, demo
//! daemon              connect Redis, hold the lease if configured, join the group, stop in order
//! config/             the settings, from the old conf.json/.env or the native TOML, checked once
//! pipeline/           what happens to a partition's messages: the lane and its steps
//! kafka/              group membership, rebalances, the partition reader (all librdkafka FFI)
//! redis/              topologies and connections, the Lua scripts
//! keys                names of the companion keys and their Cluster slots (a leaf)
//! lease               the exclusive lease and its fence
//! observe/            state the lanes keep, lag, metrics, health, the HTTP server
//! commands/           `check`, `status`, and the man page and completions (`generate-assets`)
//! redact              secrets out of everything printed (a leaf)
//! clock               wall-clock readings (a leaf)
//! memory              free memory handed back to the system after a burst
//! logging, shutdown   log set-up and rate limits; SIGTERM/SIGINT
//! bench/              `kafka2redis bench`, apart from the daemon (it never imports it)
//! demo                `kafka2redis demo`: the daemon on demo traffic, Kafka embedded (likewise apart)
//! ```
//!
//! Settings come from the old tool's `conf.json`/`.env` or the native TOML ([`config`]).

pub mod bench;
pub mod cli;
mod clock;
mod commands;
mod config;
mod daemon;
mod demo;
mod kafka;
mod keys;
mod lease;
mod logging;
mod memory;
mod observe;
mod pipeline;
/// The job encoders, for tests/job_queues.rs, which runs the stock BullMQ and RQ workers on their
/// output; not an API.
#[doc(hidden)]
pub use pipeline::jobs;
mod redact;
mod redis;
mod shutdown;
