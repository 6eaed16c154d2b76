//! The command-line face of the load generator: [`BenchArgs`] for `licensectl bench`, and
//! [`run_bench`] to carry them out.

use std::time::Duration;

use anyhow::Context;

use super::duration::parse_duration;
use super::engine::{self, EngineConfig};
use super::licensed_target::{LicensedOp, LicensedTarget, LicensedWorkload};
use super::licenses::LicenseRef;
use super::mix::Mix;
use super::report::Report;
use licensed::client::DEFAULT_SERVER;

/// The mix `--op mix` uses when no `--mix` is given.
pub const DEFAULT_MIX: &str = "borrow=70,get=20,list=5,return=5";

/// The operation to load the server with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchOp {
    /// BorrowLicenseV1 for random hosts and future intervals.
    Borrow,
    /// ReturnLicenseV1 of the client's own borrows (borrowing first when it holds none).
    Return,
    /// GetBorrowedLicenseV1 of the client's own borrows (borrowing first when it has none).
    Get,
    /// ListLicensesV1.
    List,
    /// A weighted mix, see --mix.
    Mix,
}

/// Load-test a licensed cluster: many concurrent clients, each on its own keep-alive
/// connection, for a fixed time; then throughput, latency percentiles and errors by code.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Node base URL; repeat for a cluster (clients are spread over the nodes round-robin).
    #[arg(long = "url", value_name = "URL", default_value = DEFAULT_SERVER)]
    pub urls: Vec<String>,
    /// Concurrent clients, each with its own connection.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Measured time, e.g. 10s, 500ms, 2m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured time first, to open connections and warm up.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Total requests per second at fixed times (open loop, latency counted from when each
    /// request was due). Without it each client sends as soon as it has its answer.
    #[arg(long)]
    pub rate: Option<f64>,
    /// The operation [default: borrow, or mix when --mix is given].
    #[arg(long, value_enum)]
    pub op: Option<BenchOp>,
    /// Weighted operations for --op mix, e.g. borrow=70,get=20,list=5,return=5.
    #[arg(long, value_name = "OP=WEIGHT,...")]
    pub mix: Option<Mix<LicensedOp>>,
    /// Fraction (0 to 1) of borrows that contend for one day of the smallest-count
    /// license, to provoke error 32 (not available).
    #[arg(long, default_value_t = 0.0)]
    pub conflict_rate: f64,
    /// License to borrow, as FEATURE/UUID (e.g. MVTec_HALCON/bench); repeatable. Without
    /// it the licenses are discovered with ListLicensesV1: borrows go to the largest
    /// count, contended borrows to the smallest.
    #[arg(long = "license", value_name = "FEATURE/UUID")]
    pub licenses: Vec<LicenseRef>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Give up on a request after this long (counted as a timeout error).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Seed of the random choices (hosts, intervals, mix draws) [default: random].
    #[arg(long)]
    pub seed: Option<u64>,
}

impl BenchArgs {
    /// The operation mix these arguments ask for.
    pub fn mix(&self) -> anyhow::Result<Mix<LicensedOp>> {
        let single = |op| Ok(Mix::single(op));
        match (self.op, &self.mix) {
            (None | Some(BenchOp::Mix), Some(mix)) => Ok(mix.clone()),
            (Some(BenchOp::Mix), None) => DEFAULT_MIX
                .parse()
                .context("the default mix does not parse"),
            (Some(op), Some(_)) => anyhow::bail!(
                "--mix goes with --op mix, not --op {}",
                clap::ValueEnum::to_possible_value(&op)
                    .map(|value| value.get_name().to_string())
                    .unwrap_or_default()
            ),
            (None | Some(BenchOp::Borrow), None) => single(LicensedOp::Borrow),
            (Some(BenchOp::Return), None) => single(LicensedOp::Return),
            (Some(BenchOp::Get), None) => single(LicensedOp::Get),
            (Some(BenchOp::List), None) => single(LicensedOp::List),
        }
    }

    /// The engine settings these arguments ask for; the seed is drawn when none is given.
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            clients: self.clients,
            warmup: self.warmup,
            duration: self.duration,
            rate: self.rate,
            seed: self.seed.unwrap_or_else(rand::random),
        }
    }
}

