//! `licensed` as a load target: the Borrow API's operations over JSON-RPC.
//!
//! - `borrow`: `BorrowLicenseV1` for a random host id and interval (see [`licenses`] for
//!   which license and interval, and for contended borrows).
//! - `return`: `ReturnLicenseV1` of a borrow this client made; a client holding none
//!   borrows first (that borrow is counted as a `borrow`).
//! - `get`: `GetBorrowedLicenseV1` of a borrow this client made; a client knowing none
//!   borrows first, likewise.
//! - `list`: `ListLicensesV1`. Its answer carries every current and upcoming borrow, so
//!   its cost grows with the ledger, i.e. with every borrow earlier runs left behind.
//!
//! [`licenses`]: super::licenses

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};

use super::licenses::{random_host_id, LicensePlan, LicenseRef, TargetLicense};
use super::mix::Mix;
use super::outcome::{ErrorCode, Failure};
use super::target::{timed, url_for_worker, worker_http_client, Step, Target, TargetError, Worker};
use licensed::borrow::time::format_instant;
use licensed::client::{normalize_server_url, BorrowParams, BorrowedLicense, RpcClient};

/// Borrow ids a client remembers for `get` and `return`; older ones are forgotten (their
/// borrows stay in the ledger).
const HELD_LIMIT: usize = 1024;
/// Least time the license listing at setup may take: it carries the whole ledger, which
/// after many runs is far slower than a request of the load itself.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// The `userInfo` of every borrow the load makes, so they can be told apart in a ledger.
const USER_INFO: &str = "licensectl bench";

/// An operation on `licensed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LicensedOp {
    /// `BorrowLicenseV1`.
    Borrow,
    /// `ReturnLicenseV1`.
    Return,
    /// `GetBorrowedLicenseV1`.
    Get,
    /// `ListLicensesV1`.
    List,
}

impl LicensedOp {
    /// The name in mixes and reports.
    pub fn name(self) -> &'static str {
        match self {
            LicensedOp::Borrow => "borrow",
            LicensedOp::Return => "return",
            LicensedOp::Get => "get",
            LicensedOp::List => "list",
        }
    }
}

impl fmt::Display for LicensedOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LicensedOp {
    type Err = String;

    fn from_str(text: &str) -> Result<LicensedOp, String> {
        match text {
            "borrow" => Ok(LicensedOp::Borrow),
            "return" => Ok(LicensedOp::Return),
            "get" => Ok(LicensedOp::Get),
            "list" => Ok(LicensedOp::List),
            _ => Err("licensed operations are borrow, return, get and list".into()),
        }
    }
}

/// What the load does on `licensed`.
#[derive(Debug, Clone, PartialEq)]
pub struct LicensedWorkload {
    /// The operations and their weights.
    pub mix: Mix<LicensedOp>,
    /// Fraction (0 to 1) of borrows aimed at the contended interval to provoke error 32.
    pub conflict_rate: f64,
    /// Licenses to borrow; empty means every license the server lists.
    pub licenses: Vec<LicenseRef>,
}

/// Why the `licensed` target could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LicensedSetupError {
    /// No node URL given.
    #[error("no node URL given")]
    NoUrl,
    /// A node URL is not usable.
    #[error(transparent)]
    BadUrl(licensed::client::RpcCallError),
    /// The conflict rate is not a fraction.
    #[error("the conflict rate must be between 0 and 1, not {0}")]
    ConflictRate(f64),
    /// No node answered `ListLicensesV1`.
    #[error("cannot list the licenses on any node: {0}")]
    List(licensed::client::RpcCallError),
    /// The licenses do not allow the load.
    #[error(transparent)]
    Plan(#[from] super::licenses::PlanError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Target(#[from] TargetError),
}

/// `licensed` nodes under load.
#[derive(Debug)]
pub struct LicensedTarget {
    urls: Vec<String>,
    workload: Arc<LicensedWorkload>,
    plan: Arc<LicensePlan>,
    timeout: Duration,
    /// With [`LicensedTarget::shared_http2`]: one HTTP/2 client per node, shared by the
    /// workers on that node; otherwise every worker has its own HTTP/1.1 connection.
    shared: Option<Vec<reqwest::Client>>,
}

