//! The workload: concurrent clients that borrow, return, get and list through randomly
//! chosen nodes, the way load-balanced clients would, with timeouts and retries (a
//! retried borrow keeps its `requestId`). Every attempt is recorded in the history.
//!
//! Most borrow intervals lie in 2031, far after any run, so the server's clock never
//! decides their answer: a borrow is granted exactly when it fits the license's count,
//! and a return simply frees the seat. That keeps the sequential model of the checker
//! exact.
//!
//! A slice of the borrows ([`NEAR_NOW_PERCENT`]) goes to a license of its own
//! ([`TestLicense::near_now`]) without `validFrom`: the server starts each at its ledger
//! clock and the client asks for `validUntil` = its own wall clock + 2 to 4 whole hours.
//! For a run shorter than two hours every such borrow overlaps every other one whatever
//! the exact starts, so the count alone decides them, and the start the server stamped
//! can be held against the client's clock (the checker's clock check).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use licensed::client::{BorrowParams, RpcClient};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::history::{license_key, ClientId, HistoryRecorder, OpKind, OpResult, UnixSeconds};

/// 2031-01-01T00:00:00Z: borrows start at or after this instant.
const EPOCH_2031: UnixSeconds = 1_924_992_000;
const HOUR: UnixSeconds = 3_600;
/// Share of borrows (percent) that go to a near-now license, when there is one.
pub const NEAR_NOW_PERCENT: u32 = 15;
/// Whole hours from the client's wall clock to a near-now borrow's `validUntil`.
pub const NEAR_NOW_HOURS: std::ops::RangeInclusive<i64> = 2..=4;

/// A license the workload borrows.
#[derive(Debug, Clone)]
pub struct TestLicense {
    /// Feature.
    pub feature: String,
    /// Uuid.
    pub uuid: String,
    /// Seats.
    pub count: u64,
    /// Borrowed "near now": without `validFrom`, until a few hours after the client's
    /// wall clock, so the server's clock starts every borrow. Such a license gets only
    /// near-now borrows, the others none.
    pub near_now: bool,
}

impl TestLicense {
    /// `feature/uuid`.
    pub fn key(&self) -> String {
        license_key(&self.feature, &self.uuid)
    }
}

/// The pool file for `licenses` (JSON array in the shape of docs/protocol.md §3.5).
pub fn pool_json(licenses: &[TestLicense]) -> String {
    let entries: Vec<serde_json::Value> = licenses
        .iter()
        .map(|l| {
            serde_json::json!({"feature": l.feature, "uuid": l.uuid, "version": "26.05",
                "edition": "Steady", "modules": "fc", "count": l.count})
        })
        .collect();
    serde_json::Value::Array(entries).to_string()
}

/// The licenses of a chaos run: a few small counts, so that conflicts are frequent, and
/// one license (its own feature) borrowed near now.
pub fn default_licenses() -> Vec<TestLicense> {
    let mut licenses: Vec<TestLicense> = [("a", 1), ("b", 2), ("c", 3), ("d", 2)]
        .into_iter()
        .map(|(uuid, count)| TestLicense {
            feature: "MVTec_HALCON".into(),
            uuid: format!("chaos-{uuid}"),
            count,
            near_now: false,
        })
        .collect();
    licenses.push(TestLicense {
        feature: "MVTec_HDevelop".into(),
        uuid: "chaos-now".into(),
        count: 2,
        near_now: true,
    });
    licenses
}

/// The nodes clients may talk to, changed by the nemesis as members come and go.
#[derive(Debug, Clone, Default)]
pub struct Targets(Arc<RwLock<Vec<(String, String)>>>);

impl Targets {
    /// Replaces the list with `(node name, client URL)` pairs.
    pub fn set(&self, targets: Vec<(String, String)>) {
        if let Ok(mut guard) = self.0.write() {
            *guard = targets;
        }
    }

    /// A random target.
    fn pick(&self, rng: &mut StdRng) -> Option<(String, String)> {
        self.0.read().ok()?.choose(rng).cloned()
    }
}

