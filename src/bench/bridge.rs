//! The bridge under measurement, as a child process of its own, so that the CPU and memory
//! reported are the bridge's alone, not the mock broker's or the load generator's, which share
//! this process.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::proc::{self, CpuSnapshot};
use super::services::{Broker, RedisService, TempDir, Topics};
use super::{bar, BenchArgs};
use crate::config::env::Vars;
use crate::config::Config;

/// What the bridge did while draining a pre-filled topic.
pub struct DrainRun {
    /// From the first element on a list to the last.
    pub flowing: Duration,
    /// From the start of the process (group join included).
    pub total: Duration,
    /// The bridge's CPU seconds (user + system) from the first element to the last: start-up and
    /// group join left out, as from the time.
    pub cpu_flowing: f64,
    /// Redis's CPU seconds over the same time, when this run started Redis (the bench's own
    /// `LLEN` polling, every 2 ms, included).
    pub redis_cpu: f64,
    pub hwm_kib: u64,
    /// Resident memory at the last poll that saw the lists empty (the bridge started, its group
    /// joined, nothing pushed yet): what the peak grew from while draining.
    pub rss_before_kib: u64,
}

/// The kafka2redis binary, running against the run's broker and Redis.
pub struct Bridge {
    child: Child,
    started: Instant,
    /// Stopped (`SIGSTOP`) while the next round is produced; [`Bridge::drain`] lets it go on.
    paused: bool,
    log: PathBuf,
    _dir: TempDir,
}

