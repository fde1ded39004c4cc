//! What a fault cost: the tallies of what reached Redis against what was produced.

/// Splits list elements `"<topic>:<partition>:<seq>"` by partition, checking each is in order.
pub fn assert_partition_order(elements: &[Vec<u8>]) {
    let mut last: std::collections::HashMap<String, String> = Default::default();
    for e in elements {
        let text = String::from_utf8(e.clone()).unwrap();
        let (prefix, _) = text.rsplit_once(':').unwrap();
        if let Some(prev) = last.get(prefix) {
            assert!(
                prev < &text,
                "out of order within partition {prefix}: {prev} then {text}"
            );
        }
        last.insert(prefix.to_string(), text);
    }
}

/// What a fault cost, as one row of the fault table (`scripts/faults.sh` collects the rows, which
/// start with `fault:`): produced, delivered, missing, duplicated, and per-partition order
/// violations — the times a partition's sequence went back in its list (one re-delivery after a
/// takeover is one). Elements are `"<topic>:<partition>:<seq>"`, as `produce_numbered` makes them.
pub fn report_fault(
    scenario: &str,
    delivery: &str,
    produced: &[String],
    elements: &[Vec<u8>],
) -> FaultCost {
    let mut seen: std::collections::HashMap<&[u8], usize> = Default::default();
    let mut last: std::collections::HashMap<&str, &str> = Default::default();
    let mut order_violations = 0;
    for e in elements {
        *seen.entry(e.as_slice()).or_default() += 1;
        let text = std::str::from_utf8(e).unwrap_or_default();
        if let Some((partition, seq)) = text.rsplit_once(':') {
            if last.get(partition).is_some_and(|prev| seq <= *prev) {
                order_violations += 1;
            }
            last.insert(partition, seq);
        }
    }
    let cost = FaultCost {
        produced: produced.len(),
        delivered: elements.len(),
        missing: produced
            .iter()
            .filter(|v| !seen.contains_key(v.as_bytes()))
            .count(),
        duplicated: seen.values().map(|n| n - 1).sum(),
        order_violations,
    };
    eprintln!(
        "fault: | {scenario} | {delivery} | {} | {} | {} | {} | {} |",
        cost.produced, cost.delivered, cost.missing, cost.duplicated, cost.order_violations
    );
    cost
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultCost {
    pub produced: usize,
    pub delivered: usize,
    pub missing: usize,
    pub duplicated: usize,
    pub order_violations: usize,
}
