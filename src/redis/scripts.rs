//! Lua scripts that make a push and its checks one atomic step in Redis (the `.lua` files beside
//! this one; what each takes and returns is said here).

use std::sync::LazyLock;

use ::redis::Script;

/// `KEYS[1]` list, then its fence key under the lease, then the lane's sequence hash when the push
/// is sequenced, and last the companion key when there is a companion write. `ARGV[1]` cap (""
/// for none), `ARGV[2]` the holder's fence value ([`FENCE_WRITE`]; "" for none), `ARGV[3]` the
/// push command (`RPUSH`, or `LPUSH` for workers that pop the tail), `ARGV[4]` the companion write
/// ("", `notify` or `sadd`, see `list_writes.lua`), `ARGV[5]` the set member for `sadd`, `ARGV[6]`
/// the lane's field in the sequence hash ("" for an unsequenced push), `ARGV[7]` the value the
/// field must hold ("": any), `ARGV[8]` the value it holds once the whole batch is in,
/// `ARGV[9..]` elements. Before its first write it checks every key it writes: a key of another
/// type refuses everything as `{-3, key, type found, type wanted}` ([`WRONG_TYPE`]), so the script
/// never stops half-way (a list push that landed beside a companion write that failed would be
/// pushed again by the retry). It refuses everything — `{-2, 0}` — when the fence key does not
/// hold that value (another instance took the lease, or the fence is gone), and — `{-4, value}`
/// ([`OUT_OF_SEQUENCE`]) — when the sequence field does not hold `ARGV[7]`: a batch sent before
/// this one by the same lane did not land whole. Otherwise pushes as many elements as fit under
/// the cap (the length check and the push are atomic, so concurrent lanes and instances can never
/// take the list past it), makes the companion write for them, sets the sequence field to
/// `ARGV[8]` when every element went in (else to `ARGV[8]#<pushed>`, so nothing sent after this
/// batch lands)
/// and returns `{pushed, length after}`.
pub static PUSH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/push_in_chunks.lua"),
        include_str!("scripts/list_writes.lua"),
        include_str!("scripts/push.lua")
    ))
});

/// The checks of a push that went before it in the same `MULTI`/`EXEC`
/// ([`crate::pipeline::deliver_checked`]), sent as its source (`EVAL`, never `EVALSHA`). `KEYS[1]`
/// the list, then its fence key under the lease, then its offsets hash when exactly-once, and last
/// the companion key when there is a companion write.
/// `ARGV[1]` how many elements the push added, `ARGV[2]` its command (`RPUSH`, `LPUSH`: which end
/// to take them back from), `ARGV[3]` cap ("" for none), `ARGV[4]` the holder's fence value (""
/// for none), `ARGV[5]` the partition's field in the offsets hash ("" when not exactly-once),
/// `ARGV[6]` the next offset the lane believes is recorded, `ARGV[7]` the next offset once the
/// whole batch is in, `ARGV[8]` the elements' offsets, each right-aligned in 20 characters (only
/// with a cap), `ARGV[9]` the companion write and `ARGV[10]` its set member (as for [`PUSH`]; the
/// script makes it for what stayed on the list). Refuses as [`PUSH`] and [`EXACTLY_ONCE_PUSH`]
/// do (`{-3, …}` for a key of another type, `{-2, ""}` for the fence, `{-1, recorded}` for the
/// record) and then takes every element back; else takes back what the cap leaves no room for and
/// returns `{pushed, length}`, with the recorded next offset as a third element when exactly-once.
/// `{-5, error}` if the push did not land or a check failed otherwise (the push taken back).
///
/// Its source goes with every push and Redis hashes it each time to find the compiled script, so
/// it is sent without its comment lines and indentation.
pub static CHECKED_PUSH: LazyLock<String> = LazyLock::new(|| {
    without_comment_lines(concat!(
        include_str!("scripts/list_writes.lua"),
        include_str!("scripts/checked_push.lua")
    ))
});

