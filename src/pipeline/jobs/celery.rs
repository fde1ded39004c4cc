//! Celery's task message.

use super::{write_record, Quoted};
use crate::pipeline::json::{write_base64, write_int, write_str_contents};
use crate::pipeline::record::Record;

/// Appends the Celery message (task protocol 2, as kombu's Redis transport stores it) that runs
/// task `task` with the record as its one argument, for the queue `queue` (the routing key; the
/// list is the queue name behind any `global_keyprefix`). `origin` names the sender
/// (`gen<pid>@<host>` for a non-worker). `task_id` and `delivery_tag` are the message's ids
/// ([`super::JobIds`]), ASCII that needs no escaping.
pub fn celery(
    task: &Quoted,
    queue: &Quoted,
    record: &Record<'_>,
    task_id: &[u8; 36],
    delivery_tag: &[u8; 36],
    origin: &Quoted,
    out: &mut Vec<u8>,
) {
    // The body is (args, kwargs, embed) with args = [record].
    let mut body = Vec::with_capacity(160 + record.value.map_or(0, <[u8]>::len));
    body.extend_from_slice(b"[[");
    write_record(record, &mut body);
    body.extend_from_slice(
        br#"],{},{"callbacks":null,"errbacks":null,"chain":null,"chord":null}]"#,
    );

    out.extend_from_slice(br#"{"body":""#);
    write_base64(&body, out);
    out.extend_from_slice(
        br#"","content-encoding":"utf-8","content-type":"application/json","headers":{"lang":"py","task":"#,
    );
    task.write(out);
    out.extend_from_slice(br#","id":""#);
    out.extend_from_slice(task_id);
    out.extend_from_slice(
        br#"","shadow":null,"eta":null,"expires":null,"group":null,"group_index":null,"retries":0,"timelimit":[null,null],"root_id":""#,
    );
    // A task with no parent is its own root.
    out.extend_from_slice(task_id);
    out.extend_from_slice(br#"","parent_id":null,"argsrepr":"#);
    // Shown in logs and events only: a short summary instead of Celery's default, a second copy of
    // the record. Kafka topic names are `[A-Za-z0-9._-]`, so quoting the topic is Python's repr.
    out.extend_from_slice(br#""[{'topic': '"#);
    write_str_contents(record.topic, out);
    out.extend_from_slice(b"', 'partition': ");
    write_int(record.partition, out);
    out.extend_from_slice(b", 'offset': ");
    write_int(record.offset, out);
    out.extend_from_slice(br#", ...}]""#);
    out.extend_from_slice(br#","kwargsrepr":"{}","origin":"#);
    origin.write(out);
    // `ignore_result: null` leaves the choice to the task; `reply_to: ""` as nothing reads results.
    out.extend_from_slice(
        br#","ignore_result":null,"replaced_task_nesting":0,"stamped_headers":null,"stamps":{}},"properties":{"correlation_id":""#,
    );
    out.extend_from_slice(task_id);
    out.extend_from_slice(
        br#"","reply_to":"","delivery_mode":2,"delivery_info":{"exchange":"","routing_key":"#,
    );
    queue.write(out);
    out.extend_from_slice(br#"},"priority":0,"body_encoding":"base64","delivery_tag":""#);
    out.extend_from_slice(delivery_tag);
    out.extend_from_slice(br#""}}"#);
}
