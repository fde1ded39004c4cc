//! Sidekiq's job.

use super::{write_record, JobIds, Quoted};
use crate::pipeline::record::Record;

/// Appends the Sidekiq job (as `Sidekiq::Client.push` writes it in Sidekiq 6 and 7) that runs
/// `class.new.perform(record)` from queue `queue` (list `queue:<queue>`). `now_seconds` is the
/// push time in seconds since the epoch, written as both `created_at` and `enqueued_at`.
pub fn sidekiq(
    class: &Quoted,
    queue: &Quoted,
    record: &Record<'_>,
    ids: &JobIds,
    now_seconds: f64,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(br#"{"retry":true,"queue":"#);
    queue.write(out);
    out.extend_from_slice(br#","class":"#);
    class.write(out);
    out.extend_from_slice(br#","args":["#);
    write_record(record, out);
    out.extend_from_slice(br#"],"jid":""#);
    out.extend_from_slice(&ids.jid);
    out.extend_from_slice(br#"","created_at":"#);
    // Shortest round-trip digits with a fraction (`1700000000.0`), as Ruby's Float#to_s writes
    // times; Sidekiq 8 still reads these float seconds.
    write_float(now_seconds, out);
    out.extend_from_slice(br#","enqueued_at":"#);
    write_float(now_seconds, out);
    out.push(b'}');
}

fn write_float(seconds: f64, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, &seconds).expect("writing JSON to a Vec cannot fail");
}
