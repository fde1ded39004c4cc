//! A topic's structure: a stream takes the envelopes whose entries it can carry, and one key is
//! either a list or a stream for every topic that names it.

use crate::config::{ConfigError, Envelope, Structure, TopicConfig};

/// The envelopes a stream entry carries: `raw` (the value and the message's metadata as fields)
/// and `symfony` (a Messenger message).
const STREAM_ENVELOPES: &[Envelope] = &[Envelope::Raw, Envelope::Symfony];

fn structure_name(structure: Structure) -> &'static str {
    match structure {
        Structure::List => "list",
        Structure::Stream => "stream",
    }
}

fn envelope_name(envelope: Envelope) -> String {
    serde_json::to_string(&envelope).expect("an envelope name")
}

/// A stream topic uses an envelope a stream entry can carry; a `symfony` topic is a stream.
pub(super) fn check_structure(topic: &TopicConfig) -> Result<(), ConfigError> {
    if topic.envelope == Envelope::Symfony && topic.structure != Structure::Stream {
        return Err(ConfigError::in_topic(
            &topic.name,
            "structure",
            "must be \"stream\" with envelope = \"symfony\" (Messenger's Redis transport reads a stream); leave it out",
        ));
    }
    if topic.structure == Structure::Stream && !STREAM_ENVELOPES.contains(&topic.envelope) {
        let allowed: Vec<String> = STREAM_ENVELOPES.iter().map(|e| envelope_name(*e)).collect();
        return Err(ConfigError::in_topic(
            &topic.name,
            "envelope",
            format!(
                "is {} but structure = \"stream\" takes envelope = {}",
                envelope_name(topic.envelope),
                allowed.join(" or ")
            ),
        ));
    }
    Ok(())
}

/// Topics that share a key agree on whether it is a list or a stream.
pub(super) fn check_shared_key(
    first: &TopicConfig,
    topic: &TopicConfig,
) -> Result<(), ConfigError> {
    if first.structure == topic.structure {
        return Ok(());
    }
    Err(ConfigError::invalid(
        "topics",
        format!(
            "makes {:?} a {} for topic {:?} and a {} for topic {:?}; topics that share a key must \
             give it the same structure",
            topic.list_key,
            structure_name(first.structure),
            first.name,
            structure_name(topic.structure),
            topic.name
        ),
    ))
}