/// How the clients behave.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Concurrent clients.
    pub clients: usize,
    /// The licenses to borrow.
    pub licenses: Vec<TestLicense>,
    /// Client-side timeout of one call.
    pub call_timeout: Duration,
    /// Attempts of one logical borrow or return (1 = no retry).
    pub attempts: usize,
    /// Pause between operations of one client.
    pub think: Duration,
    /// Seed; client `c` uses `seed + c`.
    pub seed: u64,
}

/// Borrow ids acknowledged so far, shared by all clients (gets read other clients' borrows).
#[derive(Debug, Clone, Default)]
pub struct Acknowledged(Arc<Mutex<Vec<String>>>);

impl Acknowledged {
    /// Every acknowledged borrow id so far.
    pub fn all(&self) -> Vec<String> {
        self.0.lock().map(|ids| ids.clone()).unwrap_or_default()
    }

    fn push(&self, id: String) {
        if let Ok(mut ids) = self.0.lock() {
            ids.push(id);
        }
    }

    fn pick(&self, rng: &mut StdRng) -> Option<String> {
        self.0.lock().ok()?.choose(rng).cloned()
    }
}

/// Runs all clients until `stop` is set; every acknowledged borrow id goes into
/// `acknowledged`.
pub async fn run(
    config: WorkloadConfig,
    targets: Targets,
    recorder: HistoryRecorder,
    stop: Arc<AtomicBool>,
    acknowledged: Acknowledged,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .timeout(config.call_timeout)
        .connect_timeout(Duration::from_millis(500))
        .pool_idle_timeout(Duration::from_secs(5))
        .build()?;
    let mut tasks = Vec::new();
    for c in 0..config.clients {
        let client = Client {
            id: c as ClientId,
            rng: StdRng::seed_from_u64(config.seed.wrapping_add(c as u64)),
            config: config.clone(),
            targets: targets.clone(),
            recorder: recorder.clone(),
            http: http.clone(),
            acknowledged: acknowledged.clone(),
            mine: Vec::new(),
            return_token: None,
            issued_token: None,
            next_request: 0,
        };
        let stop = stop.clone();
        tasks.push(tokio::spawn(client.run(stop)));
    }
    for task in tasks {
        task.await?;
    }
    Ok(())
}

struct Client {
    id: ClientId,
    rng: StdRng,
    config: WorkloadConfig,
    targets: Targets,
    recorder: HistoryRecorder,
    http: reqwest::Client,
    acknowledged: Acknowledged,
    /// This client's acknowledged, not yet returned borrows, with their return tokens.
    mine: Vec<(String, Option<String>)>,
    /// The return token of the borrow being returned (kept out of the history).
    return_token: Option<String>,
    /// The return token of the last acknowledged borrow.
    issued_token: Option<String>,
    next_request: u64,
}

