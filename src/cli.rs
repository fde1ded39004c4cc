//! The command line: `kafka2redis [run]`, `check`, `status`, `bench` and `demo`, and the old tool's
//! flags.
//!
//! The old tool was started as `kafka_consumers --config=conf.json -alsologtostderr` (Go's flag
//! package: one dash for long flags, glog's logging flags). [`normalize_args`] rewrites such a command
//! line so that it starts kafka2redis unchanged.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing::{error, info};

use crate::config::Config;
use crate::shutdown::Shutdown;

/// Exit code for a config that cannot run (and for command-line mistakes, as clap does).
pub const EXIT_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "kafka2redis",
    version,
    about = "Moves Kafka partitions into Redis lists, at least once.",
    long_about = "Moves Kafka partitions into Redis lists, at least once.\n\n\
        One steady member of a Kafka consumer group that pushes every message of its assigned \
        partitions onto a capped Redis list, so that any number of workers can pop them. Offsets are \
        committed only after Redis has the messages; a full list pauses its partitions. Without a \
        subcommand it runs the bridge. Installed as a service, it reads \
        /etc/kafka2redis/kafka2redis.toml and logs to the journal."
)]
pub struct Cli {
    /// Config file: the old tool's conf.json or the native TOML.
    #[arg(long, global = true, env = "K2R_CONFIG", default_value = "conf.json")]
    pub config: PathBuf,

    /// A .env file (the old tool's KAFKA_BROKERS, REDIS_HOST, … or K2R_* variables). Variables already
    /// in the environment win. With the old conf.json format, ./.env is read when present.
    #[arg(long, global = true)]
    pub env: Option<PathBuf>,

    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, global = true, env = "K2R_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log format.
    #[arg(long, global = true, env = "K2R_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Serve /metrics, /healthz, /readyz, /status and a status page at / on HOST:PORT (overrides
    /// http.address).
    #[arg(long, global = true, env = "K2R_HTTP", value_name = "HOST:PORT")]
    pub http: Option<String>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the bridge (the default).
    Run,
    /// Validate the config, reach Kafka and Redis, show each topic's partitions and list.
    Check,
    /// Show each partition's committed offset, high watermark, lag and list length / cap, read
    /// from Kafka and Redis (works whether the daemon runs or not).
    Status,
    /// Measure the bridge end to end against the machine's ceiling (docs/benchmarks.md).
    Bench(Box<crate::bench::BenchArgs>),
    /// Try it: the bridge on demo traffic from an embedded Kafka (librdkafka's mock cluster) into a
    /// redis-server of its own, until Ctrl-C.
    Demo(crate::demo::DemoArgs),
}

/// `kafka2redis generate-assets DIR`: packaging's own subcommand, parsed apart from [`Cli`] so that
/// the man page and completions it writes from `Cli` describe only what operators use (clap's
/// completion generators offer hidden subcommands too).
#[derive(Debug, Parser)]
#[command(
    name = "kafka2redis generate-assets",
    about = "Write the man page and bash, zsh and fish completions into DIR (used by packaging)."
)]
struct GenerateAssets {
    /// Created if missing.
    dir: PathBuf,
}

/// glog flags the old command line carried; kafka2redis always logs to stderr, so they are dropped.
const GLOG_FLAGS: &[&str] = &[
    "alsologtostderr",
    "logtostderr",
    "stderrthreshold",
    "log_dir",
    "log_backtrace_at",
    "v",
    "vmodule",
];
/// Long options that Go-style single-dash spelling may name.
const LONG_OPTIONS: &[&str] = &["config", "env", "log-level", "log-format", "http"];

/// Rewrites Go-style flags (`-config=x`, `-alsologtostderr`) into this CLI's; returns the new
/// arguments and the glog flags that were dropped.
pub fn normalize_args(args: impl IntoIterator<Item = String>) -> (Vec<String>, Vec<String>) {
    let mut out = Vec::new();
    let mut dropped = Vec::new();
    for (i, arg) in args.into_iter().enumerate() {
        if i > 0 && !arg.starts_with("--") && arg.starts_with('-') && arg.len() > 2 {
            let name = arg[1..].split('=').next().unwrap_or_default();
            if GLOG_FLAGS.contains(&name) {
                dropped.push(arg);
                continue;
            }
            if LONG_OPTIONS.contains(&name) {
                out.push(format!("-{arg}"));
                continue;
            }
        }
        out.push(arg);
    }
    (out, dropped)
}

