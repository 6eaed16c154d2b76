//! License administration (the JSON-RPC extension the README's *License administration*
//! describes) against real 3-node `licensed` clusters on loopback: every method
//! through every node, admin methods refused without the admin token, renewals and shrinks
//! while borrows are held, blocked hosts, paging through many borrows while more arrive,
//! the audit trail, the declarative `--pool` file and the license check.
//!
//! Each test starts one cluster and checks several things in it: a cluster start costs
//! seconds on a small machine.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{at, Cluster};
use serde_json::{json, Value};

const ADMIN: &str = "admin-token-of-the-administration-tests";

const NOT_AVAILABLE: i64 = 32;
const EXPIRED_LICENSE: i64 = 33;
const NO_LICENSE: i64 = 34;
const INVALID_HOST: i64 = 36;
const UNAUTHORIZED: i64 = 38;
const CONFLICT: i64 = 40;
const INVALID_PARAMS: i64 = -32602;

/// A license far from expiring.
const FOREVER: &str = "2099-12-31T23:59:59Z";

/// A `MVTec_HALCON` pool entry.
fn halcon(uuid: &str, count: u64) -> Value {
    json!({"feature": "MVTec_HALCON", "uuid": uuid, "version": "26.05", "edition": "Steady",
           "modules": "fc", "count": count, "validUntil": FOREVER})
}

/// A `MVTec_HDevelop` pool entry.
fn hdevelop(uuid: &str, count: u64) -> Value {
    json!({"feature": "MVTec_HDevelop", "uuid": uuid, "version": "26.05", "edition": "Progress",
           "modules": "f", "count": count, "validUntil": FOREVER})
}

/// A pool file's text: a bare array of entries.
fn pool_text(entries: &[Value]) -> String {
    serde_json::to_string_pretty(&Value::Array(entries.to_vec())).expect("pool as JSON")
}

/// `MAC:` and `n` as 12 upper-case hex digits.
fn host(n: u64) -> String {
    format!("MAC:{n:012X}")
}

/// The message that goes with an error code.
fn message_of(code: i64) -> Option<&'static str> {
    match code {
        -32602 => Some("Invalid params"),
        32 => Some("License not available for borrowing in the requested time interval"),
        33 => Some("Borrowing after license expiration not allowed"),
        34 => Some("No matching license found"),
        36 => Some("Invalid host id"),
        38 => Some("Unauthorized"),
        40 => Some("Conflict"),
        _ => None,
    }
}

/// Asserts that `response` is a JSON-RPC error with `code`, its message and a non-empty
/// `data.reason`; returns the error object.
fn refused(response: &Value, code: i64, what: &str) -> Value {
    let error = response
        .get("error")
        .unwrap_or_else(|| panic!("{what}: expected error {code}, got {response}"));
    assert!(
        response.get("result").is_none(),
        "{what}: an error with a result: {response}"
    );
    assert_eq!(error["code"], json!(code), "{what}: {response}");
    if let Some(message) = message_of(code) {
        assert_eq!(error["message"], message, "{what}: {response}");
    }
    let reason = error["data"]["reason"].as_str().unwrap_or_default();
    assert!(
        !reason.trim().is_empty(),
        "{what}: no data.reason: {response}"
    );
    error.clone()
}

/// The `data.reason` of an error object.
fn reason_of(error: &Value) -> String {
    error["data"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The result of a successful response.
fn result_of(response: &Value, what: &str) -> Value {
    assert!(
        response.get("error").is_none(),
        "{what}: expected a result, got {response}"
    );
    response
        .get("result")
        .unwrap_or_else(|| panic!("{what}: no result in {response}"))
        .clone()
}

/// A string member.
fn text(value: &Value, name: &str) -> String {
    value[name]
        .as_str()
        .unwrap_or_else(|| panic!("no string {name} in {value}"))
        .to_string()
}

/// The elements of an array member (panics when it is not an array).
fn items(value: &Value, name: &str) -> Vec<Value> {
    value[name]
        .as_array()
        .unwrap_or_else(|| panic!("{name} is not an array in {value}"))
        .clone()
}

/// The `borrowId`s of an array member of Borrow objects.
fn borrow_ids_in(value: &Value, name: &str) -> BTreeSet<String> {
    items(value, name)
        .iter()
        .map(|borrow| text(borrow, "borrowId"))
        .collect()
}

/// Strings of an array of strings.
fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|item| {
            item.as_str()
                .unwrap_or_else(|| panic!("not a string: {item}"))
                .to_string()
        })
        .collect()
}

/// Asserts the members of a Borrow object of the contract (optional ones may be absent).
fn assert_borrow_shape(borrow: &Value) {
    for name in [
        "borrowId",
        "feature",
        "uuid",
        "hostId",
        "validFrom",
        "validUntil",
        "issuedAt",
        "status",
    ] {
        assert!(borrow[name].is_string(), "Borrow without {name}: {borrow}");
    }
    for optional in ["userInfo", "returnedAt"] {
        if let Some(value) = borrow.get(optional) {
            assert!(
                value.is_string(),
                "{optional} must be a string or absent: {borrow}"
            );
        }
    }
    let status = text(borrow, "status");
    assert!(
        ["upcoming", "active", "returned", "expired"].contains(&status.as_str()),
        "status {status}: {borrow}"
    );
    let allowed = [
        "borrowId",
        "feature",
        "uuid",
        "hostId",
        "validFrom",
        "validUntil",
        "userInfo",
        "issuedAt",
        "returnedAt",
        "status",
    ];
    for key in borrow.as_object().expect("a Borrow object").keys() {
        assert!(
            allowed.contains(&key.as_str()),
            "unexpected member {key}: {borrow}"
        );
    }
}

/// Asserts the members of a Host object.
fn assert_host_shape(host: &Value) {
    assert!(host["hostId"].is_string(), "{host}");
    assert!(host["borrows"].is_u64(), "Host.borrows: {host}");
    let allowed = [
        "hostId",
        "firstBorrow",
        "lastBorrow",
        "borrows",
        "name",
        "notes",
        "blocked",
    ];
    for (key, value) in host.as_object().expect("a Host object") {
        assert!(
            allowed.contains(&key.as_str()),
            "unexpected member {key}: {host}"
        );
        assert!(
            !value.is_null(),
            "optional members are absent, not null: {host}"
        );
    }
    if let Some(blocked) = host.get("blocked") {
        assert!(blocked["at"].is_string(), "blocked.at: {host}");
    }
}

/// Asserts the members of an AuditEntry.
fn assert_audit_shape(entry: &Value) {
    assert!(entry["seq"].is_u64(), "seq: {entry}");
    assert!(entry["at"].is_string(), "at: {entry}");
    assert!(entry["actor"].is_string(), "actor: {entry}");
    assert!(entry["kind"].is_string(), "kind: {entry}");
    assert!(entry["detail"].is_string(), "detail: {entry}");
    let detail = text(entry, "detail");
    assert!(!detail.contains('\n'), "detail is one line: {entry}");
    if let Some(node) = entry.get("node") {
        assert!(node.is_u64(), "node: {entry}");
    }
    let kinds = [
        "borrow",
        "refusal",
        "return",
        "license-add",
        "license-update",
        "license-remove",
        "pool-apply",
        "host-update",
        "host-block",
        "host-unblock",
        "api-key-create",
        "api-key-revoke",
        "membership",
    ];
    assert!(
        kinds.contains(&entry["kind"].as_str().unwrap_or("")),
        "kind: {entry}"
    );
    let actor = text(entry, "actor");
    assert!(
        ["admin", "client", "system"].contains(&actor.as_str())
            || actor.starts_with("key:")
            || actor.starts_with("node:"),
        "actor: {entry}"
    );
}

/// A 3-node cluster with the admin token, and a client that can send it.
struct Admin {
    cluster: Cluster,
    http: reqwest::Client,
}

impl Admin {
    async fn start(pool: &str) -> Admin {
        let cluster = Cluster::start(3, pool, &["--admin-token", ADMIN]).await;
        Admin {
            cluster,
            http: Self::client(),
        }
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client")
    }

