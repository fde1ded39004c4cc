//! The ids a job carries, derived from the message's topic, partition and offset, so that a
//! message pushed again (a replay after a crash, a restart from an older committed offset) carries
//! the same ids as its first push and is recognisable as the same job.
//!
//! - BullMQ and RQ keep each job in a hash named by its id, so a second push of the same message
//!   finds the hash and adds nothing ([`bullmq_job_id`], [`rq_job_id`]): readable ids made of the
//!   coordinates themselves, in the characters each framework accepts.
//! - Laravel, Celery and Sidekiq take any id and keep none that a push could check, so their ids
//!   are only recognisable ([`JobIds::derive`]): UUIDs and hex ids computed from the coordinates,
//!   in the shapes their own clients draw at random.
//!
//! A topic deleted and created again restarts its offsets at 0: its new messages carry the ids of
//! the old ones, and BullMQ and RQ skip those whose old job hash is still retained.

/// The ids of one job in the shapes Laravel, Celery and Sidekiq use, each derived when asked for:
/// an encoder asks only for the ones its framework's client would draw. Each is ASCII, so that it
/// is written without escaping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobIds {
    /// The digest of the message's coordinates ([`coordinates_digest`]).
    coordinates: u128,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// What each derived id is for: mixed into the coordinates' digest, so the ids of one job differ
/// from each other.
#[derive(Debug, Clone, Copy)]
enum Purpose {
    Uuid = 1,
    DeliveryTag = 2,
    LaravelId = 3,
    Jid = 4,
}

impl JobIds {
    /// The ids of the message at `offset` of `topic`'s `partition`: the same for every push of
    /// that message; two messages share one only by a collision of 96 to 128 hashed bits.
    pub fn derive(topic: &str, partition: i32, offset: i64) -> JobIds {
        JobIds {
            coordinates: coordinates_digest(fnv(FNV_OFFSET, topic), partition, offset),
        }
    }

    /// A UUID: Laravel's `uuid`; Celery's task id, which is also its `root_id` and
    /// `correlation_id`.
    pub fn uuid(&self) -> [u8; 36] {
        uuid_v8(self.digest(Purpose::Uuid))
    }

    /// A second UUID: Celery's `delivery_tag`, which keys the worker's `unacked` hash and so must
    /// differ between any two messages in flight. Derived from the coordinates, it differs between
    /// any two messages; only a message and its own replay share it, and when both are in flight
    /// the first acknowledgement removes the one entry — the copy that ran is the one covered.
    pub fn delivery_tag(&self) -> [u8; 36] {
        uuid_v8(self.digest(Purpose::DeliveryTag))
    }

    /// Laravel's `id` (`Str::random(32)`): 32 characters of `[A-Za-z0-9]`, here lower-case hex.
    pub fn laravel_id(&self) -> [u8; 32] {
        let mut id = [0u8; 32];
        write_hex(&self.digest(Purpose::LaravelId).to_be_bytes(), &mut id);
        id
    }

    /// Sidekiq's `jid` (`SecureRandom.hex(12)`): 24 lower-case hex digits.
    pub fn jid(&self) -> [u8; 24] {
        let mut jid = [0u8; 24];
        write_hex(&self.digest(Purpose::Jid).to_be_bytes()[..12], &mut jid);
        jid
    }

    fn digest(&self, purpose: Purpose) -> u128 {
        purpose_digest(self.coordinates, purpose)
    }
}

/// The BullMQ job id of a message: `<topic>-<partition>-<offset>`, e.g. `orders-3-42`. BullMQ
/// refuses ids with `:` and ids that are an integer; a Kafka topic name is `[A-Za-z0-9._-]` and the
/// id always has two `-`, so it is neither. Read from the right it names exactly one message.
pub fn bullmq_job_id(topic: &str, partition: i32, offset: i64) -> String {
    format!("{topic}-{partition}-{offset}")
}

