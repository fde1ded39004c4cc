//! A lane's batch: encoded elements of one partition, in offset order, waiting for one push.
//!
//! Elements live back to back in one buffer (no allocation per message). Each remembers its offset
//! and whether it is a dead letter, because a capped push may take only a prefix of the messages:
//! the lane then stores the offset up to that cut, pushes the dead letters before it, and keeps the
//! rest — in order — for after the list has drained.

use std::ops::Range;
use std::time::Instant;

/// Appends one part of an element made of parts (a BullMQ or RQ job: its id, then its hash's field
/// values): its length as four little-endian bytes, then its bytes. Such a batch carries each job's
/// id and fields in the one buffer, like any other element.
pub fn write_part(out: &mut Vec<u8>, part: &[u8]) {
    let len = u32::try_from(part.len()).expect("a part under 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(part);
}

/// The parts [`write_part`] wrote into `element`, in order.
pub fn parts(mut element: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (len, rest) = element.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        let (part, rest) = rest.split_at(len);
        element = rest;
        Some(part)
    })
}

#[derive(Debug, Clone)]
struct Entry {
    offset: i64,
    /// Kafka timestamp (ms), for the age of the oldest undelivered message.
    timestamp: Option<i64>,
    dead: bool,
    /// A dead letter already on its list (exactly-once pushes them ahead of the messages).
    dead_pushed: bool,
    range: Range<usize>,
}

/// Messages of one partition gathered for one push.
pub struct Batch {
    list_key: String,
    dead_key: String,
    buf: Vec<u8>,
    entries: Vec<Entry>,
    messages: usize,
    started: Option<Instant>,
}

impl Batch {
    pub fn new(list_key: String, dead_key: String) -> Batch {
        Batch {
            list_key,
            dead_key,
            buf: Vec::new(),
            entries: Vec::new(),
            messages: 0,
            started: None,
        }
    }

    /// Appends the element `encode` writes for the message at `offset`; `dead` marks a
    /// dead-letter record. `encode` writes into the batch's buffer, so nothing is copied twice.
    pub fn add_with(
        &mut self,
        offset: i64,
        timestamp: Option<i64>,
        dead: bool,
        encode: impl FnOnce(&mut Vec<u8>),
    ) {
        let start = self.buf.len();
        encode(&mut self.buf);
        self.entries.push(Entry {
            offset,
            timestamp,
            dead,
            dead_pushed: false,
            range: start..self.buf.len(),
        });
        if !dead {
            self.messages += 1;
        }
        self.started.get_or_insert_with(Instant::now);
    }

    /// Drops what the last `add_with` wrote (its encoder failed half-way).
    pub fn discard_last(&mut self) {
        if let Some(entry) = self.entries.pop() {
            self.buf.truncate(entry.range.start);
            if !entry.dead {
                self.messages -= 1;
            }
        }
        if self.entries.is_empty() {
            self.started = None;
        }
    }

    /// The message elements (not dead letters), in offset order.
    pub fn messages_iter(&self) -> impl Iterator<Item = &[u8]> {
        self.entries
            .iter()
            .filter(|e| !e.dead)
            .map(|e| &self.buf[e.range.clone()])
    }

