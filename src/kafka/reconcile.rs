//! Where an exactly-once partition resumes when it is assigned: Redis's record, or Kafka's
//! committed offset, whichever is right, and never a position outside the partition.
//!
//! The record moves with every exactly-once push; an at-least-once run does not move it, so after
//! one (a mode switch, or a member of another mode during a rolling deploy) the record is stale and
//! the commit, marked at-least-once ([`super::commits`]), is ahead: the commit is right. A commit
//! marked exactly-once is never ahead of what Redis held when it was made, so a record behind it
//! means Redis went back (a failover or a restart lost writes, and the list went back with the
//! record): the record is right, as it is when the commit carries no mark (an older release, or
//! a broker that drops commit metadata) — unknown, so nothing is delivered twice.
//!
//! A position outside [log start, high watermark] (the topic was deleted and created again, or
//! retention removed what the record points at) would make librdkafka reset the partition, and a
//! record that happens to land inside a re-created topic would skip its first messages: both are
//! reported at error level and counted, and the partition resumes from a marked commit that is
//! inside, else from the log start.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::context::BridgeContext;
use super::partition::committed_in;
use crate::config::Delivery;
use crate::pipeline::partition::Committed;

/// Bound on each of the Kafka queries made while partitions are being assigned.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// A partition's valid positions: from its log start to its high watermark, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub log_start: i64,
    pub high_watermark: i64,
}

impl Bounds {
    fn holds(&self, offset: i64) -> bool {
        (self.log_start..=self.high_watermark).contains(&offset)
    }
}

/// Why a partition resumes where it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Redis's record: the commit is not ahead of it, was made exactly-once, or is unmarked.
    Record,
    /// The commit, marked at-least-once, is ahead of the record: another mode delivered meanwhile.
    CommitAhead,
    /// Redis holds no record; the commit.
    NoRecord,
    /// Neither a record nor a commit: the reset policy decides.
    Nothing,
}

/// Where a partition resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// `None`: left to the reset policy.
    pub at: Option<i64>,
    pub why: Why,
    /// The position [`Resume::why`] chose, when it was outside the partition's bounds and `at`
    /// replaced it.
    pub outside: Option<i64>,
}

/// Chooses where an exactly-once partition resumes from Redis's `record`, Kafka's `committed`
/// offset and the partition's `bounds` (`None` when unknown: not checked).
pub fn choose(record: Option<i64>, committed: Option<Committed>, bounds: Option<Bounds>) -> Resume {
    let (chosen, why) = match (record, committed) {
        (Some(record), Some(c)) if c.by == Some(Delivery::AtLeastOnce) && c.offset > record => {
            (Some(c.offset), Why::CommitAhead)
        }
        (Some(record), _) => (Some(record), Why::Record),
        (None, Some(c)) => (Some(c.offset), Why::NoRecord),
        (None, None) => (None, Why::Nothing),
    };
    match (chosen, bounds) {
        (Some(at), Some(bounds)) if !bounds.holds(at) => {
            let marked_inside = committed
                .filter(|c| c.by.is_some() && bounds.holds(c.offset))
                .map(|c| c.offset);
            Resume {
                at: Some(marked_inside.unwrap_or(bounds.log_start)),
                why,
                outside: Some(at),
            }
        }
        _ => Resume {
            at: chosen,
            why,
            outside: None,
        },
    }
}

/// The group's committed offsets, with their marks, for the partitions of `list`.
pub fn committed(
    consumer: &BaseConsumer<BridgeContext>,
    list: &TopicPartitionList,
) -> Result<Vec<Option<Committed>>, rdkafka::error::KafkaError> {
    let answer = consumer.committed_offsets(list.clone(), QUERY_TIMEOUT)?;
    Ok(list
        .elements()
        .iter()
        .map(|e| committed_in(&answer, e.topic(), e.partition()))
        .collect())
}

