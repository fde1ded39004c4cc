//! Everything that calls librdkafka directly, so that the unsafe code is all here: reading a queue
//! many messages per call ([`BatchReader`]) and the cached watermarks ([`cached_watermarks`]).
//!
//! rdkafka hands out one message per `poll`, and each call pays for a clock read in rdkafka,
//! another in librdkafka's poll bookkeeping, an event object and its wrapper: per message, more
//! than a lane spends on the message itself (docs/benchmarks.md, "Profile"). rdkafka does not
//! expose librdkafka's `rd_kafka_consume_batch_queue`, so this module calls it: one call takes up
//! to [`PER_CALL`] messages, with the same handling of stale messages (after a seek or pause) and
//! of the application position as a poll.

use std::ffi::{c_void, CStr, CString};
use std::ptr::{self, NonNull};
use std::sync::Arc;

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Messages taken per librdkafka call (the array lives on the stack).
pub const PER_CALL: usize = 64;

/// A handle on one of librdkafka's message queues, read in batches: a partition's fetch queue
/// (the one rdkafka's `split_partition_queue` split off the consumer), or the consumer's own.
pub struct BatchReader<C: ConsumerContext + 'static> {
    queue: NonNull<rdsys::rd_kafka_queue_t>,
    /// The queue handle must not outlive the client.
    _consumer: Arc<BaseConsumer<C>>,
}

// librdkafka's queues are thread-safe; the handle is only a reference-counted pointer to one.
unsafe impl<C: ConsumerContext> Send for BatchReader<C> {}
unsafe impl<C: ConsumerContext> Sync for BatchReader<C> {}

impl<C: ConsumerContext + 'static> BatchReader<C> {
    /// The fetch queue of `topic`/`partition`, or `None` if librdkafka does not know the partition.
    /// Call it after the queue was split off the consumer, so that messages stay on it.
    pub fn new(
        consumer: Arc<BaseConsumer<C>>,
        topic: &str,
        partition: i32,
    ) -> Option<BatchReader<C>> {
        let topic = CString::new(topic).ok()?;
        // SAFETY: the client pointer is valid while `consumer` lives; the returned handle holds
        // its own reference to the queue.
        let queue = unsafe {
            rdsys::rd_kafka_queue_get_partition(
                consumer.client().native_ptr(),
                topic.as_ptr(),
                partition,
            )
        };
        BatchReader::wrap(consumer, queue)
    }

    /// The consumer's own queue. Only for a consumer with assigned partitions and no group: a
    /// group's rebalance events arrive on this queue and must be served by rdkafka's `poll`.
    pub fn consumer_queue(consumer: Arc<BaseConsumer<C>>) -> Option<BatchReader<C>> {
        // SAFETY: as above.
        let queue = unsafe { rdsys::rd_kafka_queue_get_consumer(consumer.client().native_ptr()) };
        BatchReader::wrap(consumer, queue)
    }

    fn wrap(
        consumer: Arc<BaseConsumer<C>>,
        queue: *mut rdsys::rd_kafka_queue_t,
    ) -> Option<BatchReader<C>> {
        Some(BatchReader {
            queue: NonNull::new(queue)?,
            _consumer: consumer,
        })
    }

    /// Takes up to `max` (at most [`PER_CALL`]) messages without waiting and hands each, in
    /// order, to `each`; a message is valid only during its call. Returns how many it took. An
    /// error comes with the offset librdkafka names with it (negative: none).
    pub fn take(
        &self,
        max: usize,
        mut each: impl FnMut(Result<Fetched<'_>, (KafkaError, i64)>),
    ) -> usize {
        let mut messages = [ptr::null_mut::<rdsys::rd_kafka_message_t>(); PER_CALL];
        // SAFETY: the queue handle is valid; librdkafka writes at most `max` pointers.
        let taken = unsafe {
            rdsys::rd_kafka_consume_batch_queue(
                self.queue.as_ptr(),
                0,
                messages.as_mut_ptr(),
                max.min(PER_CALL),
            )
        };
        let taken = usize::try_from(taken).unwrap_or(0);
        // Destroyed on the way out, even if `each` panics.
        let owned = OwnedMessages(&messages[..taken]);
        for &message in owned.0 {
            // SAFETY: librdkafka returned a valid message, alive until `owned` is dropped.
            let message = unsafe { &*message };
            match message.err {
                rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => {
                    each(Ok(Fetched { message }))
                }
                rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF => {}
                code => each(Err((
                    KafkaError::MessageConsumption(RDKafkaErrorCode::from(code)),
                    message.offset,
                ))),
            }
        }
        taken
    }
}

impl<C: ConsumerContext> Drop for BatchReader<C> {
    fn drop(&mut self) {
        // SAFETY: the handle came from `rd_kafka_queue_get_partition` and is released once; the
        // client is still alive (`_consumer` is dropped after this).
        unsafe { rdsys::rd_kafka_queue_destroy(self.queue.as_ptr()) }
    }
}