    /// Sends a whole body to node `i` (with the bearer, if any); asserts HTTP 200, returns
    /// the parsed answer.
    async fn send(&self, i: usize, bearer: Option<&str>, body: &Value) -> Value {
        let url = format!("{}/licenses", self.cluster.api_url(i));
        let mut request = self.http.post(url).json(body);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("node {} did not answer: {e}", i + 1));
        let status = response.status().as_u16();
        let body_text = response.text().await.expect("body");
        assert_eq!(status, 200, "node {}: HTTP {status}: {body_text}", i + 1);
        serde_json::from_str(&body_text)
            .unwrap_or_else(|e| panic!("node {}: not JSON ({e}): {body_text}", i + 1))
    }

    /// The whole response to one call with the given bearer.
    async fn call_as(&self, i: usize, bearer: Option<&str>, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
        let response = self.send(i, bearer, &body).await;
        assert_eq!(response["jsonrpc"], "2.0", "{method}: {response}");
        assert_eq!(response["id"], 1, "{method}: {response}");
        response
    }

    /// The whole response to a call with the admin token.
    async fn admin_call(&self, i: usize, method: &str, params: Value) -> Value {
        self.call_as(i, Some(ADMIN), method, params).await
    }

    /// The result of an admin call that must succeed.
    async fn admin(&self, i: usize, method: &str, params: Value) -> Value {
        let response = self.admin_call(i, method, params.clone()).await;
        result_of(&response, &format!("{method} {params} via node {}", i + 1))
    }

    /// The whole response to a call without a token.
    async fn call(&self, i: usize, method: &str, params: Value) -> Value {
        self.call_as(i, None, method, params).await
    }

    /// The result of a call without a token that must succeed.
    async fn read(&self, i: usize, method: &str, params: Value) -> Value {
        let response = self.call(i, method, params.clone()).await;
        result_of(&response, &format!("{method} {params} via node {}", i + 1))
    }

    /// Borrows `uuid` (feature by [`feature_of`]) for `host` over [now+from, now+until)
    /// (`from` None: from now); returns the whole response.
    async fn try_borrow(
        &self,
        i: usize,
        uuid: &str,
        host: &str,
        from: Option<i64>,
        until: i64,
    ) -> Value {
        self.call(i, "BorrowLicenseV1", borrow_params(uuid, host, from, until))
            .await
    }

    /// Like [`Admin::try_borrow`], panicking on a refusal; returns the result
    /// (`license`, `borrowId`, `returnToken`).
    async fn borrow(
        &self,
        i: usize,
        uuid: &str,
        host: &str,
        from: Option<i64>,
        until: i64,
    ) -> Value {
        let response = self.try_borrow(i, uuid, host, from, until).await;
        result_of(
            &response,
            &format!("borrow of {uuid} for {host} via node {}", i + 1),
        )
    }

    /// `GetBorrowedLicenseV1`'s license string.
    async fn license_string(&self, i: usize, borrow_id: &str) -> String {
        let got = self
            .read(i, "GetBorrowedLicenseV1", json!({"borrowId": borrow_id}))
            .await;
        text(&got, "license")
    }

    /// `ListLicensesV1`'s entry of `uuid`, or None.
    async fn listed(&self, i: usize, uuid: &str) -> Option<Value> {
        let list = self.read(i, "ListLicensesV1", json!([])).await;
        list.as_array()
            .expect("ListLicensesV1 result is an array")
            .iter()
            .find(|license| license["uuid"] == uuid)
            .cloned()
    }

    /// The borrow ids `ListLicensesV1` lists under `uuid` on node `i`.
    async fn listed_borrows(&self, i: usize, uuid: &str) -> BTreeSet<String> {
        let license = self
            .listed(i, uuid)
            .await
            .unwrap_or_else(|| panic!("{uuid} not listed by node {}", i + 1));
        license["borrowedIntervals"]
            .as_array()
            .map(|intervals| intervals.iter().map(|i| text(i, "borrowId")).collect())
            .unwrap_or_default()
    }

    /// Every item of a paged listing (`ListBorrowsV1`, `ListAuditV1`, `ListHostsV1`),
    /// following `nextCursor`, each page through the next node (starting at `first`).
    async fn page_all(
        &self,
        first: usize,
        admin: bool,
        method: &str,
        params: Value,
        member: &str,
        limit: usize,
    ) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        for (page, node) in (first..).enumerate() {
            assert!(page < 100_000, "{method} pages without end");
            let mut params = params.clone();
            params["limit"] = json!(limit);
            if let Some(cursor) = &cursor {
                params["cursor"] = json!(cursor);
            }
            let bearer = admin.then_some(ADMIN);
            let response = self.call_as(node % 3, bearer, method, params.clone()).await;
            let result = result_of(&response, &format!("{method} {params}"));
            let batch = items(&result, member);
            assert!(
                batch.len() <= limit,
                "{method}: {} items on a page of at most {limit}",
                batch.len()
            );
            all.extend(batch);
            match result.get("nextCursor") {
                None => break,
                Some(Value::String(next)) => cursor = Some(next.clone()),
                Some(other) => panic!("{method}: nextCursor is a string or absent: {other}"),
            }
        }
        all
    }

    /// Every audit entry (admin), oldest first.
    async fn audit(&self, first: usize, filter: Value) -> Vec<Value> {
        self.page_all(first, true, "ListAuditV1", filter, "entries", 200)
            .await
    }

    /// The highest audit `seq` so far (0 when the trail is empty).
    async fn last_seq(&self) -> u64 {
        self.audit(0, json!({}))
            .await
            .iter()
            .filter_map(|entry| entry["seq"].as_u64())
            .max()
            .unwrap_or(0)
    }

    /// The `--pool` file node `i` was started with.
    fn pool_path(&self, i: usize) -> PathBuf {
        let args = &self.cluster.nodes[i].spec().args;
        let at = args
            .iter()
            .position(|arg| arg == "--pool")
            .expect("nodes are started with --pool");
        PathBuf::from(&args[at + 1])
    }
}

/// The feature of the licenses the tests use: `MVTec_HDevelop` for uuids starting with
/// `hdevelop`, `MVTec_HALCON` otherwise.
fn feature_of(uuid: &str) -> &'static str {
    if uuid.starts_with("hdevelop") {
        "MVTec_HDevelop"
    } else {
        "MVTec_HALCON"
    }
}

fn borrow_params(uuid: &str, host: &str, from: Option<i64>, until: i64) -> Value {
    let mut params = json!({"feature": feature_of(uuid), "uuid": uuid, "hostId": host,
                            "validUntil": at(until)});
    if let Some(from) = from {
        params["validFrom"] = json!(at(from));
    }
    params
}

