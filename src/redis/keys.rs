//! Redis Cluster hash slots, as far as key naming needs them: a companion key that must live in the
//! same slot as a list (so one script can touch both) takes the list's hash tag.

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

/// The exactly-once offsets hash for `list`, in the same slot: `<list>:offsets` when the list has a
/// hash tag (the name keeps it), else `{<list>}:offsets`. `None` when the list name has a `}` but no
/// hash tag, which no wrapping can keep in the same slot.
pub fn offsets_key(list: &str) -> Option<String> {
    let key = if hash_tag(list) != list {
        format!("{list}:offsets")
    } else if list.contains('}') {
        return None;
    } else {
        format!("{{{list}}}:offsets")
    };
    (hash_tag(&key) == hash_tag(list)).then_some(key)
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
}
