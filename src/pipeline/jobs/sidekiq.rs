//! Sidekiq's job.

use super::{write_record, PushTime, Quoted};
use crate::pipeline::record::Record;

/// Appends the Sidekiq job (as `Sidekiq::Client.push` writes it in Sidekiq 6 and 7) that runs
/// `class.new.perform(record)` from queue `queue` (list `queue:<queue>`). `now` is the push time,
/// written as both `created_at` and `enqueued_at`; `jid` is
/// the job's id ([`super::JobIds::jid`]), ASCII that needs no escaping.
pub fn sidekiq(
    class: &Quoted,
    queue: &Quoted,
    record: &Record<'_>,
    jid: &[u8; 24],
    now: &PushTime,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(br#"{"retry":true,"queue":"#);
    queue.write(out);
    out.extend_from_slice(br#","class":"#);
    class.write(out);
    out.extend_from_slice(br#","args":["#);
    write_record(record, out);
    out.extend_from_slice(br#"],"jid":""#);
    out.extend_from_slice(jid);
    out.extend_from_slice(br#"","created_at":"#);
    out.extend_from_slice(now.ruby_float());
    out.extend_from_slice(br#","enqueued_at":"#);
    out.extend_from_slice(now.ruby_float());
    out.push(b'}');
}
