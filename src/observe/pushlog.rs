//! When this instance pushed what onto a list, so that the age of the oldest element still waiting
//! in it can be read off the list's length.
//!
//! Workers take a list's elements in the order they were pushed (a FIFO queue, whichever end it is
//! pushed at), so the elements left are always the last ones pushed. Per list the log keeps a
//! bounded ring of marks (cumulative elements pushed, when); with `LLEN = n` and `total` pushed so
//! far, the oldest waiting element is the one pushed at cumulative count `total − n`, and its mark
//! says when. The limits:
//!
//! - Elements pushed before this log began (an earlier process, the previous lease holder) are not
//!   in it: when the list holds more than the log has seen, the age is at least the log's own age
//!   ([`Oldest::Before`]).
//! - Elements pushed by others (a second instance feeding the same list) shift the count: the
//!   figure then belongs to an element at least as old as the true oldest, an over-estimate.
//! - The ring is bounded: when full, neighbouring marks merge (keeping the earlier time), so its
//!   resolution coarsens instead of forgetting the oldest pushes; marks wholly popped are dropped.
//! - Elements removed otherwise (a worker taking the newest first, `LREM`, a Redis that lost
//!   writes) leave the count pointing at a younger element: an under-estimate.
//! - A mark is taken when Redis acknowledged the push, a moment after the element landed.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Marks kept per list before neighbours merge.
const CAPACITY: usize = 1024;

/// The age of the oldest element waiting in a list, as the log can tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oldest {
    /// The list is empty.
    Empty,
    /// Pushed at this time (ms since the epoch).
    At(i64),
    /// Pushed at or before this time: the element precedes what the log still knows.
    Before(i64),
}

/// Everything elements up to `pushed` (cumulative) were pushed by `at_ms`.
#[derive(Debug, Clone, Copy)]
struct Mark {
    pushed: u64,
    at_ms: i64,
}

#[derive(Debug)]
struct Ring {
    marks: VecDeque<Mark>,
    total: u64,
    /// Pushes closer together than this share a mark (grows as the ring is compacted).
    resolution_ms: i64,
    /// When the log began.
    since_ms: i64,
    /// The last mark dropped because every element it covers was popped.
    floor: Option<Mark>,
}

/// One list's push record, shared by the lanes that feed it and read by the lag loop.
#[derive(Debug)]
pub struct PushLog {
    ring: Mutex<Ring>,
}

impl PushLog {
    pub fn new(since_ms: i64) -> PushLog {
        PushLog {
            ring: Mutex::new(Ring {
                marks: VecDeque::new(),
                total: 0,
                resolution_ms: 0,
                since_ms,
                floor: None,
            }),
        }
    }

    /// Redis took `elements` more at `at_ms`.
    pub fn record(&self, elements: u64, at_ms: i64) {
        if elements == 0 {
            return;
        }
        let mut ring = self.ring.lock().expect("push log lock");
        ring.total += elements;
        let total = ring.total;
        let resolution = ring.resolution_ms;
        match ring.marks.back_mut() {
            Some(last) if at_ms - last.at_ms < resolution => last.pushed = total,
            _ => ring.marks.push_back(Mark {
                pushed: total,
                at_ms,
            }),
        }
        if ring.marks.len() > CAPACITY {
            ring.compact();
        }
    }

    /// Elements pushed since the log began.
    #[cfg(test)]
    pub fn total(&self) -> u64 {
        self.ring.lock().expect("push log lock").total
    }

    /// When the oldest of the `left` elements in the list was pushed.
    pub fn oldest(&self, left: u64) -> Oldest {
        self.ring.lock().expect("push log lock").oldest(left)
    }
}

impl Ring {
    fn oldest(&mut self, left: u64) -> Oldest {
        if left == 0 {
            return Oldest::Empty;
        }
        if left > self.total {
            return Oldest::Before(self.since_ms);
        }
        // Elements 1..=popped are gone; the oldest waiting is element popped + 1.
        let popped = self.total - left;
        while self.marks.front().is_some_and(|m| m.pushed <= popped) {
            self.floor = self.marks.pop_front();
        }
        match (self.floor, self.marks.front()) {
            // The list grew back past marks already dropped (elements returned to it).
            (Some(floor), _) if popped < floor.pushed => Oldest::Before(floor.at_ms),
            (_, Some(mark)) => Oldest::At(mark.at_ms),
            (_, None) => Oldest::Before(self.since_ms),
        }
    }

    /// Merges neighbouring marks: each pair keeps the later count and the earlier time, so an age
    /// read from it errs on the old side by at most the pair's spread.
    fn compact(&mut self) {
        let marks: Vec<Mark> = self.marks.drain(..).collect();
        self.marks = marks
            .chunks(2)
            .map(|pair| Mark {
                pushed: pair[pair.len() - 1].pushed,
                at_ms: pair[0].at_ms,
            })
            .collect();
        self.resolution_ms = (self.resolution_ms * 2).max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_waiting_element_is_read_off_the_length() {
        let log = PushLog::new(1_000);
        assert_eq!(log.oldest(0), Oldest::Empty);
        log.record(10, 2_000); // elements 1..=10
        log.record(5, 3_000); // 11..=15
        log.record(5, 4_000); // 16..=20
        assert_eq!(log.oldest(20), Oldest::At(2_000));
        assert_eq!(log.oldest(11), Oldest::At(2_000)); // element 10 still waits
        assert_eq!(log.oldest(10), Oldest::At(3_000)); // popped 1..=10
        assert_eq!(log.oldest(3), Oldest::At(4_000));
        assert_eq!(log.oldest(0), Oldest::Empty);
        // More than this log pushed: the rest came before it began.
        assert_eq!(log.oldest(25), Oldest::Before(1_000));
    }

    #[test]
    fn popped_marks_are_dropped_and_a_list_that_grew_back_is_a_lower_bound() {
        let log = PushLog::new(0);
        log.record(10, 100);
        log.record(10, 200);
        assert_eq!(log.oldest(5), Oldest::At(200)); // drops the first mark
        assert_eq!(log.oldest(15), Oldest::Before(100));
    }

    #[test]
    fn a_full_ring_coarsens_but_keeps_the_earliest_pushes() {
        let log = PushLog::new(0);
        for i in 0..(CAPACITY as i64 * 8) {
            log.record(1, 1_000 + i);
        }
        let ring = log.ring.lock().unwrap();
        assert!(ring.marks.len() <= CAPACITY);
        drop(ring);
        let total = log.total();
        assert_eq!(log.oldest(total), Oldest::At(1_000));
        // The newest element's time errs on the old side by at most the resolution.
        let Oldest::At(t) = log.oldest(1) else {
            panic!("a recorded element")
        };
        let newest = 1_000 + CAPACITY as i64 * 8 - 1;
        let resolution = log.ring.lock().unwrap().resolution_ms;
        assert!(t <= newest && newest - t <= resolution, "{t} vs {newest}");
    }
}