/// Polls `check` (every 200 ms) until it is true or `timeout` passes.
async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------------
// 1. Every method through any node; admin methods refused without the admin token.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_administration_method_works_through_any_node_and_admin_methods_need_the_admin_token()
{
    let pool = pool_text(&[halcon("halcon-1", 5), hdevelop("hdevelop-1", 2)]);
    let admin = Admin::start(&pool).await;

    let spec = json!({"feature": "MVTec_HALCON", "uuid": "added-1", "version": "26.05",
                      "edition": "Steady", "modules": "fcbdo", "count": 5,
                      "validFrom": "2026-01-01T00:00:00Z", "validUntil": "2098-12-31T23:59:59Z",
                      "maxBorrowDuration": "30d", "maxBorrowed": 3, "maxPerHost": 1});
    let someone = host(0xA1);

    // Without the admin token, or with a wrong one: 38 through every node, nothing done.
    let admin_calls: Vec<(&str, Value)> = vec![
        ("AddLicenseV1", json!({"license": spec})),
        (
            "UpdateLicenseV1",
            json!({"feature": "MVTec_HALCON", "uuid": "halcon-1", "set": {"count": 1}}),
        ),
        (
            "RemoveLicenseV1",
            json!({"feature": "MVTec_HALCON", "uuid": "halcon-1"}),
        ),
        (
            "PlanPoolV1",
            json!({"pool": json!([halcon("halcon-1", 5)])}),
        ),
        (
            "ApplyPoolV1",
            json!({"pool": json!([halcon("halcon-1", 5)])}),
        ),
        ("SetHostV1", json!({"hostId": someone, "name": "intruder"})),
        ("BlockHostV1", json!({"hostId": someone, "reason": "no"})),
        ("UnblockHostV1", json!({"hostId": someone})),
        ("ListAuditV1", json!({})),
    ];
    for (n, (method, params)) in admin_calls.iter().enumerate() {
        for node in 0..3 {
            let bearer = if (n + node) % 2 == 0 {
                None
            } else {
                Some("not-the-admin-token")
            };
            let response = admin.call_as(node, bearer, method, params.clone()).await;
            refused(
                &response,
                UNAUTHORIZED,
                &format!("{method} via node {} with {bearer:?}", node + 1),
            );
        }
    }
    for node in 0..3 {
        assert!(
            admin.listed(node, "added-1").await.is_none(),
            "a refused AddLicenseV1 added the license"
        );
        let halcon_1 = admin.listed(node, "halcon-1").await.expect("halcon-1 kept");
        assert_eq!(
            halcon_1["count"], 5,
            "a refused update changed it: {halcon_1}"
        );
        let hosts = admin
            .read(node, "ListHostsV1", json!({"hostId": someone}))
            .await;
        assert!(
            items(&hosts, "hosts").is_empty(),
            "a refused SetHostV1/BlockHostV1 registered the host: {hosts}"
        );
    }

    // AddLicenseV1 through node 1: the AdminLicense comes back, every node lists it.
    let added = admin
        .admin(0, "AddLicenseV1", json!({"license": spec}))
        .await;
    let license = &added["license"];
    for name in ["feature", "uuid", "version", "edition", "modules", "count"] {
        assert_eq!(license[name], spec[name], "{name}: {added}");
    }
    assert_eq!(license["validFrom"], "2026-01-01T00:00:00Z", "{added}");
    assert_eq!(license["validUntil"], "2098-12-31T23:59:59Z", "{added}");
    assert_eq!(license["maxBorrowDuration"], "30d", "{added}");
    assert_eq!(license["maxBorrowed"], 3, "{added}");
    assert_eq!(license["maxPerHost"], 1, "{added}");
    for node in 0..3 {
        let listed = admin.listed(node, "added-1").await;
        let listed = listed.unwrap_or_else(|| panic!("added-1 not listed by node {}", node + 1));
        assert_eq!(listed["count"], 5, "{listed}");
        assert_eq!(listed["modules"], "fcbdo", "{listed}");
    }
    // Adding it again: 40 through any node; an invalid field: -32602 naming the field.
    for node in 1..3 {
        let again = admin
            .admin_call(node, "AddLicenseV1", json!({"license": spec}))
            .await;
        refused(&again, CONFLICT, "adding an existing license");
    }
    let mut invalid = spec.clone();
    invalid["uuid"] = json!("added-2");
    invalid["modules"] = json!("not modules");
    let bad = admin
        .admin_call(2, "AddLicenseV1", json!({"license": invalid}))
        .await;
    let error = refused(&bad, INVALID_PARAMS, "a license with bad modules");
    assert!(
        reason_of(&error).contains("modules"),
        "names the field: {bad}"
    );
    assert!(admin.listed(0, "added-2").await.is_none());

    // UpdateLicenseV1 through node 2; null clears an optional field.
    let updated = admin
        .admin(
            1,
            "UpdateLicenseV1",
            json!({"feature": "MVTec_HALCON", "uuid": "added-1",
                   "set": {"count": 7, "maxPerHost": null, "maxBorrowed": 4}}),
        )
        .await;
    assert_eq!(updated["license"]["count"], 7, "{updated}");
    assert_eq!(updated["license"]["maxBorrowed"], 4, "{updated}");
    assert!(
        updated["license"].get("maxPerHost").is_none(),
        "a cleared field is absent: {updated}"
    );
    assert_eq!(updated["overBooked"], json!([]), "{updated}");
    for node in 0..3 {
        let listed = admin.listed(node, "added-1").await.expect("added-1");
        assert_eq!(listed["count"], 7, "node {}: {listed}", node + 1);
    }
    let unknown = admin
        .admin_call(
            2,
            "UpdateLicenseV1",
            json!({"feature": "MVTec_HALCON", "uuid": "no-such", "set": {"count": 1}}),
        )
        .await;
    refused(&unknown, NO_LICENSE, "updating an unknown license");
    // Back to one per host, to see the policy at work.
    admin
        .admin(
            2,
            "UpdateLicenseV1",
            json!({"feature": "MVTec_HALCON", "uuid": "added-1", "set": {"maxPerHost": 1}}),
        )
        .await;

    // Borrows through node 3 of added-1; the policy fields count.
    let alice = host(0xA11CE);
    let borrowed = admin
        .call(
            2,
            "BorrowLicenseV1",
            json!({"feature": "MVTec_HALCON", "uuid": "added-1", "hostId": alice,
                   "validUntil": at(3_600), "userInfo": "Alice Example"}),
        )
        .await;
    let borrowed = result_of(&borrowed, "borrow of added-1");
    let alice_id = text(&borrowed, "borrowId");
    let alice_license = text(&borrowed, "license");
    let second = admin
        .try_borrow(0, "added-1", &alice, Some(7_200), 10_800)
        .await;
    let error = refused(&second, NOT_AVAILABLE, "a second borrow over maxPerHost 1");
    assert!(
        reason_of(&error).contains("maxPerHost"),
        "names the limit: {second}"
    );
    for n in 0..3 {
        admin
            .borrow(n, "added-1", &host(0xB0 + n as u64), None, 3_600)
            .await;
    }
    let over = admin
        .try_borrow(1, "added-1", &host(0xBF), None, 3_600)
        .await;
    let error = refused(&over, NOT_AVAILABLE, "a fifth borrow over maxBorrowed 4");
    assert!(
        reason_of(&error).contains("maxBorrowed"),
        "names the limit: {over}"
    );

    // ListBorrowsV1 (no token) through every node, with its filters.
    for node in 0..3 {
        let listed = admin
            .read(node, "ListBorrowsV1", json!({"uuid": "added-1"}))
            .await;
        let borrows = items(&listed, "borrows");
        assert_eq!(borrows.len(), 4, "node {}: {listed}", node + 1);
        assert!(listed.get("nextCursor").is_none(), "one page: {listed}");
        borrows.iter().for_each(assert_borrow_shape);
        let mine = borrows
            .iter()
            .find(|borrow| borrow["borrowId"] == alice_id.as_str())
            .unwrap_or_else(|| panic!("alice's borrow not listed: {listed}"));
        assert_eq!(mine["feature"], "MVTec_HALCON", "{mine}");
        assert_eq!(mine["hostId"], alice.as_str(), "{mine}");
        assert_eq!(mine["userInfo"], "Alice Example", "{mine}");
        assert_eq!(mine["status"], "active", "{mine}");
        assert!(mine.get("returnedAt").is_none(), "{mine}");

        let by_user = admin
            .read(node, "ListBorrowsV1", json!({"userInfo": "ALICE EX"}))
            .await;
        assert_eq!(
            borrow_ids_in(&by_user, "borrows"),
            BTreeSet::from([alice_id.clone()])
        );
        let by_host = admin
            .read(node, "ListBorrowsV1", json!({"hostId": alice}))
            .await;
        assert_eq!(
            borrow_ids_in(&by_host, "borrows"),
            BTreeSet::from([alice_id.clone()])
        );
        let returned = admin
            .read(node, "ListBorrowsV1", json!({"status": "returned"}))
            .await;
        assert!(items(&returned, "borrows").is_empty(), "{returned}");
        let other = admin
            .read(node, "ListBorrowsV1", json!({"feature": "MVTec_HDevelop"}))
            .await;
        assert!(items(&other, "borrows").is_empty(), "{other}");
        let later = admin
            .read(
                node,
                "ListBorrowsV1",
                json!({"from": at(5 * 3_600), "until": at(6 * 3_600)}),
            )
            .await;
        assert!(
            items(&later, "borrows").is_empty(),
            "none overlaps: {later}"
        );
    }

    // ListHostsV1 (no token) through every node.
    for node in 0..3 {
        let hosts = admin
            .read(node, "ListHostsV1", json!({"hostId": alice}))
            .await;
        let hosts = items(&hosts, "hosts");
        assert_eq!(hosts.len(), 1, "{hosts:?}");
        let h = &hosts[0];
        assert_host_shape(h);
        assert_eq!(h["hostId"], alice.as_str(), "{h}");
        assert_eq!(h["borrows"], 1, "{h}");
        assert!(
            h["firstBorrow"].is_string() && h["lastBorrow"].is_string(),
            "{h}"
        );
        for absent in ["name", "notes", "blocked"] {
            assert!(h.get(absent).is_none(), "{absent} unset: {h}");
        }
        let all = admin.read(node, "ListHostsV1", json!({})).await;
        let all = items(&all, "hosts");
        all.iter().for_each(assert_host_shape);
        let ids: Vec<String> = all.iter().map(|h| text(h, "hostId")).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "ordered by hostId");
        for borrower in [alice.clone(), host(0xB0), host(0xB1), host(0xB2)] {
            assert!(ids.contains(&borrower), "{borrower} not listed: {ids:?}");
        }
    }

    // SetHostV1 through node 2, seen through node 3; null clears; a new host is registered.
    let set = admin
        .admin(
            1,
            "SetHostV1",
            json!({"hostId": alice, "name": "build-07", "notes": "lab, 2nd floor"}),
        )
        .await;
    assert_host_shape(&set["host"]);
    assert_eq!(set["host"]["name"], "build-07", "{set}");
    assert_eq!(set["host"]["notes"], "lab, 2nd floor", "{set}");
    let seen = admin.read(2, "ListHostsV1", json!({"hostId": alice})).await;
    assert_eq!(seen["hosts"][0]["name"], "build-07", "{seen}");
    let cleared = admin
        .admin(2, "SetHostV1", json!({"hostId": alice, "notes": null}))
        .await;
    assert_eq!(cleared["host"]["name"], "build-07", "name kept: {cleared}");
    assert!(
        cleared["host"].get("notes").is_none(),
        "notes cleared: {cleared}"
    );
    let stranger = host(0x5EE);
    let registered = admin
        .admin(0, "SetHostV1", json!({"hostId": stranger, "name": "spare"}))
        .await;
    assert_eq!(
        registered["host"]["hostId"],
        stranger.as_str(),
        "{registered}"
    );
    let listed = admin
        .read(1, "ListHostsV1", json!({"hostId": stranger}))
        .await;
    assert_eq!(listed["hosts"][0]["name"], "spare", "{listed}");
    assert_eq!(listed["hosts"][0]["borrows"], 0, "{listed}");
    let long = admin
        .admin_call(
            1,
            "SetHostV1",
            json!({"hostId": stranger, "name": "n".repeat(129)}),
        )
        .await;
    refused(&long, INVALID_PARAMS, "a name of 129 characters");

    // BlockHostV1 through node 3 lists the host's borrows; idempotent; UnblockHostV1 too.
    let blocked = admin
        .admin(
            2,
            "BlockHostV1",
            json!({"hostId": alice, "reason": "lost laptop"}),
        )
        .await;
    assert_host_shape(&blocked["host"]);
    assert_eq!(
        blocked["host"]["blocked"]["reason"], "lost laptop",
        "{blocked}"
    );
    assert_eq!(
        borrow_ids_in(&blocked, "borrows"),
        BTreeSet::from([alice_id.clone()]),
        "{blocked}"
    );
    items(&blocked, "borrows")
        .iter()
        .for_each(assert_borrow_shape);
    let again = admin
        .admin(
            0,
            "BlockHostV1",
            json!({"hostId": alice, "reason": "lost laptop"}),
        )
        .await;
    assert!(again["host"]["blocked"].is_object(), "{again}");
    for node in 0..3 {
        let only_blocked = admin
            .read(node, "ListHostsV1", json!({"blocked": true}))
            .await;
        let ids: Vec<String> = items(&only_blocked, "hosts")
            .iter()
            .map(|h| text(h, "hostId"))
            .collect();
        assert_eq!(ids, std::slice::from_ref(&alice), "node {}", node + 1);
    }
    let unblocked = admin
        .admin(1, "UnblockHostV1", json!({"hostId": alice}))
        .await;
    assert!(unblocked["host"].get("blocked").is_none(), "{unblocked}");
    let unblocked = admin
        .admin(2, "UnblockHostV1", json!({"hostId": alice}))
        .await;
    assert!(unblocked["host"].get("blocked").is_none(), "{unblocked}");

    // CheckLicenseV1 (no token) through every node.
    for node in 0..3 {
        let checked = admin
            .read(node, "CheckLicenseV1", json!({"license": alice_license}))
            .await;
        assert_eq!(checked["signature"], "valid", "{checked}");
        assert_eq!(checked["status"], "active", "{checked}");
        assert!(checked["reason"].is_string(), "{checked}");
        assert_eq!(
            checked["borrow"]["borrowId"],
            alice_id.as_str(),
            "{checked}"
        );
        assert_borrow_shape(&checked["borrow"]);
    }

    // PlanPoolV1 through every node: read-only, with every part of a plan.
    let mut kept_added = spec.clone();
    kept_added["count"] = json!(7);
    kept_added["maxBorrowed"] = json!(4);
    let planned_pool = json!({"maxBorrowDuration": "7d",
                              "licenses": [halcon("halcon-1", 6), hdevelop("hdevelop-new", 1)]});
    for node in 0..3 {
        let plan = admin
            .admin(node, "PlanPoolV1", json!({"pool": planned_pool}))
            .await;
        assert_eq!(plan["applied"], false, "{plan}");
        let added: Vec<String> = items(&plan, "added")
            .iter()
            .map(|l| text(l, "uuid"))
            .collect();
        assert_eq!(added, ["hdevelop-new"], "{plan}");
        let changed = items(&plan, "changed");
        assert_eq!(changed.len(), 1, "{plan}");
        assert_eq!(changed[0]["uuid"], "halcon-1", "{plan}");
        assert_eq!(changed[0]["feature"], "MVTec_HALCON", "{plan}");
        assert_eq!(changed[0]["before"]["count"], 5, "{plan}");
        assert_eq!(changed[0]["after"]["count"], 6, "{plan}");
        assert_eq!(strings(&changed[0]["fields"]), ["count"], "{plan}");
        let removed: BTreeSet<String> = items(&plan, "removed")
            .iter()
            .map(|l| text(l, "uuid"))
            .collect();
        assert_eq!(
            removed,
            BTreeSet::from(["added-1".to_string(), "hdevelop-1".to_string()]),
            "{plan}"
        );
        assert_eq!(plan["unchanged"], 0, "{plan}");
        let settings = items(&plan, "settings");
        assert_eq!(
            settings,
            [json!({"field": "maxBorrowDuration", "before": "30d", "after": "7d"})],
            "{plan}"
        );
        // Removing added-1 would leave its borrows without a license.
        let conflicts = items(&plan, "conflicts");
        assert_eq!(conflicts.len(), 1, "{plan}");
        assert_eq!(conflicts[0]["uuid"], "added-1", "{plan}");
        assert_eq!(conflicts[0]["feature"], "MVTec_HALCON", "{plan}");
        assert!(conflicts[0]["reason"].is_string(), "{plan}");
        let named: BTreeSet<String> = strings(&conflicts[0]["borrows"]).into_iter().collect();
        assert!(named.contains(&alice_id), "{plan}");
        assert_eq!(named.len(), 4, "added-1's four borrows: {plan}");
    }
    // ApplyPoolV1 of that pool: 40, nothing changed.
    let conflict = admin
        .admin_call(1, "ApplyPoolV1", json!({"pool": planned_pool}))
        .await;
    let error = refused(
        &conflict,
        CONFLICT,
        "applying a pool that drops held borrows",
    );
    let conflicts = items(&error["data"], "conflicts");
    assert_eq!(conflicts.len(), 1, "{conflict}");
    assert_eq!(conflicts[0]["uuid"], "added-1", "{conflict}");
    for node in 0..3 {
        assert_eq!(
            admin.listed(node, "halcon-1").await.expect("halcon-1")["count"],
            5
        );
        assert!(admin.listed(node, "hdevelop-new").await.is_none());
        assert!(admin.listed(node, "added-1").await.is_some());
    }
    // A pool that keeps added-1 as it is: applied.
    let kept_pool = json!([halcon("halcon-1", 6), hdevelop("hdevelop-1", 2), kept_added]);
    let applied = admin
        .admin(2, "ApplyPoolV1", json!({"pool": kept_pool}))
        .await;
    assert_eq!(applied["applied"], true, "{applied}");
    assert_eq!(applied["unchanged"], 2, "{applied}");
    assert_eq!(items(&applied, "changed").len(), 1, "{applied}");
    assert!(items(&applied, "added").is_empty(), "{applied}");
    assert!(items(&applied, "removed").is_empty(), "{applied}");
    assert!(items(&applied, "conflicts").is_empty(), "{applied}");
    for node in 0..3 {
        let listed = admin.listed(node, "halcon-1").await.expect("halcon-1");
        assert_eq!(listed["count"], 6, "node {}: {listed}", node + 1);
        // The same pool again: nothing to do.
        let plan = admin
            .admin(node, "PlanPoolV1", json!({"pool": kept_pool}))
            .await;
        assert_eq!(plan["unchanged"], 3, "{plan}");
        assert!(items(&plan, "changed").is_empty(), "{plan}");
    }

    // RemoveLicenseV1: refused while borrows are held, forced through node 1, and plain
    // for a license without borrows; unknown: 34.
    let remove = json!({"feature": "MVTec_HALCON", "uuid": "added-1"});
    let held = admin.admin_call(2, "RemoveLicenseV1", remove.clone()).await;
    let error = refused(&held, CONFLICT, "removing a license with borrows");
    let named: BTreeSet<String> = items(&error["data"], "conflicts")
        .iter()
        .flat_map(|c| strings(&c["borrows"]))
        .collect();
    assert!(named.contains(&alice_id), "{held}");
    assert!(
        admin.listed(1, "added-1").await.is_some(),
        "a refused removal removed it"
    );
    let mut forced = remove.clone();
    forced["force"] = json!(true);
    let removed = admin.admin(0, "RemoveLicenseV1", forced).await;
    assert_eq!(removed["license"]["uuid"], "added-1", "{removed}");
    let over_booked = borrow_ids_in(&removed, "overBooked");
    assert_eq!(over_booked.len(), 4, "{removed}");
    assert!(over_booked.contains(&alice_id), "{removed}");
    for node in 0..3 {
        assert!(
            admin.listed(node, "added-1").await.is_none(),
            "node {}",
            node + 1
        );
        assert_eq!(admin.license_string(node, &alice_id).await, alice_license);
    }
    let plain = admin
        .admin(
            1,
            "RemoveLicenseV1",
            json!({"feature": "MVTec_HDevelop", "uuid": "hdevelop-1"}),
        )
        .await;
    assert_eq!(plain["overBooked"], json!([]), "{plain}");
    assert!(admin.listed(2, "hdevelop-1").await.is_none());
    let unknown = admin
        .admin_call(
            2,
            "RemoveLicenseV1",
            json!({"feature": "MVTec_HDevelop", "uuid": "hdevelop-1"}),
        )
        .await;
    refused(&unknown, NO_LICENSE, "removing an unknown license");

    // ListAuditV1 through every node: the same trail, in order, with what was done here.
    let mut trails = Vec::new();
    for node in 0..3 {
        let listed = admin
            .admin(node, "ListAuditV1", json!({"limit": 1000}))
            .await;
        assert!(
            listed.get("nextCursor").is_none(),
            "one page of 1000: {listed}"
        );
        let entries = items(&listed, "entries");
        entries.iter().for_each(assert_audit_shape);
        let seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "oldest first: {seqs:?}"
        );
        let kinds: BTreeSet<String> = entries.iter().map(|e| text(e, "kind")).collect();
        for kind in [
            "license-add",
            "license-update",
            "license-remove",
            "pool-apply",
            "host-update",
            "host-block",
            "host-unblock",
            "borrow",
            "refusal",
        ] {
            assert!(kinds.contains(kind), "no {kind} entry: {kinds:?}");
        }
        trails.push(entries);
    }
    assert_eq!(trails[0], trails[1], "nodes 1 and 2 show the same trail");
    assert_eq!(trails[0], trails[2], "nodes 1 and 3 show the same trail");
}