    /// The offsets of the message elements, in the order of [`Batch::messages_iter`].
    pub fn message_offsets(&self) -> impl Iterator<Item = i64> + '_ {
        self.entries.iter().filter(|e| !e.dead).map(|e| e.offset)
    }

    /// The dead-letter records among the first `cut` entries that are not pushed yet.
    pub fn dead_letters_before(&self, cut: usize) -> impl Iterator<Item = &[u8]> {
        self.entries[..cut]
            .iter()
            .filter(|e| e.dead && !e.dead_pushed)
            .map(|e| &self.buf[e.range.clone()])
    }

    /// Marks every dead letter in the batch as pushed, so a later push does not repeat them.
    pub fn mark_dead_letters_pushed(&mut self) {
        for e in self.entries.iter_mut().filter(|e| e.dead) {
            e.dead_pushed = true;
        }
    }

    /// The offset of the last entry, if any.
    pub fn last_offset(&self) -> Option<i64> {
        self.entries.last().map(|e| e.offset)
    }

    /// The entry index just past the first `pushed` messages: everything before it is settled
    /// once the dead letters before it are pushed too. With every message pushed, that is the
    /// whole batch (trailing dead letters included).
    pub fn cut_after(&self, pushed: usize) -> usize {
        if pushed >= self.messages {
            return self.entries.len();
        }
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.dead)
            .nth(pushed)
            .map(|(i, _)| i)
            .unwrap_or(self.entries.len())
    }

    /// The offset of the first entry, if any.
    pub fn first_offset(&self) -> Option<i64> {
        self.entries.first().map(|e| e.offset)
    }

    /// The offset of the entry at `index`, if there is one.
    pub fn offset_at(&self, index: usize) -> Option<i64> {
        self.entries.get(index).map(|e| e.offset)
    }

    /// How many of the first `cut` entries are dead letters.
    pub fn dead_letters_count(&self, cut: usize) -> usize {
        self.entries[..cut].iter().filter(|e| e.dead).count()
    }

    /// How many entries, from the front, have an offset below `offset`.
    pub fn entries_below(&self, offset: i64) -> usize {
        self.entries.partition_point(|e| e.offset < offset)
    }

    /// How many of the first `cut` entries are messages (not dead letters).
    pub fn messages_before(&self, cut: usize) -> usize {
        self.entries[..cut].iter().filter(|e| !e.dead).count()
    }

    /// Whether a dead letter waits to be pushed.
    pub fn has_unpushed_dead_letters(&self) -> bool {
        self.entries.iter().any(|e| e.dead && !e.dead_pushed)
    }

    /// The entries `range` as a batch of their own (a lane's window sends parts of its batch
    /// while the batch itself keeps them until they settle).
    pub fn copy_of(&self, range: Range<usize>) -> Batch {
        let entries = &self.entries[range];
        let bytes = match (entries.first(), entries.last()) {
            (Some(first), Some(last)) => first.range.start..last.range.end,
            _ => 0..0,
        };
        Batch {
            list_key: self.list_key.clone(),
            dead_key: self.dead_key.clone(),
            buf: self.buf[bytes.clone()].to_vec(),
            entries: entries
                .iter()
                .map(|e| Entry {
                    range: e.range.start - bytes.start..e.range.end - bytes.start,
                    ..e.clone()
                })
                .collect(),
            messages: entries.iter().filter(|e| !e.dead).count(),
            started: self.started,
        }
    }

    /// The end (exclusive) of the part that starts at entry `from`: at most `max_entries` entries
    /// and, past the first, `max_bytes` bytes.
    pub fn part_end(&self, from: usize, max_entries: usize, max_bytes: usize) -> usize {
        let mut end = from;
        let mut bytes = 0;
        while end < self.entries.len() && end - from < max_entries {
            let len = self.entries[end].range.len();
            if end > from && bytes + len > max_bytes {
                break;
            }
            bytes += len;
            end += 1;
        }
        end
    }

    /// The Kafka timestamp of the oldest entry, if the batch holds any.
    pub fn oldest_timestamp(&self) -> Option<i64> {
        self.entries.first().and_then(|e| e.timestamp)
    }

    /// The offset of the last entry before `cut`, if any: the partition's next offset is this + 1.
    pub fn last_offset_before(&self, cut: usize) -> Option<i64> {
        cut.checked_sub(1).map(|i| self.entries[i].offset)
    }

    /// Removes the first `cut` entries (they reached Redis), keeping the rest in order.
    pub fn remove_front(&mut self, cut: usize) {
        if cut == 0 {
            return;
        }
        if cut >= self.entries.len() {
            self.clear();
            return;
        }
        let shift = self.entries[cut].range.start;
        self.messages -= self.entries[..cut].iter().filter(|e| !e.dead).count();
        self.entries.drain(..cut);
        self.buf.drain(..shift);
        for e in &mut self.entries {
            e.range = e.range.start - shift..e.range.end - shift;
        }
        // The leftover has waited since before the cut; count linger from now.
        self.started = Some(Instant::now());
    }

    /// Moves every entry of `other` after this batch's own, in order, and leaves `other` empty
    /// (its buffer kept for reuse). Linger counts from the older of the two starts.
    pub fn append(&mut self, other: &mut Batch) {
        if other.is_empty() {
            return;
        }
        if self.is_empty() {
            std::mem::swap(&mut self.buf, &mut other.buf);
            std::mem::swap(&mut self.entries, &mut other.entries);
            self.messages = other.messages;
            self.started = other.started;
            other.clear();
            return;
        }
        let shift = self.buf.len();
        self.buf.extend_from_slice(&other.buf);
        self.entries.extend(other.entries.drain(..).map(|mut e| {
            e.range = e.range.start + shift..e.range.end + shift;
            e
        }));
        self.messages += other.messages;
        self.started = match (self.started, other.started) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        other.clear();
    }

    /// Empties the batch and gives its memory back (a lane's spare batch between uses: with
    /// hundreds of partitions, a retained buffer per lane adds up).
    pub fn release(&mut self) {
        self.clear();
        self.buf = Vec::new();
        self.entries = Vec::new();
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.entries.clear();
        self.messages = 0;
        self.started = None;
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries (messages and dead letters).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Messages bound for the list (not counting dead letters).
    pub fn messages(&self) -> usize {
        self.messages
    }

    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// When the oldest entry still in the batch was added (or the batch last partly pushed).
    pub fn started(&self) -> Option<Instant> {
        self.started
    }

    pub fn list_key(&self) -> &str {
        &self.list_key
    }

    pub fn dead_key(&self) -> &str {
        &self.dead_key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(entries: &[(i64, bool, &str)]) -> Batch {
        let mut b = Batch::new("l".into(), "l:dead".into());
        for (offset, dead, text) in entries {
            b.add_with(*offset, None, *dead, |out| {
                out.extend_from_slice(text.as_bytes())
            });
        }
        b
    }

    #[test]
    fn partial_push_keeps_the_rest_in_order() {
        let mut b = batch(&[
            (10, false, "a"),
            (11, true, "D1"),
            (12, false, "b"),
            (13, true, "D2"),
            (14, false, "c"),
        ]);
        assert_eq!(b.messages(), 3);
        // Two messages fit: the cut is at "c"; D1 and D2 precede it.
        let cut = b.cut_after(2);
        assert_eq!(cut, 4);
        assert_eq!(
            b.dead_letters_before(cut).collect::<Vec<_>>(),
            vec![b"D1".as_slice(), b"D2"]
        );
        assert_eq!(b.last_offset_before(cut), Some(13));
        b.remove_front(cut);
        assert_eq!(b.messages_iter().collect::<Vec<_>>(), vec![b"c".as_slice()]);
        assert_eq!(b.messages(), 1);
        assert_eq!(b.bytes(), 1);
    }

    #[test]
    fn parts_come_back_as_written() {
        let mut out = Vec::new();
        for part in [b"id".as_slice(), b"", b"\x00\xff"] {
            write_part(&mut out, part);
        }
        assert_eq!(
            parts(&out).collect::<Vec<_>>(),
            vec![b"id".as_slice(), b"", b"\x00\xff"]
        );
    }

    #[test]
    fn nothing_pushed_and_everything_pushed() {
        let b = batch(&[(1, true, "D"), (2, false, "a")]);
        assert_eq!(b.cut_after(0), 1); // the dead letter before the first message is settled
        assert_eq!(b.cut_after(1), 2);
        let b = batch(&[(1, false, "a"), (2, true, "D")]);
        assert_eq!(b.cut_after(1), 2); // trailing dead letters go with a full push
        assert_eq!(b.last_offset_before(0), None);
    }

    #[test]
    fn append_keeps_the_leftover_first_and_empties_the_other() {
        let mut left = batch(&[(10, false, "a"), (11, false, "b")]);
        left.remove_front(1); // "b" did not fit
        let mut next = batch(&[(12, true, "D"), (13, false, "cc")]);
        left.append(&mut next);
        assert!(next.is_empty() && next.bytes() == 0 && next.started().is_none());
        assert_eq!(
            left.messages_iter().collect::<Vec<_>>(),
            vec![b"b".as_slice(), b"cc"]
        );
        assert_eq!(left.messages(), 2);
        assert_eq!(left.len(), 3);
        assert_eq!(
            left.dead_letters_before(3).collect::<Vec<_>>(),
            vec![b"D".as_slice()]
        );
        assert_eq!(left.last_offset(), Some(13));

        let mut empty = Batch::new("l".into(), "l:dead".into());
        let mut next = batch(&[(20, false, "x")]);
        empty.append(&mut next);
        assert_eq!(empty.message_offsets().collect::<Vec<_>>(), vec![20]);
        assert!(empty.started().is_some() && next.is_empty());
    }
}
