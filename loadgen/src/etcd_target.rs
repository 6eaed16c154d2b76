//! etcd as a load target, for comparison: the closest etcd equivalents of the Borrow API's
//! operations, through the JSON gateway of etcd 3.4 (`/v3/kv/...`, keys and values in
//! base64).
//!
//! - `cas`, the equivalent of a borrow: a transaction that writes a fresh key only if it
//!   does not exist yet (`version == 0`). Keys are unique, so it always succeeds, like a
//!   borrow without conflict: one replicated, durable compare-and-write.
//! - `put`: a plain write of a fresh key.
//! - `range`: a linearizable read (etcd's default; the request does not ask for a
//!   serializable one) of a key this client wrote; a client that wrote none puts first
//!   (counted as a `put`).
//!
//! Values are borrow records of the size `licensed` stores (about 250 bytes of JSON).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};

use super::licenses::{random_host_id, MAX_BORROW_SECS, WINDOW_END, WINDOW_START};
use super::mix::Mix;
use super::outcome::{ErrorCode, Failure};
use super::target::{timed, url_for_worker, worker_http_client, Step, Target, TargetError, Worker};
use licensed::borrow::time::format_instant;
use licensed::client::normalize_server_url;

/// Keys a client remembers for `range`; older ones are forgotten.
const WRITTEN_LIMIT: usize = 1024;

/// The keys one etcd client writes (fresh ones under its own prefix) and the last
/// 1 024 it wrote, for `range`. Shared by the gateway and gRPC targets.
#[derive(Debug)]
pub struct ClientKeys {
    prefix: String,
    next: u64,
    written: Vec<String>,
}

impl ClientKeys {
    /// The keys of client `index` in run `run_id`.
    pub fn new(run_id: &str, index: usize) -> ClientKeys {
        ClientKeys {
            prefix: format!("{KEY_PREFIX}{run_id}/{index}/"),
            next: 0,
            written: Vec::new(),
        }
    }

    /// A key this client has not used yet.
    pub fn fresh(&mut self) -> String {
        self.next += 1;
        format!("{}{}", self.prefix, self.next)
    }

    /// Remembers a key written, forgetting a random older one beyond the limit.
    pub fn remember(&mut self, key: String, rng: &mut StdRng) {
        if self.written.len() >= WRITTEN_LIMIT {
            self.written
                .swap_remove(rng.gen_range(0..self.written.len()));
        }
        self.written.push(key);
    }

    /// One of the keys written, if any.
    pub fn any_written(&self, rng: &mut StdRng) -> Option<&str> {
        if self.written.is_empty() {
            return None;
        }
        Some(&self.written[rng.gen_range(0..self.written.len())])
    }
}
/// Every key the load writes starts with this, so a cluster's bench keys can be found
/// and deleted with one prefix.
pub const KEY_PREFIX: &str = "licensed-bench/";
/// How much of an unexpected body a failure message quotes.
const QUOTE_LIMIT: usize = 160;

/// An operation on etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EtcdOp {
    /// `POST /v3/kv/put` of a fresh key.
    Put,
    /// `POST /v3/kv/txn`: create a fresh key if absent.
    Cas,
    /// `POST /v3/kv/range` of a known key, linearizable.
    Range,
}

impl EtcdOp {
    /// The name in mixes and reports.
    pub fn name(self) -> &'static str {
        match self {
            EtcdOp::Put => "put",
            EtcdOp::Cas => "cas",
            EtcdOp::Range => "range",
        }
    }
}

impl fmt::Display for EtcdOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EtcdOp {
    type Err = String;

    fn from_str(text: &str) -> Result<EtcdOp, String> {
        match text {
            "put" => Ok(EtcdOp::Put),
            "cas" => Ok(EtcdOp::Cas),
            "range" => Ok(EtcdOp::Range),
            _ => Err("etcd operations are put, cas and range".into()),
        }
    }
}

/// The body of `POST /v3/kv/put`.
pub fn put_body(key: &str, value: &str) -> Value {
    json!({ "key": BASE64.encode(key), "value": BASE64.encode(value) })
}

/// The body of `POST /v3/kv/txn` that puts `key` only if it has never been written.
pub fn cas_body(key: &str, value: &str) -> Value {
    let key = BASE64.encode(key);
    json!({
        "compare": [{ "key": key, "target": "VERSION", "result": "EQUAL", "version": "0" }],
        "success": [{ "request_put": { "key": key, "value": BASE64.encode(value) } }],
        "failure": [],
    })
}

/// The body of a linearizable `POST /v3/kv/range` of one key.
pub fn range_body(key: &str) -> Value {
    json!({ "key": BASE64.encode(key) })
}

