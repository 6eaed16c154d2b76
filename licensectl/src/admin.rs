//! License administration from the command line: `pool`, `license`, `borrows`, `host`,
//! `audit` and `check`, over the server's admin JSON-RPC methods (PlanPoolV1,
//! ApplyPoolV1, AddLicenseV1, UpdateLicenseV1, RemoveLicenseV1, ListBorrowsV1,
//! ListHostsV1, SetHostV1, BlockHostV1, UnblockHostV1, ListAuditV1, CheckLicenseV1).
//!
//! Results are handled as plain JSON values: the tables show what the server sent, and
//! `--json` prints it unchanged, so a field the server adds later is never lost.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::Context;
use clap::{ArgGroup, Args, Subcommand};
use serde_json::{json, Map, Value};

use licensed::client::{RpcCallError, RpcClient};

use super::{align, pairs, print_json, read_text, Failure, EXIT_REFUSED};

/// Items per page when the user gives no `--limit`, as the server's default.
const DEFAULT_PAGE: u32 = 100;
/// Items per page when every page is fetched anyway (the server's maximum).
const FULL_PAGE: u32 = 1000;
/// JSON-RPC code of an admin method called without credentials.
const CODE_UNAUTHORIZED: i64 = 38;
/// JSON-RPC code of an admin method called with a key of a weaker scope.
const CODE_FORBIDDEN: i64 = 39;
/// Borrow states `ListBorrowsV1` filters on.
const BORROW_STATUSES: [&str; 4] = ["upcoming", "active", "returned", "expired"];

/// `licensectl pool ...`: the whole license pool from a pool file.
#[derive(Debug, Args)]
pub struct PoolArgs {
    /// The cluster's admin token, sent as `Authorization: Bearer`; without it, --api-key
    /// must be an admin key.
    #[arg(
        long,
        global = true,
        env = "LICENSED_ADMIN_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub admin_token: Option<String>,
    #[command(subcommand)]
    pub command: PoolCommand,
}

/// The `pool` subcommands.
#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Show what applying a pool file would add, change and remove, and which held
    /// borrows it would conflict with (PlanPoolV1). Changes nothing.
    Plan {
        /// The pool file (JSON, as given to the server at start; `-` for standard input).
        file: PathBuf,
    },
    /// Make the pool what the file says, all or nothing (ApplyPoolV1). Refused when held
    /// borrows would fall outside their license, unless --force.
    Apply {
        /// The pool file (JSON, as given to the server at start; `-` for standard input).
        file: PathBuf,
        /// Apply even with conflicts: the borrows concerned stay valid until their end.
        #[arg(long)]
        force: bool,
    },
}

/// `licensectl license ...`: one license of the pool.
#[derive(Debug, Args)]
pub struct LicenseArgs {
    /// The cluster's admin token, sent as `Authorization: Bearer`; without it, --api-key
    /// must be an admin key.
    #[arg(
        long,
        global = true,
        env = "LICENSED_ADMIN_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub admin_token: Option<String>,
    #[command(subcommand)]
    pub command: LicenseCommand,
}

/// The `license` subcommands.
#[derive(Debug, Subcommand)]
pub enum LicenseCommand {
    /// Add a license (AddLicenseV1); refused when it exists already.
    Add(LicenseAddArgs),
    /// Change fields of a license (UpdateLicenseV1).
    Set(LicenseSetArgs),
    /// Remove a license (RemoveLicenseV1). Refused while it has current or upcoming
    /// borrows, unless --force.
    Rm {
        /// The license's feature.
        feature: String,
        /// The license's uuid.
        uuid: String,
        /// Remove even with borrows: they stay valid and retrievable until their end.
        #[arg(long)]
        force: bool,
    },
}

/// `license add FILE|--json-spec '{…}'`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("spec").required(true).args(["file", "json_spec"])))]
pub struct LicenseAddArgs {
    /// A JSON file holding one license object, as an entry of the pool file (`-` for
    /// standard input).
    pub file: Option<PathBuf>,
    /// The license object itself, e.g. '{"feature":"…","uuid":"…","count":5,…}'.
    #[arg(long)]
    pub json_spec: Option<String>,
}

/// `license set FEATURE UUID [field flags] [--force]`; at least one field flag.
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("fields")
        .required(true)
        .multiple(true)
        .args([
            "count",
            "valid_from",
            "valid_until",
            "version",
            "edition",
            "modules",
            "max_borrow_duration",
            "max_borrowed",
            "max_per_host",
        ])
))]
pub struct LicenseSetArgs {
    /// The license's feature.
    pub feature: String,
    /// The license's uuid.
    pub uuid: String,
    /// Number of seats.
    #[arg(long)]
    pub count: Option<u32>,
    /// Start of validity (date or date-time), or `none`: valid from the beginning.
    #[arg(long, value_parser = clearable::<String>)]
    pub valid_from: Option<Clearable<String>>,
    /// End of validity (date or date-time), or `none`: valid without end.
    #[arg(long, value_parser = clearable::<String>)]
    pub valid_until: Option<Clearable<String>>,
    /// Version, e.g. 26.05.
    #[arg(long)]
    pub version: Option<String>,
    /// Edition, e.g. Steady.
    #[arg(long)]
    pub edition: Option<String>,
    /// Module letters, e.g. fcbdo.
    #[arg(long)]
    pub modules: Option<String>,
    /// Longest borrow of this license (30d, 12h, 90m, 3600s), or `none`: the pool's.
    #[arg(long, value_parser = clearable::<String>)]
    pub max_borrow_duration: Option<Clearable<String>>,
    /// Most borrows overlapping at any instant, or `none`: the count.
    #[arg(long, value_parser = clearable::<u32>)]
    pub max_borrowed: Option<Clearable<u32>>,
    /// Most current and upcoming borrows per host, or `none`: no per-license limit.
    #[arg(long, value_parser = clearable::<u32>)]
    pub max_per_host: Option<Clearable<u32>>,
    /// Change even when held borrows would fall outside the license: they stay valid
    /// and are listed as overbooked.
    #[arg(long)]
    pub force: bool,
}

