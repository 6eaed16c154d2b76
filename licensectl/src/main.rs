//! `licensectl`: borrow, fetch and list licenses on a `licensed` cluster, and check a
//! borrowed license offline, the way the machine that holds it would.

#![cfg_attr(not(test), deny(unused_crate_dependencies))]

mod admin;
mod certs;
mod status_table;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{ArgGroup, Args, Parser, Subcommand};
use serde_json::{json, Value};

use licensed::borrow::document::{self, LicenseDocument, PublicKey};
use licensed::borrow::time::{self, DateRole};
use licensed::client::{
    decode_result, ApiKeyInfo, BorrowParams, BorrowedLicense, LicenseInfo, PublicKeyInfo,
    RpcCallError, RpcClient, DEFAULT_SERVER,
};
use licensed::cluster::admin::{AdminClient, AdminError};
use licensed::config::DEFAULT_RAFT_LISTEN as DEFAULT_RAFT_ADDR;
use status_table::render_status;

/// Exit status when the server refused or the license is not valid.
const EXIT_REFUSED: u8 = 1;
/// Exit status for usage, I/O and connection errors: the question could not be asked.
const EXIT_ERROR: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "licensectl",
    version,
    about = "Borrow, list and verify licenses of a licensed cluster",
    after_help = "Exit status: 0 success (license valid), 1 refused by the server or license \
                  invalid, 2 usage, I/O or connection error."
)]
struct Cli {
    /// Any node of the cluster; a URL ending in /licenses is accepted too.
    #[arg(long, global = true, env = "LICENSED_URL", default_value = DEFAULT_SERVER)]
    server: String,
    /// Print raw JSON results (for scripts) instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Client API key (lk_…), sent as `Authorization: Bearer` with every call: what a
    /// server started with --require-api-keys asks for.
    #[arg(
        long,
        global = true,
        env = "LICENSED_API_KEY",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    api_key: Option<String>,
    /// PEM CA certificate to trust for `https://` servers and TLS peer ports (a private CA,
    /// e.g. from `licensectl certs`).
    #[arg(long, global = true, env = "LICENSED_CA")]
    ca: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the licenses with their current and upcoming borrows (ListLicensesV1).
    List,
    /// Borrow a license for a host and a time interval (BorrowLicenseV1).
    Borrow(BorrowArgs),
    /// Fetch a borrowed license again by its borrow id (GetBorrowedLicenseV1).
    Get {
        /// The borrow id returned at borrow time.
        borrow_id: String,
        /// Write the license string to this file instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Give a borrow back early; its seat is free at once (ReturnLicenseV1, extension).
    /// Needs the borrow's return token (printed by `borrow`) or the admin token.
    Return {
        /// The borrow id returned at borrow time.
        borrow_id: String,
        /// The returnToken handed out with the borrow.
        #[arg(
            long,
            env = "LICENSED_RETURN_TOKEN",
            hide_env_values = true,
            allow_hyphen_values = true
        )]
        token: Option<String>,
        /// The cluster's admin token: returns any borrow without its return token.
        #[arg(
            long,
            env = "LICENSED_ADMIN_TOKEN",
            hide_env_values = true,
            allow_hyphen_values = true
        )]
        admin_token: Option<String>,
    },
    /// Check a license string offline: signature, host id and validity window.
    Verify(VerifyArgs),
    /// Fetch the cluster's public key (prints it, or writes the PEM to --out).
    PublicKey {
        /// Write the PEM to this file, for `verify --public-key`.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Cluster administration through a node's Raft port.
    Cluster(ClusterArgs),
    /// Client API keys: create, list, revoke (needs the admin token or an admin key).
    Keys(KeysArgs),
    /// Make a private CA (first call) and a certificate signed by it, for the client
    /// port (--tls-cert), a node's peer port (--peer-tls-cert) or a client
    /// (--tls-client-ca): `licensectl certs DIR NAME HOST...`.
    Certs(certs::CertsArgs),
    /// The license pool from a pool file: plan or apply it (needs the admin token).
    Pool(admin::PoolArgs),
    /// Add, change or remove one license (needs the admin token).
    License(admin::LicenseArgs),
    /// List borrows, current and past, with filters (ListBorrowsV1).
    Borrows(admin::BorrowsArgs),
    /// Hosts: list them; name, block or unblock one (set/block/unblock need the admin token).
    Host(admin::HostArgs),
    /// The audit log, oldest first; with --json one entry per line, every page (needs the
    /// admin token).
    Audit(admin::AuditArgs),
    /// Ask the server about a license string: signature, status, its borrow
    /// (CheckLicenseV1). Exit 0 when valid and active or upcoming, 1 otherwise.
    Check(admin::CheckArgs),
    /// Load generator: concurrent clients over keep-alive HTTP, closed or open loop,
    /// latency percentiles and errors by code (see BENCHMARKS.md).
    Bench(Box<licensed_loadgen::BenchArgs>),
}