impl LicensedTarget {
    /// Normalises the node URLs, lists the licenses (first node that answers) and chooses
    /// the ones to borrow. `timeout` bounds every request of the run (the listing here
    /// may take up to 30 s).
    pub async fn connect(
        urls: &[String],
        workload: LicensedWorkload,
        timeout: Duration,
    ) -> Result<LicensedTarget, LicensedSetupError> {
        if urls.is_empty() {
            return Err(LicensedSetupError::NoUrl);
        }
        if !(0.0..=1.0).contains(&workload.conflict_rate) {
            return Err(LicensedSetupError::ConflictRate(workload.conflict_rate));
        }
        let urls = urls
            .iter()
            .map(|url| normalize_server_url(url))
            .collect::<Result<Vec<_>, _>>()
            .map_err(LicensedSetupError::BadUrl)?;
        let mut last_error = None;
        let mut listed = None;
        for url in &urls {
            let http = worker_http_client(timeout.max(SETUP_TIMEOUT))?;
            let client =
                RpcClient::with_http_client(url, http).map_err(LicensedSetupError::BadUrl)?;
            match client.list_licenses().await {
                Ok(licenses) => {
                    listed = Some(licenses);
                    break;
                }
                Err(error) => last_error = Some(error),
            }
        }
        let listed = match (listed, last_error) {
            (Some(listed), _) => listed,
            (None, Some(error)) => return Err(LicensedSetupError::List(error)),
            (None, None) => return Err(LicensedSetupError::NoUrl),
        };
        let plan = LicensePlan::choose(&listed, &workload.licenses)?;
        Ok(LicensedTarget {
            urls,
            workload: Arc::new(workload),
            plan: Arc::new(plan),
            timeout,
            shared: None,
        })
    }

    /// The same target with the workers on each node multiplexing their requests over
    /// one HTTP/2 connection (cleartext with prior knowledge, or TLS), the way a gRPC
    /// client shares its channel, instead of one HTTP/1.1 connection each (what MVTec's
    /// client and most license clients open).
    pub fn shared_http2(mut self) -> Result<LicensedTarget, TargetError> {
        let clients = self
            .urls
            .iter()
            .map(|_| {
                reqwest::Client::builder()
                    .http2_prior_knowledge()
                    .tcp_nodelay(true)
                    .connect_timeout(self.timeout)
                    .timeout(self.timeout)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.shared = Some(clients);
        Ok(self)
    }

    /// The licenses chosen for the run.
    pub fn plan(&self) -> &LicensePlan {
        &self.plan
    }
}

impl Target for LicensedTarget {
    type Worker = LicensedWorker;

    fn name(&self) -> &'static str {
        "licensed"
    }

    fn workload(&self) -> String {
        let mut text = self.workload.mix.to_string();
        if self.workload.conflict_rate > 0.0 && self.workload.mix.contains(LicensedOp::Borrow) {
            text.push_str(&format!(" (conflict rate {})", self.workload.conflict_rate));
        }
        text
    }

    fn urls(&self) -> &[String] {
        &self.urls
    }

    fn notes(&self) -> Vec<String> {
        let mix = &self.workload.mix;
        let borrows = [LicensedOp::Borrow, LicensedOp::Get, LicensedOp::Return]
            .into_iter()
            .any(|op| mix.contains(op));
        let mut notes = if borrows {
            self.plan.describe(self.workload.conflict_rate)
        } else {
            Vec::new()
        };
        if mix.contains(LicensedOp::List) {
            notes.push("list answers carry the whole ledger: their cost grows with every borrow made so far".into());
        }
        if self.shared.is_some() {
            notes.push("one HTTP/2 connection per node, shared by its workers".into());
        }
        notes
    }

    fn worker(&self, index: usize) -> Result<LicensedWorker, TargetError> {
        let url = url_for_worker(&self.urls, index)?;
        let http = match &self.shared {
            Some(clients) => clients[index % clients.len()].clone(),
            None => worker_http_client(self.timeout)?,
        };
        let client = RpcClient::with_http_client(url, http)
            .map_err(|error| TargetError::BadUrl(error.to_string()))?;
        Ok(LicensedWorker {
            client,
            workload: self.workload.clone(),
            plan: self.plan.clone(),
            held: Vec::new(),
        })
    }
}

/// One client of `licensed`.
#[derive(Debug)]
pub struct LicensedWorker {
    client: RpcClient,
    workload: Arc<LicensedWorkload>,
    plan: Arc<LicensePlan>,
    /// Borrows this client made and has not returned.
    held: Vec<HeldBorrow>,
}

impl Worker for LicensedWorker {
    async fn run_op(&mut self, rng: &mut StdRng, steps: &mut Vec<Step>) {
        match self.workload.mix.pick(rng) {
            LicensedOp::Borrow => self.borrow(rng, steps).await,
            LicensedOp::Return => {
                if self.held.is_empty() {
                    self.borrow_regular(rng, steps).await;
                }
                if !self.held.is_empty() {
                    let held = self.held.swap_remove(rng.gen_range(0..self.held.len()));
                    let params =
                        json!({ "borrowId": held.borrow_id, "returnToken": held.return_token });
                    timed("return", steps, async {
                        let result = self.client.call("ReturnLicenseV1", params).await?;
                        expect_object(result, "ReturnLicenseV1")
                    })
                    .await;
                }
            }
            LicensedOp::Get => {
                if self.held.is_empty() {
                    self.borrow_regular(rng, steps).await;
                }
                if !self.held.is_empty() {
                    let borrow_id = &self.held[rng.gen_range(0..self.held.len())].borrow_id;
                    timed("get", steps, async {
                        self.client.get_borrowed_license(borrow_id).await?;
                        Ok(())
                    })
                    .await;
                }
            }
            LicensedOp::List => {
                timed("list", steps, async {
                    // Checked as an array without building it: a listing carries every
                    // borrow, and decoding it would load the generator, not the server.
                    let result = self.client.call_raw("ListLicensesV1", json!([])).await?;
                    if result.get().starts_with('[') {
                        Ok(())
                    } else {
                        Err(invalid(
                            "ListLicensesV1",
                            &Value::String(result.get().to_string()),
                        ))
                    }
                })
                .await;
            }
        }
    }
}

impl LicensedWorker {
    /// A borrow operation: contended with probability `conflict_rate`, regular otherwise.
    async fn borrow(&mut self, rng: &mut StdRng, steps: &mut Vec<Step>) {
        let conflict_rate = self.workload.conflict_rate;
        if conflict_rate > 0.0 && rng.gen_bool(conflict_rate) {
            let plan = self.plan.clone();
            let interval = plan.contended().contended_interval();
            // Contended borrows that get through are kept, never returned: they are what
            // keeps the contended interval full.
            self.send_borrow(plan.contended(), interval, rng, steps)
                .await;
        } else {
            self.borrow_regular(rng, steps).await;
        }
    }