/// `licensectl borrows ...`: borrows, current and past (ListBorrowsV1).
#[derive(Debug, Args)]
pub struct BorrowsArgs {
    /// Only borrows of this host (MAC:… or CM:…).
    #[arg(long)]
    pub host: Option<String>,
    /// Only borrows of this feature.
    #[arg(long)]
    pub feature: Option<String>,
    /// Only borrows of this license uuid.
    #[arg(long)]
    pub uuid: Option<String>,
    /// Only borrows whose user info contains this text (case-insensitive).
    #[arg(long)]
    pub user: Option<String>,
    /// Only borrows in this state.
    #[arg(long, value_parser = BORROW_STATUSES)]
    pub status: Option<String>,
    /// Only borrows that overlap [from, until): start (date or date-time).
    #[arg(long)]
    pub from: Option<String>,
    /// Only borrows that overlap [from, until): end (date or date-time).
    #[arg(long)]
    pub until: Option<String>,
    /// Borrows per page (1 to 1000).
    #[arg(long, default_value_t = DEFAULT_PAGE, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Fetch every page, not only the first.
    #[arg(long)]
    pub all: bool,
    /// The cluster's admin token; not needed, sent when given.
    #[arg(
        long,
        env = "LICENSED_ADMIN_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub admin_token: Option<String>,
}

/// `licensectl host ...`: the hosts that borrowed, their names, notes and blocks.
#[derive(Debug, Args)]
pub struct HostArgs {
    /// The cluster's admin token (set, block, unblock; sent with list when given).
    #[arg(
        long,
        global = true,
        env = "LICENSED_ADMIN_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub admin_token: Option<String>,
    #[command(subcommand)]
    pub command: HostCommand,
}

/// The `host` subcommands.
#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Every host known to the cluster (ListHostsV1).
    List {
        /// Only blocked hosts.
        #[arg(long)]
        blocked: bool,
    },
    /// Name a host or note something about it (SetHostV1); registers a host never seen.
    Set {
        /// The host id, MAC:… or CM:….
        host: String,
        /// A name for the host (at most 128 characters), or `none` to clear it.
        #[arg(long, value_parser = clearable::<String>)]
        name: Option<Clearable<String>>,
        /// Notes (at most 1024 characters), or `none` to clear them.
        #[arg(long, value_parser = clearable::<String>)]
        notes: Option<Clearable<String>>,
    },
    /// Refuse further borrows for a host (BlockHostV1); prints the borrows it holds.
    Block {
        /// The host id, MAC:… or CM:….
        host: String,
        /// Why, shown to the host's next borrow attempts.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Let a blocked host borrow again (UnblockHostV1).
    Unblock {
        /// The host id, MAC:… or CM:….
        host: String,
    },
}

/// `licensectl audit ...`: the audit log, oldest first (ListAuditV1).
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Entries at or after this time (date or date-time).
    #[arg(long)]
    pub since: Option<String>,
    /// Entries before this time (date or date-time).
    #[arg(long)]
    pub until: Option<String>,
    /// Entries of this kind: borrow, refusal, return, license-add, license-update,
    /// license-remove, pool-apply, host-update, host-block, host-unblock, api-key-create,
    /// api-key-revoke, membership.
    #[arg(long)]
    pub kind: Option<String>,
    /// Entries about this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Entries about this feature.
    #[arg(long)]
    pub feature: Option<String>,
    /// Entries about this borrow.
    #[arg(long)]
    pub borrow: Option<String>,
    /// Entries by this actor: admin, client, `key:<keyId>`, `node:<id>`, system.
    #[arg(long)]
    pub actor: Option<String>,
    /// Entries per page (1 to 1000).
    #[arg(long, default_value_t = DEFAULT_PAGE, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Fetch every page, not only the first (always so with --json).
    #[arg(long)]
    pub all: bool,
    /// The cluster's admin token; without it, --api-key must be an admin key.
    #[arg(
        long,
        env = "LICENSED_ADMIN_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub admin_token: Option<String>,
}

/// `licensectl check FILE|-`: ask the server about a license string (CheckLicenseV1).
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A file holding the license string, `-` for standard input.
    pub file: PathBuf,
    /// The cluster's admin token; not needed, sent when given.
    #[arg(
        long,
        env = "LICENSED_ADMIN_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub admin_token: Option<String>,
}

/// The value of an optional license or host field on the command line: a value, or the
/// word `none`, which clears the field (sent as JSON `null`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clearable<T> {
    /// `none`: clear the field.
    Clear,
    /// Set the field to this value.
    Set(T),
}

impl<T: Clone + Into<Value>> Clearable<T> {
    /// `null` for [`Clearable::Clear`], the value otherwise.
    pub fn to_json(&self) -> Value {
        match self {
            Clearable::Clear => Value::Null,
            Clearable::Set(value) => value.clone().into(),
        }
    }
}

/// Parses a [`Clearable`] option value: `none` (any case) or a `T`.
fn clearable<T: FromStr>(text: &str) -> Result<Clearable<T>, String>
where
    T::Err: Display,
{
    if text.eq_ignore_ascii_case("none") {
        return Ok(Clearable::Clear);
    }
    text.parse()
        .map(Clearable::Set)
        .map_err(|error| format!("{error} (or `none` to clear the field)"))
}

/// `licensectl pool ...`.
pub async fn pool(client: &RpcClient, command: PoolCommand, json: bool) -> Result<(), Failure> {
    let (method, params) = match command {
        PoolCommand::Plan { file } => ("PlanPoolV1", json!({ "pool": read_json(&file)? })),
        PoolCommand::Apply { file, force } => (
            "ApplyPoolV1",
            json!({ "pool": read_json(&file)?, "force": force }),
        ),
    };
    let plan = client.call(method, params).await.map_err(refusal)?;
    if json {
        print_json(&plan);
    } else {
        print!("{}", render_plan(&plan));
    }
    Ok(())
}

/// `licensectl license ...`.
pub async fn license(
    client: &RpcClient,
    command: LicenseCommand,
    json: bool,
) -> Result<(), Failure> {
    let (method, params, heading) = match command {
        LicenseCommand::Add(args) => {
            let spec = match (&args.file, &args.json_spec) {
                (_, Some(text)) => {
                    serde_json::from_str(text).context("--json-spec is not valid JSON")?
                }
                (Some(path), None) => read_json(path)?,
                // clap's argument group makes one of the two required.
                (None, None) => return Err(anyhow::anyhow!("give FILE or --json-spec").into()),
            };
            if !spec.is_object() {
                return Err(anyhow::anyhow!(
                    "the license must be one JSON object, as an entry of the pool file"
                )
                .into());
            }
            ("AddLicenseV1", json!({ "license": spec }), "added")
        }
        LicenseCommand::Set(args) => ("UpdateLicenseV1", update_params(&args), "updated"),
        LicenseCommand::Rm {
            feature,
            uuid,
            force,
        } => (
            "RemoveLicenseV1",
            json!({ "feature": feature, "uuid": uuid, "force": force }),
            "removed",
        ),
    };
    let result = client.call(method, params).await.map_err(refusal)?;
    if json {
        print_json(&result);
    } else {
        print!("{}", render_license_change(&result, heading));
    }
    Ok(())
}