/// A borrow record like the ones `licensed` keeps, as the value to store.
pub fn borrow_record<R: Rng + ?Sized>(rng: &mut R) -> String {
    let length = rng.gen_range(3600..=MAX_BORROW_SECS);
    let from = rng.gen_range(WINDOW_START..=WINDOW_END - length);
    let borrow_id = uuid::Builder::from_random_bytes(rng.gen()).into_uuid();
    json!({
        "feature": "MVTec_HALCON",
        "uuid": "bench",
        "hostId": random_host_id(rng),
        "validFrom": format_instant(from),
        "validUntil": format_instant(from + length),
        "userInfo": "licensectl bench",
        "borrowId": borrow_id.to_string(),
    })
    .to_string()
}

/// Why the etcd target could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EtcdSetupError {
    /// No node URL given.
    #[error("no etcd URL given")]
    NoUrl,
    /// A node URL is not usable.
    #[error(transparent)]
    BadUrl(licensed::client::RpcCallError),
}

/// An etcd cluster under load.
#[derive(Debug)]
pub struct EtcdTarget {
    urls: Vec<String>,
    mix: Arc<Mix<EtcdOp>>,
    timeout: Duration,
    /// Separates the keys of this run from those of earlier runs, which `cas` needs.
    run_id: String,
}

impl EtcdTarget {
    /// A target for the etcd client URLs `urls` (e.g. `http://127.0.0.1:2379`).
    pub fn new(
        urls: &[String],
        mix: Mix<EtcdOp>,
        timeout: Duration,
    ) -> Result<EtcdTarget, EtcdSetupError> {
        if urls.is_empty() {
            return Err(EtcdSetupError::NoUrl);
        }
        let urls = urls
            .iter()
            .map(|url| normalize_server_url(url))
            .collect::<Result<Vec<_>, _>>()
            .map_err(EtcdSetupError::BadUrl)?;
        Ok(EtcdTarget {
            urls,
            mix: Arc::new(mix),
            timeout,
            run_id: uuid::Uuid::new_v4().simple().to_string(),
        })
    }
}

impl Target for EtcdTarget {
    type Worker = EtcdWorker;

    fn name(&self) -> &'static str {
        "etcd"
    }

    fn workload(&self) -> String {
        self.mix.to_string()
    }

    fn urls(&self) -> &[String] {
        &self.urls
    }

    fn notes(&self) -> Vec<String> {
        vec![format!("keys under {KEY_PREFIX}{}/", self.run_id)]
    }

    fn worker(&self, index: usize) -> Result<EtcdWorker, TargetError> {
        let url = url_for_worker(&self.urls, index)?;
        Ok(EtcdWorker {
            http: worker_http_client(self.timeout)?,
            put_url: format!("{url}/v3/kv/put"),
            txn_url: format!("{url}/v3/kv/txn"),
            range_url: format!("{url}/v3/kv/range"),
            keys: ClientKeys::new(&self.run_id, index),
            mix: self.mix.clone(),
        })
    }
}

/// One client of etcd.
#[derive(Debug)]
pub struct EtcdWorker {
    http: reqwest::Client,
    put_url: String,
    txn_url: String,
    range_url: String,
    keys: ClientKeys,
    mix: Arc<Mix<EtcdOp>>,
}

impl Worker for EtcdWorker {
    async fn run_op(&mut self, rng: &mut StdRng, steps: &mut Vec<Step>) {
        match self.mix.pick(rng) {
            EtcdOp::Put => self.put(rng, steps).await,
            EtcdOp::Cas => {
                let key = self.keys.fresh();
                let body = cas_body(&key, &borrow_record(rng));
                let created = timed("cas", steps, async {
                    let answer = post(&self.http, &self.txn_url, &body).await?;
                    // Protobuf JSON leaves out `false`: a missing flag is a failed compare.
                    match answer.get("succeeded").and_then(Value::as_bool) {
                        Some(true) => Ok(()),
                        _ => Err(Failure::new(
                            ErrorCode::Refused("compare-failed"),
                            format!(
                                "txn on {key} did not succeed: {}",
                                quote(&answer.to_string())
                            ),
                        )),
                    }
                })
                .await;
                if created.is_some() {
                    self.keys.remember(key, rng);
                }
            }
            EtcdOp::Range => {
                if self.keys.any_written(rng).is_none() {
                    self.put(rng, steps).await;
                }
                if let Some(key) = self.keys.any_written(rng) {
                    let body = range_body(key);
                    timed("range", steps, async {
                        let answer = post(&self.http, &self.range_url, &body).await?;
                        let found = answer
                            .get("kvs")
                            .and_then(Value::as_array)
                            .is_some_and(|kvs| !kvs.is_empty());
                        if found {
                            Ok(())
                        } else {
                            Err(Failure::new(
                                ErrorCode::Refused("not-found"),
                                format!("range of {key} found nothing"),
                            ))
                        }
                    })
                    .await;
                }
            }
        }
    }
}

