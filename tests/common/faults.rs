//! What a fault cost: one tally of what reached Redis against what was produced, and its row in the
//! fault table (`scripts/faults.sh` collects the rows, which start with `fault:`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// The elements of one or more lists (`"<topic>:<partition>:<seq>"`, as `produce_numbered` makes
/// them) counted against the values produced.
#[derive(Clone)]
pub struct Tally {
    pub produced: usize,
    pub delivered: usize,
    pub distinct: usize,
    /// Produced values not in the lists, in the order produced.
    pub missing: Vec<String>,
    /// Copies beyond the first, over all elements.
    pub duplicated: usize,
    /// The most copies of one element.
    pub most_copies: usize,
    /// Elements whose sequence is not above the one before it of the same partition: the times a
    /// partition went back in the lists (one re-delivery after a takeover is one), per partition.
    pub went_back: BTreeMap<String, Vec<String>>,
    /// Elements that were never produced.
    pub unexpected: Vec<String>,
    /// The first place where first occurrences break a partition's order (`previous`, `next`).
    first_out_of_order: Option<(String, String)>,
}

/// A partition's sequence number compares as a number: by length first, so that `10` follows `9`
/// (`produce_numbered` pads them to one length anyway).
fn seq_key(seq: &str) -> (usize, &str) {
    (seq.len(), seq)
}

impl Tally {
    pub fn new(produced: &[String], elements: &[Vec<u8>]) -> Tally {
        let mut copies: HashMap<&[u8], usize> = HashMap::new();
        let mut last: HashMap<&str, &str> = HashMap::new();
        let mut last_first: HashMap<&str, &str> = HashMap::new();
        let mut went_back: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut first_out_of_order = None;
        for e in elements {
            let n = copies.entry(e.as_slice()).or_default();
            *n += 1;
            let first = *n == 1;
            let text = std::str::from_utf8(e).unwrap_or_default();
            let Some((partition, seq)) = text.rsplit_once(':') else {
                continue;
            };
            if last
                .insert(partition, seq)
                .is_some_and(|prev| seq_key(seq) <= seq_key(prev))
            {
                went_back
                    .entry(partition.to_string())
                    .or_default()
                    .push(text.to_string());
            }
            if first {
                if let Some(prev) = last_first.insert(partition, seq) {
                    if seq_key(seq) <= seq_key(prev) && first_out_of_order.is_none() {
                        first_out_of_order =
                            Some((format!("{partition}:{prev}"), text.to_string()));
                    }
                }
            }
        }
        let produced_set: HashSet<&[u8]> = produced.iter().map(|p| p.as_bytes()).collect();
        Tally {
            produced: produced.len(),
            delivered: elements.len(),
            distinct: copies.len(),
            missing: produced
                .iter()
                .filter(|v| !copies.contains_key(v.as_bytes()))
                .cloned()
                .collect(),
            duplicated: copies.values().map(|n| n - 1).sum(),
            most_copies: copies.values().copied().max().unwrap_or(0),
            went_back,
            unexpected: copies
                .keys()
                .filter(|e| !produced_set.contains(*e))
                .map(|e| String::from_utf8_lossy(e).into_owned())
                .collect(),
            first_out_of_order,
        }
    }

    /// The times a partition went back, over all partitions.
    pub fn order_violations(&self) -> usize {
        self.went_back.values().map(Vec::len).sum()
    }

    /// Prints the fault table's row: `scenario`, `delivery`, produced, delivered, missing,
    /// duplicated, order violations.
    pub fn report(self, scenario: &str, delivery: &str) -> Tally {
        eprintln!(
            "fault: | {scenario} | {delivery} | {} | {} | {} | {} | {} |",
            self.produced,
            self.delivered,
            self.missing.len(),
            self.duplicated,
            self.order_violations()
        );
        self
    }

    /// Asserts what holds after any fault: every element was produced, and the first occurrences
    /// keep each partition's order (a re-delivery may repeat what came before, never reorder it).
    pub fn assert_sound(self) -> Tally {
        assert!(
            self.unexpected.is_empty(),
            "unexpected elements, e.g. {:?}",
            &self.unexpected[..self.unexpected.len().min(5)]
        );
        if let Some((prev, next)) = &self.first_out_of_order {
            panic!("out of order within a partition: {prev} then {next}");
        }
        self
    }

    /// Asserts [`Tally::assert_sound`] and that nothing produced is missing.
    pub fn assert_complete(self) -> Tally {
        let tally = self.assert_sound();
        assert!(
            tally.missing.is_empty(),
            "{} of {} messages missing, e.g. {:?}",
            tally.missing.len(),
            tally.produced,
            &tally.missing[..tally.missing.len().min(5)]
        );
        tally
    }
}

/// The counts, without the lists of values.
impl fmt::Debug for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "produced {}, delivered {}, distinct {}, missing {}, duplicated {}, order violations {}",
            self.produced,
            self.delivered,
            self.distinct,
            self.missing.len(),
            self.duplicated,
            self.order_violations()
        )
    }
}