// ---------------------------------------------------------------------------------------
// 2. A renewal from a pool file while borrows are held.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_license_applied_from_a_pool_file_keeps_every_held_borrow_and_its_new_seats_can_be_borrowed(
) {
    let old_until = at(10 * 86_400);
    let mut renewing = halcon("renew", 3);
    renewing["validUntil"] = json!(old_until);
    let pool = pool_text(&[renewing.clone(), halcon("other", 2)]);
    let admin = Admin::start(&pool).await;

    let mut held = BTreeMap::new();
    for n in 0..3 {
        let borrowed = admin
            .borrow(n, "renew", &host(0x100 + n as u64), None, 3_600)
            .await;
        held.insert(text(&borrowed, "borrowId"), text(&borrowed, "license"));
    }
    let full = admin
        .try_borrow(1, "renew", &host(0x1FF), None, 3_600)
        .await;
    refused(&full, NOT_AVAILABLE, "a fourth borrow of three seats");
    let too_long = admin
        .try_borrow(2, "renew", &host(0x1FE), None, 20 * 86_400)
        .await;
    refused(
        &too_long,
        EXPIRED_LICENSE,
        "a borrow past the old validUntil",
    );

    // The renewed file: later validUntil, six seats.
    let new_until = at(400 * 86_400);
    let mut renewed = renewing.clone();
    renewed["count"] = json!(6);
    renewed["validUntil"] = json!(new_until);
    let renewed_pool: Value =
        serde_json::from_str(&pool_text(&[renewed, halcon("other", 2)])).expect("pool JSON");

    let plan = admin
        .admin(0, "PlanPoolV1", json!({"pool": renewed_pool}))
        .await;
    assert_eq!(plan["applied"], false, "{plan}");
    let changed = items(&plan, "changed");
    assert_eq!(changed.len(), 1, "{plan}");
    assert_eq!(changed[0]["uuid"], "renew", "{plan}");
    let mut fields = strings(&changed[0]["fields"]);
    fields.sort();
    assert_eq!(fields, ["count", "validUntil"], "{plan}");
    assert_eq!(
        changed[0]["before"]["validUntil"],
        old_until.as_str(),
        "{plan}"
    );
    assert_eq!(
        changed[0]["after"]["validUntil"],
        new_until.as_str(),
        "{plan}"
    );
    assert_eq!(plan["unchanged"], 1, "{plan}");
    assert!(items(&plan, "conflicts").is_empty(), "{plan}");

    let applied = admin
        .admin(1, "ApplyPoolV1", json!({"pool": renewed_pool}))
        .await;
    assert_eq!(applied["applied"], true, "{applied}");
    assert_eq!(items(&applied, "changed").len(), 1, "{applied}");
    assert!(items(&applied, "conflicts").is_empty(), "{applied}");

    let ids: BTreeSet<String> = held.keys().cloned().collect();
    for node in 0..3 {
        let listed = admin.listed(node, "renew").await.expect("renew listed");
        assert_eq!(listed["count"], 6, "node {}: {listed}", node + 1);
        assert_eq!(listed["validUntil"], new_until.as_str(), "{listed}");
        assert_eq!(
            admin.listed_borrows(node, "renew").await,
            ids,
            "node {}",
            node + 1
        );
        for (id, license) in &held {
            // The issued document is unchanged by the renewal.
            assert_eq!(
                &admin.license_string(node, id).await,
                license,
                "node {}",
                node + 1
            );
        }
    }

    // The new seats and the new validity are usable: three more borrows, one of them past
    // the old end; then the seventh is refused.
    let past_old_end = admin
        .borrow(2, "renew", &host(0x1FE), None, 20 * 86_400)
        .await;
    let mut all = ids.clone();
    all.insert(text(&past_old_end, "borrowId"));
    for n in 0..2 {
        let borrowed = admin
            .borrow(n, "renew", &host(0x200 + n as u64), None, 3_600)
            .await;
        all.insert(text(&borrowed, "borrowId"));
    }
    let seventh = admin
        .try_borrow(2, "renew", &host(0x2FF), None, 3_600)
        .await;
    refused(&seventh, NOT_AVAILABLE, "a seventh borrow of six seats");
    for node in 0..3 {
        assert_eq!(
            admin.listed_borrows(node, "renew").await,
            all,
            "node {}",
            node + 1
        );
    }
}

