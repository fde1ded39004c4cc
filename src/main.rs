//! `kafka2redis`: see the crate docs and README.md.

fn main() -> std::process::ExitCode {
    kafka2redis::cli::main()
}
