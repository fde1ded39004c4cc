//! CPU time and memory of a process, read from `/proc` (Linux), for the bench's figures.

use std::collections::HashMap;

/// A process's CPU time per thread at one moment, in nanoseconds (`/proc/<pid>/task/*/schedstat`),
/// so that a short window is measured to the nanosecond rather than in the 10 ms ticks of
/// `/proc/<pid>/stat`: a 200,000-message run is ~0.1 s of bridge CPU, where ticks alone would be
/// ±10 %.
pub struct CpuSnapshot {
    pid: u32,
    threads: HashMap<String, u64>,
    /// The tick-based total, for kernels without schedstat.
    ticks: f64,
}

impl CpuSnapshot {
    pub fn take(pid: u32) -> CpuSnapshot {
        let mut threads = HashMap::new();
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                let ns = std::fs::read_to_string(task.path().join("schedstat"))
                    .ok()
                    .and_then(|s| s.split(' ').next().and_then(|n| n.parse().ok()));
                if let Some(ns) = ns {
                    threads.insert(task.file_name().to_string_lossy().into_owned(), ns);
                }
            }
        }
        CpuSnapshot {
            pid,
            threads,
            ticks: cpu_seconds(pid),
        }
    }

    /// CPU seconds the process used since this snapshot: per thread, what it used since (a thread
    /// started since counts from 0; one that ended since loses what it used in between, which the
    /// bridge's long-lived threads do not).
    pub fn seconds_since(&self) -> f64 {
        let now = CpuSnapshot::take(self.pid);
        if self.threads.is_empty() || now.threads.is_empty() {
            return now.ticks - self.ticks;
        }
        let ns: u64 = now
            .threads
            .iter()
            .map(|(tid, &ns)| ns.saturating_sub(self.threads.get(tid).copied().unwrap_or(0)))
            .sum();
        ns as f64 / 1e9
    }
}

/// User + system CPU seconds a process has used so far (0 when it cannot be read).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may contain spaces; the fields after it are fixed.
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest)
        .unwrap_or("")
        .split(' ')
        .collect();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    ticks / clock_ticks_per_second()
}

/// (resident now, peak resident) in KiB.
pub fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// `USER_HZ`; 100 on every Linux this runs on (it is fixed in the kernel ABI for /proc).
fn clock_ticks_per_second() -> f64 {
    100.0
}