/// `source` without indentation, blank lines and the lines that are only a Lua comment.
fn without_comment_lines(source: &str) -> String {
    source
        .lines()
        .map(str::trim)
        .filter(|code| !code.is_empty() && !code.starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Exactly-once push. `KEYS[1]` list, `KEYS[2]` its offsets hash (same Cluster slot), `KEYS[3]` the
/// list's fence key under the lease (refused as `{-2, ""}` when the fence key does not hold
/// the fence value), and last the companion key when there is a companion write.
/// `ARGV[1]` the partition's field, `ARGV[2]` the next offset the lane believes is recorded ("" for
/// none), `ARGV[3]` cap ("" for none), `ARGV[4]` n, `ARGV[5]` the next offset once the whole batch is
/// in, `ARGV[6]` the push command, `ARGV[7]` the companion write and `ARGV[8]` its set member (as
/// for [`PUSH`]), `ARGV[9]` the holder's fence value ("" for none), `ARGV[10..9+n]` the elements,
/// `ARGV[10+n..9+2n]` their offsets.
///
/// Refuses a key of the wrong type and a fence that does not hold the token as [`PUSH`] does
/// (`{-3, …}`, `{-2, ""}`), before any write. Refuses the batch — `{-1, recorded}` — when the
/// recorded offset is not the one the lane expects: another writer (a zombie after a rebalance, a duplicate instance) moved the partition, or a Redis
/// failover lost writes. Otherwise pushes what fits under the cap and records, in the same atomic
/// step, the offset of the first message that did not fit (or the batch's end), with the companion
/// write for what was pushed: `{pushed, length, next}`.
pub static EXACTLY_ONCE_PUSH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/push_in_chunks.lua"),
        include_str!("scripts/list_writes.lua"),
        include_str!("scripts/exactly_once_push.lua")
    ))
});

/// The first element of a sequenced push's refusal when the lane's sequence field does not hold
/// the value the push expects: `{-4, what it holds}` and nothing was written.
pub const OUT_OF_SEQUENCE: i64 = -4;

/// The first element of a script's refusal when one of its keys holds another type: the reply is
/// `{-3, key, type found, type wanted}` and nothing was written.
pub const WRONG_TYPE: i64 = -3;

/// The lease's fence keys hold `"<fencing number> <token>"`; a value without the number is an
/// older release's fence (the token alone).
///
/// `KEYS[1]` a fence key, `ARGV[1]` the holder's fencing number, `ARGV[2]` its fence value,
/// `ARGV[3]` "1" when an unnumbered (older release's) fence may be overwritten. Writes the value
/// only if the fence holds no higher number — a fence only moves forward, so a holder that was
/// replaced cannot put its older fence back — and returns `{1, value}`; else `{0, what the fence
/// holds}`. A key of another type: `{-3, key, type found, "string"}`.
pub static FENCE_WRITE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/fence_write.lua")));

/// `KEYS[1]` the fencing counter, `ARGV[1]` the highest number any fence holds (0 for none):
/// returns max(`INCR` counter, that + 1) and leaves the counter there, so that a counter that was
/// lost (evicted, deleted, a failover) cannot hand out a number some fence already passed.
pub static FENCING_NUMBER: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/fencing_number.lua")));

/// BullMQ jobs (`scripts/hash_jobs.lua` + `scripts/bullmq_push.lua`). `KEYS[1..6]` the queue's
/// `wait`, `meta`, `id`, `events`, `marker` and `active` keys; then the offsets hash (same Cluster
/// slot) when `ARGV[3]` names the partition's field; then the fence key when `ARGV[2]` holds the
/// lease token. `ARGV[1]` cap ("" for none), `ARGV[2]` token ("" for none), `ARGV[3]` offsets field
/// ("" for a push that records no offset), `ARGV[4]` the next offset the lane believes is recorded
/// ("" for none), `ARGV[5]` the next offset once every job is in, `ARGV[6]` the job hash prefix
/// (`<prefix>:<queue>:`), `ARGV[7]` n, then per job its offset, its id and its n hash fields as
/// name, value pairs.
///
/// Refuses everything — `{-2, ""}` — when the fence key does not hold the token, and `{-1,
/// recorded}` when the offsets hash records another position than `ARGV[4]`. Checks the type of
/// every key it writes before the first write (an error reply, nothing written). Then takes the
/// jobs in order as BullMQ's `Queue.add` adds each (docs/workers-wire-format.md): one whose hash
/// exists gets only a `duplicated` event; a new one goes in only while `wait` is below the cap.
/// Records the offset of the first job not taken (or the batch's end) when asked to, and returns
/// `{taken, wait length, next offset}`.
pub static BULLMQ_PUSH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/hash_jobs.lua"),
        include_str!("scripts/bullmq_push.lua")
    ))
});