impl EtcdWorker {
    async fn put(&mut self, rng: &mut StdRng, steps: &mut Vec<Step>) {
        let key = self.keys.fresh();
        let body = put_body(&key, &borrow_record(rng));
        let written = timed("put", steps, async {
            post(&self.http, &self.put_url, &body).await.map(drop)
        })
        .await;
        if written.is_some() {
            self.keys.remember(key, rng);
        }
    }
}

/// Posts `body` and reads the JSON answer; anything but a 200 with a JSON object fails.
async fn post(http: &reqwest::Client, url: &str, body: &Value) -> Result<Value, Failure> {
    let response = http
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|error| Failure::from_transport(&error))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|error| Failure::from_transport(&error))?;
    let text = String::from_utf8_lossy(&bytes);
    if !status.is_success() {
        return Err(Failure::new(
            ErrorCode::Http,
            format!("{url} answered HTTP {}: {}", status.as_u16(), quote(&text)),
        ));
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(answer @ Value::Object(_)) => Ok(answer),
        _ => Err(Failure::new(
            ErrorCode::Invalid,
            format!("{url} did not answer a JSON object: {}", quote(&text)),
        )),
    }
}

fn quote(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(QUOTE_LIMIT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn request_bodies_follow_the_gateway_format() {
        // "k1" is "azE=" and "v" is "dg==" in standard base64.
        assert_eq!(put_body("k1", "v"), json!({"key": "azE=", "value": "dg=="}));
        assert_eq!(range_body("k1"), json!({"key": "azE="}));
        assert_eq!(
            cas_body("k1", "v"),
            json!({
                "compare": [{"key": "azE=", "target": "VERSION", "result": "EQUAL", "version": "0"}],
                "success": [{"request_put": {"key": "azE=", "value": "dg=="}}],
                "failure": []
            })
        );
        assert!(
            range_body("k1").get("serializable").is_none(),
            "reads stay linearizable"
        );
    }

    #[test]
    fn operations_parse_by_name() {
        for op in [EtcdOp::Put, EtcdOp::Cas, EtcdOp::Range] {
            assert_eq!(op.name().parse::<EtcdOp>(), Ok(op));
        }
        assert!("borrow".parse::<EtcdOp>().is_err());
    }

    #[test]
    fn values_are_borrow_sized_records() {
        let mut rng = StdRng::seed_from_u64(1);
        let record: Value = serde_json::from_str(&borrow_record(&mut rng)).unwrap();
        assert_eq!(record["feature"], "MVTec_HALCON");
        assert!(record["validFrom"].as_str().unwrap().starts_with("20"));
        let size = borrow_record(&mut rng).len();
        assert!((180..=300).contains(&size), "{size} bytes");
    }

    #[test]
    fn workers_write_distinct_keys_per_run_and_client() {
        let urls = vec![
            "127.0.0.1:2379".to_string(),
            "http://127.0.0.1:22379/".to_string(),
        ];
        let target =
            EtcdTarget::new(&urls, Mix::single(EtcdOp::Cas), Duration::from_secs(1)).unwrap();
        assert_eq!(
            target.urls(),
            ["http://127.0.0.1:2379", "http://127.0.0.1:22379"]
        );
        let mut first = target.worker(0).unwrap();
        let mut second = target.worker(1).unwrap();
        assert_eq!(second.txn_url, "http://127.0.0.1:22379/v3/kv/txn");
        let keys = [first.keys.fresh(), first.keys.fresh(), second.keys.fresh()];
        assert_ne!(keys[0], keys[1]);
        assert_ne!(keys[0], keys[2]);
        assert!(keys.iter().all(|k| k.starts_with(KEY_PREFIX)));
        let other_run =
            EtcdTarget::new(&urls, Mix::single(EtcdOp::Cas), Duration::from_secs(1)).unwrap();
        assert_ne!(other_run.worker(0).unwrap().keys.fresh(), keys[0]);
    }

    #[test]
    fn long_bodies_are_quoted_short() {
        assert_eq!(quote(&"x".repeat(1000)).chars().count(), QUOTE_LIMIT + 1);
        assert_eq!(quote(" short "), "short");
    }
}
