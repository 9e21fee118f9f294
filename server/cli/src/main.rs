//! `vexil`: validate and evaluate flag files offline, and administer a Vexil server.

mod convert;
mod remote;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};
use vexil_engine::{Ruleset, ValueKind};

#[derive(Debug, Parser)]
#[command(
    name = "vexil",
    version,
    about = "Validate and evaluate Vexil flag files, and administer a Vexil server"
)]
struct Cli {
    /// Where the server is and how to talk to it: global options, accepted before or after
    /// the subcommand.
    #[command(flatten)]
    conn: remote::Connection,
    #[command(flatten)]
    env: remote::EnvironmentArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a ruleset file; print each problem on its own line and exit 1 if there is any.
    Validate {
        /// A ruleset: {"flags": [...], "segments": [...]}
        ruleset: PathBuf,
    },
    /// Evaluate one flag for one or more contexts, printing one JSON result per context.
    Eval {
        /// A ruleset: {"flags": [...], "segments": [...]}
        #[arg(long)]
        ruleset: PathBuf,
        /// The flag's key.
        #[arg(long)]
        flag: String,
        /// One context as JSON, e.g. '{"kind":"user","key":"alice"}'.
        #[arg(
            long,
            conflicts_with = "contexts",
            required_unless_present = "contexts"
        )]
        context: Option<String>,
        /// A file of contexts, one JSON object per line ("-" for standard input).
        #[arg(long)]
        contexts: Option<PathBuf>,
        /// The default value, as JSON; returned when the flag cannot be served.
        #[arg(long, default_value = "null")]
        default: String,
        /// The type asked for; taken from --default when not given.
        #[arg(long, value_enum)]
        r#type: Option<TypeArg>,
    },
    #[command(flatten)]
    Remote(remote::Remote),
    /// Print a completion script for a shell, e.g. `vexil completions bash >
    /// /etc/bash_completion.d/vexil`, or `source <(vexil completions zsh)`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TypeArg {
    Bool,
    String,
    Number,
    Json,
}

impl From<TypeArg> for ValueKind {
    fn from(t: TypeArg) -> ValueKind {
        match t {
            TypeArg::Bool => ValueKind::Bool,
            TypeArg::String => ValueKind::String,
            TypeArg::Number => ValueKind::Number,
            TypeArg::Json => ValueKind::Json,
        }
    }
}

fn load_ruleset(path: &Path) -> anyhow::Result<Ruleset> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ruleset::from_json(&text).with_context(|| format!("cannot load {}", path.display()))
}

fn validate(path: &Path) -> anyhow::Result<ExitCode> {
    let ruleset = load_ruleset(path)?;
    let problems = ruleset.problems();
    if problems.is_empty() {
        println!(
            "ok: {} flags, {} segments",
            ruleset.flag_count(),
            ruleset.segment_count()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    for problem in problems {
        writeln!(out, "{problem}")?;
    }
    Ok(ExitCode::FAILURE)
}

fn eval_one(
    ruleset: &Ruleset,
    flag: &str,
    context: &Value,
    default: &Value,
    kind: ValueKind,
) -> Value {
    let detail = ruleset
        .evaluate_json(flag, context, kind)
        .to_detail(default);
    json!({
        "value": detail.value,
        "variation": detail.variation,
        "reason": detail.reason,
        "in_experiment": detail.in_experiment,
    })
}

fn eval(
    ruleset_path: &Path,
    flag: &str,
    context: Option<&str>,
    contexts: Option<&Path>,
    default: &str,
    kind: Option<TypeArg>,
) -> anyhow::Result<ExitCode> {
    let ruleset = load_ruleset(ruleset_path)?;
    let default: Value = serde_json::from_str(default).context("--default is not valid JSON")?;
    let kind = kind.map_or_else(|| ValueKind::of_default(&default), ValueKind::from);
    let mut out = std::io::stdout().lock();
    if let Some(context) = context {
        let context: Value =
            serde_json::from_str(context).context("--context is not valid JSON")?;
        writeln!(
            out,
            "{}",
            eval_one(&ruleset, flag, &context, &default, kind)
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(path) = contexts else {
        bail!("give --context or --contexts");
    };
    let reader: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?,
        ))
    };
    for (number, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let context: Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not valid JSON", path.display(), number + 1))?;
        writeln!(
            out,
            "{}",
            eval_one(&ruleset, flag, &context, &default, kind)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The command line as parsed: every option that takes a value accepts a negative number
/// as written (`--default -1`), in every subcommand. Clap would otherwise read `-1` as an
/// unknown short option; other values starting with a hyphen still need `--opt=-x`, so
/// that a forgotten value stays an error.
fn command() -> clap::Command {
    fn negative_numbers(command: clap::Command) -> clap::Command {
        command
            .mut_args(|arg| {
                let takes_values = arg.get_action().takes_values();
                arg.allow_negative_numbers(takes_values)
            })
            .mut_subcommands(negative_numbers)
    }
    negative_numbers(Cli::command())
}

fn main() -> ExitCode {
    let matches = command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let given = given_on_command_line(&matches, "environment");
    let remote = match cli.command {
        Command::Remote(remote) => remote,
        Command::Completions { shell } => {
            // Written at once, so that a closed pipe is an error, not a panic.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command(), "vexil", &mut script);
            return finish(
                std::io::stdout()
                    .write_all(&script)
                    .map(|()| ExitCode::SUCCESS)
                    .map_err(Into::into),
            );
        }
        Command::Validate { ruleset } => return finish(validate(&ruleset)),
        Command::Eval {
            ruleset,
            flag,
            context,
            contexts,
            default,
            r#type,
        } => {
            return finish(eval(
                &ruleset,
                &flag,
                context.as_deref(),
                contexts.as_deref(),
                &default,
                r#type,
            ));
        }
    };
    let environment = remote::Environment {
        name: &cli.env.environment,
        given,
    };
    remote::run(cli.conn, environment, remote)
}

/// Whether the global option `id` was written on the command line (before or after the
/// subcommand), rather than taken from the environment or its default.
fn given_on_command_line(matches: &clap::ArgMatches, id: &str) -> bool {
    let mut level = Some(matches);
    while let Some(m) = level {
        if m.value_source(id) == Some(clap::parser::ValueSource::CommandLine) {
            return true;
        }
        level = m.subcommand().map(|(_, sub)| sub);
    }
    false
}

/// The exit code of an offline command; its error, if any, on standard error.
fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("vexil: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every option of every subcommand that takes a value, and the subcommands' paths.
    fn options(command: &clap::Command, path: &str, out: &mut Vec<(String, bool)>) {
        for arg in command.get_arguments() {
            if arg.get_action().takes_values() {
                out.push((
                    format!("{path} --{}", arg.get_id()),
                    arg.is_allow_negative_numbers_set(),
                ));
            }
        }
        for sub in command.get_subcommands() {
            options(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_option_with_a_value_accepts_a_negative_number() {
        let mut found = Vec::new();
        options(&super::command(), "vexil", &mut found);
        assert!(found.len() > 20, "{found:?}");
        let refused: Vec<_> = found.iter().filter(|(_, ok)| !ok).collect();
        assert!(refused.is_empty(), "{refused:?}");
    }
}