struct OwnedMessages<'a>(&'a [*mut rdsys::rd_kafka_message_t]);

impl Drop for OwnedMessages<'_> {
    fn drop(&mut self) {
        for &message in self.0 {
            // SAFETY: each pointer came from `rd_kafka_consume_batch_queue` and is freed once.
            unsafe { rdsys::rd_kafka_message_destroy(message) }
        }
    }
}

/// A message borrowed from librdkafka for the duration of one [`BatchReader::take`] call.
pub struct Fetched<'a> {
    message: &'a rdsys::rd_kafka_message_t,
}

impl<'a> Fetched<'a> {
    pub fn offset(&self) -> i64 {
        self.message.offset
    }

    /// Kafka's timestamp in milliseconds (create or log-append time), if the message has one.
    pub fn timestamp(&self) -> Option<i64> {
        let mut kind = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: a valid message; librdkafka writes the type.
        let ms = unsafe { rdsys::rd_kafka_message_timestamp(self.message, &mut kind) };
        (kind != rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ms != -1)
            .then_some(ms)
    }

    pub fn key(&self) -> Option<&'a [u8]> {
        // SAFETY: librdkafka keeps `key_len` bytes at `key` while the message lives.
        unsafe { bytes(self.message.key, self.message.key_len) }
    }

    pub fn payload(&self) -> Option<&'a [u8]> {
        // SAFETY: as for the key.
        unsafe { bytes(self.message.payload, self.message.len) }
    }

    /// Appends the message's headers, in order, to `out`. A header whose name is not UTF-8 is
    /// skipped (Kafka's protocol defines names as strings).
    pub fn headers(&self, out: &mut Vec<(&'a str, Option<&'a [u8]>)>) {
        let mut headers = ptr::null_mut();
        // SAFETY: a valid message; the headers belong to it.
        let err = unsafe { rdsys::rd_kafka_message_headers(self.message, &mut headers) };
        if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
            return;
        }
        for index in 0.. {
            let (mut name, mut value, mut size) = (ptr::null(), ptr::null(), 0usize);
            // SAFETY: librdkafka fills the three out-pointers for an existing index.
            let err = unsafe {
                rdsys::rd_kafka_header_get_all(headers, index, &mut name, &mut value, &mut size)
            };
            if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                break;
            }
            // SAFETY: names are NUL-terminated; values have `size` bytes (null: no value).
            let name = unsafe { CStr::from_ptr(name) };
            if let Ok(name) = name.to_str() {
                out.push((name, unsafe { bytes(value.cast_mut(), size) }));
            }
        }
    }
}

/// `len` bytes at `data`, or `None` for a null pointer (Kafka's null key or value).
///
/// # Safety
/// `data` must be null or point to `len` readable bytes that live for `'a`.
unsafe fn bytes<'a>(data: *mut c_void, len: usize) -> Option<&'a [u8]> {
    if data.is_null() {
        None
    } else {
        Some(std::slice::from_raw_parts(data as *const u8, len))
    }
}

/// librdkafka's cached (low, high) watermarks, from the last fetch response; no network.
pub fn cached_watermarks<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid while `consumer` is alive (we hold an Arc); librdkafka
    // only reads the topic name and writes the two integers.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some((low.max(0), high))
}

/// The commit metadata of `topic`/`partition` in `list` as bytes (rdkafka's own accessor panics on
/// metadata that is not UTF-8, which any other client of the group may have committed). `None`
/// when the list does not hold the partition; empty when it carries no metadata.
pub fn commit_metadata(
    list: &rdkafka::TopicPartitionList,
    topic: &str,
    partition: i32,
) -> Option<Vec<u8>> {
    let topic = CString::new(topic).ok()?;
    // SAFETY: `list` owns a valid librdkafka list for the duration of the call; the element found
    // (if any) belongs to it, and its metadata pointer and size describe one allocation of it,
    // which is copied out before `list` can change.
    unsafe {
        let element =
            rdsys::rd_kafka_topic_partition_list_find(list.ptr(), topic.as_ptr(), partition);
        if element.is_null() {
            return None;
        }
        Some(
            bytes((*element).metadata, (*element).metadata_size)
                .map(<[u8]>::to_vec)
                .unwrap_or_default(),
        )
    }
}

/// The member id the group coordinator gave this consumer; empty before it joined and from the
/// moment it leaves (librdkafka clears it when it sends its LeaveGroup).
pub fn member_id<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> String {
    // SAFETY: the client pointer is valid while `consumer` lives; librdkafka returns a copy
    // (or null) that the caller frees with `rd_kafka_mem_free`.
    unsafe {
        let id = rdsys::rd_kafka_memberid(consumer.client().native_ptr());
        if id.is_null() {
            return String::new();
        }
        let text = CStr::from_ptr(id).to_string_lossy().into_owned();
        rdsys::rd_kafka_mem_free(consumer.client().native_ptr(), id.cast::<c_void>());
        text
    }
}