#[derive(Debug, Args)]
struct ClusterArgs {
    /// Raft address (host:port) of any node; changes are passed on to the leader.
    #[arg(long, env = "LICENSED_RAFT_ADDR", default_value = DEFAULT_RAFT_ADDR)]
    node: String,
    /// The cluster's admin token, when it has one.
    #[arg(
        long,
        env = "LICENSED_ADMIN_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    admin_token: Option<String>,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Members, leader, term, log indexes and each member's lag, as this node sees them.
    Status,
    /// Add a running node (started with --join or empty) as a learner, then a voter.
    Add {
        /// The new node's id.
        id: u64,
        /// The new node's Raft address (host:port).
        raft_addr: String,
    },
    /// Remove a node. Refused when it would leave no healthy quorum, unless --force.
    Remove {
        /// The node to remove.
        id: u64,
        /// Remove even if the remaining voters are not known to form a healthy quorum.
        #[arg(long)]
        force: bool,
    },
    /// Hand leadership to another voter.
    TransferLeader {
        /// The node that should lead.
        id: u64,
    },
}

#[derive(Debug, Args)]
struct KeysArgs {
    /// The cluster's admin token; without it, --api-key must be an admin key.
    #[arg(
        long,
        env = "LICENSED_ADMIN_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    admin_token: Option<String>,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key; its text is printed this once (the server keeps only a hash).
    Create {
        /// What the key is for, e.g. the team or machine that uses it.
        #[arg(long)]
        name: String,
        /// read (list, get), borrow (read, borrow, return with the token) or admin.
        #[arg(long, value_parser = ["read", "borrow", "admin"])]
        scope: String,
        /// Limit the key to this feature (repeatable); every feature when not given.
        #[arg(long = "feature")]
        features: Vec<String>,
    },
    /// List every key: id, name, scope, features, created and revoked times.
    List,
    /// Revoke a key: no node accepts it any more.
    Revoke {
        /// The key's id (16 hex digits, the part after lk_).
        key_id: String,
    },
}

