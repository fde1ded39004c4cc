//! What waits in a stream: the unfinished work of its consumer groups.
//!
//! A stream keeps an entry after a worker read it, so its length says nothing about the work left.
//! What counts is, per consumer group, the entries not yet delivered to it plus those delivered and
//! not yet acknowledged (pending): the busiest group's sum is what the cap holds to, what a paused
//! partition waits on, and what the backlog reports. A stream without any group is all unread:
//! its length. The rule lives in one Lua file (`scripts/stream_groups.lua`) that the stream push
//! runs too, so the cap in the push and the figure read here never disagree; so does the trim
//! point, the entry before which every group has finished everything.

use ::redis::aio::ConnectionLike;
use ::redis::RedisError;

use super::scripts::{STREAM_UNFINISHED, STREAM_WAITING};
use crate::config::Structure;

/// What waits at a topic's key: a list's length (`LLEN`), or a stream's [`unfinished`] work. The
/// figure caps, pausing, lag, status and the backlog all use.
pub async fn waiting<C: ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
    structure: Structure,
) -> Result<u64, RedisError> {
    match structure {
        Structure::List => ::redis::cmd("LLEN").arg(key).query_async(conn).await,
        Structure::Stream => unfinished(conn, key).await,
    }
}

/// The unfinished work of `stream`'s busiest consumer group (entries not yet delivered to it plus
/// its pending ones; where Redis cannot tell a group's lag, the entries after its last-delivered id,
/// counted when few and otherwise bounded by the stream's length), or the stream's length without
/// groups; 0 when there is no stream. One round trip (a read-only script in the stream's slot).
pub async fn unfinished<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
) -> Result<u64, RedisError> {
    STREAM_UNFINISHED.key(stream).invoke_async(conn).await
}

/// A stream's unfinished work with the oldest entry of it: what the backlog reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamWaiting {
    /// As [`unfinished`] counts it.
    pub unfinished: u64,
    /// The id of the oldest entry some group has not finished (its oldest pending entry, else the
    /// first after its last-delivered one; without groups the first entry); `None` when nothing
    /// waits.
    pub oldest: Option<String>,
}

/// [`unfinished`] with the oldest unfinished entry's id, in one round trip.
pub async fn waiting_with_oldest<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
) -> Result<StreamWaiting, RedisError> {
    let (unfinished, oldest) = STREAM_WAITING.key(stream).invoke_async(conn).await?;
    Ok(StreamWaiting { unfinished, oldest })
}

/// The millisecond part of an entry id (`<ms>-<seq>`): when Redis added it.
pub fn id_ms(id: &str) -> Option<i64> {
    id.split_once('-').map_or(id, |(ms, _)| ms).parse().ok()
}

#[cfg(test)]
mod tests;