/// RQ jobs (`scripts/hash_jobs.lua` + `scripts/rq_push.lua`). `KEYS[1]` the queue's list
/// (`<prefix>:queue:<queue>`), `KEYS[2]` the queues set (`<prefix>:queues`), then the offsets
/// hash and the fence key, and `ARGV` as for [`BULLMQ_PUSH`] (the job hash prefix is
/// `<prefix>:job:`). Registers the queue in the set, then adds each job whose hash does not exist
/// yet (its hash and `RPUSH` of its id) while the list is below the cap; the replies are
/// [`BULLMQ_PUSH`]'s. RQ's keys lie in different Cluster slots: the config refuses RQ there.
pub static RQ_PUSH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/hash_jobs.lua"),
        include_str!("scripts/rq_push.lua")
    ))
});

/// Stream entries (`scripts/list_writes.lua` for the type checks, `scripts/stream_groups.lua`,
/// `scripts/stream_push.lua`). `KEYS[1]` the stream; then its offsets hash (same Cluster slot)
/// when `ARGV[3]` names the partition's field; then its fence key when `ARGV[2]` holds the lease's
/// fence value. `ARGV[1]` cap ("" for none), `ARGV[2]` fence value ("" for none), `ARGV[3]`
/// offsets field ("" for a push that records no offset), `ARGV[4]` the next offset the lane
/// believes is recorded ("" for none), `ARGV[5]` the next offset once every entry is in, then per
/// entry its offset, its number of field names and values, and those.
///
/// Refuses a key of the wrong type (`{-3, key, found, wanted}`), a fence that does not hold the
/// value (`{-2, ""}`) and, when recording, a recorded offset other than `ARGV[4]` (`{-1,
/// recorded}`), all before any write. Then trims what every consumer group finished (`XTRIM
/// MINID`, see [`STREAM_UNFINISHED`]), adds entries in order while the groups' unfinished work
/// is below the cap, records the offset of the first entry not added (or the batch's end) when
/// asked to, and returns `{added, unfinished after, next offset}`.
pub static STREAM_PUSH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/list_writes.lua"),
        include_str!("scripts/stream_groups.lua"),
        include_str!("scripts/stream_push.lua")
    ))
});

/// `KEYS[1]` a stream: the unfinished work of its busiest consumer group — entries not yet
/// delivered to it (`XINFO GROUPS`' `lag`; where that is nil, the entries after its last-delivered
/// id, counted when few, else bounded by the stream's length) plus its pending entries; without
/// groups, the stream's length; 0 for no stream.
pub static STREAM_UNFINISHED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/stream_groups.lua"),
        include_str!("scripts/stream_unfinished.lua")
    ))
});

/// `KEYS[1]` a stream: `{unfinished, oldest}` — the unfinished work as [`STREAM_UNFINISHED`]
/// counts it, and the id of the oldest entry some group has not finished (its oldest pending entry,
/// else the first after its last-delivered one; without groups the first entry), nil when nothing
/// waits.
pub static STREAM_WAITING: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/stream_groups.lua"),
        include_str!("scripts/stream_waiting.lua")
    ))
});

/// Writes per-partition lag, deletes gone fields, then sums each topic over the companion hash.
/// KEYS: lag hash, partitions hash. ARGV: n, m, n (field, lag) pairs, m gone fields, topics.
pub static WRITE_LAG: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/write_lag.lua")));

/// `KEYS[1]` lease, `ARGV[1]` owner token, `ARGV[2]` TTL (ms): extends the lease only while it holds
/// the token (compare-and-extend); returns 1 if extended, else 0.
pub static LEASE_EXTEND: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/lease_extend.lua")));

/// `KEYS[1]` lease, `ARGV[1]` owner token: deletes the lease only while it holds the token
/// (compare-and-delete); returns 1 if deleted, else 0.
pub static LEASE_RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/lease_release.lua")));
