//! `licensed` against etcd under the same load engine, back to back, same parameters: for
//! each client count and run, a licensed borrow against an etcd compare-and-put, and
//! licensed get and list against an etcd linearizable range. etcd is driven through its
//! native gRPC API (`etcd-client`, what an etcd user deploys) and through its JSON
//! gateway (HTTP/1.1 like the Borrow API), native first. Prints every run, then the
//! medians across runs with licensed/etcd ratios as Markdown tables.
//!
//! `--via follower` (or `leader`) puts the first client of every case on a follower (the
//! leader) of each system, found from licensed's `/metrics` and etcd's status call: the
//! single-client cases then measure the path through a follower.
//!
//! Start both clusters first (`benches/start-etcd.sh` starts etcd), then:
//!
//! ```text
//! cargo bench --profile dev --bench compare -- \
//!     --licensed http://127.0.0.1:22022,http://127.0.0.1:22023,http://127.0.0.1:22024 \
//!     --etcd http://127.0.0.1:2379,http://127.0.0.1:22379,http://127.0.0.1:32379 \
//!     --clients 1,64 --duration 10s --runs 3 [--json-out results.json]
//! ```
//!
//! Either side may be left out to measure the other alone. Loads and servers share the
//! machine's cores, so compare systems measured on the same machine in the same run.
//!
//! A `list` answer carries every borrow in the ledger, and every borrow case adds to it,
//! so list numbers depend on the cluster's history: for list on a small pool, start
//! fresh clusters and run `--ops list,get` (each get case adds one borrow per client).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use serde::Serialize;

use licensed_loadgen::duration::{format_duration, parse_duration};
use licensed_loadgen::{
    self, EngineConfig, EtcdNativeTarget, EtcdOp, EtcdTarget, LicensedOp, LicensedTarget,
    LicensedWorkload, Mix, Report,
};

/// The comparisons: a licensed operation and its closest etcd equivalent.
const PAIRS: [(LicensedOp, EtcdOp); 3] = [
    (LicensedOp::Borrow, EtcdOp::Cas),
    (LicensedOp::Get, EtcdOp::Range),
    (LicensedOp::List, EtcdOp::Range),
];

#[derive(Debug, Clone, Serialize, Parser)]
#[command(
    name = "compare",
    about = "Throughput and latency of licensed against etcd with the same load engine"
)]
struct CompareArgs {
    /// licensed node URLs, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "URL,...")]
    licensed: Vec<String>,
    /// etcd client URLs, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "URL,...")]
    etcd: Vec<String>,
    /// etcd APIs to drive, in this order: `grpc` (native client), `gateway` (JSON over
    /// HTTP/1.1).
    #[arg(long, value_delimiter = ',', default_value = "grpc,gateway")]
    #[serde(serialize_with = "api_names")]
    etcd_api: Vec<EtcdApi>,
    /// HTTP/2 connections per etcd endpoint for the gRPC client, shared by the workers
    /// on that endpoint.
    #[arg(long, default_value_t = 1)]
    etcd_connections: usize,
    /// How licensed is driven, in this order: `h1` (one HTTP/1.1 connection per client,
    /// like MVTec's client), `h2` (the clients on a node share one HTTP/2 connection, like
    /// the gRPC client's channel).
    #[arg(long, value_delimiter = ',', default_value = "h1")]
    #[serde(serialize_with = "transport_names")]
    licensed_transport: Vec<Transport>,
    /// Which node of each cluster the first client (of `n` spread round-robin) talks to:
    /// `any` (the order given), `follower` or `leader`.
    #[arg(long, value_enum, default_value = "any")]
    #[serde(serialize_with = "via_name")]
    via: Via,
    /// The licensed operations to measure, in this order, each beside its etcd
    /// counterpart (borrow: compare-and-put; get, list: linearizable range). `list,get`
    /// on fresh clusters measures list on a small pool (see the module doc).
    #[arg(long, value_delimiter = ',', default_value = "borrow,get,list")]
    #[serde(serialize_with = "op_names")]
    ops: Vec<LicensedOp>,
    /// Client counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    clients: Vec<usize>,
    /// Measured time of each case.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    #[serde(serialize_with = "seconds")]
    duration: Duration,
    /// Unmeasured time before each case.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    #[serde(serialize_with = "seconds")]
    warmup: Duration,
    /// Repetitions of every case; the table shows medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Open loop at this total rate (ops/s) instead of a closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Request timeout.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "seconds")]
    timeout: Duration,
    /// Seed of the random choices [default: random].
    #[arg(long)]
    seed: Option<u64>,
    /// Also write every report and the medians as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json_out: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    #[serde(skip)]
    bench: bool,
}

fn op_names<S: serde::Serializer>(ops: &[LicensedOp], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(ops.iter().map(|op| op.to_string()))
}