// ---------------------------------------------------------------------------------------
// 3. A shrink below the seats held.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shrinking_a_license_below_its_held_seats_is_refused_with_the_borrows_unless_forced() {
    let pool = pool_text(&[halcon("shrink", 4)]);
    let admin = Admin::start(&pool).await;

    let mut held = BTreeMap::new();
    for n in 0..4 {
        let borrowed = admin
            .borrow(n % 3, "shrink", &host(0x300 + n as u64), None, 3_600)
            .await;
        held.insert(text(&borrowed, "borrowId"), text(&borrowed, "license"));
    }
    let ids: BTreeSet<String> = held.keys().cloned().collect();
    let shrink = json!({"feature": "MVTec_HALCON", "uuid": "shrink", "set": {"count": 2}});

    for node in 0..3 {
        let response = admin
            .admin_call(node, "UpdateLicenseV1", shrink.clone())
            .await;
        let error = refused(&response, CONFLICT, "a shrink below the held seats");
        let conflicts = items(&error["data"], "conflicts");
        assert_eq!(conflicts.len(), 1, "{response}");
        assert_eq!(conflicts[0]["uuid"], "shrink", "{response}");
        assert_eq!(conflicts[0]["feature"], "MVTec_HALCON", "{response}");
        assert!(conflicts[0]["reason"].is_string(), "{response}");
        let named: BTreeSet<String> = strings(&conflicts[0]["borrows"]).into_iter().collect();
        assert!(
            named.len() >= 2,
            "at least the two over-booked borrows: {response}"
        );
        assert!(
            named.is_subset(&ids),
            "only held borrows are named: {response}"
        );
    }
    // maxBorrowed below the held seats is refused the same way.
    let low_water = admin
        .admin_call(
            1,
            "UpdateLicenseV1",
            json!({"feature": "MVTec_HALCON", "uuid": "shrink", "set": {"maxBorrowed": 3}}),
        )
        .await;
    refused(&low_water, CONFLICT, "maxBorrowed below the held seats");
    for node in 0..3 {
        let listed = admin.listed(node, "shrink").await.expect("shrink");
        assert_eq!(listed["count"], 4, "a refused shrink changed it: {listed}");
    }

    // Forced: done, the over-booked borrows come back, all stay retrievable.
    let mut forced = shrink.clone();
    forced["force"] = json!(true);
    let done = admin.admin(2, "UpdateLicenseV1", forced).await;
    assert_eq!(done["license"]["count"], 2, "{done}");
    let over = items(&done, "overBooked");
    assert!(!over.is_empty(), "{done}");
    over.iter().for_each(assert_borrow_shape);
    let over: BTreeSet<String> = over.iter().map(|b| text(b, "borrowId")).collect();
    assert!(over.is_subset(&ids), "{done}");
    assert!(over.len() >= 2, "{done}");
    for node in 0..3 {
        let listed = admin.listed(node, "shrink").await.expect("shrink");
        assert_eq!(listed["count"], 2, "node {}: {listed}", node + 1);
        assert_eq!(
            admin.listed_borrows(node, "shrink").await,
            ids,
            "node {}",
            node + 1
        );
        for (id, license) in &held {
            assert_eq!(&admin.license_string(node, id).await, license);
        }
        // A new borrow over the new count.
        let refused_borrow = admin
            .try_borrow(node, "shrink", &host(0x3F0 + node as u64), None, 3_600)
            .await;
        refused(
            &refused_borrow,
            NOT_AVAILABLE,
            "a borrow over the shrunk count",
        );
    }
    // After the held borrows end, two seats are there.
    for n in 0..2 {
        admin
            .borrow(n, "shrink", &host(0x3E0 + n as u64), Some(7_200), 10_800)
            .await;
    }
    let third = admin
        .try_borrow(2, "shrink", &host(0x3E9), Some(7_200), 10_800)
        .await;
    refused(&third, NOT_AVAILABLE, "a third later borrow of two seats");
}

