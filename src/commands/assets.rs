//! `kafka2redis generate-assets DIR`: the man page and shell completions, written from the same
//! command-line definition the binary parses, so that they can never describe other flags than the
//! ones it accepts. scripts/package.sh runs it and ships the files in the Debian package.

use std::path::Path;

use anyhow::Context;
use clap_complete::Shell;

/// The files written, as scripts/package.sh expects them.
pub const MAN_PAGE: &str = "kafka2redis.1";
const COMPLETIONS: [(Shell, &str); 3] = [
    (Shell::Bash, "kafka2redis.bash"),
    (Shell::Zsh, "_kafka2redis"),
    (Shell::Fish, "kafka2redis.fish"),
];

/// Creates `dir` if needed and writes the man page and the bash, zsh and fish completions of
/// `command` (the whole command line, `Cli::command()`) into it.
pub fn write(mut command: clap::Command, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = command.get_name().to_string();

    let page = man_page(&command).context("cannot render the man page")?;
    write_file(&dir.join(MAN_PAGE), &page)?;

    for (shell, file) in COMPLETIONS {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut command, &name, &mut script);
        write_file(&dir.join(file), &script)?;
    }
    Ok(())
}

/// One page for the whole program: clap_mangen's own subcommand section points at a page per
/// subcommand (kafka2redis-check(1), …), which the package does not ship, so the subcommands are
/// listed here by hand, with the files and services an operator looks for next.
fn man_page(command: &clap::Command) -> std::io::Result<Vec<u8>> {
    let man = clap_mangen::Man::new(command.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    let mut text = String::from(".SH COMMANDS\n");
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        text.push_str(&format!(
            ".TP\n\\fBkafka2redis {}\\fR\n{}\n",
            roff_escape(sub.get_name()),
            roff_escape(&about)
        ));
    }
    text.push_str(concat!(
        ".SH FILES\n",
        ".TP\n/etc/kafka2redis/kafka2redis.toml\nThe service's config (native TOML; the old conf.json format loads too).\n",
        ".TP\n/usr/share/kafka2redis/\nPrometheus alert rules and a Grafana dashboard for the \\fB\\-\\-http\\fR endpoints.\n",
        ".SH SEE ALSO\n",
        "\\fBsystemctl\\fR(1), \\fBjournalctl\\fR(1); /usr/share/doc/kafka2redis/README.md\n",
    ));
    page.extend_from_slice(text.as_bytes());
    man.render_version_section(&mut page)?;
    Ok(page)
}

/// Plain text as roff: backslashes and hyphens escaped, no line read as a request.
fn roff_escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    match escaped.chars().next() {
        Some('.') | Some('\'') => format!("\\&{escaped}"),
        _ => escaped,
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn writes_the_man_page_and_completions_for_the_real_flags() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("assets");
        write(crate::cli::Cli::command(), &out).unwrap();
        let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();

        let page = read(MAN_PAGE);
        assert!(page.starts_with(".ie"), "roff: {}", &page[..40]);
        assert!(page.contains(".TH kafka2redis 1"), "{page}");
        for flag in ["config", "log\\-format", "http"] {
            assert!(
                page.contains(&format!("\\-\\-{flag}")),
                "man page lacks --{flag}"
            );
        }
        for sub in ["check", "status", "bench"] {
            assert!(
                page.contains(&format!("\\fBkafka2redis {sub}\\fR")),
                "man page lacks {sub}"
            );
        }
        assert!(
            !page.contains("kafka2redis\\-check(1)"),
            "points at pages not shipped"
        );
        assert!(
            !page.contains("generate\\-assets"),
            "the hidden subcommand leaked"
        );

        assert!(read("kafka2redis.bash").contains("complete -F _kafka2redis"));
        assert!(read("_kafka2redis").starts_with("#compdef kafka2redis"));
        let fish = read("kafka2redis.fish");
        assert!(fish.contains("complete -c kafka2redis") && fish.contains("-l http"));
        for (_, file) in COMPLETIONS {
            assert!(
                !read(file).contains("generate-assets"),
                "{file} offers the hidden subcommand"
            );
        }
    }
}