impl Client {
    async fn run(mut self, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::Relaxed) {
            let roll = self.rng.gen_range(0..100);
            match roll {
                0..=44 => self.borrow().await,
                45..=59 => self.give_back().await,
                60..=79 => self.get().await,
                _ => self.list().await,
            }
            if !self.config.think.is_zero() {
                tokio::time::sleep(self.config.think).await;
            }
        }
    }

    /// One call to a random node, recorded. `None` when no node is known.
    async fn call(&mut self, kind: OpKind) -> Option<OpResult> {
        let (node, url) = self.targets.pick(&mut self.rng)?;
        let client = RpcClient::with_http_client(&url, self.http.clone()).ok()?;
        let op = self.recorder.invoke(self.id, &node, kind.clone());
        let result = match &kind {
            OpKind::Borrow {
                license,
                from,
                until,
                host,
                request_id,
            } => {
                let (feature, uuid) = license.split_once('/').unwrap_or((license, ""));
                let params = BorrowParams {
                    feature: feature.to_string(),
                    uuid: uuid.to_string(),
                    host_id: host.clone(),
                    valid_from: from.map(format_unix),
                    valid_until: format_unix(*until),
                    user_info: None,
                    request_id: request_id.clone(),
                };
                match client.borrow_license(&params).await {
                    Ok(answer) => {
                        self.issued_token = answer.return_token.clone();
                        OpResult::borrowed(&kind, &answer)
                    }
                    Err(error) => OpResult::from_error(&kind, &error),
                }
            }
            OpKind::Return { borrow_id } => match client
                .return_license(borrow_id, self.return_token.as_deref())
                .await
            {
                Ok(_) => OpResult::ReturnOk,
                Err(error) => OpResult::from_error(&kind, &error),
            },
            OpKind::Get { borrow_id } => match client.get_borrowed_license(borrow_id).await {
                Ok(answer) => OpResult::borrowed(&kind, &answer),
                Err(error) => OpResult::from_error(&kind, &error),
            },
            OpKind::List => match client.list_licenses().await {
                Ok(licenses) => OpResult::listed(&licenses),
                Err(error) => OpResult::from_error(&kind, &error),
            },
        };
        self.recorder.complete(op, result.clone());
        Some(result)
    }

    async fn borrow(&mut self) {
        let near_now: Vec<&TestLicense> =
            self.config.licenses.iter().filter(|l| l.near_now).collect();
        let future: Vec<&TestLicense> = self
            .config
            .licenses
            .iter()
            .filter(|l| !l.near_now)
            .collect();
        let pick_near_now = future.is_empty()
            || (!near_now.is_empty() && self.rng.gen_range(0..100) < NEAR_NOW_PERCENT);
        let pool = if pick_near_now { near_now } else { future };
        let Some(license) = pool.choose(&mut self.rng).map(|license| license.key()) else {
            return;
        };
        let (from, until) = if pick_near_now {
            // No start: the server's clock starts it; the end is a few whole hours
            // after this client's clock, so it lies far beyond any start in the run.
            let hours = self.rng.gen_range(NEAR_NOW_HOURS);
            (None, unix_now() + hours * HOUR)
        } else {
            // Whole hours within two days, 1 to 6 hours long: plenty of overlap.
            let from = EPOCH_2031 + self.rng.gen_range(0..48) * HOUR;
            (Some(from), from + self.rng.gen_range(1..=6) * HOUR)
        };
        self.next_request += 1;
        let kind = OpKind::Borrow {
            license,
            from,
            until,
            host: format!("MAC:{:012X}", self.rng.gen_range(0..(1u64 << 48))),
            request_id: Some(format!("c{}-{}", self.id, self.next_request)),
        };
        for _ in 0..self.config.attempts {
            match self.call(kind.clone()).await {
                Some(OpResult::BorrowOk { borrow_id, .. }) => {
                    self.acknowledged.push(borrow_id.clone());
                    self.mine.push((borrow_id, self.issued_token.take()));
                    return;
                }
                Some(OpResult::Indeterminate { .. }) | None => self.back_off().await,
                Some(_) => return,
            }
        }
    }

    async fn give_back(&mut self) {
        if self.mine.is_empty() {
            return self.borrow().await;
        }
        let index = self.rng.gen_range(0..self.mine.len());
        let (borrow_id, return_token) = self.mine.swap_remove(index);
        self.return_token = return_token;
        let kind = OpKind::Return { borrow_id };
        for _ in 0..self.config.attempts {
            match self.call(kind.clone()).await {
                Some(OpResult::Indeterminate { .. }) | None => self.back_off().await,
                Some(_) => return,
            }
        }
    }

    async fn get(&mut self) {
        let Some(borrow_id) = self.acknowledged.pick(&mut self.rng) else {
            return self.list().await;
        };
        self.call(OpKind::Get { borrow_id }).await;
    }

    async fn list(&mut self) {
        self.call(OpKind::List).await;
    }

    async fn back_off(&mut self) {
        let ms = self.rng.gen_range(20..200);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// This client's wall clock, Unix seconds.
fn unix_now() -> UnixSeconds {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| UnixSeconds::try_from(since.as_secs()).unwrap_or(UnixSeconds::MAX))
        .unwrap_or(0)
}

