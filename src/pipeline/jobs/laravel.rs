//! Laravel's queue job.

use super::{write_record, Quoted};
use crate::pipeline::record::Record;

/// Appends the Laravel job (a string job, as `Queue::push('Class@method', $record)` writes it in
/// Laravel 8 to 11) that calls `job` (`Class@method`; a bare `Class` runs its `fire`) with the
/// record. The worker does not delete a string job: the handler must call `$job->delete()`.
/// `display_name` is the job's class ([`laravel_display_name`]); `uuid` and `id` are the job's ids
/// ([`super::JobIds`]), ASCII that needs no escaping.
pub fn laravel(
    display_name: &Quoted,
    job: &Quoted,
    record: &Record<'_>,
    uuid: &[u8; 36],
    id: &[u8; 32],
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(br#"{"uuid":""#);
    out.extend_from_slice(uuid);
    out.extend_from_slice(br#"","displayName":"#);
    display_name.write(out);
    out.extend_from_slice(br#","job":"#);
    job.write(out);
    out.extend_from_slice(
        br#","maxTries":null,"maxExceptions":null,"failOnTimeout":false,"backoff":null,"timeout":null,"data":"#,
    );
    write_record(record, out);
    out.extend_from_slice(br#","id":""#);
    out.extend_from_slice(id);
    // The worker's pop script adds 1 to `attempts`; without it the job is lost in that script.
    out.extend_from_slice(br#"","attempts":0}"#);
}

/// The name a Laravel job shows (`displayName`): its class, `job` without any `@method`.
pub fn laravel_display_name(job: &str) -> &str {
    job.split('@').next().unwrap_or(job)
}
