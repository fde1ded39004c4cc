//! A lane's batch, built straight into the Redis commands that will carry it.
//!
//! Encoded elements are appended to one variadic `RPUSH` (and dead letters to another, on the
//! dead-letter list), so a batch is a single round trip and no element is copied twice. The batch
//! also remembers the offsets it covers, which the lane stores once Redis has acknowledged it.

use std::time::Instant;

use ::redis::{Cmd, Pipeline};

/// Messages of one partition gathered for one push.
pub struct Batch {
    list_key: String,
    dead_key: String,
    push: Cmd,
    dead: Cmd,
    messages: usize,
    dead_letters: usize,
    bytes: usize,
    last_offset: Option<i64>,
    started: Option<Instant>,
}

impl Batch {
    pub fn new(list_key: String, dead_key: String) -> Batch {
        let mut batch = Batch {
            push: Cmd::new(),
            dead: Cmd::new(),
            list_key,
            dead_key,
            messages: 0,
            dead_letters: 0,
            bytes: 0,
            last_offset: None,
            started: None,
        };
        batch.clear();
        batch
    }

    /// Adds one encoded element for the message at `offset`.
    pub fn add(&mut self, offset: i64, element: &[u8]) {
        self.push.arg(element);
        self.messages += 1;
        self.note(offset, element.len());
    }

    /// Adds one dead-letter record for the message at `offset`.
    pub fn add_dead_letter(&mut self, offset: i64, record: &[u8]) {
        self.dead.arg(record);
        self.dead_letters += 1;
        self.note(offset, record.len());
    }

    fn note(&mut self, offset: i64, bytes: usize) {
        self.bytes += bytes;
        self.last_offset = Some(offset);
        self.started.get_or_insert_with(Instant::now);
    }

    /// Empties the batch for reuse (keeping its buffers' capacity would need `Cmd::clear`, which
    /// the client does not offer; a fresh `Cmd` is one allocation per batch, not per message).
    pub fn clear(&mut self) {
        self.push = ::redis::cmd("RPUSH");
        self.push.arg(&self.list_key);
        self.dead = ::redis::cmd("RPUSH");
        self.dead.arg(&self.dead_key);
        self.messages = 0;
        self.dead_letters = 0;
        self.bytes = 0;
        self.last_offset = None;
        self.started = None;
    }

    /// The `RPUSH` onto the list.
    pub fn push_command(&self) -> &Cmd {
        &self.push
    }

    /// The `RPUSH` onto the dead-letter list.
    pub fn dead_letter_command(&self) -> &Cmd {
        &self.dead
    }

    /// Both commands as one pipeline (one round trip), for a batch that has both.
    pub fn pipeline(&self) -> Pipeline {
        let mut pipe = ::redis::pipe();
        if self.messages > 0 {
            pipe.add_command(self.push.clone()).ignore();
        }
        if self.dead_letters > 0 {
            pipe.add_command(self.dead.clone()).ignore();
        }
        pipe
    }

    pub fn is_empty(&self) -> bool {
        self.last_offset.is_none()
    }

    /// Messages pushed to the list (not counting dead letters).
    pub fn messages(&self) -> usize {
        self.messages
    }

    pub fn dead_letters(&self) -> usize {
        self.dead_letters
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The offset of the last message in the batch; the partition's next offset is this + 1.
    pub fn last_offset(&self) -> Option<i64> {
        self.last_offset
    }

    /// When the first message was added.
    pub fn started(&self) -> Option<Instant> {
        self.started
    }

    pub fn list_key(&self) -> &str {
        &self.list_key
    }
}