    /// A borrow that should succeed; its id is kept for `get` and `return`.
    async fn borrow_regular(&mut self, rng: &mut StdRng, steps: &mut Vec<Step>) {
        let plan = self.plan.clone();
        let license = plan.pick_regular(rng);
        let interval = license.random_interval(rng);
        if let Some(borrowed) = self.send_borrow(license, interval, rng, steps).await {
            if self.held.len() >= HELD_LIMIT {
                self.held.swap_remove(rng.gen_range(0..self.held.len()));
            }
            self.held.push(HeldBorrow {
                borrow_id: borrowed.borrow_id,
                return_token: borrowed.return_token,
            });
        }
    }

    async fn send_borrow(
        &self,
        license: &TargetLicense,
        (from, until): (i64, i64),
        rng: &mut StdRng,
        steps: &mut Vec<Step>,
    ) -> Option<BorrowedLicense> {
        let params = BorrowParams {
            feature: license.id.feature.clone(),
            uuid: license.id.uuid.clone(),
            host_id: random_host_id(rng),
            valid_from: Some(format_instant(from)),
            valid_until: format_instant(until),
            user_info: Some(USER_INFO.to_string()),
            request_id: None,
        };
        timed("borrow", steps, async {
            Ok(self.client.borrow_license(&params).await?)
        })
        .await
    }
}

/// A borrow a client holds: its id, and the token that returns it.
#[derive(Debug)]
struct HeldBorrow {
    borrow_id: String,
    return_token: Option<String>,
}

fn expect_object(result: Value, method: &str) -> Result<(), Failure> {
    match result {
        Value::Object(_) => Ok(()),
        other => Err(invalid(method, &other)),
    }
}

fn invalid(method: &str, result: &Value) -> Failure {
    let mut text = result.to_string();
    text.truncate(120);
    Failure::new(
        ErrorCode::Invalid,
        format!("unexpected {method} result: {text}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_parse_by_name() {
        for op in [
            LicensedOp::Borrow,
            LicensedOp::Return,
            LicensedOp::Get,
            LicensedOp::List,
        ] {
            assert_eq!(op.name().parse::<LicensedOp>(), Ok(op));
        }
        assert!("put".parse::<LicensedOp>().is_err());
        let mix: Mix<LicensedOp> = "borrow=70,get=20,list=5,return=5".parse().unwrap();
        assert_eq!(mix.percent(LicensedOp::Return), 5.0);
    }

    #[test]
    fn unexpected_results_are_invalid() {
        assert!(expect_object(json!({"borrowId": "x"}), "ReturnLicenseV1").is_ok());
        let failure = expect_object(json!([1]), "ReturnLicenseV1").unwrap_err();
        assert_eq!(failure.code, ErrorCode::Invalid);
        assert_eq!(failure.message, "unexpected ReturnLicenseV1 result: [1]");
    }

    #[tokio::test]
    async fn setup_refuses_bad_input_before_the_network() {
        let workload = LicensedWorkload {
            mix: Mix::single(LicensedOp::Borrow),
            conflict_rate: 1.5,
            licenses: Vec::new(),
        };
        let timeout = Duration::from_secs(1);
        let urls = vec!["http://127.0.0.1:1".to_string()];
        assert!(matches!(
            LicensedTarget::connect(&urls, workload.clone(), timeout).await,
            Err(LicensedSetupError::ConflictRate(_))
        ));
        let workload = LicensedWorkload {
            conflict_rate: 0.0,
            ..workload
        };
        assert!(matches!(
            LicensedTarget::connect(&[], workload.clone(), timeout).await,
            Err(LicensedSetupError::NoUrl)
        ));
        assert!(matches!(
            LicensedTarget::connect(&urls, workload, timeout).await,
            Err(LicensedSetupError::List(_))
        ));
    }
}