/// Parses the command line, runs the command, and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let (args, dropped) = normalize_args(std::env::args());
    if args.get(1).map(String::as_str) == Some("generate-assets") {
        let assets = GenerateAssets::parse_from(
            std::iter::once("kafka2redis generate-assets")
                .chain(args[2..].iter().map(String::as_str)),
        );
        return match crate::commands::assets::write(
            <Cli as clap::CommandFactory>::command(),
            &assets.dir,
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kafka2redis generate-assets: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let cli = Cli::parse_from(args);
    crate::logging::init(&cli.log_level, matches!(cli.log_format, LogFormat::Json));
    if !dropped.is_empty() {
        info!(flags = %dropped.join(" "), "ignoring the old tool's glog flags: kafka2redis logs to stderr");
    }

    if let Some(Command::Bench(args)) = cli.command {
        // The bench builds its own configs for the bridges it starts; it reads no config file.
        return match crate::bench::main(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kafka2redis bench: {e:#}");
                if e.is::<crate::bench::BadInput>() {
                    ExitCode::from(EXIT_CONFIG)
                } else {
                    ExitCode::FAILURE
                }
            }
        };
    }

    if let Some(Command::Demo(args)) = cli.command {
        // The demo writes its own config; it reads no config file.
        return match crate::demo::main(args, cli.http) {
            crate::demo::Ended::Stopped { clean: true } => ExitCode::SUCCESS,
            crate::demo::Ended::BadInput => ExitCode::from(EXIT_CONFIG),
            crate::demo::Ended::Stopped { clean: false } | crate::demo::Ended::Failed => {
                ExitCode::FAILURE
            }
        };
    }

    let config = match Config::load(&cli.config, cli.env.as_deref()).and_then(|mut c| {
        crate::kafka::validate_properties(&c)?;
        if let Some(address) = &cli.http {
            c.http = Some(crate::config::parse_http_address("--http", address)?);
        }
        Ok(c)
    }) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("kafka2redis: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kafka2redis: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Run) {
            Command::Check => {
                let report = crate::commands::check::run(&config).await;
                print!("{}", report.text);
                if report.problems == 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Command::Status => {
                let report = crate::commands::status::run(&config).await;
                print!("{}", report.text);
                if report.problems == 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Command::Bench(_) | Command::Demo(_) => {
                unreachable!("handled before the config is loaded")
            }
            Command::Run => {
                let shutdown = match Shutdown::listen() {
                    Ok(s) => s,
                    Err(e) => {
                        error!(error = %e, "cannot install signal handlers");
                        return ExitCode::FAILURE;
                    }
                };
                match crate::daemon::run(config, shutdown).await {
                    Ok(true) => ExitCode::SUCCESS,
                    Ok(false) => ExitCode::FAILURE,
                    Err(e)
                        if e.is::<crate::kafka::members::Disagreement>()
                            || e.is::<crate::kafka::instance_id::Fenced>() =>
                    {
                        eprintln!("kafka2redis: {e}");
                        ExitCode::from(EXIT_CONFIG)
                    }
                    Err(e) => {
                        error!("{e:#}");
                        ExitCode::FAILURE
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn old_command_line_is_understood() {
        let (args, dropped) = normalize_args(strings(&[
            "k2r",
            "--config=conf.json",
            "-alsologtostderr",
            "-v=2",
        ]));
        assert_eq!(args, strings(&["k2r", "--config=conf.json"]));
        assert_eq!(dropped, strings(&["-alsologtostderr", "-v=2"]));
        let cli = Cli::parse_from(args);
        assert_eq!(cli.config, PathBuf::from("conf.json"));
        let (args, _) =
            normalize_args(strings(&["k2r", "-config", "c.json", "-env=.env", "check"]));
        let cli = Cli::parse_from(args);
        assert_eq!(cli.config, PathBuf::from("c.json"));
        assert_eq!(cli.env, Some(PathBuf::from(".env")));
        assert!(matches!(cli.command, Some(Command::Check)));
    }
}
