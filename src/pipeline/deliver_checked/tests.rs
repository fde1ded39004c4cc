//! The checked transaction against a real `redis-server`: whatever a check refuses is taken back
//! off the list before anyone sees it, and a cap keeps the batch's front, at either end.

use super::*;
use crate::bench::services::RedisService;
use crate::pipeline::deliver::tests::{run, sink};
use crate::pipeline::deliver::{
    Answer, ExactlyOnce, Fence, OffsetRecord, Pushed, Refusal, Sequence, WrongType,
};
use crate::pipeline::deliver_sequenced::Sequenced;
use crate::pipeline::jobs::{Companion, PushEnd};

fn batch(offsets: &[i64]) -> Batch {
    let mut batch = Batch::new("queue:q".into(), "queue:q:dead".into());
    for &offset in offsets {
        batch.add_with(offset, None, false, |buf| {
            buf.extend_from_slice(format!("m{offset}").as_bytes())
        });
    }
    batch
}

fn head_first() -> ListWrites {
    ListWrites {
        end: PushEnd::Head,
        companion: Companion::None,
    }
}

async fn list(sink: &RedisSink) -> Vec<String> {
    let mut conn = sink.connection();
    ::redis::cmd("LRANGE")
        .arg("queue:q")
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap()
}

async fn hget(sink: &RedisSink, key: &str, field: &str) -> Option<String> {
    let mut conn = sink.connection();
    ::redis::cmd("HGET")
        .arg(key)
        .arg(field)
        .query_async(&mut conn)
        .await
        .unwrap()
}

async fn members(sink: &RedisSink, set: &str) -> Vec<String> {
    let mut conn = sink.connection();
    ::redis::cmd("SMEMBERS")
        .arg(set)
        .query_async(&mut conn)
        .await
        .unwrap()
}

const FENCE: Fence<'static> = Fence {
    key: "{queue:q}:fence",
    token: "2 host:1:0000abcd",
};

#[tokio::test]
async fn a_refused_fence_takes_the_whole_push_back_at_either_end() {
    let redis = RedisService::start(None).unwrap();
    let sink = sink(&redis).await;
    run(&sink, &["RPUSH", "queue:q", "old1", "old2"]).await;
    run(&sink, &["SET", FENCE.key, "3 another-holder"]).await;
    let batch = batch(&[0, 1, 2]);
    for writes in [ListWrites::PLAIN, head_first()] {
        assert!(sink.checks_after_push(&batch));
        let pushed = sink.push_messages(&batch, &writes, None, Some(FENCE)).await;
        assert_eq!(pushed.unwrap(), Answer::Refused(Refusal::Fence));
        assert_eq!(list(&sink).await, ["old1", "old2"], "{:?}", writes.end);
    }
    run(&sink, &["SET", FENCE.key, FENCE.token]).await;
    let pushed = sink
        .push_messages(&batch, &ListWrites::PLAIN, None, Some(FENCE))
        .await;
    assert_eq!(
        pushed.unwrap(),
        Answer::Taken(Pushed {
            messages: 3,
            list_len: Some(5)
        })
    );
    assert_eq!(list(&sink).await, ["old1", "old2", "m0", "m1", "m2"]);
}

#[tokio::test]
async fn a_refused_push_onto_a_new_list_leaves_no_key() {
    let redis = RedisService::start(None).unwrap();
    let sink = sink(&redis).await;
    let pushed = sink
        .push_messages(&batch(&[0, 1]), &ListWrites::PLAIN, None, Some(FENCE))
        .await;
    assert_eq!(pushed.unwrap(), Answer::Refused(Refusal::Fence));
    let mut conn = sink.connection();
    let exists: i64 = ::redis::cmd("EXISTS")
        .arg("queue:q")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0);
}

#[tokio::test]
async fn a_fence_key_of_another_type_refuses_and_takes_the_push_back() {
    let redis = RedisService::start(None).unwrap();
    let sink = sink(&redis).await;
    run(&sink, &["RPUSH", "queue:q", "old"]).await;
    run(&sink, &["HSET", FENCE.key, "f", "v"]).await;
    let pushed = sink
        .push_messages(&batch(&[0, 1]), &ListWrites::PLAIN, Some(10), Some(FENCE))
        .await;
    assert_eq!(
        pushed.unwrap(),
        Answer::Refused(Refusal::WrongType(WrongType {
            key: FENCE.key.into(),
            found: "hash".into(),
            wanted: "string".into(),
        }))
    );
    assert_eq!(list(&sink).await, ["old"]);
}