/// RFC 3339 UTC with whole seconds, as the server writes dates.
pub fn format_unix(secs: UnixSeconds) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_written_the_way_the_server_reads_them() {
        assert_eq!(format_unix(EPOCH_2031), "2031-01-01T00:00:00Z");
        let parsed = licensed::borrow::time::parse_instant(
            &format_unix(EPOCH_2031 + 5 * HOUR),
            licensed::borrow::time::DateRole::Start,
            "validFrom",
        )
        .expect("parses");
        assert_eq!(parsed, EPOCH_2031 + 5 * HOUR);
    }

    #[test]
    fn the_pool_lists_every_license_with_its_count() {
        let pool: serde_json::Value =
            serde_json::from_str(&pool_json(&default_licenses())).expect("json");
        assert_eq!(pool.as_array().map(Vec::len), Some(5));
        assert_eq!(pool[1]["count"], 2);
        let near_now: Vec<TestLicense> = default_licenses()
            .into_iter()
            .filter(|license| license.near_now)
            .collect();
        assert_eq!(near_now.len(), 1, "one near-now license");
        assert_eq!(pool[4]["feature"], near_now[0].feature.as_str());
        assert!(
            default_licenses()
                .iter()
                .all(|l| l.near_now || l.feature != near_now[0].feature),
            "the near-now license has a feature of its own"
        );
    }

    /// Runs one client's `borrow` against a stand-in server that records the params it
    /// receives and answers with an error, so that nothing else happens.
    #[tokio::test]
    async fn near_now_borrows_send_no_start_and_end_hours_after_the_clock() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let seen: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let server_seen = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let seen = server_seen.clone();
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n) = socket.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buffer).to_string();
                        let Some((head, body)) = text.split_once("\r\n\r\n") else {
                            continue;
                        };
                        let length = head
                            .lines()
                            .find_map(|line| {
                                let (name, value) = line.split_once(':')?;
                                name.eq_ignore_ascii_case("content-length")
                                    .then(|| value.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if body.len() < length {
                            continue;
                        }
                        let request: serde_json::Value =
                            serde_json::from_str(&body[..length]).unwrap_or_default();
                        let id = request["id"].clone();
                        if let Ok(mut seen) = seen.lock() {
                            seen.push(request["params"].clone());
                        }
                        let answer = serde_json::json!({"jsonrpc": "2.0", "id": id,
                            "error": {"code": 36, "message": "refused by the test"}})
                        .to_string();
                        let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                            answer.len()
                        );
                        let _ = socket.write_all(response.as_bytes()).await;
                        buffer.clear();
                    }
                });
            }
        });
        let recorder = HistoryRecorder::in_memory().expect("recorder");
        let licenses: Vec<TestLicense> = default_licenses()
            .into_iter()
            .filter(|license| license.near_now)
            .collect();
        let targets = Targets::default();
        targets.set(vec![("n1".into(), url)]);
        let mut client = Client {
            id: 0,
            rng: StdRng::seed_from_u64(7),
            config: WorkloadConfig {
                clients: 1,
                licenses,
                call_timeout: Duration::from_secs(5),
                attempts: 1,
                think: Duration::ZERO,
                seed: 7,
            },
            targets,
            recorder: recorder.clone(),
            http: reqwest::Client::builder().no_proxy().build().expect("http"),
            acknowledged: Acknowledged::default(),
            mine: Vec::new(),
            return_token: None,
            issued_token: None,
            next_request: 0,
        };
        let before = unix_now();
        for _ in 0..5 {
            client.borrow().await;
        }
        let after = unix_now();
        let history = recorder.finish().expect("history");
        assert_eq!(history.ops.len(), 5);
        let params = seen.lock().expect("lock").clone();
        assert_eq!(params.len(), 5);
        for (op, sent) in history.ops.iter().zip(&params) {
            let OpKind::Borrow {
                from,
                until,
                request_id,
                ..
            } = &op.kind
            else {
                panic!("not a borrow: {op:?}");
            };
            assert_eq!(*from, None, "no start recorded");
            assert!(sent.get("validFrom").is_none(), "no validFrom sent: {sent}");
            assert!(request_id.is_some(), "every borrow carries a request id");
            let hours = NEAR_NOW_HOURS;
            assert!(
                *until >= before + hours.start() * HOUR && *until <= after + hours.end() * HOUR,
                "until {until} outside the clock + 2..4 h"
            );
            assert_eq!(sent["validUntil"], format_unix(*until).as_str());
        }
    }
}
