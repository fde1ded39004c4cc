//! Names of the Redis keys beside the lists, and the Redis Cluster hash slots they must share: a
//! companion key that one script touches together with a list or hash takes its hash tag. A leaf:
//! the config checks names with it before anything connects.

/// The part of `key` Redis Cluster hashes: the content of the first `{…}` when non-empty, else the
/// whole key (the Redis Cluster specification's rule).
pub fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{') {
        if let Some(len) = key[open + 1..].find('}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// `<key>:<suffix>` in the same Cluster slot as `key`: as it is when `key` has a hash tag (the
/// name keeps it), else `{<key>}:<suffix>`. `None` when `key` has a `}` but no hash tag, which no
/// wrapping can keep in the same slot.
fn companion(key: &str, suffix: &str) -> Option<String> {
    let companion = if hash_tag(key) != key {
        format!("{key}:{suffix}")
    } else if key.contains('}') {
        return None;
    } else {
        format!("{{{key}}}:{suffix}")
    };
    (hash_tag(&companion) == hash_tag(key)).then_some(companion)
}

/// The exactly-once offsets hash for `list`, in the list's slot.
pub fn offsets_key(list: &str) -> Option<String> {
    companion(list, "offsets")
}

/// The hash where lanes that keep several batches in flight chain them, in `list`'s slot: each
/// push names the value its lane's field must hold (what the batch sent before it set) and sets
/// the next, so a batch whose predecessor did not land is refused instead of overtaking it.
pub fn sequence_key(list: &str) -> Option<String> {
    companion(list, "sequence")
}

/// The lease's fence for pushes to `key` (a list or a dead-letter list), in its slot: the holder
/// writes its fence value (`"<fencing number> <token>"`) there before it pushes, and every push
/// checks it in the same script.
pub fn fence_key(key: &str) -> Option<String> {
    companion(key, "fence")
}

/// The counter the lease's fencing numbers are taken from (`<lease>:fencing`). Only ever used on
/// its own, so it needs no particular slot.
pub fn fencing_counter_key(lease: &str) -> String {
    format!("{lease}:fencing")
}

/// The per-partition lag hash beside the per-topic `lag_hash`, in its slot.
pub fn lag_partitions_key(lag_hash: &str) -> Option<String> {
    companion(lag_hash, "partitions")
}

/// The continuity marker of one bridge process ([`crate::redis::continuity`]); `instance` is unique
/// per process.
pub fn continuity_key(instance: &str) -> String {
    format!("kafka2redis:continuity:{instance}")
}

/// The hash where the live members of consumer group `group` publish how they deliver each topic
/// ([`crate::kafka::members`]): one field per member.
pub fn members_key(group: &str) -> String {
    format!("kafka2redis:members:{group}")
}

/// The field of a partition in an offsets hash (one list may be fed by several topics).
pub fn offsets_field(topic: &str, partition: i32) -> String {
    format!("{topic}:{partition}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn companion_shares_the_lists_tag() {
        assert_eq!(
            offsets_key("queues:orders").as_deref(),
            Some("{queues:orders}:offsets")
        );
        assert_eq!(hash_tag("{queues:orders}:offsets"), "queues:orders");
        assert_eq!(offsets_key("q:{x}").as_deref(), Some("q:{x}:offsets"));
        assert_eq!(offsets_key("a{b").as_deref(), Some("{a{b}:offsets"));
        assert_eq!(hash_tag("{a{b}:offsets"), "a{b");
        assert_eq!(offsets_key("a}b"), None);
        assert_eq!(offsets_key("a{}b"), None);
        assert_eq!(hash_tag("a{}b"), "a{}b");
    }

    #[test]
    fn lag_companion_shares_the_slot() {
        assert_eq!(
            lag_partitions_key("topics_queue_len").as_deref(),
            Some("{topics_queue_len}:partitions")
        );
        assert_eq!(
            lag_partitions_key("{app}lag").as_deref(),
            Some("{app}lag:partitions")
        );
        assert_eq!(lag_partitions_key("a{}b"), None);
        assert_eq!(lag_partitions_key("a}b"), None);
    }
}