#[derive(Debug, Args)]
struct BorrowArgs {
    /// License feature, e.g. MVTec_HDevelop.
    #[arg(long)]
    feature: String,
    /// License uuid.
    #[arg(long)]
    uuid: String,
    /// Host to bind the license to: MAC:XXXXXXXXXXXX or CM:3-XXXXXXXXXX.
    #[arg(long)]
    host_id: String,
    /// Start of the borrow (ISO-8601 date or date-time); the server's clock by default.
    #[arg(long)]
    from: Option<String>,
    /// End of the borrow (ISO-8601 date or date-time; a plain date means 23:59:59Z).
    #[arg(long)]
    until: String,
    /// Free text stored with the borrow, e.g. the borrower's name.
    #[arg(long)]
    user_info: Option<String>,
    /// Idempotency key: repeating the command with the same key borrows at most once
    /// and prints the first answer.
    #[arg(long)]
    request_id: Option<String>,
    /// Write the license string to this file instead of printing it.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["license", "file"])))]
struct VerifyArgs {
    /// The license string.
    #[arg(long)]
    license: Option<String>,
    /// A file holding the license string (`-` for standard input).
    #[arg(long)]
    file: Option<PathBuf>,
    /// The pool's public key (PEM, or the raw key in base64). Without it the key is
    /// fetched from --server, which is only as trustworthy as the connection to it.
    #[arg(long)]
    public_key: Option<PathBuf>,
    /// The host id of this machine; checked against the license when given.
    #[arg(long)]
    host_id: Option<String>,
    /// Check at this time instead of now (ISO-8601).
    #[arg(long)]
    at: Option<String>,
}

/// Why a command ended early.
#[derive(Debug)]
enum Failure {
    /// The server answered with a JSON-RPC error (exit 1).
    Refused(String),
    /// Anything that kept the question from being asked or answered (exit 2).
    Error(anyhow::Error),
}

impl From<RpcCallError> for Failure {
    fn from(error: RpcCallError) -> Failure {
        match error {
            RpcCallError::Rpc(object) => Failure::Refused(object.to_string()),
            other => Failure::Error(other.into()),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        Failure::Error(error)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(Failure::Refused(message)) => {
            eprintln!("{message}");
            ExitCode::from(EXIT_REFUSED)
        }
        Err(Failure::Error(error)) => {
            eprintln!("licensectl: {error:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    if let Command::Certs(args) = &cli.command {
        let written = certs::make(args)?;
        if cli.json {
            print_json(&json!({
                "cert": written.cert, "key": written.key,
                "ca": written.ca, "caCreated": written.ca_created,
            }));
        } else {
            let made = if written.ca_created { "made" } else { "kept" };
            println!("certificate {}", written.cert.display());
            println!("key         {}", written.key.display());
            println!("CA          {} ({made})", written.ca.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let client = match &cli.ca {
        None => RpcClient::new(&cli.server)?,
        Some(ca) => {
            let pem = std::fs::read(ca)
                .with_context(|| format!("cannot read the CA file {}", ca.display()))?;
            let root = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("{} holds no PEM certificate", ca.display()))?;
            let http = reqwest::Client::builder()
                .add_root_certificate(root)
                .build()
                .context("cannot build the HTTPS client")?;
            RpcClient::with_http_client(&cli.server, http)?
        }
    }
    .with_api_key(cli.api_key);
    match cli.command {
        Command::List => {
            let result = client.call("ListLicensesV1", json!([])).await?;
            if cli.json {
                print_json(&result);
            } else {
                let licenses: Vec<LicenseInfo> =
                    decode_result(&client.rpc_url(), "ListLicensesV1", result)?;
                print!("{}", render_licenses(&licenses));
            }
        }
        Command::Borrow(args) => {
            let params = BorrowParams {
                feature: args.feature,
                uuid: args.uuid,
                host_id: args.host_id,
                valid_from: args.from,
                valid_until: args.until,
                user_info: args.user_info,
                request_id: args.request_id,
            };
            let params = serde_json::to_value(&params).context("encoding the parameters")?;
            let out = args.out.as_deref();
            borrowed(&client, "BorrowLicenseV1", params, out, cli.json).await?;
        }
        Command::Get { borrow_id, out } => {
            let params = json!({ "borrowId": borrow_id });
            let out = out.as_deref();
            borrowed(&client, "GetBorrowedLicenseV1", params, out, cli.json).await?;
        }
        Command::Return {
            borrow_id,
            token,
            admin_token,
        } => {
            let client = client.with_admin_token(admin_token);
            let result = client.return_license(&borrow_id, token.as_deref()).await?;
            if cli.json {
                print_json(&result);
            } else {
                let field = |name: &str| result[name].as_str().unwrap_or("-").to_string();
                print!(
                    "{}",
                    pairs(&[
                        ("borrowId", &field("borrowId")),
                        ("validFrom", &field("validFrom")),
                        ("validUntil", &field("validUntil")),
                        ("returnedAt", &field("returnedAt")),
                    ])
                );
            }
        }
        Command::Verify(args) => return verify(&client, args, cli.json).await,
        Command::PublicKey { out } => public_key(&client, out.as_deref(), cli.json).await?,
        Command::Cluster(args) => return cluster(args, cli.ca.as_deref(), cli.json).await,
        Command::Keys(args) => {
            let client = client.with_admin_token(args.admin_token);
            keys(&client, args.command, cli.json).await?;
        }
        Command::Pool(args) => {
            let client = client.with_admin_token(args.admin_token);
            admin::pool(&client, args.command, cli.json).await?;
        }
        Command::License(args) => {
            let client = client.with_admin_token(args.admin_token);
            admin::license(&client, args.command, cli.json).await?;
        }
        Command::Borrows(mut args) => {
            let client = client.with_admin_token(args.admin_token.take());
            admin::borrows(&client, args, cli.json).await?;
        }
        Command::Host(args) => {
            let client = client.with_admin_token(args.admin_token);
            admin::host(&client, args.command, cli.json).await?;
        }
        Command::Audit(mut args) => {
            let client = client.with_admin_token(args.admin_token.take());
            admin::audit(&client, args, cli.json).await?;
        }
        Command::Check(mut args) => {
            let client = client.with_admin_token(args.admin_token.take());
            return admin::check(&client, args, cli.json).await;
        }
        Command::Bench(args) => {
            let json = cli.json || args.json;
            let report = licensed_loadgen::run_bench(*args).await?;
            if json {
                println!("{}", report.to_json().context("encoding the report")?);
            } else {
                print!("{report}");
            }
        }
        // Answered before a client is built, above.
        Command::Certs(_) => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// `licensectl cluster ...`.
async fn cluster(args: ClusterArgs, ca: Option<&Path>, json: bool) -> Result<ExitCode, Failure> {
    let mut admin = AdminClient::new(&args.node, args.admin_token).map_err(admin_failure)?;
    if let Some(ca) = ca {
        // A peer port with mutual TLS: trust the cluster CA, present no certificate (the
        // admin token authorizes the changes).
        let roots = licensed::transport::tls::load_roots(ca).context("--ca")?;
        let tls = licensed::transport::tls::client_config(roots, None).context("--ca")?;
        let dialer = licensed::transport::peer::PeerDialer::new(Some(tls), None);
        admin = admin.with_dialer(&dialer).map_err(admin_failure)?;
    }
    let outcome = match args.command {
        ClusterCommand::Status => {
            let status = admin.status().await.map_err(admin_failure)?;
            if json {
                print_json(&serde_json::to_value(&status).context("encoding the status")?);
            } else {
                print!("{}", render_status(&status));
            }
            return Ok(ExitCode::SUCCESS);
        }
        ClusterCommand::Add { id, raft_addr } => admin.add(id, &raft_addr).await,
        ClusterCommand::Remove { id, force } => admin.remove(id, force).await,
        ClusterCommand::TransferLeader { id } => admin.transfer_leader(id).await,
    };
    let message = outcome.map_err(admin_failure)?;
    if json {
        print_json(&json!({ "ok": true, "message": message }));
    } else {
        println!("{message}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `licensectl keys ...`.
async fn keys(client: &RpcClient, command: KeysCommand, json: bool) -> Result<(), Failure> {
    match command {
        KeysCommand::Create {
            name,
            scope,
            features,
        } => {
            let features = (!features.is_empty()).then_some(features);
            let created = client
                .create_api_key(&name, &scope, features.as_deref())
                .await?;
            if json {
                print_json(&serde_json::to_value(&created).context("encoding the key")?);
                return Ok(());
            }
            let features = created
                .features
                .as_ref()
                .map_or_else(|| "all".to_string(), |f| f.join(","));
            print!(
                "{}",
                pairs(&[
                    ("keyId", &created.key_id),
                    ("name", &created.name),
                    ("scope", created.scope.as_str()),
                    ("features", &features),
                    ("createdAt", &created.created_at),
                    ("key", &created.key),
                ])
            );
            eprintln!("Store the key now: it is not shown again.");
        }
        KeysCommand::List => {
            let keys = client.list_api_keys().await?;
            if json {
                print_json(&serde_json::to_value(&keys).context("encoding the keys")?);
            } else {
                print!("{}", render_keys(&keys));
            }
        }
        KeysCommand::Revoke { key_id } => {
            let key = client.revoke_api_key(&key_id).await?;
            if json {
                print_json(&serde_json::to_value(&key).context("encoding the key")?);
            } else {
                print!("{}", render_keys(std::slice::from_ref(&key)));
            }
        }
    }
    Ok(())
}

/// The key table: one line per key.
fn render_keys(keys: &[ApiKeyInfo]) -> String {
    if keys.is_empty() {
        return "no API keys\n".to_string();
    }
    let mut rows: Vec<Vec<String>> = vec!["KEY-ID NAME SCOPE FEATURES CREATED REVOKED"
        .split(' ')
        .map(str::to_string)
        .collect()];
    for key in keys {
        rows.push(vec![
            key.key_id.clone(),
            key.name.clone(),
            key.scope.to_string(),
            key.features
                .as_ref()
                .map_or_else(|| "all".to_string(), |f| f.join(",")),
            key.created_at.clone(),
            key.revoked_at.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    align(&rows, "")
}

/// A refused change exits 1, an unreachable node 2, like the client commands.
fn admin_failure(error: AdminError) -> Failure {
    match error {
        AdminError::Refused(reason) => Failure::Refused(format!("refused: {reason}")),
        other => Failure::Error(other.into()),
    }
}

/// Calls a method that returns a `BorrowedLicense`, prints it, writes the license to
/// `out` when asked.
async fn borrowed(
    client: &RpcClient,
    method: &str,
    params: Value,
    out: Option<&Path>,
    json: bool,
) -> Result<(), Failure> {
    let result = client.call(method, params).await?;
    let borrowed: BorrowedLicense = decode_result(&client.rpc_url(), method, result.clone())?;
    if let Some(path) = out {
        write_file(path, &format!("{}\n", borrowed.license))?;
    }
    if json {
        print_json(&result);
        return Ok(());
    }
    let license = match out {
        Some(path) => format!("written to {}", path.display()),
        None => borrowed.license,
    };
    let mut fields = vec![("borrowId", borrowed.borrow_id.as_str())];
    if let Some(token) = &borrowed.return_token {
        fields.push(("returnToken", token));
    }
    fields.push(("license", &license));
    print!("{}", pairs(&fields));
    Ok(())
}

async fn public_key(client: &RpcClient, out: Option<&Path>, json: bool) -> Result<(), Failure> {
    let result = client.public_key_json().await?;
    let info: PublicKeyInfo = decode_result(client.base_url(), "GET /public-key", result.clone())?;
    if let Some(path) = out {
        write_file(path, &info.pem)?;
    }
    if json {
        print_json(&result);
        return Ok(());
    }
    print!(
        "{}",
        pairs(&[("keyId", &info.key_id), ("algorithm", &info.algorithm)])
    );
    match out {
        Some(path) => println!("PEM written to {}", path.display()),
        None => print!("{}", info.pem),
    }
    Ok(())
}

async fn verify(client: &RpcClient, args: VerifyArgs, json: bool) -> Result<ExitCode, Failure> {
    let license = match (&args.license, &args.file) {
        (Some(text), _) => text.trim().to_string(),
        (None, Some(path)) => read_text(path)?.trim().to_string(),
        // clap's argument group makes one of the two required.
        (None, None) => return Err(anyhow::anyhow!("give --license or --file").into()),
    };
    let now = match &args.at {
        Some(text) => {
            time::parse_instant(text, DateRole::Start, "--at").map_err(anyhow::Error::from)?
        }
        None => time::now(),
    };
    let key = match &args.public_key {
        Some(path) => read_public_key(path)?,
        None => fetch_public_key(client).await?,
    };
    let (document, reason) = match document::verify(&license, &key) {
        Ok(doc) => {
            let reason = document::check_offline(&doc, args.host_id.as_deref(), now).err();
            (Some(doc), reason.map(|e| e.to_string()))
        }
        // Show what an unverifiable license claims, if it decodes at all.
        Err(error) => (
            document::decode(&license).ok().map(|(doc, _, _)| doc),
            Some(error.to_string()),
        ),
    };
    if json {
        print_json(&json!({"valid": reason.is_none(), "reason": reason, "license": document}));
    } else {
        print!("{}", render_verdict(document.as_ref(), reason.as_deref()));
    }
    Ok(match reason {
        None => ExitCode::SUCCESS,
        Some(_) => ExitCode::from(EXIT_REFUSED),
    })
}

/// Reads a public key file: PEM, or the raw key in base64 as `GET /public-key` shows it.
fn read_public_key(path: &Path) -> anyhow::Result<PublicKey> {
    let text = read_text(path)?;
    PublicKey::from_pem(&text)
        .or_else(|pem_error| PublicKey::from_base64(&text).map_err(|_| pem_error))
        .with_context(|| format!("public key {}", path.display()))
}

async fn fetch_public_key(client: &RpcClient) -> Result<PublicKey, Failure> {
    let info = client.public_key().await?;
    let key = PublicKey::from_base64(&info.public_key).context("the server's public key")?;
    if key.key_id() != info.key_id {
        return Err(anyhow::anyhow!(
            "the server names its key {} but the key it sent has id {}",
            info.key_id,
            key.key_id()
        )
        .into());
    }
    Ok(key)
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        return std::io::read_to_string(std::io::stdin()).context("reading standard input");
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn write_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

fn print_json(value: &Value) {
    // Pretty for people reading script output; still one JSON value for `jq`.
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(_) => println!("{value}"),
    }
}

/// The license table, with each license's borrows indented under it.
fn render_licenses(licenses: &[LicenseInfo]) -> String {
    if licenses.is_empty() {
        return "no licenses\n".to_string();
    }
    const HEADER: &str =
        "FEATURE UUID VERSION EDITION MODULES COUNT VALID-FROM VALID-UNTIL BORROWED";
    let mut rows: Vec<Vec<String>> = vec![HEADER.split(' ').map(str::to_string).collect()];
    let mut borrows: Vec<Vec<String>> = Vec::new();
    for license in licenses {
        rows.push(vec![
            license.feature.clone(),
            license.uuid.clone(),
            license.version.clone(),
            license.edition.clone(),
            license.modules.clone(),
            license.count.to_string(),
            license.valid_from.clone().unwrap_or_else(|| "-".into()),
            license
                .valid_until
                .clone()
                .unwrap_or_else(|| "never".into()),
            license.borrowed_intervals.len().to_string(),
        ]);
        for interval in &license.borrowed_intervals {
            borrows.push(vec![
                format!("{} .. {}", interval.valid_from, interval.valid_until),
                interval.host_id.clone(),
                interval.user_info.clone().unwrap_or_else(|| "-".into()),
                interval.borrow_id.clone(),
            ]);
        }
    }
    // Borrow lines share their own column widths across the whole table; they follow
    // the license lines in the same order, so one iterator hands them out.
    let borrow_text = align(&borrows, "    ");
    let mut borrow_lines = borrow_text.lines();
    let license_text = align(&rows, "");
    let mut license_lines = license_text.lines();
    let mut out = String::new();
    out.extend(license_lines.next().map(|header| format!("{header}\n")));
    for (license, line) in licenses.iter().zip(license_lines) {
        out.push_str(line);
        out.push('\n');
        for borrow in borrow_lines.by_ref().take(license.borrowed_intervals.len()) {
            out.push_str(borrow);
            out.push('\n');
        }
    }
    out
}

/// The decoded fields of a license and the verdict, as `name  value` lines.
fn render_verdict(document: Option<&LicenseDocument>, reason: Option<&str>) -> String {
    let verdict = match reason {
        None => "valid".to_string(),
        Some(reason) => format!("invalid: {reason}"),
    };
    let mut rows: Vec<(&str, &str)> = Vec::new();
    if let Some(doc) = document {
        rows.extend([
            ("feature", doc.feature.as_str()),
            ("uuid", &doc.uuid),
            ("version", &doc.version),
            ("edition", &doc.edition),
            ("modules", &doc.modules),
            ("hostId", &doc.host_id),
            ("validFrom", &doc.valid_from),
            ("validUntil", &doc.valid_until),
            ("borrowId", &doc.borrow_id),
        ]);
        if let Some(user_info) = &doc.user_info {
            rows.push(("userInfo", user_info));
        }
        rows.extend([("issuedAt", doc.issued_at.as_str()), ("keyId", &doc.key_id)]);
    }
    rows.push(("result", &verdict));
    pairs(&rows)
}

/// `name  value` lines, values aligned.
fn pairs(rows: &[(&str, &str)]) -> String {
    let rows: Vec<[&str; 2]> = rows.iter().map(|&(name, value)| [name, value]).collect();
    align(&rows, "")
}

/// Left-aligns columns two spaces apart, each line prefixed with `indent`. The last column
/// is not padded, so lines carry no trailing blanks.
fn align<R: AsRef<[S]>, S: AsRef<str>>(rows: &[R], indent: &str) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (c, cell) in row.as_ref().iter().enumerate() {
            let width = cell.as_ref().chars().count();
            match widths.get_mut(c) {
                Some(max) => *max = (*max).max(width),
                None => widths.push(width),
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        let row = row.as_ref();
        out.push_str(indent);
        for (c, cell) in row.iter().enumerate() {
            let cell = cell.as_ref();
            out.push_str(cell);
            if c + 1 < row.len() {
                let pad = widths[c] - cell.chars().count() + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use licensed::client::BorrowedInterval;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn verify_needs_exactly_one_license_source() {
        assert!(Cli::try_parse_from(["licensectl", "verify"]).is_err());
        assert!(
            Cli::try_parse_from(["licensectl", "verify", "--license", "x", "--file", "f"]).is_err()
        );
        let cli = Cli::try_parse_from([
            "licensectl",
            "--json",
            "verify",
            "--file",
            "f",
            "--at",
            "2025-12-01",
        ])
        .unwrap();
        assert!(cli.json);
        assert!(matches!(
            cli.command,
            Command::Verify(VerifyArgs {
                file: Some(_),
                at: Some(_),
                ..
            })
        ));
    }

    /// Return tokens are base64url: one in 64 starts with `-`, and must still parse as a value.
    #[test]
    fn tokens_that_start_with_a_dash_are_values() {
        let cli = Cli::try_parse_from([
            "licensectl",
            "return",
            "d4af4122-ccb6-4f58-a0bd-b52c7b6a1f0a",
            "--token",
            "-33ykloyH_QESNbq1S0xJeuDtGEfF348VIFOTI-hUw0",
            "--admin-token",
            "-admin",
        ])
        .unwrap();
        let Command::Return {
            token, admin_token, ..
        } = cli.command
        else {
            panic!("not a return: {:?}", cli.command);
        };
        assert_eq!(
            token.as_deref(),
            Some("-33ykloyH_QESNbq1S0xJeuDtGEfF348VIFOTI-hUw0")
        );
        assert_eq!(admin_token.as_deref(), Some("-admin"));
        let cli = Cli::try_parse_from(["licensectl", "cluster", "--admin-token", "-x", "status"])
            .unwrap();
        let Command::Cluster(cluster) = cli.command else {
            panic!("not a cluster command");
        };
        assert_eq!(cluster.admin_token.as_deref(), Some("-x"));
    }

    #[test]
    fn global_options_work_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "licensectl",
            "list",
            "--server",
            "http://h:1/licenses",
            "--json",
        ])
        .unwrap();
        assert_eq!(cli.server, "http://h:1/licenses");
        assert!(cli.json);
    }

    #[test]
    fn licenses_render_as_a_table_with_borrows_underneath() {
        let interval = |from: &str, user: Option<&str>, id: &str| BorrowedInterval {
            valid_from: from.into(),
            valid_until: "2025-12-01T20:00:00Z".into(),
            host_id: "MAC:2C549188C9E3".into(),
            user_info: user.map(str::to_string),
            borrow_id: id.into(),
        };
        let license = |feature: &str, borrows: Vec<BorrowedInterval>| LicenseInfo {
            feature: feature.into(),
            uuid: "118cf2e7b3d20001".into(),
            version: "26.05".into(),
            edition: "Progress".into(),
            modules: "fc123bdomit".into(),
            count: 2,
            valid_from: None,
            valid_until: Some("2026-12-31T23:59:59Z".into()),
            borrowed_intervals: borrows,
        };
        let table = render_licenses(&[
            license("MVTec_HALCON", vec![]),
            license(
                "MVTec_HDevelop",
                vec![
                    interval("2025-12-01T08:00:00Z", Some("Jane Doe"), "b-1"),
                    interval("2025-12-01T09:00:00Z", None, "b-2"),
                ],
            ),
        ]);
        let expected = "\
FEATURE         UUID              VERSION  EDITION   MODULES      COUNT  VALID-FROM  VALID-UNTIL           BORROWED
MVTec_HALCON    118cf2e7b3d20001  26.05    Progress  fc123bdomit  2      -           2026-12-31T23:59:59Z  0
MVTec_HDevelop  118cf2e7b3d20001  26.05    Progress  fc123bdomit  2      -           2026-12-31T23:59:59Z  2
    2025-12-01T08:00:00Z .. 2025-12-01T20:00:00Z  MAC:2C549188C9E3  Jane Doe  b-1
    2025-12-01T09:00:00Z .. 2025-12-01T20:00:00Z  MAC:2C549188C9E3  -         b-2
";
        assert_eq!(table, expected);
        assert_eq!(render_licenses(&[]), "no licenses\n");
    }

    #[test]
    fn the_api_key_is_global_and_keys_take_the_admin_token() {
        let cli =
            Cli::try_parse_from(["licensectl", "list", "--api-key", "lk_0123456789abcdef_-x"])
                .unwrap();
        assert_eq!(cli.api_key.as_deref(), Some("lk_0123456789abcdef_-x"));
        let cli = Cli::try_parse_from([
            "licensectl",
            "keys",
            "--admin-token",
            "-t",
            "create",
            "--name",
            "ci",
            "--scope",
            "borrow",
            "--feature",
            "MVTec_HALCON",
            "--feature",
            "MVTec_HDevelop",
        ])
        .unwrap();
        let Command::Keys(KeysArgs {
            admin_token,
            command: KeysCommand::Create {
                scope, features, ..
            },
        }) = cli.command
        else {
            panic!("not keys create: {:?}", cli.command);
        };
        assert_eq!(admin_token.as_deref(), Some("-t"));
        assert_eq!(scope, "borrow");
        assert_eq!(features, ["MVTec_HALCON", "MVTec_HDevelop"]);
        assert!(Cli::try_parse_from([
            "licensectl",
            "keys",
            "create",
            "--name",
            "x",
            "--scope",
            "write"
        ])
        .is_err());
    }

    #[test]
    fn keys_render_as_a_table_without_secrets() {
        let key = |id: &str, features: Option<Vec<String>>, revoked: Option<&str>| ApiKeyInfo {
            key_id: id.into(),
            name: "build farm".into(),
            scope: licensed::state::Scope::Borrow,
            features,
            created_at: "2026-12-01T08:00:00Z".into(),
            revoked_at: revoked.map(str::to_string),
        };
        let table = render_keys(&[
            key("0123456789abcdef", None, None),
            key(
                "fedcba9876543210",
                Some(vec!["MVTec_HALCON".into()]),
                Some("2026-12-02T08:00:00Z"),
            ),
        ]);
        let expected = "\
KEY-ID            NAME        SCOPE   FEATURES      CREATED               REVOKED
0123456789abcdef  build farm  borrow  all           2026-12-01T08:00:00Z  -
fedcba9876543210  build farm  borrow  MVTec_HALCON  2026-12-01T08:00:00Z  2026-12-02T08:00:00Z
";
        assert_eq!(table, expected);
        assert_eq!(render_keys(&[]), "no API keys\n");
    }

    #[test]
    fn verdict_shows_fields_and_reason() {
        let text = render_verdict(None, Some("signature does not match"));
        assert_eq!(text, "result  invalid: signature does not match\n");
        assert_eq!(render_verdict(None, None), "result  valid\n");
    }

    #[test]
    fn refusals_and_errors_map_to_their_exit_kinds() {
        let refused = RpcCallError::Rpc(licensed::client::RpcErrorObject {
            code: 34,
            message: "No matching license found".into(),
            reason: Some("no borrow with borrowId x".into()),
            data: None,
        });
        match Failure::from(refused) {
            Failure::Refused(text) => assert_eq!(
                text,
                "error 34: No matching license found (no borrow with borrowId x)"
            ),
            other => panic!("unexpected {other:?}"),
        }
        let bad_url = RpcCallError::BadUrl {
            url: "x".into(),
            reason: "y".into(),
        };
        assert!(matches!(Failure::from(bad_url), Failure::Error(_)));
    }
}