/// The parameters of `UpdateLicenseV1` for `license set`: only the fields given, `none`
/// as `null`.
pub fn update_params(args: &LicenseSetArgs) -> Value {
    let mut set = Map::new();
    let mut put = |name: &str, value: Option<Value>| {
        if let Some(value) = value {
            set.insert(name.to_string(), value);
        }
    };
    put("count", args.count.map(Value::from));
    put("version", args.version.clone().map(Value::from));
    put("edition", args.edition.clone().map(Value::from));
    put("modules", args.modules.clone().map(Value::from));
    put(
        "validFrom",
        args.valid_from.as_ref().map(Clearable::to_json),
    );
    put(
        "validUntil",
        args.valid_until.as_ref().map(Clearable::to_json),
    );
    put(
        "maxBorrowDuration",
        args.max_borrow_duration.as_ref().map(Clearable::to_json),
    );
    put(
        "maxBorrowed",
        args.max_borrowed.as_ref().map(Clearable::to_json),
    );
    put(
        "maxPerHost",
        args.max_per_host.as_ref().map(Clearable::to_json),
    );
    json!({
        "feature": args.feature,
        "uuid": args.uuid,
        "set": set,
        "force": args.force,
    })
}

/// `licensectl borrows ...`.
pub async fn borrows(client: &RpcClient, args: BorrowsArgs, json: bool) -> Result<(), Failure> {
    let params = borrows_params(&args);
    let mut rows = Vec::new();
    let more = pages(
        client,
        "ListBorrowsV1",
        params,
        "borrows",
        args.all,
        |page| {
            rows.extend(page);
            Ok(())
        },
    )
    .await?;
    if json {
        let mut result = json!({ "borrows": rows });
        if let Some(cursor) = more {
            result["nextCursor"] = json!(cursor);
        }
        print_json(&result);
        return Ok(());
    }
    print!("{}", render_borrows(&rows));
    if more.is_some() {
        eprintln!("(more borrows: --all fetches every page)");
    }
    Ok(())
}

/// The parameters of `ListBorrowsV1` for `borrows`: the filters given and the page size.
pub fn borrows_params(args: &BorrowsArgs) -> Map<String, Value> {
    let mut params = Map::new();
    let filters = [
        ("hostId", &args.host),
        ("feature", &args.feature),
        ("uuid", &args.uuid),
        ("userInfo", &args.user),
        ("status", &args.status),
        ("from", &args.from),
        ("until", &args.until),
    ];
    for (name, value) in filters {
        if let Some(value) = value {
            params.insert(name.to_string(), json!(value));
        }
    }
    params.insert("limit".to_string(), json!(args.limit));
    params
}

/// `licensectl host ...`.
pub async fn host(client: &RpcClient, command: HostCommand, json: bool) -> Result<(), Failure> {
    let (method, params) = match command {
        HostCommand::List { blocked } => {
            let mut params = Map::new();
            if blocked {
                params.insert("blocked".to_string(), json!(true));
            }
            params.insert("limit".to_string(), json!(FULL_PAGE));
            let mut hosts = Vec::new();
            pages(client, "ListHostsV1", params, "hosts", true, |page| {
                hosts.extend(page);
                Ok(())
            })
            .await?;
            if json {
                print_json(&json!({ "hosts": hosts }));
            } else {
                print!("{}", render_hosts(&hosts));
            }
            return Ok(());
        }
        HostCommand::Set { host, name, notes } => {
            ("SetHostV1", set_host_params(&host, &name, &notes))
        }
        HostCommand::Block { host, reason } => {
            let mut params = json!({ "hostId": host });
            if let Some(reason) = reason {
                params["reason"] = json!(reason);
            }
            ("BlockHostV1", params)
        }
        HostCommand::Unblock { host } => ("UnblockHostV1", json!({ "hostId": host })),
    };
    let result = client.call(method, params).await.map_err(refusal)?;
    if json {
        print_json(&result);
        return Ok(());
    }
    print!("{}", render_host(&result["host"]));
    if let Some(held) = result.get("borrows").and_then(Value::as_array) {
        print!("{}", render_held_borrows(held));
    }
    Ok(())
}

/// The parameters of `SetHostV1`: the fields given, `none` as `null`.
pub fn set_host_params(
    host: &str,
    name: &Option<Clearable<String>>,
    notes: &Option<Clearable<String>>,
) -> Value {
    let mut params = json!({ "hostId": host });
    if let Some(name) = name {
        params["name"] = name.to_json();
    }
    if let Some(notes) = notes {
        params["notes"] = notes.to_json();
    }
    params
}

/// `licensectl audit ...`: a table of one page (every page with --all), or with `--json`
/// every entry as one JSON line, page after page as they arrive (an export).
pub async fn audit(client: &RpcClient, args: AuditArgs, json: bool) -> Result<(), Failure> {
    let params = audit_params(&args);
    if json {
        pages(client, "ListAuditV1", params, "entries", true, |page| {
            print!("{}", json_lines(&page));
            Ok(())
        })
        .await?;
        return Ok(());
    }
    let mut entries = Vec::new();
    let more = pages(client, "ListAuditV1", params, "entries", args.all, |page| {
        entries.extend(page);
        Ok(())
    })
    .await?;
    print!("{}", render_audit(&entries));
    if more.is_some() {
        eprintln!("(more entries: --all fetches every page, --json exports them all)");
    }
    Ok(())
}

/// The parameters of `ListAuditV1` for `audit`: the filters given and the page size.
pub fn audit_params(args: &AuditArgs) -> Map<String, Value> {
    let mut params = Map::new();
    let filters = [
        ("since", &args.since),
        ("until", &args.until),
        ("kind", &args.kind),
        ("hostId", &args.host),
        ("feature", &args.feature),
        ("borrowId", &args.borrow),
        ("actor", &args.actor),
    ];
    for (name, value) in filters {
        if let Some(value) = value {
            params.insert(name.to_string(), json!(value));
        }
    }
    params.insert("limit".to_string(), json!(args.limit));
    params
}

/// `licensectl check FILE|-`: exit 0 only for a valid signature on an active or
/// upcoming borrow, 1 otherwise.
pub async fn check(client: &RpcClient, args: CheckArgs, json: bool) -> Result<ExitCode, Failure> {
    let license = read_text(&args.file)?.trim().to_string();
    let result = client
        .call("CheckLicenseV1", json!({ "license": license }))
        .await
        .map_err(refusal)?;
    if json {
        print_json(&result);
    } else {
        print!("{}", render_check(&result));
    }
    Ok(if check_passes(&result) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_REFUSED)
    })
}