/// The RQ job id of a message: as [`bullmq_job_id`], with the topic's `_` written `__` and `.`
/// written `_d`, because RQ takes only `[A-Za-z0-9_-]`: `shop.orders` partition 3 offset 42 is
/// `shop_dorders-3-42`. Every `_` starts a pair, so the topic reads back unambiguously.
pub fn rq_job_id(topic: &str, partition: i32, offset: i64) -> String {
    let mut id = String::with_capacity(topic.len() + 24);
    for c in topic.chars() {
        match c {
            '_' => id.push_str("__"),
            '.' => id.push_str("_d"),
            c => id.push(c),
        }
    }
    id.push_str(&format!("-{partition}-{offset}"));
    id
}

/// A topic's share of its messages' ids: the FNV-1a state after its name, which every message of
/// the topic starts from ([`coordinates_digest`]), so a lane hashes only the numbers per message.
#[derive(Debug, Clone)]
pub struct TopicIds {
    topic: String,
    state: u128,
}

impl TopicIds {
    pub fn new(topic: &str) -> TopicIds {
        TopicIds {
            topic: topic.to_string(),
            state: fnv(FNV_OFFSET, topic),
        }
    }

    /// [`JobIds::derive`], for a message of this topic (or of any other, hashed in full).
    pub fn derive(&self, topic: &str, partition: i32, offset: i64) -> JobIds {
        let state = if topic == self.topic {
            self.state
        } else {
            fnv(FNV_OFFSET, topic)
        };
        JobIds {
            coordinates: coordinates_digest(state, partition, offset),
        }
    }
}

const FNV_OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;

/// FNV-1a (128-bit) of `<topic>/<partition>/<offset>` (decimal), from the state after the topic
/// ([`fnv`] of it): one pass over a few dozen bytes per message, no allocation. Written out here
/// because the ids must never change between versions (std's hashers make no such promise) and no
/// hash crate is among the dependencies.
fn coordinates_digest(topic_state: u128, partition: i32, offset: i64) -> u128 {
    let (mut p, mut o) = (itoa::Buffer::new(), itoa::Buffer::new());
    let mut hash = topic_state;
    for part in ["/", p.format(partition), "/", o.format(offset)] {
        hash = fnv(hash, part);
    }
    hash
}

fn fnv(mut hash: u128, text: &str) -> u128 {
    const FNV_PRIME: u128 = 0x0000000001000000000000000000013b;
    for &b in text.as_bytes() {
        hash ^= u128::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// 128 well-spread bits for one purpose: the digest with the purpose's number XORed into its low
/// half, then three Feistel rounds of MurmurHash3's 64-bit finaliser over its halves
/// (`lo ^= fmix64(hi); hi ^= fmix64(lo); lo ^= fmix64(hi)`), so that neighbouring offsets, and the
/// ids of one message, differ in every part. Each step is a bijection, so distinct digests stay
/// distinct.
fn purpose_digest(coordinates: u128, purpose: Purpose) -> u128 {
    let (mut hi, mut lo) = (
        (coordinates >> 64) as u64,
        coordinates as u64 ^ purpose as u64,
    );
    lo ^= fmix64(hi);
    hi ^= fmix64(lo);
    lo ^= fmix64(hi);
    (u128::from(hi) << 64) | u128::from(lo)
}

/// MurmurHash3's 64-bit finaliser: a bijection that spreads every input bit over the output.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51afd7ed558ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ceb9fe1a85ec53);
    k ^ (k >> 33)
}

fn write_hex(bytes: &[u8], out: &mut [u8]) {
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[(b >> 4) as usize];
        pair[1] = HEX[(b & 0xf) as usize];
    }
}

/// A version 8 (RFC 9562: custom contents, RFC variant) UUID of the 122 bits of `digest` that the
/// version and variant leave, lower-case and hyphenated as PHP's `Str::uuid()` and Python's `uuid`
/// write UUIDs. Formatted here because no UUID crate is among the dependencies and this is all of
/// it that is needed.
fn uuid_v8(digest: u128) -> [u8; 36] {
    let mut bytes = digest.to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut hex = [0u8; 32];
    write_hex(&bytes, &mut hex);
    let mut out = [b'-'; 36];
    out[..8].copy_from_slice(&hex[..8]);
    out[9..13].copy_from_slice(&hex[8..12]);
    out[14..18].copy_from_slice(&hex[12..16]);
    out[19..23].copy_from_slice(&hex[16..20]);
    out[24..].copy_from_slice(&hex[20..]);
    out
}