/// The bounds of the partitions of `list` (`None` for a partition the broker did not answer for).
pub fn bounds(
    consumer: &BaseConsumer<BridgeContext>,
    list: &TopicPartitionList,
) -> Result<Vec<Option<Bounds>>, rdkafka::error::KafkaError> {
    // ListOffsets with the timestamps -2 and -1 answers the log start and the high watermark of
    // every partition in one request per leader.
    let ask = |at: Offset| {
        let mut query = TopicPartitionList::with_capacity(list.count());
        for e in list.elements() {
            query.add_partition_offset(e.topic(), e.partition(), at)?;
        }
        let answer = consumer.offsets_for_times(query, QUERY_TIMEOUT)?;
        Ok::<_, rdkafka::error::KafkaError>(
            list.elements()
                .iter()
                .map(|e| {
                    let found = answer.find_partition(e.topic(), e.partition())?;
                    match (found.error(), found.offset()) {
                        (Ok(()), Offset::Offset(offset)) => Some(offset),
                        _ => None,
                    }
                })
                .collect::<Vec<_>>(),
        )
    };
    let starts = ask(Offset::Beginning)?;
    let ends = ask(Offset::End)?;
    Ok(starts
        .into_iter()
        .zip(ends)
        .map(|(start, end)| match (start, end) {
            (Some(log_start), Some(high_watermark)) if log_start <= high_watermark => {
                Some(Bounds {
                    log_start,
                    high_watermark,
                })
            }
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(offset: i64, by: Option<Delivery>) -> Option<Committed> {
        Some(Committed { offset, by })
    }

    const BOUNDS: Option<Bounds> = Some(Bounds {
        log_start: 0,
        high_watermark: 5_000,
    });

    #[test]
    fn a_newer_at_least_once_commit_wins() {
        let r = choose(
            Some(1_000),
            commit(2_000, Some(Delivery::AtLeastOnce)),
            BOUNDS,
        );
        assert_eq!(
            (r.at, r.why, r.outside),
            (Some(2_000), Why::CommitAhead, None)
        );
    }

    #[test]
    fn the_record_wins_otherwise() {
        for c in [
            commit(2_000, Some(Delivery::ExactlyOnce)),
            commit(2_000, None),
            commit(500, Some(Delivery::AtLeastOnce)),
            commit(500, Some(Delivery::ExactlyOnce)),
            None,
        ] {
            let r = choose(Some(1_000), c, BOUNDS);
            assert_eq!((r.at, r.why), (Some(1_000), Why::Record), "{c:?}");
        }
        assert_eq!(choose(Some(1_000), None, None).at, Some(1_000));
    }

    #[test]
    fn no_record_takes_the_commit_or_the_reset_policy() {
        let r = choose(None, commit(700, None), BOUNDS);
        assert_eq!((r.at, r.why), (Some(700), Why::NoRecord));
        let r = choose(None, None, BOUNDS);
        assert_eq!((r.at, r.why), (None, Why::Nothing));
    }

    #[test]
    fn outside_the_partition_falls_back_to_a_marked_commit_else_the_log_start() {
        let r = choose(
            Some(9_000),
            commit(300, Some(Delivery::ExactlyOnce)),
            BOUNDS,
        );
        assert_eq!((r.at, r.outside), (Some(300), Some(9_000)));
        let r = choose(Some(9_000), commit(300, None), BOUNDS);
        assert_eq!((r.at, r.outside), (Some(0), Some(9_000)));
        let r = choose(Some(9_000), None, BOUNDS);
        assert_eq!((r.at, r.outside), (Some(0), Some(9_000)));
        let retained = Some(Bounds {
            log_start: 4_000,
            high_watermark: 5_000,
        });
        let r = choose(Some(100), commit(50, Some(Delivery::ExactlyOnce)), retained);
        assert_eq!((r.at, r.outside), (Some(4_000), Some(100)));
        let r = choose(None, commit(8_000, Some(Delivery::AtLeastOnce)), BOUNDS);
        assert_eq!(
            (r.at, r.why, r.outside),
            (Some(0), Why::NoRecord, Some(8_000))
        );
    }

    #[test]
    fn the_high_watermark_itself_is_inside() {
        let r = choose(Some(5_000), None, BOUNDS);
        assert_eq!((r.at, r.outside), (Some(5_000), None));
    }
}