impl Bridge {
    pub fn spawn(
        args: &BenchArgs,
        broker: &Broker,
        redis: &RedisService,
        topics: &Topics,
    ) -> anyhow::Result<Bridge> {
        let dir = TempDir::new("bridge")?;
        let config = dir.0.join("bench.toml");
        std::fs::write(&config, config_text(args, broker, redis, topics))?;
        let log = dir.0.join("bridge.log");
        let binary = match &args.bridge_binary {
            Some(path) => path.clone(),
            None => std::env::current_exe().context("finding this executable")?,
        };
        let mut cmd = Command::new(binary);
        cmd.arg("--config")
            .arg(&config)
            .args(["--log-level", "warn", "run"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        // The bench decides what the bridge connects to, whatever this shell exports.
        for (key, _) in std::env::vars() {
            if key.starts_with("K2R_") || key == "RUST_LOG" {
                cmd.env_remove(key);
            }
        }
        let child = cmd.spawn().context("starting the bridge")?;
        Ok(Bridge {
            child,
            started: Instant::now(),
            paused: false,
            log,
            _dir: dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the process (`SIGSTOP`) until the next [`Bridge::drain`], so that the next round's
    /// messages wait in Kafka as a backlog for a bridge that has been running all along: a long-lived
    /// bridge's allocator and librdkafka's buffers are warm, a fresh process's are not.
    pub fn pause(&mut self) -> anyhow::Result<()> {
        self.signal(libc::SIGSTOP)?;
        self.paused = true;
        Ok(())
    }

    fn signal(&self, signal: libc::c_int) -> anyhow::Result<()> {
        // SAFETY: kill(2) on our own child's pid, which `self.child` has not reaped.
        if unsafe { libc::kill(self.child.id() as libc::pid_t, signal) } != 0 {
            bail!("signalling the bridge: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits until the lists hold `messages` elements, with a progress bar. A paused bridge is
    /// let go on once a poll has seen the lists empty, so the flow is timed from that poll.
    pub fn drain(
        &mut self,
        redis: &RedisService,
        topics: &Topics,
        messages: usize,
        stall_seconds: u64,
    ) -> anyhow::Result<DrainRun> {
        let lists = topics.lists();
        let mut conn = redis.connection()?;
        let progress = bar(messages as u64, "bridge");
        let mut redis_cpu_start = redis.pid().map(CpuSnapshot::take);
        // The flow starts after the last poll that still saw empty lists (conservative: the first
        // element landed somewhere between that poll and the next).
        let mut first = None;
        let mut empty_at = Instant::now();
        let mut cpu_first = CpuSnapshot::take(self.pid());
        let mut rss_before_kib = 0;
        let (mut last_len, mut last_change) = (0, Instant::now());
        loop {
            let polled_at = Instant::now();
            let len = RedisService::total_len(&mut conn, &lists, topics.streams)?;
            let now = Instant::now();
            if len == 0 {
                empty_at = polled_at;
                cpu_first = CpuSnapshot::take(self.pid());
                rss_before_kib = proc::rss_kib(self.pid()).0;
                redis_cpu_start = redis.pid().map(CpuSnapshot::take);
                if self.paused {
                    self.signal(libc::SIGCONT)?;
                    self.paused = false;
                }
            } else if first.is_none() {
                first = Some(empty_at);
            }
            if len != last_len {
                last_len = len;
                last_change = now;
                progress.set_position(len as u64);
            }
            if len >= messages {
                break;
            }
            if let Some(status) = self.child.try_wait()? {
                progress.abandon();
                bail!(
                    "the bridge exited ({status}) before delivering everything:\n{}",
                    self.log_tail()
                );
            }
            if now - last_change > Duration::from_secs(stall_seconds) {
                progress.abandon();
                bail!(
                    "the bridge made no progress for {stall_seconds} s ({len} of {messages} delivered):\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let done = Instant::now();
        let cpu = cpu_first.seconds_since();
        let redis_cpu = redis_cpu_start.map_or(0.0, |s| s.seconds_since());
        let (_, hwm_kib) = proc::rss_kib(self.pid());
        progress.finish_and_clear();
        redis.delete(&lists)?;
        redis.delete_matching(&topics.job_key_patterns())?;
        Ok(DrainRun {
            flowing: done - first.unwrap_or(done),
            total: done - self.started,
            cpu_flowing: cpu,
            redis_cpu,
            hwm_kib,
            rss_before_kib,
        })
    }

    /// SIGTERM, then wait; returns whether the bridge exited 0.
    pub fn stop(mut self) -> anyhow::Result<bool> {
        if self.paused {
            self.signal(libc::SIGCONT)?;
        }
        Command::new("kill")
            .arg(self.child.id().to_string())
            .status()?;
        let status = self.child.wait()?;
        if !status.success() {
            eprintln!("{}", self.log_tail());
        }
        Ok(status.success())
    }

    /// An error carrying the end of the bridge's log if it has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the bridge exited ({status}):\n{}", self.log_tail());
        }
        Ok(())
    }

    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The bridge's config for this run as the bridge itself reads it (its own parser and
/// validation), for the push-only ceiling to push exactly what the bridge pushes.
pub fn parsed_config(text: &str) -> anyhow::Result<Config> {
    let config = crate::config::native::parse(text, Path::new("bench.toml"), &Vars::default())?;
    config.validate()?;
    Ok(config)
}

/// The bridge's native config for this run: one entry per topic, defaults unless overridden.
pub fn config_text(
    args: &BenchArgs,
    broker: &Broker,
    redis: &RedisService,
    topics: &Topics,
) -> String {
    let quoted = |s: &str| format!("{s:?}");
    let cap = args
        .backlog_cap
        .map(|cap| format!("cap = {cap}\n"))
        .unwrap_or_default();
    let envelope = &args.envelope[0];
    // A job envelope names a handler; the bench only measures the push, so no worker runs it.
    let job = match envelope.as_str() {
        "laravel" => Some(r"App\\Jobs\\Bench@handle"),
        "celery" | "rq" => Some("bench.record"),
        "sidekiq" => Some("BenchWorker"),
        "bullmq" => Some("record"),
        "symfony" => Some(r"App\\Message\\BenchRecord"),
        _ => None,
    };
    let names: Vec<String> = topics
        .names
        .iter()
        .zip(topics.lists())
        .map(|(name, list)| match job {
            // Their keys follow from the queue, named after the topic.
            Some(job) if topics.hash_jobs() => format!(
                "{{ name = {}, queue = {}, job = \"{job}\" }}",
                quoted(name),
                quoted(name)
            ),
            Some(job) => format!(
                "{{ name = {}, list = {}, job = \"{job}\" }}",
                quoted(name),
                quoted(&list)
            ),
            None if topics.streams => {
                format!("{{ name = {}, structure = \"stream\" }}", quoted(name))
            }
            None => quoted(name),
        })
        .collect();
    let mut text = format!(
        "delivery = {}\ntopics = [{}]\n\n[defaults]\nenvelope = {}\n{cap}\n[kafka]\nbrokers = [{}]\ngroup = {}\n",
        quoted(&args.delivery),
        names.join(", "),
        quoted(envelope),
        quoted(&broker.bootstrap()),
        quoted(&format!("{}-bridge", topics.names[0])),
    );
    if !args.properties.is_empty() {
        text.push_str("[kafka.properties]\n");
        for property in &args.properties {
            let (key, value) = property.split_once('=').unwrap_or((property, ""));
            text.push_str(&format!("{} = {}\n", quoted(key), quoted(value)));
        }
    }
    text.push_str(&format!(
        "\n[redis]\naddresses = [{}]\nwait_replicas = {}\n",
        quoted(&redis.address),
        args.wait_replicas
    ));
    if args.lease {
        text.push_str(&format!(
            "\n[lease]\nkey = {}\n",
            quoted(&format!("{}-lease", topics.names[0]))
        ));
    }
    text.push_str("\n[batch]\n");
    if let Some(n) = args.batch_max_messages {
        text.push_str(&format!("max_messages = {n}\n"));
    }
    if let Some(ms) = args.linger_ms {
        text.push_str(&format!("linger_ms = {ms}\n"));
    }
    if let Some(n) = args.in_flight {
        text.push_str(&format!("in_flight = {n}\n"));
    }
    text
}