// ---------------------------------------------------------------------------------------
// 4. A blocked host.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_host_is_refused_through_every_node_until_it_is_unblocked() {
    let pool = pool_text(&[halcon("seats", 20)]);
    let admin = Admin::start(&pool).await;
    let suspect = host(0xBAD);

    let mut held = BTreeSet::new();
    for n in 0..2 {
        let borrowed = admin.borrow(n, "seats", &suspect, None, 3_600).await;
        held.insert(text(&borrowed, "borrowId"));
    }
    let upcoming = admin
        .borrow(2, "seats", &suspect, Some(7_200), 10_800)
        .await;
    held.insert(text(&upcoming, "borrowId"));

    let blocked = admin
        .admin(
            2,
            "BlockHostV1",
            json!({"hostId": suspect, "reason": "reported stolen"}),
        )
        .await;
    assert_eq!(blocked["host"]["hostId"], suspect.as_str(), "{blocked}");
    assert_eq!(
        blocked["host"]["blocked"]["reason"], "reported stolen",
        "{blocked}"
    );
    assert!(blocked["host"]["blocked"]["at"].is_string(), "{blocked}");
    assert_eq!(
        borrow_ids_in(&blocked, "borrows"),
        held,
        "current and upcoming borrows: {blocked}"
    );

    for node in 0..3 {
        let response = admin.try_borrow(node, "seats", &suspect, None, 3_600).await;
        let error = refused(
            &response,
            INVALID_HOST,
            &format!("a blocked host via node {}", node + 1),
        );
        let reason = reason_of(&error);
        assert!(reason.contains("blocked"), "{response}");
        assert!(reason.contains(&suspect), "names the host: {response}");
        assert!(
            reason.contains("reported stolen"),
            "gives the reason: {response}"
        );
        // Others borrow as before; the blocked host's borrows stay retrievable.
        admin
            .borrow(node, "seats", &host(0x600D + 1 + node as u64), None, 3_600)
            .await;
        for id in &held {
            admin.license_string(node, id).await;
        }
    }
    // The host id's other spelling is the same host.
    let lower = suspect.to_lowercase();
    let response = admin.try_borrow(1, "seats", &lower, None, 3_600).await;
    refused(&response, INVALID_HOST, "the blocked host in lower case");

    for node in 0..3 {
        let listed = admin
            .read(node, "ListHostsV1", json!({"blocked": true}))
            .await;
        let ids: Vec<String> = items(&listed, "hosts")
            .iter()
            .map(|h| text(h, "hostId"))
            .collect();
        assert_eq!(ids, std::slice::from_ref(&suspect), "node {}", node + 1);
    }
    // The admin returns one of its borrows with the admin token.
    let first = held.iter().next().unwrap().clone();
    let returned = admin
        .admin(0, "ReturnLicenseV1", json!({"borrowId": first}))
        .await;
    assert_eq!(returned["borrowId"], first.as_str(), "{returned}");

    let unblocked = admin
        .admin(0, "UnblockHostV1", json!({"hostId": suspect}))
        .await;
    assert!(unblocked["host"].get("blocked").is_none(), "{unblocked}");
    for node in 0..3 {
        admin.borrow(node, "seats", &suspect, None, 3_600).await;
    }
    let listed = admin.read(1, "ListHostsV1", json!({"blocked": true})).await;
    assert!(items(&listed, "hosts").is_empty(), "{listed}");
    // Other hosts never showed a block.
    let listed = admin
        .read(2, "ListHostsV1", json!({"hostId": host(0x600D + 1)}))
        .await;
    let hosts = items(&listed, "hosts");
    assert_eq!(hosts.len(), 1, "{listed}");
    assert!(hosts[0].get("blocked").is_none(), "{listed}");
}

// ---------------------------------------------------------------------------------------
// 5. Paging through 10 000 borrows while more arrive.
// ---------------------------------------------------------------------------------------

/// Borrows `count` seats of `uuid` for hosts `first_host..`, from `clients` concurrent
/// clients sending JSON-RPC batches of `batch` through the three nodes in turn; returns
/// the borrow ids.
async fn borrow_many(
    admin: &Arc<Admin>,
    uuid: &'static str,
    first_host: u64,
    count: usize,
    clients: usize,
    batch: usize,
) -> Vec<String> {
    let next = Arc::new(AtomicUsize::new(0));
    let until = at(3_600);
    let mut tasks = Vec::new();
    for client in 0..clients {
        let admin = admin.clone();
        let next = next.clone();
        let until = until.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let start = next.fetch_add(batch, Ordering::Relaxed);
                if start >= count {
                    break;
                }
                let end = (start + batch).min(count);
                let body: Vec<Value> = (start..end)
                    .map(|n| {
                        json!({"jsonrpc": "2.0", "method": "BorrowLicenseV1", "id": n,
                               "params": {"feature": feature_of(uuid), "uuid": uuid,
                                          "hostId": host(first_host + n as u64),
                                          "validUntil": until}})
                    })
                    .collect();
                let answer = admin.send(client % 3, None, &Value::Array(body)).await;
                let answers = answer
                    .as_array()
                    .unwrap_or_else(|| panic!("a batch answers an array: {answer}"));
                assert_eq!(answers.len(), end - start, "one answer per request");
                for response in answers {
                    let result = result_of(response, "a bulk borrow");
                    ids.push(text(&result, "borrowId"));
                }
            }
            ids
        }));
    }
    let mut ids = Vec::with_capacity(count);
    for task in tasks {
        ids.extend(task.await.expect("borrowing client"));
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paging_through_ten_thousand_borrows_returns_each_exactly_once_while_more_arrive() {
    const TOTAL: usize = 10_000;
    let pool = pool_text(&[halcon("bulk", 20_000)]);
    let admin = Arc::new(Admin::start(&pool).await);

    let started = Instant::now();
    let ids = borrow_many(&admin, "bulk", 0, TOTAL, 32, 25).await;
    eprintln!("{TOTAL} borrows in {:?}", started.elapsed());
    let existing: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(existing.len(), TOTAL, "distinct borrow ids");

    // Borrows keep arriving while the pages are read.
    let stop = Arc::new(AtomicBool::new(false));
    let arrived = Arc::new(Mutex::new(Vec::<String>::new()));
    let borrower = {
        let (admin, stop, arrived) = (admin.clone(), stop.clone(), arrived.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let result = admin
                    .borrow((n % 3) as usize, "bulk", &host(0x100_0000 + n), None, 3_600)
                    .await;
                arrived.lock().unwrap().push(text(&result, "borrowId"));
                n += 1;
            }
        })
    };
    assert!(
        eventually(Duration::from_secs(10), || {
            let arrived = arrived.clone();
            async move { arrived.lock().unwrap().len() >= 3 }
        })
        .await,
        "the concurrent borrower makes no progress"
    );
    let arrived_before = arrived.lock().unwrap().len();
    let paging = Instant::now();
    let listed = admin
        .page_all(
            0,
            false,
            "ListBorrowsV1",
            json!({"uuid": "bulk"}),
            "borrows",
            500,
        )
        .await;
    eprintln!("paged {} borrows in {:?}", listed.len(), paging.elapsed());
    let arrived_during = arrived.lock().unwrap().len() - arrived_before;
    stop.store(true, Ordering::Relaxed);
    borrower.await.expect("concurrent borrower");
    let concurrent: BTreeSet<String> = arrived.lock().unwrap().iter().cloned().collect();
    assert!(arrived_during > 0, "no borrow arrived while paging");

    let mut seen = BTreeMap::<String, usize>::new();
    for borrow in &listed {
        *seen.entry(text(borrow, "borrowId")).or_default() += 1;
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).collect();
    assert!(repeated.is_empty(), "listed more than once: {repeated:?}");
    let missing: Vec<_> = existing
        .iter()
        .filter(|id| !seen.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} existing borrows not listed, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let strangers: Vec<_> = seen
        .keys()
        .filter(|id| !existing.contains(*id) && !concurrent.contains(*id))
        .collect();
    assert!(
        strangers.is_empty(),
        "unknown borrows listed: {strangers:?}"
    );
    // Ordered by the time the borrow was made.
    let issued: Vec<String> = listed.iter().map(|b| text(b, "issuedAt")).collect();
    assert!(
        issued.windows(2).all(|w| w[0] <= w[1]),
        "borrows are listed in the order they were made"
    );
    listed.iter().take(3).for_each(assert_borrow_shape);

    // Once nothing arrives, a second walk lists everything exactly once.
    let again = admin
        .page_all(
            1,
            false,
            "ListBorrowsV1",
            json!({"uuid": "bulk"}),
            "borrows",
            1000,
        )
        .await;
    let again_ids: Vec<String> = again.iter().map(|b| text(b, "borrowId")).collect();
    let again_set: BTreeSet<String> = again_ids.iter().cloned().collect();
    assert_eq!(again_ids.len(), again_set.len(), "no borrow twice");
    let everything: BTreeSet<String> = existing.union(&concurrent).cloned().collect();
    assert_eq!(again_set, everything);
}