fn api_names<S: serde::Serializer>(apis: &[EtcdApi], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(apis.iter().map(|api| api.name()))
}

fn via_name<S: serde::Serializer>(via: &Via, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(match via {
        Via::Any => "any",
        Via::Follower => "follower",
        Via::Leader => "leader",
    })
}

/// How licensed is driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
enum Transport {
    /// One HTTP/1.1 keep-alive connection per client.
    H1,
    /// One HTTP/2 connection per node, shared by the clients on it.
    H2,
}

fn transport_names<S: serde::Serializer>(
    transports: &[Transport],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(transports.iter().map(|t| match t {
        Transport::H1 => "h1",
        Transport::H2 => "h2",
    }))
}

/// How etcd is driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
enum EtcdApi {
    /// The native gRPC API through `etcd-client`.
    Grpc,
    /// The JSON gateway (`/v3/kv/...`).
    Gateway,
}

impl EtcdApi {
    fn name(self) -> &'static str {
        match self {
            EtcdApi::Grpc => "grpc",
            EtcdApi::Gateway => "gateway",
        }
    }
}

/// Where the first client goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Via {
    Any,
    Follower,
    Leader,
}

fn seconds<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

/// One system and operation, e.g. licensed borrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Case {
    Licensed(Transport, LicensedOp),
    Etcd(EtcdApi, EtcdOp),
}

impl Case {
    fn label(self) -> String {
        match self {
            Case::Licensed(Transport::H1, op) => format!("licensed {op}"),
            Case::Licensed(Transport::H2, op) => format!("licensed-h2 {op}"),
            Case::Etcd(EtcdApi::Grpc, op) => format!("etcd-grpc {op}"),
            Case::Etcd(EtcdApi::Gateway, op) => format!("etcd-gw {op}"),
        }
    }
}

#[derive(Debug, Serialize)]
struct RunRecord {
    clients: usize,
    run: usize,
    case: String,
    report: Report,
}

/// Medians across runs of one case at one client count.
#[derive(Debug, Clone, Copy, Serialize)]
struct Medians {
    throughput: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: f64,
}

#[derive(Debug, Serialize)]
struct MedianRecord {
    clients: usize,
    case: String,
    runs: usize,
    #[serde(flatten)]
    medians: Medians,
}

