//! `kafka2redis bench` (both modes) runs end to end on tiny inputs, so the benchmark cannot rot
//! unnoticed.
//!
//! Not a timed test: it checks that every stage (produce, both ceilings, the bridge, a latency run;
//! or the fill to the cap) completes against librdkafka's mock cluster and a redis-server the bench
//! starts itself, and that the report carries each figure — never what the figures are.

mod common;

use std::path::Path;

use common::*;

/// Runs `kafka2redis bench` with `args` (and a 30-s stall limit), asserts that it succeeded and
/// returns its report.
fn bench(args: &[&str]) -> String {
    let output = bridge_command(Path::new("."), &["bench"])
        .args(args)
        .args(["--stall-seconds", "30"])
        .output()
        .expect("running kafka2redis bench");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

/// Asserts that `report` carries each of `figures`.
fn assert_reports(report: &str, figures: &[&str]) {
    for figure in figures {
        assert!(
            report.contains(figure),
            "the report lacks {figure:?}:\n{report}"
        );
    }
}

#[test]
fn bench_runs_end_to_end_on_the_mock_cluster() {
    let stdout = bench(&[
        "--messages",
        "2000",
        "--partitions",
        "2",
        "--latency-rates",
        "10",
        "--latency-seconds",
        "0.5",
        "--latency-max-rate",
        "5000",
    ]);
    assert_reports(
        &stdout,
        &[
            "consume-only",
            "push-only",
            "x ceiling",
            "s per million messages",
            "MiB peak",
            "latency @ 10%",
            "p99",
        ],
    );
    assert!(
        !stdout.contains("MISSING"),
        "messages went missing:\n{stdout}"
    );
}

/// More messages than the mock broker keeps in a partition: rounds, produced one after another
/// for the one bridge, which is stopped while each is produced and must drain every one.
#[test]
fn rounds_go_through_one_bridge() {
    let stdout = bench(&["--messages", "40000", "--partitions", "1", "--no-latency"]);
    assert_reports(
        &stdout,
        &["2 rounds of 20000, one bridge", "x ceiling", "best round"],
    );
}

#[test]
fn backlog_mode_reports_memory_behind_full_lists() {
    let stdout = bench(&[
        "--messages",
        "5000",
        "--partitions",
        "2",
        "--backlog-cap",
        "500",
        "--backlog-seconds",
        "1",
    ]);
    assert_reports(
        &stdout,
        &[
            "4500 messages waiting in Kafka behind full lists",
            "MiB peak",
            "MiB after 1 s",
        ],
    );
}

/// `--structure stream`: the bridge writes streams, held against the stream push without Kafka.
#[test]
fn bench_runs_with_streams() {
    let stdout = bench(&[
        "--structure",
        "stream",
        "--no-latency",
        "--messages",
        "2000",
        "--partitions",
        "2",
    ]);
    assert!(stdout.contains("encoder and stream push"), "{stdout}");
    assert!(stdout.contains("x ceiling"), "{stdout}");
}

/// Every kind of variant the matrix prices, on tiny runs: a plain envelope under the lease,
/// exactly-once, a list job with its companion write, hash jobs, stream entries (symfony's
/// messages), and the WAIT guard against its replica (raw and the replica run come with them).
/// The full matrix adds only more of the same kinds, at a minute of CI time more.
#[test]
fn matrix_prices_each_kind_of_variant_against_raw() {
    let stdout = bench(&[
        "--matrix",
        "--messages",
        "2000",
        "--partitions",
        "2",
        "--pairs",
        "1",
        "--variants",
        "legacy+lease,exactly-once,sidekiq,bullmq,symfony,wait-guard",
    ]);
    assert_reports(
        &stdout,
        &[
            "| raw |",
            "| legacy+lease |",
            "| exactly-once |",
            "| sidekiq |",
            "| bullmq |",
            "| symfony |",
            "| replica |",
            "| wait-guard |",
            "x replica",
            "x own ceiling",
            "us/msg",
        ],
    );
}

#[test]
fn isolation_reports_the_trickle_during_the_drain() {
    let stdout = bench(&[
        "--isolation",
        "--messages",
        "5000",
        "--partitions",
        "2",
        "--pairs",
        "1",
        "--trickle-rate",
        "50",
    ]);
    assert_reports(
        &stdout,
        &["during the drain", "after the drain", "sent, 0 missing"],
    );
}

/// Options that cannot go together get one sentence and exit 2, before anything is measured.
#[test]
fn bad_options_exit_2_with_one_sentence() {
    for (args, sentence) in [
        (
            &["--isolation", "--trickle-rate", "0"][..],
            "--trickle-rate must be more than 0",
        ),
        (
            &["--isolation", "--backlog-batch-bytes", "0"][..],
            "--backlog-batch-bytes must be more than 0",
        ),
        (&["--size", "8"][..], "--size must be at least 16"),
        (
            &["--envelope", "laravel"][..],
            "with --envelope other than raw, add --no-latency",
        ),
    ] {
        let output = bridge_command(Path::new("."), &["bench"])
            .args(args)
            .output()
            .expect("running kafka2redis bench");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(sentence), "{args:?}: {stderr}");
    }
}