// ---------------------------------------------------------------------------------------
// 6. The audit trail accounts for every acknowledged borrow and return.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_audit_trail_accounts_for_every_acknowledged_borrow_return_refusal_and_admin_change() {
    const BORROWS: usize = 90;
    const RETURNS: usize = 35;
    const FULL_REFUSALS: usize = 5;
    let pool = pool_text(&[halcon("audited", 1000), halcon("single", 1)]);
    let admin = Arc::new(Admin::start(&pool).await);

    // Borrows through every node, 10 clients at a time.
    let mut tasks = Vec::new();
    for client in 0..10usize {
        let admin = admin.clone();
        tasks.push(tokio::spawn(async move {
            let mut made = Vec::new();
            for n in (client..BORROWS).step_by(10) {
                let result = admin
                    .borrow(n % 3, "audited", &host(0xA00 + n as u64), None, 3_600)
                    .await;
                made.push((
                    text(&result, "borrowId"),
                    text(&result, "returnToken"),
                    host(0xA00 + n as u64),
                ));
            }
            made
        }));
    }
    let mut borrows = Vec::new();
    for task in tasks {
        borrows.extend(task.await.expect("borrowing client"));
    }
    // The one seat of `single`, then refusals for it.
    let single = admin.borrow(1, "single", &host(0xB00), None, 3_600).await;
    let single_id = text(&single, "borrowId");
    for n in 0..FULL_REFUSALS {
        let response = admin
            .try_borrow(n % 3, "single", &host(0xB01 + n as u64), None, 3_600)
            .await;
        refused(&response, NOT_AVAILABLE, "the second borrow of one seat");
    }
    // Returns through every node.
    let mut returned = BTreeSet::new();
    for (n, (id, token, _)) in borrows.iter().take(RETURNS).enumerate() {
        let answer = admin
            .read(
                n % 3,
                "ReturnLicenseV1",
                json!({"borrowId": id, "returnToken": token}),
            )
            .await;
        assert!(answer["returnedAt"].is_string(), "{answer}");
        returned.insert(id.clone());
    }
    // Admin changes, each through a known node.
    admin
        .admin(
            1,
            "AddLicenseV1",
            json!({"license": hdevelop("hdevelop-audit", 2)}),
        )
        .await;
    admin
        .admin(
            2,
            "UpdateLicenseV1",
            json!({"feature": "MVTec_HALCON", "uuid": "audited", "set": {"count": 999}}),
        )
        .await;
    let blocked_host = host(0xC00);
    admin
        .admin(
            0,
            "BlockHostV1",
            json!({"hostId": blocked_host, "reason": "audit test"}),
        )
        .await;
    let response = admin
        .try_borrow(2, "audited", &blocked_host, None, 3_600)
        .await;
    refused(&response, INVALID_HOST, "a blocked host");

    let mut acknowledged: BTreeMap<String, String> = borrows
        .iter()
        .map(|(id, _, host)| (id.clone(), host.clone()))
        .collect();
    acknowledged.insert(single_id.clone(), host(0xB00));
    assert_eq!(acknowledged.len(), BORROWS + 1);

    // The whole trail, 50 entries a page, each page through the next node.
    let entries = admin
        .page_all(0, true, "ListAuditV1", json!({}), "entries", 50)
        .await;
    entries.iter().for_each(assert_audit_shape);
    let seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "each entry once, oldest first: {seqs:?}"
    );
    let of_kind =
        |kind: &str| -> Vec<&Value> { entries.iter().filter(|e| e["kind"] == kind).collect() };

    let mut borrowed_entries = BTreeMap::<String, usize>::new();
    for entry in of_kind("borrow") {
        let id = text(entry, "borrowId");
        *borrowed_entries.entry(id.clone()).or_default() += 1;
        let host = acknowledged
            .get(&id)
            .unwrap_or_else(|| panic!("a borrow entry for a borrow nobody made: {entry}"));
        assert_eq!(entry["hostId"], host.as_str(), "{entry}");
        assert_eq!(entry["feature"], "MVTec_HALCON", "{entry}");
        assert!(
            entry["uuid"] == "audited" || entry["uuid"] == "single",
            "{entry}"
        );
        assert_eq!(entry["actor"], "client", "{entry}");
    }
    for id in acknowledged.keys() {
        assert_eq!(
            borrowed_entries.get(id).copied(),
            Some(1),
            "acknowledged borrow {id} in exactly one borrow entry"
        );
    }
    let mut returned_entries = BTreeMap::<String, usize>::new();
    for entry in of_kind("return") {
        *returned_entries.entry(text(entry, "borrowId")).or_default() += 1;
        assert_eq!(entry["uuid"], "audited", "{entry}");
    }
    assert_eq!(
        returned_entries.keys().cloned().collect::<BTreeSet<_>>(),
        returned,
        "the returned borrows, and only them"
    );
    assert!(
        returned_entries.values().all(|&n| n == 1),
        "{returned_entries:?}"
    );

    let refusals = of_kind("refusal");
    let full: Vec<_> = refusals.iter().filter(|e| e["uuid"] == "single").collect();
    assert_eq!(full.len(), FULL_REFUSALS, "{full:?}");
    for entry in &full {
        assert_eq!(entry["code"], NOT_AVAILABLE, "{entry}");
        assert_eq!(entry["feature"], "MVTec_HALCON", "{entry}");
        assert!(entry["hostId"].is_string(), "{entry}");
        assert!(entry.get("borrowId").is_none(), "{entry}");
    }
    let blocked: Vec<_> = refusals
        .iter()
        .filter(|e| e["hostId"] == blocked_host.as_str())
        .collect();
    assert_eq!(blocked.len(), 1, "{refusals:?}");
    assert_eq!(blocked[0]["code"], INVALID_HOST, "{}", blocked[0]);
    assert_eq!(
        refusals.len(),
        FULL_REFUSALS + 1,
        "no other refusals: {refusals:?}"
    );

    let add = of_kind("license-add");
    let add: Vec<_> = add
        .iter()
        .filter(|e| e["uuid"] == "hdevelop-audit")
        .collect();
    assert_eq!(add.len(), 1, "{add:?}");
    assert_eq!(add[0]["actor"], "admin", "{}", add[0]);
    assert_eq!(add[0]["node"], 2, "sent to node 2: {}", add[0]);
    assert_eq!(add[0]["feature"], "MVTec_HDevelop", "{}", add[0]);
    let update = of_kind("license-update");
    let update: Vec<_> = update.iter().filter(|e| e["uuid"] == "audited").collect();
    assert_eq!(update.len(), 1, "{update:?}");
    assert_eq!(update[0]["actor"], "admin", "{}", update[0]);
    assert_eq!(update[0]["node"], 3, "sent to node 3: {}", update[0]);
    let block = of_kind("host-block");
    assert_eq!(block.len(), 1, "{block:?}");
    assert_eq!(block[0]["actor"], "admin", "{}", block[0]);
    assert_eq!(block[0]["node"], 1, "sent to node 1: {}", block[0]);
    assert_eq!(block[0]["hostId"], blocked_host.as_str(), "{}", block[0]);

    // The filters give the same answers.
    let only_returns = admin.audit(1, json!({"kind": "return"})).await;
    assert_eq!(only_returns.len(), RETURNS, "kind filter");
    let (some_returned, _, _) = &borrows[0];
    let one = admin.audit(2, json!({"borrowId": some_returned})).await;
    let kinds: Vec<String> = one.iter().map(|e| text(e, "kind")).collect();
    assert_eq!(kinds, ["borrow", "return"], "borrowId filter: {one:?}");
    let by_admin = admin.audit(0, json!({"actor": "admin"})).await;
    assert!(
        by_admin.iter().all(|e| e["actor"] == "admin"),
        "{by_admin:?}"
    );
    assert!(by_admin.len() >= 3, "{by_admin:?}");
    let by_host = admin.audit(1, json!({"hostId": blocked_host})).await;
    let kinds: Vec<String> = by_host.iter().map(|e| text(e, "kind")).collect();
    assert_eq!(
        kinds,
        ["host-block", "refusal"],
        "hostId filter: {by_host:?}"
    );
    let singles = admin
        .audit(2, json!({"feature": "MVTec_HALCON", "kind": "refusal"}))
        .await;
    assert_eq!(singles.len(), FULL_REFUSALS + 1, "{singles:?}");
}

