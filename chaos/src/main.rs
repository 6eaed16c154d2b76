//! `chaos`: runs a workload against a real `licensed` cluster while injecting faults, then
//! checks the recorded history. See `chaos/README.md`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::{Parser, Subcommand, ValueEnum};

use licensed_chaos::checker::check_recorded;
use licensed_chaos::nemesis::FaultKind;
use licensed_chaos::run::{run, RunConfig};
use licensed_testkit::licensed_binary;

#[derive(Debug, Parser)]
#[command(
    name = "chaos",
    about = "Fault injection against a real licensed cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Profile {
    /// Every fault kind once, short holds (a few minutes; what CI runs).
    Short,
    /// Random faults from every kind for `--duration` (default 30 minutes), data dirs on
    /// the power-loss file system.
    Long,
    /// Mostly power cuts (one node, or every node at once with torn writes), between
    /// crashes and partitions, for `--duration` (default 30 minutes).
    PowerLoss,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a profile; exits 1 on any violation.
    Run {
        /// Which profile.
        #[arg(long, value_enum, default_value = "short")]
        profile: Profile,
        /// Seed of every random choice; a failing run prints it.
        #[arg(long)]
        seed: Option<u64>,
        /// Voters at the start.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Concurrent clients.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Length of a long run, e.g. 30m, 2h.
        #[arg(long)]
        duration: Option<String>,
        /// Only these fault kinds (comma-separated names as the report prints them).
        #[arg(long, value_delimiter = ',')]
        faults: Vec<String>,
        /// Where the cluster's data, logs, history and report go.
        #[arg(long, default_value = "chaos-out")]
        out: PathBuf,
        /// The licensed binary (default: next to this one, or LICENSED_BIN).
        #[arg(long)]
        binary: Option<PathBuf>,
        /// Run the server deliberately broken (a mutant: `stale-reads`,
        /// `ack-before-commit`, `skip-dedup`, `capacity-off-by-one`, `skip-flush-wal`,
        /// `apply-forwarded-twice`) to see the checks fail.
        #[arg(long)]
        broken: Option<String>,
        /// Make this fault kind ineffective on purpose (its injection is skipped): the run
        /// must fail, naming it.
        #[arg(long)]
        sabotage: Option<String>,
    },
    /// Check a recorded history file again.
    Check {
        /// The history (`history.jsonl`).
        history: PathBuf,
        /// Search steps per license for the linearizability check (default: 100 per
        /// operation of the history, at least 2 000 000).
        #[arg(long)]
        search_budget: Option<u64>,
    },
}

/// `--duration`: `30m`, `2h`, `90s`, `1d` or a bare number of seconds.
fn duration_arg(text: &str) -> anyhow::Result<Duration> {
    let secs = licensed::borrow::pool::parse_duration_secs(text)
        .map_err(|reason| anyhow!("--duration {reason}"))?;
    Ok(Duration::from_secs(secs.unsigned_abs()))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,fuser=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    match main_inner().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("chaos: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn main_inner() -> anyhow::Result<bool> {
    match Cli::parse().command {
        Command::Check {
            history,
            search_budget,
        } => {
            let history = licensed_chaos::history::load(&history)?;
            let mut config = licensed_chaos::run::check_config(history.ops.len());
            if let Some(budget) = search_budget {
                config.search_budget = budget;
            }
            let report = check_recorded(&history, &config);
            print!("{report}");
            Ok(report.passed())
        }
        Command::Run {
            profile,
            seed,
            nodes,
            clients,
            duration,
            faults,
            out,
            binary,
            broken,
            sabotage,
        } => {
            let binary = match binary {
                Some(binary) => binary,
                None => licensed_binary().context("no --binary given")?,
            };
            let faults = if !faults.is_empty() {
                faults
                    .iter()
                    .map(|f| FaultKind::parse(f).ok_or_else(|| anyhow!("unknown fault {f:?}")))
                    .collect::<anyhow::Result<_>>()?
            } else if matches!(profile, Profile::PowerLoss) {
                FaultKind::power_loss_mix()
            } else {
                FaultKind::all()
            };
            let (duration, hold, gap) = match profile {
                Profile::Short => (None, Duration::from_secs(3), Duration::from_secs(1)),
                Profile::Long | Profile::PowerLoss => (
                    Some(duration_arg(duration.as_deref().unwrap_or("30m"))?),
                    Duration::from_secs(5),
                    Duration::from_secs(2),
                ),
            };
            let seed = seed.unwrap_or_else(rand::random);
            eprintln!("chaos: seed {seed} (pass --seed {seed} to repeat this run)");
            let report = run(RunConfig {
                nodes,
                clients,
                faults,
                duration,
                hold,
                gap,
                seed,
                binary,
                out,
                broken,
                power_loss: true,
                sabotage,
            })
            .await?;
            print!("{report}");
            Ok(report.passed)
        }
    }
}