/// Whether a `CheckLicenseV1` answer is a license in force: signature valid, borrow
/// active or upcoming.
pub fn check_passes(result: &Value) -> bool {
    result["signature"] == "valid"
        && matches!(result["status"].as_str(), Some("active" | "upcoming"))
}

/// Calls a paged list method: hands each page's `items` array to `each_page`, and follows
/// `nextCursor` while `follow` is set. Returns the cursor of the page after the last one
/// fetched, if there is one.
async fn pages(
    client: &RpcClient,
    method: &str,
    mut params: Map<String, Value>,
    items: &str,
    follow: bool,
    mut each_page: impl FnMut(Vec<Value>) -> Result<(), Failure>,
) -> Result<Option<String>, Failure> {
    let mut cursor: Option<String> = None;
    loop {
        let mut result = client
            .call(method, Value::Object(params.clone()))
            .await
            .map_err(refusal)?;
        let page = match result.get_mut(items).map(Value::take) {
            Some(Value::Array(page)) => page,
            _ => {
                return Err(anyhow::anyhow!(
                    "{method} answered without an array {items:?}: {}",
                    result
                )
                .into())
            }
        };
        each_page(page)?;
        let next = result
            .get("nextCursor")
            .and_then(Value::as_str)
            .map(str::to_string);
        match next {
            Some(next) if follow => {
                if cursor.as_deref() == Some(next.as_str()) {
                    return Err(anyhow::anyhow!(
                        "{method} handed out the cursor {next:?} twice; stopping"
                    )
                    .into());
                }
                params.insert("cursor".to_string(), json!(next));
                cursor = Some(next);
            }
            other => return Ok(other),
        }
    }
}

/// A refusal as [`Failure::Refused`] (exit 1): the error, then the conflicts a code-40
/// answer lists in `data.conflicts`, and a hint when credentials are missing.
fn refusal(error: RpcCallError) -> Failure {
    let object = match error {
        RpcCallError::Rpc(object) => object,
        other => return Failure::from(other),
    };
    let mut text = object.to_string();
    let conflicts = object
        .data
        .as_ref()
        .and_then(|data| data.get("conflicts"))
        .and_then(Value::as_array);
    if let Some(conflicts) = conflicts.filter(|list| !list.is_empty()) {
        text.push_str("\nconflicts:\n");
        text.push_str(&render_conflicts(conflicts));
        text.push_str("(--force makes the change anyway; the borrows stay valid)");
    }
    if matches!(object.code, CODE_UNAUTHORIZED | CODE_FORBIDDEN) {
        text.push_str(
            "\nhint: give --admin-token (or LICENSED_ADMIN_TOKEN), or an admin key as --api-key",
        );
    }
    Failure::Refused(text.trim_end().to_string())
}

/// Reads a JSON file (`-` for standard input).
fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text = read_text(path)?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

/// A member of a JSON object as table text: strings as they are, other values as JSON,
/// `-` when absent or null.
fn cell(value: &Value, name: &str) -> String {
    cell_or(value, name, "-")
}