#[tokio::test]
async fn a_cap_keeps_the_front_of_the_batch_at_either_end() {
    let redis = RedisService::start(None).unwrap();
    let sink = sink(&redis).await;
    run(&sink, &["RPUSH", "queue:q", "a", "b", "c"]).await;
    let batch = batch(&[0, 1, 2, 3]);
    let pushed = sink
        .push_messages(&batch, &ListWrites::PLAIN, Some(5), None)
        .await;
    assert_eq!(
        pushed.unwrap(),
        Answer::Taken(Pushed {
            messages: 2,
            list_len: Some(5)
        })
    );
    assert_eq!(list(&sink).await, ["a", "b", "c", "m0", "m1"]);

    run(&sink, &["DEL", "queue:q"]).await;
    run(&sink, &["RPUSH", "queue:q", "a", "b", "c"]).await;
    let pushed = sink
        .push_messages(&batch, &head_first(), Some(5), None)
        .await;
    assert!(matches!(pushed.unwrap(), Answer::Taken(p) if p.messages == 2));
    // A worker popping the tail takes m0 before m1, as it would from the push script's LPUSH.
    assert_eq!(list(&sink).await, ["m1", "m0", "a", "b", "c"]);

    // A list already past its cap (the cap was lowered) takes nothing.
    let pushed = sink
        .push_messages(&batch, &ListWrites::PLAIN, Some(2), None)
        .await;
    assert_eq!(
        pushed.unwrap(),
        Answer::Taken(Pushed {
            messages: 0,
            list_len: Some(5)
        })
    );
    assert_eq!(list(&sink).await.len(), 5);
}

#[tokio::test]
async fn exactly_once_records_the_first_offset_a_cap_left_out() {
    let redis = RedisService::start(None).unwrap();
    let sink = sink(&redis).await;
    run(&sink, &["RPUSH", "queue:q", "a", "b", "c"]).await;
    let offsets = "{queue:q}:offsets";
    run(&sink, &["HSET", offsets, "t:0", "10"]).await;
    // Offsets with gaps (compaction, transaction markers): the record is the next one to read.
    let batch = batch(&[10, 12, 15, 20]);
    let record = OffsetRecord {
        key: offsets,
        field: "t:0",
        expected: Some(10),
    };
    let once = sink
        .push_exactly_once(&batch, &ListWrites::PLAIN, record, Some(5), Some(FENCE))
        .await;
    assert_eq!(once.unwrap(), Answer::Refused(Refusal::Fence));
    assert_eq!(list(&sink).await.len(), 3);
    run(&sink, &["SET", FENCE.key, FENCE.token]).await;
    let once = sink
        .push_exactly_once(&batch, &ListWrites::PLAIN, record, Some(5), Some(FENCE))
        .await;
    assert_eq!(
        once.unwrap(),
        Answer::Taken(ExactlyOnce::Pushed {
            pushed: Pushed {
                messages: 2,
                list_len: Some(5)
            },
            next_offset: 15
        })
    );
    assert_eq!(hget(&sink, offsets, "t:0").await.as_deref(), Some("15"));
    assert_eq!(list(&sink).await, ["a", "b", "c", "m10", "m12"]);

    // The record moved on (another writer): refused, taken back, the record left as it is.
    let once = sink
        .push_exactly_once(&batch, &ListWrites::PLAIN, record, None, Some(FENCE))
        .await;
    assert_eq!(
        once.unwrap(),
        Answer::Taken(ExactlyOnce::Refused { recorded: Some(15) })
    );
    assert_eq!(list(&sink).await.len(), 5);
    assert_eq!(hget(&sink, offsets, "t:0").await.as_deref(), Some("15"));

    // Uncapped, the whole batch and the offset past it.
    let record = OffsetRecord {
        expected: Some(15),
        ..record
    };
    let once = sink
        .push_exactly_once(&batch, &ListWrites::PLAIN, record, None, None)
        .await;
    assert!(matches!(
        once.unwrap(),
        Answer::Taken(ExactlyOnce::Pushed { pushed, next_offset: 21 }) if pushed.messages == 4
    ));
    assert_eq!(hget(&sink, offsets, "t:0").await.as_deref(), Some("21"));
}