#[derive(Debug, Serialize)]
struct Output<'a> {
    parameters: &'a CompareArgs,
    seed: u64,
    runs: Vec<RunRecord>,
    medians: Vec<MedianRecord>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = CompareArgs::parse();
    match compare(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("compare: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn compare(args: CompareArgs) -> anyhow::Result<()> {
    if args.licensed.is_empty() && args.etcd.is_empty() {
        anyhow::bail!("give --licensed URLs, --etcd URLs or both");
    }
    if args.runs == 0 || args.clients.is_empty() {
        anyhow::bail!("--runs and --clients must not be empty or zero");
    }
    if let Some(op) = args
        .ops
        .iter()
        .find(|op| !PAIRS.iter().any(|(licensed, _)| licensed == *op))
    {
        anyhow::bail!("--ops: {op} has no etcd counterpart (borrow, get and list do)");
    }
    if args.etcd_connections == 0 {
        anyhow::bail!("--etcd-connections must be at least 1");
    }
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut args = args;
    args.licensed = order_licensed(&args.licensed, args.via).await?;
    args.etcd = order_etcd(&args.etcd, args.via).await?;
    if args.via != Via::Any {
        println!("licensed nodes in order: {}", args.licensed.join(", "));
        println!("etcd endpoints in order: {}", args.etcd.join(", "));
    }
    let args = args;
    let cases = cases(&args);
    println!(
        "# licensed vs etcd: {} per case after {} warm-up, {} run(s), {}, seed {seed}\n",
        format_duration(args.duration),
        format_duration(args.warmup),
        args.runs,
        match args.rate {
            Some(rate) => format!("open loop at {rate} ops/s"),
            None => "closed loop".to_string(),
        },
    );

    let mut records = Vec::new();
    for &clients in &args.clients {
        for run in 1..=args.runs {
            // Same seed for every case of a run: the same parameters for both systems.
            let config = EngineConfig {
                clients,
                warmup: args.warmup,
                duration: args.duration,
                rate: args.rate,
                seed: seed.wrapping_add(run as u64),
            };
            for &case in &cases {
                let report = run_case(&args, case, &config)
                    .await
                    .with_context(|| format!("{} with {clients} clients", case.label()))?;
                if run == 1 && clients == args.clients[0] {
                    for note in &report.notes {
                        println!("  note ({}): {note}", case.label());
                    }
                }
                println!("{}", run_line(clients, run, args.runs, case, &report));
                records.push((clients, run, case, report));
            }
        }
    }

    let medians = medians(&records);
    println!("\n{}", table(&args, &medians));
    if let Some(path) = &args.json_out {
        let output = Output {
            parameters: &args,
            seed,
            medians: medians
                .iter()
                .map(|(&(clients, case), &(runs, medians))| MedianRecord {
                    clients,
                    case: case.label(),
                    runs,
                    medians,
                })
                .collect(),
            runs: records
                .into_iter()
                .map(|(clients, run, case, report)| RunRecord {
                    clients,
                    run,
                    case: case.label(),
                    report,
                })
                .collect(),
        };
        let json = serde_json::to_string_pretty(&output)?;
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
        println!("JSON written to {}", path.display());
    }
    Ok(())
}

/// The cases of one run, licensed and etcd interleaved so that drift over time (ledger
/// growth, compaction, thermal) affects both alike.
fn cases(args: &CompareArgs) -> Vec<Case> {
    let mut cases = Vec::new();
    let pairs = args
        .ops
        .iter()
        .filter_map(|op| PAIRS.iter().find(|(licensed, _)| licensed == op));
    for &(licensed, etcd) in pairs {
        for &transport in &args.licensed_transport {
            let licensed = Case::Licensed(transport, licensed);
            if !args.licensed.is_empty() && !cases.contains(&licensed) {
                cases.push(licensed);
            }
        }
        for &api in &args.etcd_api {
            let etcd = Case::Etcd(api, etcd);
            if !args.etcd.is_empty() && !cases.contains(&etcd) {
                cases.push(etcd);
            }
        }
    }
    cases
}

async fn run_case(args: &CompareArgs, case: Case, config: &EngineConfig) -> anyhow::Result<Report> {
    let report = match case {
        Case::Licensed(transport, op) => {
            let workload = LicensedWorkload {
                mix: Mix::single(op),
                conflict_rate: 0.0,
                licenses: Vec::new(),
            };
            let mut target =
                LicensedTarget::connect(&args.licensed, workload, args.timeout).await?;
            if transport == Transport::H2 {
                target = target.shared_http2()?;
            }
            licensed_loadgen::run(&target, config).await?
        }
        Case::Etcd(EtcdApi::Grpc, op) => {
            let target = EtcdNativeTarget::connect(
                &args.etcd,
                Mix::single(op),
                args.timeout,
                args.etcd_connections,
            )
            .await?;
            licensed_loadgen::run(&target, config).await?
        }
        Case::Etcd(EtcdApi::Gateway, op) => {
            let target = EtcdTarget::new(&args.etcd, Mix::single(op), args.timeout)?;
            licensed_loadgen::run(&target, config).await?
        }
    };
    Ok(report)
}

fn run_line(clients: usize, run: usize, runs: usize, case: Case, report: &Report) -> String {
    let mut line = format!(
        "clients {clients:>3}  run {run}/{runs}  {:<16} {:>9.1} ops/s  p50 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms",
        case.label(),
        report.throughput,
        report.latency_ms.p50,
        report.latency_ms.p99,
        report.latency_ms.max,
    );
    if report.errors > 0 || report.unsent > 0 {
        let codes: Vec<String> = report
            .errors_by_code
            .iter()
            .map(|(code, count)| format!("{code}×{count}"))
            .collect();
        line.push_str(&format!("  errors {} [{}]", report.errors, codes.join(" ")));
        if let Some((code, sample)) = report.error_samples.iter().next() {
            line.push_str(&format!(" e.g. {code}: {sample}"));
        }
        if report.unsent > 0 {
            line.push_str(&format!("  unsent {}", report.unsent));
        }
    }
    line
}

type MedianMap = BTreeMap<(usize, Case), (usize, Medians)>;

fn medians(records: &[(usize, usize, Case, Report)]) -> MedianMap {
    let mut grouped: BTreeMap<(usize, Case), Vec<&Report>> = BTreeMap::new();
    for (clients, _, case, report) in records {
        grouped.entry((*clients, *case)).or_default().push(report);
    }
    grouped
        .into_iter()
        .map(|(key, reports)| {
            let of = |field: fn(&Report) -> f64| median(reports.iter().map(|r| field(r)).collect());
            let medians = Medians {
                throughput: of(|r| r.throughput),
                p50_ms: of(|r| r.latency_ms.p50),
                p99_ms: of(|r| r.latency_ms.p99),
                errors: of(|r| r.errors as f64),
            };
            (key, (reports.len(), medians))
        })
        .collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn ratio(licensed: f64, etcd: f64) -> String {
    if etcd > 0.0 {
        format!("{:.2}", licensed / etcd)
    } else {
        "–".to_string()
    }
}

/// The Markdown table of medians: one row per comparison and client count, or one row per
/// case when only one system was measured.
fn table(args: &CompareArgs, medians: &MedianMap) -> String {
    let mut out = format!("Medians of {} run(s):\n\n", args.runs);
    let both = !args.licensed.is_empty() && !args.etcd.is_empty();
    if both {
        for &api in &args.etcd_api {
            out.push_str(match api {
                EtcdApi::Grpc => "licensed against etcd's native gRPC client:\n\n",
                EtcdApi::Gateway => "licensed against etcd's JSON gateway:\n\n",
            });
            out.push_str("| clients | licensed | etcd | licensed ops/s | etcd ops/s | ops/s ratio | licensed p50 ms | etcd p50 ms | licensed p99 ms | etcd p99 ms | p99 ratio |\n");
            out.push_str("|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n");
            for &clients in &args.clients {
                for ((licensed_op, etcd_op), &transport) in PAIRS
                    .iter()
                    .flat_map(|pair| args.licensed_transport.iter().map(move |t| (*pair, t)))
                {
                    let licensed = medians.get(&(clients, Case::Licensed(transport, licensed_op)));
                    let etcd = medians.get(&(clients, Case::Etcd(api, etcd_op)));
                    let (Some((_, l)), Some((_, e))) = (licensed, etcd) else {
                        continue;
                    };
                    let licensed_case = match transport {
                        Transport::H1 => licensed_op.to_string(),
                        Transport::H2 => format!("{licensed_op} (h2)"),
                    };
                    out.push_str(&format!(
                        "| {clients} | {licensed_case} | {etcd_op} | {:.1} | {:.1} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {} |\n",
                        l.throughput,
                        e.throughput,
                        ratio(l.throughput, e.throughput),
                        l.p50_ms,
                        e.p50_ms,
                        l.p99_ms,
                        e.p99_ms,
                        ratio(l.p99_ms, e.p99_ms),
                    ));
                }
            }
            out.push('\n');
        }
        out.push_str("ops/s ratio: licensed/etcd throughput (above 1: licensed is faster); p99 ratio: licensed/etcd (above 1: licensed is slower).\n");
    } else {
        out.push_str("| clients | case | ops/s | p50 ms | p99 ms | errors |\n");
        out.push_str("|--:|---|--:|--:|--:|--:|\n");
        for (&(clients, case), (_, m)) in medians {
            out.push_str(&format!(
                "| {clients} | {} | {:.1} | {:.3} | {:.3} | {} |\n",
                case.label(),
                m.throughput,
                m.p50_ms,
                m.p99_ms,
                m.errors
            ));
        }
    }
    out
}

/// The licensed node URLs with the one `via` asks for first (the others keep their
/// order); a node's role is read from its `licensed_raft_is_leader` gauge.
async fn order_licensed(urls: &[String], via: Via) -> anyhow::Result<Vec<String>> {
    if via == Via::Any || urls.is_empty() {
        return Ok(urls.to_vec());
    }
    let http = reqwest::Client::new();
    let mut leaders = Vec::new();
    for url in urls {
        let base = licensed::client::normalize_server_url(url)?;
        let text = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .and_then(|response| response.error_for_status())
            .with_context(|| format!("cannot read {base}/metrics"))?
            .text()
            .await?;
        let leads = text
            .lines()
            .any(|line| line.trim() == "licensed_raft_is_leader 1");
        leaders.push(leads);
    }
    first_matching(urls, &leaders, via)
}

/// The etcd endpoints with the one `via` asks for first; a member leads when its status
/// names itself as leader.
async fn order_etcd(urls: &[String], via: Via) -> anyhow::Result<Vec<String>> {
    if via == Via::Any || urls.is_empty() {
        return Ok(urls.to_vec());
    }
    let mut leaders = Vec::new();
    for url in urls {
        let endpoint = licensed_loadgen::etcd_native_target::endpoint_url(url);
        let mut client = etcd_client::Client::connect([endpoint.as_str()], None)
            .await
            .with_context(|| format!("cannot connect to etcd at {endpoint}"))?;
        let status = client
            .status()
            .await
            .with_context(|| format!("no status from etcd at {endpoint}"))?;
        let member = status.header().map(|header| header.member_id());
        leaders.push(member == Some(status.leader()));
    }
    first_matching(urls, &leaders, via)
}

fn first_matching(urls: &[String], leaders: &[bool], via: Via) -> anyhow::Result<Vec<String>> {
    let wanted = via == Via::Leader;
    let Some(first) = leaders.iter().position(|&leads| leads == wanted) else {
        anyhow::bail!(
            "no {} among {}",
            if wanted { "leader" } else { "follower" },
            urls.join(", ")
        );
    };
    let mut ordered = vec![urls[first].clone()];
    ordered.extend(
        urls.iter()
            .enumerate()
            .filter(|&(index, _)| index != first)
            .map(|(_, url)| url.clone()),
    );
    Ok(ordered)
}
