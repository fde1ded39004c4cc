//! The ids a job carries (Laravel's uuid and id, Celery's task id and delivery tag, Sidekiq's jid),
//! drawn per message.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// The random parts of one job, made per message by the caller; each encoder uses the ones its
/// framework's client would draw. Held as ASCII so that they are written without escaping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobIds {
    /// A version 4 UUID: Laravel's `uuid`; Celery's task id, which is also its `root_id` and
    /// `correlation_id`.
    pub(super) uuid: [u8; 36],
    /// A second version 4 UUID: Celery's `delivery_tag`, which keys the worker's `unacked` hash and
    /// so must differ between any two messages in flight.
    pub(super) delivery_tag: [u8; 36],
    /// Laravel's `id` (`Str::random(32)`): 32 characters of `[A-Za-z0-9]`.
    pub(super) laravel_id: [u8; 32],
    /// Sidekiq's `jid` (`SecureRandom.hex(12)`): 24 lower-case hex digits.
    pub(super) jid: [u8; 24],
}

thread_local! {
    /// One generator per thread, so drawing ids takes no lock. It is seeded once, on the thread's
    /// first draw, from the OS's random source (std's `RandomState` keys come from it), because two
    /// bridges (or two threads) must not repeat each other's ids; fastrand's own default seed is a
    /// hash of the monotonic clock and the thread id. A 64-bit generator is not cryptographic,
    /// which these ids need not be: they only have to be unique and well spread.
    static RNG: RefCell<fastrand::Rng> = RefCell::new(fastrand::Rng::with_seed(
        RandomState::new().build_hasher().finish(),
    ));
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl JobIds {
    /// Fresh ids from this thread's generator.
    pub fn generate() -> JobIds {
        RNG.with(|rng| JobIds::from_rng(&mut rng.borrow_mut()))
    }

    /// Fresh ids from `rng`.
    pub fn from_rng(rng: &mut fastrand::Rng) -> JobIds {
        let mut laravel_id = [0u8; 32];
        for c in &mut laravel_id {
            *c = rng.alphanumeric() as u8;
        }
        let mut jid = [0u8; 24];
        write_hex(&rng.u128(..).to_le_bytes()[..12], &mut jid);
        JobIds {
            uuid: uuid_v4(rng.u128(..)),
            delivery_tag: uuid_v4(rng.u128(..)),
            laravel_id,
            jid,
        }
    }

    #[cfg(test)]
    /// Given ids (tests, or ids read back from a framework's own job), checked for the shape the
    /// encoders write without escaping. UUIDs may be of any version.
    pub fn new(
        uuid: &str,
        delivery_tag: &str,
        laravel_id: &str,
        jid: &str,
    ) -> Result<JobIds, &'static str> {
        fn is_uuid(s: &str) -> bool {
            s.len() == 36
                && s.bytes().enumerate().all(|(i, b)| match i {
                    8 | 13 | 18 | 23 => b == b'-',
                    _ => HEX.contains(&b),
                })
        }
        if !is_uuid(uuid) || !is_uuid(delivery_tag) {
            return Err(
                "a UUID must be 36 characters: lower-case hex digits and hyphens, 8-4-4-4-12",
            );
        }
        if laravel_id.len() != 32 || !laravel_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err("a Laravel job id must be 32 characters of [A-Za-z0-9]");
        }
        if jid.len() != 24 || !jid.bytes().all(|b| HEX.contains(&b)) {
            return Err("a Sidekiq jid must be 24 lower-case hex digits");
        }
        let mut ids = JobIds {
            uuid: [0; 36],
            delivery_tag: [0; 36],
            laravel_id: [0; 32],
            jid: [0; 24],
        };
        ids.uuid.copy_from_slice(uuid.as_bytes());
        ids.delivery_tag.copy_from_slice(delivery_tag.as_bytes());
        ids.laravel_id.copy_from_slice(laravel_id.as_bytes());
        ids.jid.copy_from_slice(jid.as_bytes());
        Ok(ids)
    }

    #[cfg(test)]
    pub fn uuid(&self) -> &str {
        ascii(&self.uuid)
    }

    #[cfg(test)]
    pub fn delivery_tag(&self) -> &str {
        ascii(&self.delivery_tag)
    }

    #[cfg(test)]
    pub fn laravel_id(&self) -> &str {
        ascii(&self.laravel_id)
    }

    #[cfg(test)]
    pub fn jid(&self) -> &str {
        ascii(&self.jid)
    }
}

#[cfg(test)]
fn ascii(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("ids are ASCII by construction")
}

fn write_hex(bytes: &[u8], out: &mut [u8]) {
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[(b >> 4) as usize];
        pair[1] = HEX[(b & 0xf) as usize];
    }
}

/// A random (version 4, RFC 9562 variant) UUID, lower-case and hyphenated, as PHP's `Str::uuid()`
/// and Python's `uuid4()` write it. Formatted here because no UUID crate is among the dependencies
/// and this is all of it that is needed.
fn uuid_v4(random: u128) -> [u8; 36] {
    let mut bytes = random.to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
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