#[tokio::test]
async fn the_companion_write_follows_what_stayed_and_nothing_that_was_refused() {
    let redis = RedisService::start(None).unwrap();
    let sink = sink(&redis).await;
    let laravel = ListWrites {
        end: PushEnd::Tail,
        companion: Companion::NotifyEachJob {
            key: "queue:q:notify".into(),
        },
    };
    let sidekiq = ListWrites {
        end: PushEnd::Head,
        companion: Companion::AddToSet {
            set: "queues".into(),
            member: "q".into(),
        },
    };
    let batch = batch(&[0, 1, 2]);
    let notify_len = |sink: &RedisSink| {
        let mut conn = sink.connection();
        async move {
            ::redis::cmd("LLEN")
                .arg("queue:q:notify")
                .query_async::<u64>(&mut conn)
                .await
                .unwrap()
        }
    };

    // Refused by the fence: neither the jobs nor their companion writes.
    run(&sink, &["SET", FENCE.key, "3 another-holder"]).await;
    for writes in [&laravel, &sidekiq] {
        let pushed = sink.push_messages(&batch, writes, None, Some(FENCE)).await;
        assert_eq!(pushed.unwrap(), Answer::Refused(Refusal::Fence));
    }
    assert_eq!(notify_len(&sink).await, 0);
    let queues = members(&sink, "queues").await;
    assert!(queues.is_empty(), "{queues:?}");

    // Unfenced, capped at 2: two jobs and one notification each.
    let pushed = sink.push_messages(&batch, &laravel, Some(2), None).await;
    assert!(matches!(pushed.unwrap(), Answer::Taken(p) if p.messages == 2));
    assert_eq!(notify_len(&sink).await, 2);
    assert_eq!(list(&sink).await, ["m0", "m1"]);

    run(&sink, &["DEL", "queue:q"]).await;
    let pushed = sink.push_messages(&batch, &sidekiq, None, None).await;
    assert!(matches!(pushed.unwrap(), Answer::Taken(p) if p.messages == 3));
    assert_eq!(members(&sink, "queues").await, ["q"]);
}

#[tokio::test]
async fn a_full_redis_refuses_the_whole_transaction() {
    let redis = RedisService::start(None).unwrap();
    let sink = sink(&redis).await;
    run(&sink, &["SET", FENCE.key, FENCE.token]).await;
    run(&sink, &["RPUSH", "queue:q", "old"]).await;
    // `maxmemory` reached: Redis refuses the queued push (OOM), so EXEC runs nothing.
    run(&sink, &["CONFIG", "SET", "maxmemory", "1"]).await;
    let batch = batch(&[0, 1, 2]);
    let pushed = sink
        .push_messages(&batch, &ListWrites::PLAIN, Some(10), Some(FENCE))
        .await;
    assert!(pushed.is_err(), "{pushed:?}");
    run(&sink, &["CONFIG", "SET", "maxmemory", "0"]).await;
    assert_eq!(list(&sink).await, ["old"]);
    let pushed = sink
        .push_messages(&batch, &ListWrites::PLAIN, Some(10), Some(FENCE))
        .await;
    assert!(matches!(pushed.unwrap(), Answer::Taken(p) if p.messages == 3));
    assert_eq!(list(&sink).await, ["old", "m0", "m1", "m2"]);
}

#[tokio::test]
async fn a_window_out_of_sequence_is_taken_back_and_a_cut_batch_says_how_much_went_in() {
    let redis = RedisService::start(None).unwrap();
    let sink = sink(&redis).await;
    let (key, field) = ("{queue:q}:sequence", "t:0");
    let step = |expects, sets| Sequence {
        key,
        field,
        expects,
        sets,
    };
    let first = batch(&[0, 1]);
    // Nothing unsettled before the first batch: whatever the field holds, it goes in.
    run(&sink, &["HSET", key, field, "someone-else:7"]).await;
    let pushed = sink
        .push_sequenced(&first, &ListWrites::PLAIN, None, None, step(None, "n:2"))
        .await;
    assert!(matches!(pushed.unwrap(), Answer::Taken(Sequenced::Pushed(p)) if p.messages == 2));
    assert_eq!(hget(&sink, key, field).await.as_deref(), Some("n:2"));

    // A batch whose predecessor is not in is taken back, and the answer says what the field holds.
    let second = batch(&[2, 3]);
    let pushed = sink
        .push_sequenced(
            &second,
            &ListWrites::PLAIN,
            None,
            None,
            step(Some("n:1"), "n:4"),
        )
        .await;
    assert_eq!(
        pushed.unwrap(),
        Answer::Taken(Sequenced::OutOfSequence(Some("n:2".into())))
    );
    assert_eq!(list(&sink).await, ["m0", "m1"]);
    assert_eq!(hget(&sink, key, field).await.as_deref(), Some("n:2"));

    // Under a cap of 3 only one more fits: the field says how many of the batch went in.
    let pushed = sink
        .push_sequenced(
            &second,
            &ListWrites::PLAIN,
            Some(3),
            None,
            step(Some("n:2"), "n:4"),
        )
        .await;
    assert!(matches!(pushed.unwrap(), Answer::Taken(Sequenced::Pushed(p)) if p.messages == 1));
    assert_eq!(list(&sink).await, ["m0", "m1", "m2"]);
    assert_eq!(hget(&sink, key, field).await.as_deref(), Some("n:4#1"));
}