/// Runs the load `args` describe against `licensed` and returns the report; the caller
/// prints it as text (`Display`) or JSON ([`Report::to_json`]) as `args.json` says.
pub async fn run_bench(args: BenchArgs) -> anyhow::Result<Report> {
    let workload = LicensedWorkload {
        mix: args.mix()?,
        conflict_rate: args.conflict_rate,
        licenses: args.licenses.clone(),
    };
    let target = LicensedTarget::connect(&args.urls, workload, args.timeout)
        .await
        .context("cannot prepare the load")?;
    let report = engine::run(&target, &args.engine_config())
        .await
        .context("the load run failed")?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser, Subcommand};

    /// The shape `licensectl` has: a global --json next to a `bench` subcommand.
    #[derive(Debug, Parser)]
    struct Cli {
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Debug, Subcommand)]
    enum Command {
        Bench(BenchArgs),
    }

    fn bench(args: &[&str]) -> Result<(bool, BenchArgs), clap::Error> {
        let cli = Cli::try_parse_from(["licensectl", "bench"].iter().chain(args))?;
        let Command::Bench(bench) = cli.command;
        Ok((cli.json, bench))
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let (_, args) = bench(&[]).unwrap();
        assert_eq!(args.urls, [DEFAULT_SERVER]);
        assert_eq!(args.clients, 16);
        assert_eq!(args.duration, Duration::from_secs(10));
        assert_eq!(args.warmup, Duration::from_secs(2));
        assert_eq!(args.timeout, Duration::from_secs(5));
        assert_eq!(args.rate, None);
        assert_eq!(args.mix().unwrap(), Mix::single(LicensedOp::Borrow));
        assert!(args.licenses.is_empty());
    }

    #[test]
    fn all_flags_parse() {
        let (_, args) = bench(&[
            "--url",
            "http://127.0.0.1:22022",
            "--url",
            "127.0.0.1:22023",
            "--clients",
            "64",
            "--duration",
            "500ms",
            "--warmup",
            "0",
            "--rate",
            "2000",
            "--op",
            "mix",
            "--mix",
            "borrow=90,list=10",
            "--conflict-rate",
            "0.1",
            "--license",
            "MVTec_HALCON/bench",
            "--json",
            "--timeout",
            "1s",
            "--seed",
            "42",
        ])
        .unwrap();
        assert_eq!(args.urls.len(), 2);
        assert_eq!(args.clients, 64);
        assert_eq!(args.duration, Duration::from_millis(500));
        assert_eq!(args.warmup, Duration::ZERO);
        assert_eq!(args.rate, Some(2000.0));
        assert_eq!(args.mix().unwrap().to_string(), "borrow=90,list=10");
        assert_eq!(args.conflict_rate, 0.1);
        assert_eq!(args.licenses[0].uuid, "bench");
        assert!(args.json);
        let config = args.engine_config();
        assert_eq!((config.seed, config.rate), (42, Some(2000.0)));
    }

    #[test]
    fn json_works_before_and_after_the_subcommand() {
        // The caller prints JSON when either flag is set; both placements must set one.
        let wants_json = |argv: &[&str]| {
            let cli = Cli::try_parse_from(argv).unwrap();
            let Command::Bench(args) = cli.command;
            cli.json || args.json
        };
        assert!(wants_json(&["licensectl", "bench", "--json"]));
        assert!(wants_json(&["licensectl", "--json", "bench"]));
        assert!(!wants_json(&["licensectl", "bench"]));
        Cli::command().debug_assert();
    }

    #[test]
    fn op_and_mix_combine_sensibly() {
        let mix = |args: &[&str]| bench(args).unwrap().1.mix();
        assert_eq!(mix(&["--op", "mix"]).unwrap().to_string(), DEFAULT_MIX);
        assert_eq!(
            mix(&["--mix", "get=1,list=1"]).unwrap().to_string(),
            "get=1,list=1"
        );
        assert_eq!(
            mix(&["--op", "list"]).unwrap(),
            Mix::single(LicensedOp::List)
        );
        assert_eq!(
            mix(&["--op", "return"]).unwrap(),
            Mix::single(LicensedOp::Return)
        );
        let err = mix(&["--op", "get", "--mix", "get=1"]).unwrap_err();
        assert_eq!(err.to_string(), "--mix goes with --op mix, not --op get");
        assert!(bench(&["--mix", "borrow=1,put=1"]).is_err());
        assert!(bench(&["--duration", "10"]).is_err());
        assert!(bench(&["--license", "bench"]).is_err());
        assert!(DEFAULT_MIX.parse::<Mix<LicensedOp>>().is_ok());
    }
}