// ---------------------------------------------------------------------------------------
// 7. The declarative pool file.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_pool_file_is_applied_once_and_an_unsafe_one_is_not_applied() {
    let initial = [halcon("declared", 3), hdevelop("hdevelop-declared", 1)];
    let mut admin = Admin::start(&pool_text(&initial)).await;

    let mut held = BTreeSet::new();
    for n in 0..2 {
        let borrowed = admin
            .borrow(n, "declared", &host(0xD00 + n as u64), None, 3_600)
            .await;
        held.insert(text(&borrowed, "borrowId"));
    }
    let before = admin.last_seq().await;

    // Node 3 comes back with another pool file: more seats, one more license.
    let changed = [
        halcon("declared", 5),
        hdevelop("hdevelop-declared", 1),
        halcon("fresh", 2),
    ];
    let changed_text = pool_text(&changed);
    let shared = admin.pool_path(2);
    let own = shared.with_file_name("node-3-pool.json");
    std::fs::write(&own, &changed_text).expect("write node 3's pool");
    let mut args = admin.cluster.nodes[2].spec().args.clone();
    let at_pool = args.iter().position(|a| a == "--pool").expect("--pool");
    args[at_pool + 1] = own.display().to_string();
    admin.cluster.nodes[2].set_args(args);
    admin.cluster.restart(2).await;
    // A fresh client: keep-alive connections to the old process are gone.
    admin.http = Admin::client();

    let admin = admin;
    let applied = eventually(Duration::from_secs(30), || async {
        let declared = admin.listed(0, "declared").await;
        let fresh = admin.listed(1, "fresh").await;
        declared.is_some_and(|d| d["count"] == 5) && fresh.is_some()
    })
    .await;
    assert!(applied, "node 3's pool file was not applied within 30 s");
    for node in 0..3 {
        assert_eq!(
            admin.listed(node, "fresh").await.expect("fresh")["count"],
            2
        );
        assert_eq!(admin.listed_borrows(node, "declared").await, held);
    }
    let changed_pool: Value = serde_json::from_str(&changed_text).expect("pool JSON");
    for node in 0..3 {
        let plan = admin
            .admin(node, "PlanPoolV1", json!({"pool": changed_pool}))
            .await;
        assert!(items(&plan, "added").is_empty(), "{plan}");
        assert!(items(&plan, "changed").is_empty(), "{plan}");
        assert!(items(&plan, "removed").is_empty(), "{plan}");
        assert!(items(&plan, "conflicts").is_empty(), "{plan}");
        assert_eq!(plan["unchanged"], 3, "{plan}");
    }
    // Applied once, by node 3.
    let since: Vec<Value> = admin
        .audit(0, json!({}))
        .await
        .into_iter()
        .filter(|e| e["seq"].as_u64().unwrap_or(0) > before)
        .collect();
    let pool_applies: Vec<&Value> = since.iter().filter(|e| e["kind"] == "pool-apply").collect();
    assert_eq!(pool_applies.len(), 1, "one pool-apply entry: {since:?}");
    assert_eq!(pool_applies[0]["actor"], "node:3", "{}", pool_applies[0]);
    assert_eq!(pool_applies[0]["node"], 3, "{}", pool_applies[0]);
    let license_changes: Vec<&Value> = since
        .iter()
        .filter(|e| e["kind"] == "license-add" || e["kind"] == "license-update")
        .collect();
    assert_eq!(license_changes.len(), 2, "{license_changes:?}");
    for entry in &license_changes {
        assert_eq!(entry["actor"], "node:3", "{entry}");
    }
    let after_apply = since
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .max()
        .unwrap_or(before);

    // An unsafe file (below the two seats held) is planned with conflicts and never applied.
    let unsafe_text = pool_text(&[
        halcon("declared", 1),
        hdevelop("hdevelop-declared", 1),
        halcon("fresh", 2),
    ]);
    let unsafe_pool: Value = serde_json::from_str(&unsafe_text).expect("pool JSON");
    let plan = admin
        .admin(1, "PlanPoolV1", json!({"pool": unsafe_pool}))
        .await;
    let conflicts = items(&plan, "conflicts");
    assert_eq!(conflicts.len(), 1, "{plan}");
    let named: BTreeSet<String> = strings(&conflicts[0]["borrows"]).into_iter().collect();
    assert_eq!(named, held, "{plan}");
    std::fs::write(&own, &unsafe_text).expect("rewrite node 3's pool");
    // Nodes read their file every 10 s.
    tokio::time::sleep(Duration::from_secs(12)).await;
    for node in 0..3 {
        let listed = admin.listed(node, "declared").await.expect("declared");
        assert_eq!(listed["count"], 5, "the unsafe file was applied: {listed}");
        assert_eq!(admin.listed_borrows(node, "declared").await, held);
    }
    let since: Vec<Value> = admin
        .audit(2, json!({}))
        .await
        .into_iter()
        .filter(|e| e["seq"].as_u64().unwrap_or(0) > after_apply)
        .filter(|e| e["kind"] != "borrow" && e["kind"] != "refusal")
        .collect();
    assert!(
        since.is_empty(),
        "nothing applied from the unsafe file: {since:?}"
    );

    // The file is still watched: a safe edit after the unsafe one is applied.
    let safe_again = pool_text(&[
        halcon("declared", 6),
        hdevelop("hdevelop-declared", 1),
        halcon("fresh", 2),
    ]);
    std::fs::write(&own, &safe_again).expect("rewrite node 3's pool");
    let applied = eventually(Duration::from_secs(25), || async {
        admin
            .listed(2, "declared")
            .await
            .is_some_and(|d| d["count"] == 6)
    })
    .await;
    assert!(applied, "a safe edit after an unsafe one was not applied");
}

// ---------------------------------------------------------------------------------------
// 8. CheckLicenseV1.
// ---------------------------------------------------------------------------------------

/// `license` with one character of its signature (the part after the last `.`) changed.
fn tampered(license: &str) -> String {
    let dot = license.rfind('.').expect("LIC1.payload.signature");
    let mut bytes = license.as_bytes().to_vec();
    let at = dot + 1 + 10;
    assert!(
        at < bytes.len(),
        "a signature of more than 10 characters: {license}"
    );
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ASCII")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_license_tells_a_valid_active_license_from_a_returned_or_tampered_one() {
    let pool = pool_text(&[halcon("checked", 5)]);
    let admin = Admin::start(&pool).await;

    let borrowed = admin.borrow(0, "checked", &host(0xE00), None, 3_600).await;
    let license = text(&borrowed, "license");
    let id = text(&borrowed, "borrowId");
    let token = text(&borrowed, "returnToken");
    let upcoming = admin
        .borrow(1, "checked", &host(0xE01), Some(3_600), 7_200)
        .await;

    for node in 0..3 {
        let checked = admin
            .read(node, "CheckLicenseV1", json!({"license": license}))
            .await;
        assert_eq!(checked["signature"], "valid", "{checked}");
        assert_eq!(checked["status"], "active", "{checked}");
        assert!(checked["reason"].is_string(), "{checked}");
        assert_eq!(checked["borrow"]["borrowId"], id.as_str(), "{checked}");
        assert_eq!(checked["borrow"]["status"], "active", "{checked}");
        assert_borrow_shape(&checked["borrow"]);

        let later = admin
            .read(
                node,
                "CheckLicenseV1",
                json!({"license": upcoming["license"]}),
            )
            .await;
        assert_eq!(later["signature"], "valid", "{later}");
        assert_eq!(later["status"], "upcoming", "{later}");
    }

    let returned = admin
        .read(
            1,
            "ReturnLicenseV1",
            json!({"borrowId": id, "returnToken": token}),
        )
        .await;
    assert!(returned["returnedAt"].is_string(), "{returned}");
    for node in 0..3 {
        let checked = admin
            .read(node, "CheckLicenseV1", json!({"license": license}))
            .await;
        assert_eq!(checked["signature"], "valid", "{checked}");
        assert_eq!(checked["status"], "returned", "{checked}");
        assert!(checked["borrow"]["returnedAt"].is_string(), "{checked}");
    }

    // A changed signature, a changed payload, and something that is no license at all:
    // answers, never errors.
    let forged = tampered(&license);
    assert_ne!(forged, license);
    let mut payload_changed = license.clone().into_bytes();
    let payload_at = "LIC1.".len() + 12;
    payload_changed[payload_at] = if payload_changed[payload_at] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let payload_changed = String::from_utf8(payload_changed).expect("ASCII");
    for (node, bad) in [forged, payload_changed, "not a license".to_string()]
        .iter()
        .enumerate()
    {
        let checked = admin
            .read(node, "CheckLicenseV1", json!({"license": bad}))
            .await;
        assert_eq!(checked["signature"], "invalid", "{bad}: {checked}");
        let reason = checked["reason"].as_str().unwrap_or_default();
        assert!(!reason.is_empty(), "a reason: {checked}");
    }
}
