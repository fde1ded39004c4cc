//! Every Redis key the bridge writes has one purpose.

use std::collections::BTreeMap;

use crate::config::{Config, ConfigError, Delivery};

/// What a Redis key is for, to find two purposes given one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyPurpose {
    List,
    DeadLetters,
    Offsets,
    Lag,
    LagPartitions,
    Lease,
}

impl Config {
    /// Every Redis key the bridge writes has one purpose: a list that is also another topic's
    /// dead-letter list, or a lease key that is also a list, would mix data that workers and the
    /// bridge read back as something else.
    pub(super) fn check_key_collisions(&self) -> Result<(), ConfigError> {
        // (key, what it is, which setting names it); the same key with the same purpose (a list
        // shared by several topics) is fine.
        let mut keys: Vec<(String, KeyPurpose, String, &'static str)> = Vec::new();
        for topic in &self.topics {
            let name = &topic.name;
            keys.push((
                topic.list_key.clone(),
                KeyPurpose::List,
                format!("the list of topic {name:?}"),
                "topics",
            ));
            keys.push((
                topic.dead_letter_key(),
                KeyPurpose::DeadLetters,
                format!("the dead-letter list of topic {name:?}"),
                "topics",
            ));
            if topic.delivery == Delivery::ExactlyOnce {
                if let Some(offsets) = crate::keys::offsets_key(&topic.list_key) {
                    keys.push((
                        offsets,
                        KeyPurpose::Offsets,
                        format!("the exactly-once offsets of topic {name:?}"),
                        "topics",
                    ));
                }
            }
        }
        let lag_key = self.key("topics_queue_len", "lag.hash");
        keys.push((
            self.lag_hash.clone(),
            KeyPurpose::Lag,
            "the lag hash".into(),
            lag_key,
        ));
        if let Some(partitions) = crate::keys::lag_partitions_key(&self.lag_hash) {
            keys.push((
                partitions,
                KeyPurpose::LagPartitions,
                "the per-partition lag hash".into(),
                lag_key,
            ));
        }
        if let Some(lease) = &self.lease_key {
            keys.push((
                lease.clone(),
                KeyPurpose::Lease,
                "the lease key".into(),
                self.key("start_lock", "lease.key"),
            ));
        }
        let mut first_use: BTreeMap<&str, (KeyPurpose, &str)> = BTreeMap::new();
        for (key, purpose, what, setting) in &keys {
            let (first_purpose, first_what) = *first_use
                .entry(key.as_str())
                .or_insert((*purpose, what.as_str()));
            if first_purpose != *purpose {
                return Err(ConfigError::invalid(
                    *setting,
                    format!(
                        "makes {key:?} both {first_what} and {what}; each needs a key of its own"
                    ),
                ));
            }
        }
        Ok(())
    }
}