/// Like [`cell`], with `absent` for a missing or null member.
fn cell_or(value: &Value, name: &str, absent: &str) -> String {
    match value.get(name) {
        None | Some(Value::Null) => absent.to_string(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

/// `feature/uuid` of a license, borrow or conflict.
fn license_name(value: &Value) -> String {
    format!("{}/{}", cell(value, "feature"), cell(value, "uuid"))
}

/// One compact JSON object per line: the `audit --json` export format.
pub fn json_lines(entries: &[Value]) -> String {
    entries.iter().map(|entry| format!("{entry}\n")).collect()
}

/// The borrow table rows, header first.
fn borrow_rows(borrows: &[Value]) -> Vec<Vec<String>> {
    let header = [
        "BORROW ID",
        "FEATURE/UUID",
        "HOST",
        "FROM",
        "UNTIL",
        "STATUS",
        "USER INFO",
    ];
    let mut rows = vec![header.map(str::to_string).to_vec()];
    for borrow in borrows {
        rows.push(vec![
            cell(borrow, "borrowId"),
            license_name(borrow),
            cell(borrow, "hostId"),
            cell(borrow, "validFrom"),
            cell(borrow, "validUntil"),
            cell(borrow, "status"),
            cell(borrow, "userInfo"),
        ]);
    }
    rows
}

/// Borrows as a table, one line each.
pub fn render_borrows(borrows: &[Value]) -> String {
    if borrows.is_empty() {
        return "no borrows\n".to_string();
    }
    align(&borrow_rows(borrows), "")
}

/// The borrows a newly blocked host holds, with the commands that return them.
fn render_held_borrows(borrows: &[Value]) -> String {
    if borrows.is_empty() {
        return "no current or upcoming borrows\n".to_string();
    }
    let mut out = format!("current and upcoming borrows ({}):\n", borrows.len());
    out.push_str(&align(&borrow_rows(borrows), "  "));
    out.push_str("to end them now:\n");
    for borrow in borrows {
        out.push_str(&format!(
            "  licensectl return {} --admin-token …\n",
            cell(borrow, "borrowId")
        ));
    }
    out
}

/// Hosts as a table, one line each.
pub fn render_hosts(hosts: &[Value]) -> String {
    if hosts.is_empty() {
        return "no hosts\n".to_string();
    }
    let header = [
        "HOST ID",
        "NAME",
        "BORROWS",
        "FIRST BORROW",
        "LAST BORROW",
        "BLOCKED",
        "NOTES",
    ];
    let mut rows = vec![header.map(str::to_string).to_vec()];
    for host in hosts {
        rows.push(vec![
            cell(host, "hostId"),
            cell(host, "name"),
            cell(host, "borrows"),
            cell(host, "firstBorrow"),
            cell(host, "lastBorrow"),
            blocked_text(host),
            cell(host, "notes"),
        ]);
    }
    align(&rows, "")
}

/// `-`, or since when and why a host is blocked.
fn blocked_text(host: &Value) -> String {
    match host.get("blocked") {
        None | Some(Value::Null) => "-".to_string(),
        Some(blocked) => match blocked.get("reason").and_then(Value::as_str) {
            Some(reason) => format!("{} ({reason})", cell(blocked, "at")),
            None => cell(blocked, "at"),
        },
    }
}

/// One host as `name  value` lines.
pub fn render_host(host: &Value) -> String {
    let fields = [
        ("hostId", cell(host, "hostId")),
        ("name", cell(host, "name")),
        ("notes", cell(host, "notes")),
        ("borrows", cell_or(host, "borrows", "0")),
        ("firstBorrow", cell(host, "firstBorrow")),
        ("lastBorrow", cell(host, "lastBorrow")),
        ("blocked", blocked_text(host)),
    ];
    let rows: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
    pairs(&rows)
}

/// Audit entries as a table, one line each.
pub fn render_audit(entries: &[Value]) -> String {
    if entries.is_empty() {
        return "no audit entries\n".to_string();
    }
    let header = ["SEQ", "AT", "NODE", "ACTOR", "KIND", "DETAIL"];
    let mut rows = vec![header.map(str::to_string).to_vec()];
    for entry in entries {
        rows.push(vec![
            cell(entry, "seq"),
            cell(entry, "at"),
            cell(entry, "node"),
            cell(entry, "actor"),
            cell(entry, "kind"),
            cell(entry, "detail"),
        ]);
    }
    align(&rows, "")
}

/// The fields of a license ("AdminLicense") as `name  value` lines, indented.
fn license_lines(license: &Value, indent: &str) -> String {
    let fields = [
        ("feature", cell(license, "feature")),
        ("uuid", cell(license, "uuid")),
        ("version", cell(license, "version")),
        ("edition", cell(license, "edition")),
        ("modules", cell(license, "modules")),
        ("count", cell(license, "count")),
        ("validFrom", cell(license, "validFrom")),
        ("validUntil", cell_or(license, "validUntil", "never")),
        (
            "maxBorrowDuration",
            cell_or(license, "maxBorrowDuration", "the pool's"),
        ),
        ("maxBorrowed", cell_or(license, "maxBorrowed", "the count")),
        ("maxPerHost", cell_or(license, "maxPerHost", "no limit")),
    ];
    let rows: Vec<[&str; 2]> = fields.iter().map(|(n, v)| [*n, v.as_str()]).collect();
    align(&rows, indent)
}

/// The answer of AddLicenseV1, UpdateLicenseV1 or RemoveLicenseV1: the license, then
/// the borrows a forced change left overbooked.
pub fn render_license_change(result: &Value, heading: &str) -> String {
    let mut out = format!("{heading} {}\n", license_name(&result["license"]));
    out.push_str(&license_lines(&result["license"], "  "));
    if let Some(over) = result.get("overBooked").and_then(Value::as_array) {
        if !over.is_empty() {
            out.push_str(&format!(
                "overbooked: {} borrow(s) outside the license stay valid until their end\n",
                over.len()
            ));
            out.push_str(&align(&borrow_rows(over), "  "));
        }
    }
    out
}

/// Conflicts (PlanPoolV1's `conflicts`, a code-40 refusal's `data.conflicts`): the
/// license and reason, then the borrow ids on an indented line.
pub fn render_conflicts(conflicts: &[Value]) -> String {
    let mut out = String::new();
    for conflict in conflicts {
        out.push_str(&format!(
            "  {}: {}\n",
            license_name(conflict),
            cell(conflict, "reason")
        ));
        let ids: Vec<String> = conflict
            .get("borrows")
            .and_then(Value::as_array)
            .map(|ids| ids.iter().map(cell_value).collect())
            .unwrap_or_default();
        if !ids.is_empty() {
            out.push_str(&format!("    borrows: {}\n", ids.join(", ")));
        }
    }
    out
}

/// A JSON value as text: a string without quotes, anything else as JSON.
fn cell_value(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A pool plan (PlanPoolV1, ApplyPoolV1) as a summary for people.
pub fn render_plan(plan: &Value) -> String {
    let list = |name: &str| -> Vec<Value> {
        plan.get(name)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (added, changed, removed) = (list("added"), list("changed"), list("removed"));
    let (settings, conflicts) = (list("settings"), list("conflicts"));
    let applied = plan["applied"] == true;
    let mut out = String::new();
    out.push_str(if applied {
        "applied:\n"
    } else {
        "plan (nothing changed yet):\n"
    });
    out.push_str(&format!("added ({}):\n", added.len()));
    for license in &added {
        out.push_str(&format!("  + {}\n", license_summary(license)));
    }
    out.push_str(&format!("changed ({}):\n", changed.len()));
    for change in &changed {
        out.push_str(&format!("  ~ {}\n", license_name(change)));
        let fields = change
            .get("fields")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for field in fields.iter().map(cell_value) {
            out.push_str(&format!(
                "      {field}: {} -> {}\n",
                cell_or(&change["before"], &field, "unset"),
                cell_or(&change["after"], &field, "unset"),
            ));
        }
    }
    out.push_str(&format!("removed ({}):\n", removed.len()));
    for license in &removed {
        out.push_str(&format!("  - {}\n", license_summary(license)));
    }
    out.push_str(&format!("unchanged: {}\n", cell_or(plan, "unchanged", "0")));
    if !settings.is_empty() {
        out.push_str(&format!("settings ({}):\n", settings.len()));
        for setting in &settings {
            out.push_str(&format!(
                "  {}: {} -> {}\n",
                cell(setting, "field"),
                cell_or(setting, "before", "unset"),
                cell_or(setting, "after", "unset"),
            ));
        }
    }
    if conflicts.is_empty() {
        out.push_str("conflicts: none\n");
    } else {
        out.push_str(&format!("conflicts ({}):\n", conflicts.len()));
        out.push_str(&render_conflicts(&conflicts));
        if !applied {
            out.push_str("(apply refuses these unless --force; forced, the borrows stay valid)\n");
        }
    }
    out
}

/// `feature/uuid version edition, count N, until D` for the plan's added and removed lists.
fn license_summary(license: &Value) -> String {
    format!(
        "{} {} {}, count {}, until {}",
        license_name(license),
        cell(license, "version"),
        cell(license, "edition"),
        cell(license, "count"),
        cell_or(license, "validUntil", "never"),
    )
}

/// A `CheckLicenseV1` answer: the verdict, then the borrow the license belongs to.
pub fn render_check(result: &Value) -> String {
    let mut fields = vec![
        ("signature", cell(result, "signature")),
        ("status", cell(result, "status")),
        ("reason", cell(result, "reason")),
    ];
    if let Some(borrow) = result.get("borrow").filter(|b| b.is_object()) {
        for name in [
            "borrowId",
            "feature",
            "uuid",
            "hostId",
            "validFrom",
            "validUntil",
            "userInfo",
            "issuedAt",
            "returnedAt",
        ] {
            if borrow.get(name).is_some_and(|v| !v.is_null()) {
                fields.push((name, cell(borrow, name)));
            }
        }
    }
    let rows: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
    pairs(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Command {
        let mut argv = vec!["licensectl"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv) {
            Ok(cli) => cli.command,
            Err(error) => panic!("{args:?} does not parse: {error}"),
        }
    }

    fn refused(args: &[&str]) -> clap::error::ErrorKind {
        let mut argv = vec!["licensectl"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv) {
            Ok(cli) => panic!("{args:?} parsed: {:?}", cli.command),
            Err(error) => error.kind(),
        }
    }

    #[test]
    fn pool_plan_and_apply_parse_with_the_token_before_or_after() {
        let Command::Pool(args) = parse(&["pool", "plan", "pool.json"]) else {
            panic!("not pool");
        };
        assert!(
            matches!(args.command, PoolCommand::Plan { file } if file == Path::new("pool.json"))
        );
        let Command::Pool(args) =
            parse(&["pool", "apply", "p.json", "--force", "--admin-token", "-t"])
        else {
            panic!("not pool");
        };
        assert_eq!(args.admin_token.as_deref(), Some("-t"));
        assert!(matches!(
            args.command,
            PoolCommand::Apply { force: true, .. }
        ));
        let Command::Pool(args) = parse(&["pool", "--admin-token", "x", "apply", "p.json"]) else {
            panic!("not pool");
        };
        assert_eq!(args.admin_token.as_deref(), Some("x"));
        assert!(matches!(
            args.command,
            PoolCommand::Apply { force: false, .. }
        ));
        refused(&["pool", "apply"]);
        refused(&["pool", "plan", "p.json", "--force"]);
    }

    #[test]
    fn license_add_takes_a_file_or_an_inline_spec() {
        let Command::License(args) = parse(&["license", "add", "lic.json"]) else {
            panic!("not license");
        };
        assert!(matches!(
            args.command,
            LicenseCommand::Add(LicenseAddArgs {
                file: Some(_),
                json_spec: None
            })
        ));
        let Command::License(args) =
            parse(&["license", "add", "--json-spec", "{\"feature\":\"F\"}"])
        else {
            panic!("not license");
        };
        let LicenseCommand::Add(add) = args.command else {
            panic!("not add");
        };
        assert_eq!(add.json_spec.as_deref(), Some("{\"feature\":\"F\"}"));
        refused(&["license", "add"]);
        refused(&["license", "add", "f.json", "--json-spec", "{}"]);
    }

    #[test]
    fn license_set_maps_none_to_null_and_sends_only_given_fields() {
        let Command::License(args) = parse(&[
            "license",
            "set",
            "MVTec_HALCON",
            "abc",
            "--count",
            "7",
            "--valid-until",
            "none",
            "--valid-from",
            "2026-01-01",
            "--max-borrow-duration",
            "NONE",
            "--max-borrowed",
            "3",
            "--max-per-host",
            "none",
            "--force",
            "--admin-token",
            "-secret",
        ]) else {
            panic!("not license");
        };
        assert_eq!(args.admin_token.as_deref(), Some("-secret"));
        let LicenseCommand::Set(set) = args.command else {
            panic!("not set");
        };
        assert_eq!(set.max_per_host, Some(Clearable::Clear));
        assert_eq!(set.max_borrowed, Some(Clearable::Set(3)));
        assert_eq!(
            update_params(&set),
            json!({
                "feature": "MVTec_HALCON",
                "uuid": "abc",
                "set": {
                    "count": 7,
                    "validUntil": null,
                    "validFrom": "2026-01-01",
                    "maxBorrowDuration": null,
                    "maxBorrowed": 3,
                    "maxPerHost": null,
                },
                "force": true,
            })
        );
        let Command::License(args) = parse(&["license", "set", "F", "U", "--edition", "Steady"])
        else {
            panic!("not license");
        };
        let LicenseCommand::Set(set) = args.command else {
            panic!("not set");
        };
        assert_eq!(
            update_params(&set),
            json!({"feature": "F", "uuid": "U", "set": {"edition": "Steady"}, "force": false})
        );
    }

    #[test]
    fn license_set_needs_a_field_and_valid_numbers() {
        use clap::error::ErrorKind;
        assert_eq!(
            refused(&["license", "set", "F", "U"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            refused(&["license", "set", "F", "U", "--force"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            refused(&["license", "set", "F", "U", "--max-borrowed", "many"]),
            ErrorKind::ValueValidation
        );
        // `none` clears optional fields only; the count must be a number.
        assert_eq!(
            refused(&["license", "set", "F", "U", "--count", "none"]),
            ErrorKind::ValueValidation
        );
    }

    #[test]
    fn license_rm_parses() {
        let Command::License(args) = parse(&["license", "rm", "F", "U", "--force"]) else {
            panic!("not license");
        };
        assert!(matches!(
            args.command,
            LicenseCommand::Rm { feature, uuid, force: true } if feature == "F" && uuid == "U"
        ));
        refused(&["license", "rm", "F"]);
    }

    #[test]
    fn clearable_values() {
        assert_eq!(clearable::<u32>("none"), Ok(Clearable::Clear));
        assert_eq!(clearable::<u32>("None"), Ok(Clearable::Clear));
        assert_eq!(clearable::<u32>("4"), Ok(Clearable::Set(4)));
        assert!(clearable::<u32>("-1").is_err());
        assert_eq!(
            clearable::<String>("30d"),
            Ok(Clearable::Set("30d".to_string()))
        );
        assert_eq!(Clearable::<u32>::Clear.to_json(), Value::Null);
        assert_eq!(Clearable::Set(2u32).to_json(), json!(2));
        assert_eq!(Clearable::Set("x".to_string()).to_json(), json!("x"));
    }

    #[test]
    fn borrows_filters_become_parameters() {
        let Command::Borrows(args) = parse(&[
            "borrows",
            "--host",
            "MAC:2C549188C9E3",
            "--feature",
            "F",
            "--uuid",
            "U",
            "--user",
            "jane",
            "--status",
            "active",
            "--from",
            "2026-01-01",
            "--until",
            "2026-02-01",
            "--limit",
            "10",
            "--all",
        ]) else {
            panic!("not borrows");
        };
        assert!(args.all);
        assert_eq!(
            Value::Object(borrows_params(&args)),
            json!({
                "hostId": "MAC:2C549188C9E3", "feature": "F", "uuid": "U", "userInfo": "jane",
                "status": "active", "from": "2026-01-01", "until": "2026-02-01", "limit": 10,
            })
        );
        let Command::Borrows(args) = parse(&["borrows"]) else {
            panic!("not borrows");
        };
        assert!(!args.all);
        assert_eq!(Value::Object(borrows_params(&args)), json!({"limit": 100}));
        refused(&["borrows", "--status", "lost"]);
        refused(&["borrows", "--limit", "0"]);
        refused(&["borrows", "--limit", "1001"]);
    }

    #[test]
    fn host_subcommands_parse() {
        let Command::Host(args) = parse(&["host", "list", "--blocked"]) else {
            panic!("not host");
        };
        assert!(matches!(args.command, HostCommand::List { blocked: true }));
        let Command::Host(args) = parse(&["host", "list"]) else {
            panic!("not host");
        };
        assert!(matches!(args.command, HostCommand::List { blocked: false }));

        let Command::Host(args) = parse(&[
            "host",
            "set",
            "MAC:2C549188C9E3",
            "--name",
            "lab-7",
            "--notes",
            "none",
        ]) else {
            panic!("not host");
        };
        let HostCommand::Set { host, name, notes } = args.command else {
            panic!("not set");
        };
        assert_eq!(
            set_host_params(&host, &name, &notes),
            json!({"hostId": "MAC:2C549188C9E3", "name": "lab-7", "notes": null})
        );
        assert_eq!(
            set_host_params("CM:3-1", &None, &None),
            json!({"hostId": "CM:3-1"})
        );

        let Command::Host(args) = parse(&[
            "host",
            "block",
            "MAC:2C549188C9E3",
            "--reason",
            "stolen",
            "--admin-token",
            "-a",
        ]) else {
            panic!("not host");
        };
        assert_eq!(args.admin_token.as_deref(), Some("-a"));
        assert!(
            matches!(args.command, HostCommand::Block { reason: Some(r), .. } if r == "stolen")
        );
        let Command::Host(args) = parse(&["host", "--admin-token", "t", "unblock", "MAC:1"]) else {
            panic!("not host");
        };
        assert_eq!(args.admin_token.as_deref(), Some("t"));
        assert!(matches!(args.command, HostCommand::Unblock { host } if host == "MAC:1"));
        refused(&["host", "block"]);
    }

    #[test]
    fn audit_filters_become_parameters() {
        let cli = Cli::try_parse_from([
            "licensectl",
            "audit",
            "--since",
            "2026-01-01",
            "--until",
            "2026-02-01T00:00:00Z",
            "--kind",
            "host-block",
            "--host",
            "MAC:1",
            "--feature",
            "F",
            "--borrow",
            "b-1",
            "--actor",
            "admin",
            "--limit",
            "5",
            "--json",
        ])
        .unwrap();
        assert!(cli.json);
        let Command::Audit(args) = cli.command else {
            panic!("not audit");
        };
        assert_eq!(
            Value::Object(audit_params(&args)),
            json!({
                "since": "2026-01-01", "until": "2026-02-01T00:00:00Z", "kind": "host-block",
                "hostId": "MAC:1", "feature": "F", "borrowId": "b-1", "actor": "admin",
                "limit": 5,
            })
        );
        let Command::Audit(args) = parse(&["audit", "--all"]) else {
            panic!("not audit");
        };
        assert!(args.all);
        assert_eq!(Value::Object(audit_params(&args)), json!({"limit": 100}));
    }

    #[test]
    fn check_takes_a_file_or_stdin() {
        let Command::Check(args) = parse(&["check", "-"]) else {
            panic!("not check");
        };
        assert_eq!(args.file, Path::new("-"));
        refused(&["check"]);
    }

    #[test]
    fn check_passes_only_valid_active_or_upcoming() {
        let answer = |signature: &str, status: &str| json!({"signature": signature, "status": status, "reason": "x"});
        assert!(check_passes(&answer("valid", "active")));
        assert!(check_passes(&answer("valid", "upcoming")));
        assert!(!check_passes(&answer("valid", "returned")));
        assert!(!check_passes(&answer("valid", "expired")));
        assert!(!check_passes(&answer("valid", "unknown")));
        assert!(!check_passes(&answer("invalid", "active")));
        assert!(!check_passes(&json!({})));
    }

    fn sample_borrow(id: &str, user: Option<&str>) -> Value {
        let mut borrow = json!({
            "borrowId": id, "feature": "MVTec_HALCON", "uuid": "abc",
            "hostId": "MAC:2C549188C9E3", "validFrom": "2026-12-01T08:00:00Z",
            "validUntil": "2026-12-05T00:00:00Z", "issuedAt": "2026-11-30T10:00:00Z",
            "status": "active",
        });
        if let Some(user) = user {
            borrow["userInfo"] = json!(user);
        }
        borrow
    }

    #[test]
    fn borrows_render_as_a_table() {
        let table = render_borrows(&[
            sample_borrow("b-1", Some("Jane Doe")),
            sample_borrow("b-22", None),
        ]);
        let expected = "\
BORROW ID  FEATURE/UUID      HOST              FROM                  UNTIL                 STATUS  USER INFO
b-1        MVTec_HALCON/abc  MAC:2C549188C9E3  2026-12-01T08:00:00Z  2026-12-05T00:00:00Z  active  Jane Doe
b-22       MVTec_HALCON/abc  MAC:2C549188C9E3  2026-12-01T08:00:00Z  2026-12-05T00:00:00Z  active  -
";
        assert_eq!(table, expected);
        assert_eq!(render_borrows(&[]), "no borrows\n");
    }

    #[test]
    fn hosts_render_as_a_table_and_as_pairs() {
        let hosts = [
            json!({"hostId": "MAC:2C549188C9E3", "firstBorrow": "2026-01-01T00:00:00Z",
                   "lastBorrow": "2026-02-01T00:00:00Z", "borrows": 12, "name": "lab-7"}),
            json!({"hostId": "CM:3-1", "firstBorrow": "2026-01-02T00:00:00Z",
                   "lastBorrow": "2026-01-03T00:00:00Z", "borrows": 1, "notes": "laptop",
                   "blocked": {"at": "2026-02-02T00:00:00Z", "reason": "stolen"}}),
        ];
        let expected = "\
HOST ID           NAME   BORROWS  FIRST BORROW          LAST BORROW           BLOCKED                        NOTES
MAC:2C549188C9E3  lab-7  12       2026-01-01T00:00:00Z  2026-02-01T00:00:00Z  -                              -
CM:3-1            -      1        2026-01-02T00:00:00Z  2026-01-03T00:00:00Z  2026-02-02T00:00:00Z (stolen)  laptop
";
        assert_eq!(render_hosts(&hosts), expected);
        assert_eq!(render_hosts(&[]), "no hosts\n");
        let expected = "\
hostId       CM:3-1
name         -
notes        laptop
borrows      1
firstBorrow  2026-01-02T00:00:00Z
lastBorrow   2026-01-03T00:00:00Z
blocked      2026-02-02T00:00:00Z (stolen)
";
        assert_eq!(render_host(&hosts[1]), expected);
    }

    #[test]
    fn a_blocked_host_lists_its_borrows_and_how_to_return_them() {
        let text = render_held_borrows(&[sample_borrow("b-1", None)]);
        assert!(text.starts_with("current and upcoming borrows (1):\n  BORROW ID"));
        assert!(text.ends_with("to end them now:\n  licensectl return b-1 --admin-token …\n"));
        assert_eq!(render_held_borrows(&[]), "no current or upcoming borrows\n");
    }

    #[test]
    fn audit_renders_as_a_table_and_as_json_lines() {
        let entries = [
            json!({"seq": 17, "at": "2026-12-02T10:00:00Z", "node": 2, "actor": "admin",
                   "kind": "host-block", "hostId": "MAC:1", "detail": "blocked MAC:1: stolen"}),
            json!({"seq": 18, "at": "2026-12-02T10:00:01Z", "actor": "system",
                   "kind": "membership", "detail": "node 3 added"}),
        ];
        let expected = "\
SEQ  AT                    NODE  ACTOR   KIND        DETAIL
17   2026-12-02T10:00:00Z  2     admin   host-block  blocked MAC:1: stolen
18   2026-12-02T10:00:01Z  -     system  membership  node 3 added
";
        assert_eq!(render_audit(&entries), expected);
        assert_eq!(render_audit(&[]), "no audit entries\n");
        let lines = json_lines(&entries);
        assert_eq!(lines.lines().count(), 2);
        for (line, entry) in lines.lines().zip(&entries) {
            assert_eq!(&serde_json::from_str::<Value>(line).unwrap(), entry);
        }
    }

    #[test]
    fn plan_renders_as_a_summary() {
        let license = |uuid: &str, count: u32| {
            json!({"feature": "MVTec_HALCON", "uuid": uuid, "version": "26.05",
                   "edition": "Steady", "modules": "fcbdo", "count": count,
                   "validUntil": "2028-12-31T23:59:59Z"})
        };
        let plan = json!({
            "added": [license("new", 5)],
            "changed": [{"feature": "MVTec_HALCON", "uuid": "abc",
                         "before": license("abc", 3),
                         "after": {"feature": "MVTec_HALCON", "uuid": "abc", "count": 2,
                                   "maxPerHost": 1},
                         "fields": ["count", "validUntil", "maxPerHost"]}],
            "removed": [license("old", 1)],
            "unchanged": 3,
            "settings": [{"field": "maxBorrowDuration", "before": "2592000s", "after": "604800s"}],
            "conflicts": [{"feature": "MVTec_HALCON", "uuid": "abc",
                           "reason": "count 2 is below the 3 seats borrowed at 2026-12-05T00:00:00Z",
                           "borrows": ["b-1", "b-2"]}],
            "applied": false,
        });
        let expected = "\
plan (nothing changed yet):
added (1):
  + MVTec_HALCON/new 26.05 Steady, count 5, until 2028-12-31T23:59:59Z
changed (1):
  ~ MVTec_HALCON/abc
      count: 3 -> 2
      validUntil: 2028-12-31T23:59:59Z -> unset
      maxPerHost: unset -> 1
removed (1):
  - MVTec_HALCON/old 26.05 Steady, count 1, until 2028-12-31T23:59:59Z
unchanged: 3
settings (1):
  maxBorrowDuration: 2592000s -> 604800s
conflicts (1):
  MVTec_HALCON/abc: count 2 is below the 3 seats borrowed at 2026-12-05T00:00:00Z
    borrows: b-1, b-2
(apply refuses these unless --force; forced, the borrows stay valid)
";
        assert_eq!(render_plan(&plan), expected);
        let applied = json!({"added": [], "changed": [], "removed": [], "unchanged": 4,
                             "settings": [], "conflicts": [], "applied": true});
        assert_eq!(
            render_plan(&applied),
            "applied:\nadded (0):\nchanged (0):\nremoved (0):\nunchanged: 4\nconflicts: none\n"
        );
    }

    #[test]
    fn a_conflict_refusal_lists_the_conflicts() {
        let error = RpcCallError::Rpc(licensed::client::RpcErrorObject {
            code: 40,
            message: "Conflict".into(),
            reason: Some("held borrows".into()),
            data: Some(json!({"reason": "held borrows", "conflicts": [
                {"feature": "F", "uuid": "U", "reason": "count 0 is below 1 seat", "borrows": ["b-1"]}
            ]})),
        });
        let Failure::Refused(text) = refusal(error) else {
            panic!("not a refusal");
        };
        assert_eq!(
            text,
            "error 40: Conflict (held borrows)\nconflicts:\n  F/U: count 0 is below 1 seat\n    \
             borrows: b-1\n(--force makes the change anyway; the borrows stay valid)"
        );
        let error = RpcCallError::Rpc(licensed::client::RpcErrorObject {
            code: 38,
            message: "Unauthorized".into(),
            reason: None,
            data: None,
        });
        let Failure::Refused(text) = refusal(error) else {
            panic!("not a refusal");
        };
        assert!(text.starts_with("error 38: Unauthorized\nhint: give --admin-token"));
    }

    #[test]
    fn license_changes_render_with_overbooked_borrows() {
        let result = json!({
            "license": {"feature": "F", "uuid": "U", "version": "26.05", "edition": "Steady",
                        "modules": "fcbdo", "count": 1, "maxBorrowDuration": "2592000s"},
            "overBooked": [sample_borrow("b-1", None)],
        });
        let text = render_license_change(&result, "updated");
        let expected_head = "\
updated F/U
  feature            F
  uuid               U
  version            26.05
  edition            Steady
  modules            fcbdo
  count              1
  validFrom          -
  validUntil         never
  maxBorrowDuration  2592000s
  maxBorrowed        the count
  maxPerHost         no limit
overbooked: 1 borrow(s) outside the license stay valid until their end
  BORROW ID";
        assert!(text.starts_with(expected_head), "{text}");
        assert!(text.contains("\n  b-1 "));
        let added = render_license_change(&json!({"license": result["license"]}), "added");
        assert!(!added.contains("overbooked"));
    }

    #[test]
    fn check_renders_the_verdict_and_the_borrow() {
        let result = json!({"signature": "valid", "status": "active", "reason": "in force",
                            "borrow": sample_borrow("b-1", None)});
        let text = render_check(&result);
        assert!(
            text.starts_with(
                "signature   valid\nstatus      active\nreason      in force\nborrowId    b-1\n"
            ),
            "{text}"
        );
        assert!(!text.contains("userInfo"));
        let bad = json!({"signature": "invalid", "status": "unknown", "reason": "bad signature"});
        assert_eq!(
            render_check(&bad),
            "signature  invalid\nstatus     unknown\nreason     bad signature\n"
        );
    }
}
