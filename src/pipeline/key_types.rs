//! The type every key the bridge writes must have, and which keys in Redis hold another: a key of
//! another application (Sidekiq's `queues` made a hash, say) would refuse every push to it. The
//! push scripts check it themselves before each write; this list lets `kafka2redis check` and the
//! daemon's start name such a key before any push is refused.

use ::redis::RedisError;

use super::deliver::{ListWrites, WrongType};
use super::jobs::Companion;
use crate::config::{Config, Delivery, Structure};
use crate::keys::{fence_key, fencing_counter_key, lag_partitions_key, offsets_key};
use crate::redis::RedisConnection;

/// A key the bridge writes and the type it writes there (`TYPE`'s name for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyType {
    pub key: String,
    pub wanted: &'static str,
}

/// Every key the bridge writes under `config`, once each.
pub fn keys_written(config: &Config) -> Vec<KeyType> {
    let mut keys = Vec::new();
    let mut add = |key: String, wanted: &'static str| {
        if !keys.iter().any(|k: &KeyType| k.key == key) {
            keys.push(KeyType { key, wanted });
        }
    };
    for topic in &config.topics {
        let structure = match topic.structure {
            Structure::List => "list",
            Structure::Stream => "stream",
        };
        add(topic.list_key.clone(), structure);
        add(topic.dead_letter_key(), "list");
        match ListWrites::for_topic(topic).companion {
            Companion::None => {}
            Companion::NotifyEachJob { key } => add(key, "list"),
            Companion::AddToSet { set, .. } => add(set, "set"),
        }
        if topic.delivery == Delivery::ExactlyOnce {
            if let Some(offsets) = offsets_key(&topic.list_key) {
                add(offsets, "hash");
            }
        }
    }
    if let Some(lease) = &config.lease_key {
        add(lease.clone(), "string");
        add(fencing_counter_key(lease), "string");
        for topic in &config.topics {
            for list in [topic.list_key.clone(), topic.dead_letter_key()] {
                if let Some(fence) = fence_key(&list) {
                    add(fence, "string");
                }
            }
        }
    }
    add(config.lag_hash.clone(), "hash");
    if let Some(partitions) = lag_partitions_key(&config.lag_hash) {
        add(partitions, "hash");
    }
    keys
}

/// The keys of `keys` that exist with another type than the one the bridge writes there.
pub async fn wrong_types(
    conn: &RedisConnection,
    keys: &[KeyType],
) -> Result<Vec<WrongType>, RedisError> {
    let mut conn = conn.clone();
    let mut wrong = Vec::new();
    for key in keys {
        let found: String = ::redis::cmd("TYPE")
            .arg(&key.key)
            .query_async(&mut conn)
            .await?;
        if found != "none" && found != key.wanted {
            wrong.push(WrongType {
                key: key.key.clone(),
                found,
                wanted: key.wanted.to_string(),
            });
        }
    }
    Ok(wrong)
}
