//! Client API keys against the real `licensed` binary: keys required or not, scopes and
//! feature limits, key management, keys created through one node and used on the others,
//! a revocation that holds on every node, and keys kept through snapshot files.
//!
//! Refusals are HTTP 200 with JSON-RPC code 38 ("Unauthorized": no, unknown, revoked or
//! malformed key) or 39 ("Forbidden": the key's scope or features do not allow it).

mod common;

use std::path::Path;

use common::{at, Cluster, Server};
use futures::stream;
use licensed::raft::state_machine::LedgerStore;
use licensed::raft::TypeConfig;
use licensed::state::api_key::KeySecret;
use licensed::state::{ApiKeyChange, ApiKeyText, Bootstrap, Command, KeyId, NewApiKey, Scope};
use openraft::alias::{EntryOf, LogIdOf};
use openraft::entry::RaftEntry;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::testing::log_id;
use serde_json::{json, Value};

const ADMIN: &str = "admin-token-of-the-key-tests";
const UNAUTHORIZED: i64 = 38;
const FORBIDDEN: i64 = 39;
const RETURN_NOT_AUTHORIZED: i64 = 37;
const INVALID_PARAMS: i64 = -32602;

/// One license of each feature, several seats each.
const POOL: &str = r#"[
  {"feature":"MVTec_HALCON","uuid":"halcon-1","version":"26.05","edition":"Steady","modules":"fc","count":10},
  {"feature":"MVTec_HDevelop","uuid":"hdevelop-1","version":"26.05","edition":"Progress","modules":"f","count":10}
]"#;

/// A well-formed key no server ever created.
const STRANGER: &str = "lk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Calls `/licenses` at `base` with an optional bearer token.
struct Api {
    http: reqwest::Client,
}

impl Api {
    fn new() -> Api {
        Api {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }

    /// The HTTP status and the JSON-RPC response of one call.
    async fn call_status(
        &self,
        base: &str,
        bearer: Option<&str>,
        method: &str,
        params: Value,
    ) -> (u16, Value) {
        let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
        let mut request = self.http.post(format!("{base}/licenses")).json(&body);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method}: not JSON ({e}): {text}"));
        (status, value)
    }

    /// The JSON-RPC response of one call, which must be HTTP 200 like every answer.
    async fn call(&self, base: &str, bearer: Option<&str>, method: &str, params: Value) -> Value {
        let (status, response) = self.call_status(base, bearer, method, params).await;
        assert_eq!(status, 200, "{method}: {response}");
        response
    }

    /// The result of a call that must succeed.
    async fn ok(&self, base: &str, bearer: Option<&str>, method: &str, params: Value) -> Value {
        let response = self.call(base, bearer, method, params).await;
        match response.get("result") {
            Some(result) => result.clone(),
            None => panic!("{method} with {bearer:?} failed: {response}"),
        }
    }

    /// The error code of a call that must be refused (with a reason), checking the
    /// message that goes with our codes; returns the reason.
    async fn refused(
        &self,
        base: &str,
        bearer: Option<&str>,
        method: &str,
        params: Value,
        code: i64,
    ) -> String {
        let response = self.call(base, bearer, method, params).await;
        let error = response
            .get("error")
            .unwrap_or_else(|| panic!("{method} with {bearer:?} should be refused: {response}"));
        assert_eq!(
            error["code"],
            json!(code),
            "{method} with {bearer:?}: {response}"
        );
        let message = match code {
            UNAUTHORIZED => Some("Unauthorized"),
            FORBIDDEN => Some("Forbidden"),
            RETURN_NOT_AUTHORIZED => Some("Return not authorized"),
            _ => None,
        };
        if let Some(message) = message {
            assert_eq!(error["message"], json!(message), "{response}");
        }
        let reason = error["data"]["reason"].as_str().unwrap_or_default();
        assert!(!reason.is_empty(), "no reason: {response}");
        reason.to_string()
    }

    /// Creates a key with the admin token; returns (key text, key id).
    async fn create_key(
        &self,
        base: &str,
        name: &str,
        scope: &str,
        features: Option<&[&str]>,
    ) -> (String, String) {
        let mut params = json!({"name": name, "scope": scope});
        if let Some(features) = features {
            params["features"] = json!(features);
        }
        let created = self.ok(base, Some(ADMIN), "CreateApiKeyV1", params).await;
        let key = created["key"].as_str().expect("key text").to_string();
        let id = created["keyId"].as_str().expect("key id").to_string();
        assert_eq!(key.len(), 63, "{created}");
        assert!(key.starts_with(&format!("lk_{id}_")), "{created}");
        (key, id)
    }
}

fn borrow_params(feature: &str, uuid: &str, host: &str) -> Value {
    json!({"feature": feature, "uuid": uuid, "hostId": host, "validUntil": at(3_600)})
}

fn halcon(host: &str) -> Value {
    borrow_params("MVTec_HALCON", "halcon-1", host)
}

fn hdevelop(host: &str) -> Value {
    borrow_params("MVTec_HDevelop", "hdevelop-1", host)
}

/// The borrow id and return token of a borrow's result.
fn ids(borrowed: &Value) -> (String, String) {
    let text = |name: &str| {
        borrowed[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name}: {borrowed}"))
            .to_string()
    };
    (text("borrowId"), text("returnToken"))
}

/// The features a listing shows.
fn features_listed(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a listing")
        .iter()
        .map(|license| license["feature"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The ids of the borrows a listing shows.
fn borrows_listed(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a listing")
        .iter()
        .flat_map(|license| {
            license["borrowedIntervals"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|interval| {
            interval["borrowId"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn a_deployment_that_requires_keys_refuses_calls_without_a_valid_key() {
    let server = Server::start_with(POOL, &["--admin-token", ADMIN, "--require-api-keys"]).await;
    let api = Api::new();
    let url = server.url.as_str();

    // No key: HTTP 200 (every JSON-RPC answer is), code 38, for reads and writes.
    let (status, response) = api
        .call_status(url, None, "ListLicensesV1", json!([]))
        .await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["error"]["code"], json!(UNAUTHORIZED), "{response}");
    let reason = api
        .refused(
            url,
            None,
            "BorrowLicenseV1",
            halcon("MAC:000000000001"),
            UNAUTHORIZED,
        )
        .await;
    assert!(reason.contains("requires an API key"), "{reason}");
    // Authentication comes before the parameters are looked at.
    api.refused(url, None, "BorrowLicenseV1", json!({}), UNAUTHORIZED)
        .await;

    // A key nobody created, a key whose secret is wrong, a malformed key, another token.
    api.refused(
        url,
        Some(STRANGER),
        "ListLicensesV1",
        json!([]),
        UNAUTHORIZED,
    )
    .await;
    let (key, id) = api.create_key(url, "reader", "read", None).await;
    let mut wrong_secret = key.clone();
    let last = if wrong_secret.ends_with('A') {
        "Q"
    } else {
        "A"
    };
    wrong_secret.replace_range(wrong_secret.len() - 1.., last);
    let reason = api
        .refused(
            url,
            Some(&wrong_secret),
            "ListLicensesV1",
            json!([]),
            UNAUTHORIZED,
        )
        .await;
    assert!(
        reason.contains(&id),
        "the reason names the key id: {reason}"
    );
    assert!(
        !reason.contains(&key[20..]),
        "a reason never shows a secret: {reason}"
    );
    api.refused(
        url,
        Some("lk_nope"),
        "ListLicensesV1",
        json!([]),
        UNAUTHORIZED,
    )
    .await;
    api.refused(
        url,
        Some("not-the-admin-token"),
        "ListLicensesV1",
        json!([]),
        UNAUTHORIZED,
    )
    .await;

    // The key itself, and the admin token, are let in.
    let listed = api.ok(url, Some(&key), "ListLicensesV1", json!([])).await;
    assert_eq!(features_listed(&listed), ["MVTec_HALCON", "MVTec_HDevelop"]);
    api.ok(url, Some(ADMIN), "ListLicensesV1", json!([])).await;
    // The scheme name is case-insensitive (RFC 6750).
    let (status, response) = {
        let body = json!({"jsonrpc": "2.0", "method": "ListLicensesV1", "params": [], "id": 1});
        let response = api
            .http
            .post(format!("{url}/licenses"))
            .header("Authorization", format!("bearer {key}"))
            .json(&body)
            .send()
            .await
            .expect("request");
        (
            response.status().as_u16(),
            response.json::<Value>().await.expect("json"),
        )
    };
    assert_eq!(status, 200);
    assert!(response["result"].is_array(), "{response}");
}

#[tokio::test]
async fn each_scope_allows_what_it_says_and_nothing_more() {
    let server = Server::start_with(POOL, &["--admin-token", ADMIN]).await;
    let api = Api::new();
    let url = server.url.as_str();
    let (reader, _) = api.create_key(url, "dashboard", "read", None).await;
    let (borrower, _) = api.create_key(url, "build farm", "borrow", None).await;
    let (admin, _) = api.create_key(url, "ops", "admin", None).await;

    // read: lists and gets, never borrows or returns.
    let theirs = api
        .ok(
            url,
            Some(&borrower),
            "BorrowLicenseV1",
            halcon("MAC:000000000001"),
        )
        .await;
    let (theirs_id, theirs_token) = ids(&theirs);
    let listed = api
        .ok(url, Some(&reader), "ListLicensesV1", json!([]))
        .await;
    assert_eq!(borrows_listed(&listed), std::slice::from_ref(&theirs_id));
    let got = api
        .ok(
            url,
            Some(&reader),
            "GetBorrowedLicenseV1",
            json!({"borrowId": theirs_id}),
        )
        .await;
    assert_eq!(got["license"], theirs["license"]);
    let reason = api
        .refused(
            url,
            Some(&reader),
            "BorrowLicenseV1",
            halcon("MAC:000000000002"),
            FORBIDDEN,
        )
        .await;
    assert!(
        reason.contains("scope read") && reason.contains("needs scope borrow"),
        "{reason}"
    );
    // The scope is checked before the parameters.
    api.refused(url, Some(&reader), "BorrowLicenseV1", json!({}), FORBIDDEN)
        .await;
    api.refused(
        url,
        Some(&reader),
        "ReturnLicenseV1",
        json!({"borrowId": theirs_id, "returnToken": theirs_token}),
        FORBIDDEN,
    )
    .await;

    // borrow: borrows, and returns with the borrow's token only.
    let mine = api
        .ok(
            url,
            Some(&borrower),
            "BorrowLicenseV1",
            hdevelop("MAC:000000000003"),
        )
        .await;
    let (mine_id, mine_token) = ids(&mine);
    api.refused(
        url,
        Some(&borrower),
        "ReturnLicenseV1",
        json!({"borrowId": mine_id}),
        RETURN_NOT_AUTHORIZED,
    )
    .await;
    let returned = api
        .ok(
            url,
            Some(&borrower),
            "ReturnLicenseV1",
            json!({"borrowId": mine_id, "returnToken": mine_token}),
        )
        .await;
    assert!(returned["returnedAt"].is_string(), "{returned}");
    api.refused(url, Some(&borrower), "ListApiKeysV1", json!([]), FORBIDDEN)
        .await;

    // admin: returns any borrow without its token, manages keys.
    let returned = api
        .ok(
            url,
            Some(&admin),
            "ReturnLicenseV1",
            json!({"borrowId": theirs_id}),
        )
        .await;
    assert!(returned["returnedAt"].is_string(), "{returned}");
    let created = api
        .ok(
            url,
            Some(&admin),
            "CreateApiKeyV1",
            json!({"name": "made by a key", "scope": "read"}),
        )
        .await;
    let made = created["key"].as_str().expect("key").to_string();
    api.ok(url, Some(&made), "ListLicensesV1", json!([])).await;
    let keys = api.ok(url, Some(&admin), "ListApiKeysV1", json!([])).await;
    assert_eq!(keys.as_array().map(Vec::len), Some(4), "{keys}");
}

#[tokio::test]
async fn a_feature_limited_key_sees_and_uses_its_features_only() {
    let server = Server::start_with(POOL, &["--admin-token", ADMIN]).await;
    let api = Api::new();
    let url = server.url.as_str();
    let (limited, id) = api
        .create_key(url, "halcon line", "borrow", Some(&["MVTec_HALCON"]))
        .await;

    let mine = api
        .ok(
            url,
            Some(&limited),
            "BorrowLicenseV1",
            halcon("MAC:000000000001"),
        )
        .await;
    let (mine_id, mine_token) = ids(&mine);
    let reason = api
        .refused(
            url,
            Some(&limited),
            "BorrowLicenseV1",
            hdevelop("MAC:000000000001"),
            FORBIDDEN,
        )
        .await;
    assert!(
        reason.contains(&id) && reason.contains("MVTec_HDevelop"),
        "{reason}"
    );

    // A borrow of the other feature, made without a key (the deployment is open).
    let theirs = api
        .ok(url, None, "BorrowLicenseV1", hdevelop("MAC:000000000002"))
        .await;
    let (theirs_id, theirs_token) = ids(&theirs);

    // It lists only its own feature's licenses (and their borrows).
    let listed = api
        .ok(url, Some(&limited), "ListLicensesV1", json!([]))
        .await;
    assert_eq!(features_listed(&listed), ["MVTec_HALCON"]);
    assert_eq!(borrows_listed(&listed), std::slice::from_ref(&mine_id));
    // Gets of the other feature are refused, its own are served.
    api.refused(
        url,
        Some(&limited),
        "GetBorrowedLicenseV1",
        json!({"borrowId": theirs_id}),
        FORBIDDEN,
    )
    .await;
    api.ok(
        url,
        Some(&limited),
        "GetBorrowedLicenseV1",
        json!({"borrowId": mine_id}),
    )
    .await;
    // Even with that borrow's own token it cannot return it: the borrow stays.
    api.refused(
        url,
        Some(&limited),
        "ReturnLicenseV1",
        json!({"borrowId": theirs_id, "returnToken": theirs_token}),
        FORBIDDEN,
    )
    .await;
    let everything = api.ok(url, None, "ListLicensesV1", json!([])).await;
    assert!(
        borrows_listed(&everything).contains(&theirs_id),
        "{everything}"
    );
    api.ok(
        url,
        Some(&limited),
        "ReturnLicenseV1",
        json!({"borrowId": mine_id, "returnToken": mine_token}),
    )
    .await;
}

#[tokio::test]
async fn key_management_needs_admin_authority_and_never_shows_a_secret_again() {
    let server = Server::start_with(POOL, &["--admin-token", ADMIN]).await;
    let api = Api::new();
    let url = server.url.as_str();
    let create = json!({"name": "ci", "scope": "borrow"});

    // Without admin authority, even on an open deployment: nothing is created.
    for bearer in [None, Some("not-the-admin-token")] {
        api.refused(url, bearer, "CreateApiKeyV1", create.clone(), UNAUTHORIZED)
            .await;
        api.refused(url, bearer, "ListApiKeysV1", json!([]), UNAUTHORIZED)
            .await;
        api.refused(
            url,
            bearer,
            "RevokeApiKeyV1",
            json!({"keyId": "0123456789abcdef"}),
            UNAUTHORIZED,
        )
        .await;
    }
    let keys = api.ok(url, Some(ADMIN), "ListApiKeysV1", json!([])).await;
    assert_eq!(keys, json!([]));

    let (key, id) = api
        .create_key(
            url,
            "ci",
            "borrow",
            Some(&["MVTec_HDevelop", "MVTec_HALCON"]),
        )
        .await;
    let keys = api.ok(url, Some(ADMIN), "ListApiKeysV1", json!([])).await;
    let listed = keys.as_array().expect("array");
    assert_eq!(listed.len(), 1, "{keys}");
    let entry = listed[0].as_object().expect("object");
    let mut members: Vec<&str> = entry.keys().map(String::as_str).collect();
    members.sort_unstable();
    assert_eq!(
        members,
        ["createdAt", "features", "keyId", "name", "scope"],
        "{keys}"
    );
    assert_eq!(entry["keyId"], json!(id));
    assert_eq!(entry["features"], json!(["MVTec_HALCON", "MVTec_HDevelop"]));
    assert!(
        !keys.to_string().contains(&key[20..]),
        "the secret is listed: {keys}"
    );

    // Revoking: idempotent, with the first revocation time.
    let revoked = api
        .ok(url, Some(ADMIN), "RevokeApiKeyV1", json!({"keyId": id}))
        .await;
    let at = revoked["revokedAt"].clone();
    assert!(at.is_string(), "{revoked}");
    let again = api
        .ok(url, Some(ADMIN), "RevokeApiKeyV1", json!({"keyId": id}))
        .await;
    assert_eq!(again["revokedAt"], at);
    let keys = api.ok(url, Some(ADMIN), "ListApiKeysV1", json!([])).await;
    assert_eq!(keys[0]["revokedAt"], at, "{keys}");
    api.refused(url, Some(&key), "ListLicensesV1", json!([]), UNAUTHORIZED)
        .await;

    // Bad requests.
    for params in [
        json!({"keyId": "fedcba9876543210"}),
        json!({"keyId": "lk_nope"}),
        json!({}),
    ] {
        api.refused(url, Some(ADMIN), "RevokeApiKeyV1", params, INVALID_PARAMS)
            .await;
    }
    for params in [
        json!({"name": "x", "scope": "write"}),
        json!({"name": "", "scope": "read"}),
        json!({"scope": "read"}),
        json!({"name": "x", "scope": "admin", "features": ["MVTec_HALCON"]}),
        json!({"name": "x", "scope": "read", "features": []}),
    ] {
        api.refused(url, Some(ADMIN), "CreateApiKeyV1", params, INVALID_PARAMS)
            .await;
    }
}

#[tokio::test]
async fn the_open_deployment_serves_keyless_calls_as_the_borrow_api_does() {
    let server = Server::start(POOL).await;
    let api = Api::new();
    let url = server.url.as_str();

    let borrowed = api
        .ok(url, None, "BorrowLicenseV1", halcon("MAC:000000000001"))
        .await;
    let (id, token) = ids(&borrowed);
    let listed = api.ok(url, None, "ListLicensesV1", json!([])).await;
    assert_eq!(borrows_listed(&listed), std::slice::from_ref(&id));
    api.ok(url, None, "GetBorrowedLicenseV1", json!({"borrowId": id}))
        .await;
    api.ok(
        url,
        None,
        "ReturnLicenseV1",
        json!({"borrowId": id, "returnToken": token}),
    )
    .await;
    // A bearer token that is no key counts as none (there is no admin token here)...
    api.ok(url, Some("some-proxy-token"), "ListLicensesV1", json!([]))
        .await;
    // ...but a key that is sent must be valid.
    api.refused(
        url,
        Some(STRANGER),
        "ListLicensesV1",
        json!([]),
        UNAUTHORIZED,
    )
    .await;
    // Without an admin token there is no way to manage keys.
    api.refused(
        url,
        None,
        "CreateApiKeyV1",
        json!({"name": "x", "scope": "read"}),
        UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn a_key_works_on_every_node_and_its_revocation_holds_on_every_node() {
    let cluster = Cluster::start(3, POOL, &["--admin-token", ADMIN, "--require-api-keys"]).await;
    let api = Api::new();
    let urls: Vec<String> = (0..3).map(|i| cluster.api_url(i)).collect();

    let (key, id) = api.create_key(&urls[0], "fleet", "borrow", None).await;
    let (control, _) = api.create_key(&urls[0], "control", "read", None).await;
    // Right away on the other nodes, reads and writes alike.
    let mut borrow_ids = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        api.ok(url, Some(&key), "ListLicensesV1", json!([])).await;
        let host = format!("MAC:00000000000{i}");
        let borrowed = api
            .ok(url, Some(&key), "BorrowLicenseV1", halcon(&host))
            .await;
        borrow_ids.push(ids(&borrowed).0);
    }

    // Revoked through node 2; once that is answered, every node refuses the key.
    let revoked = api
        .ok(
            &urls[1],
            Some(ADMIN),
            "RevokeApiKeyV1",
            json!({"keyId": id}),
        )
        .await;
    assert!(revoked["revokedAt"].is_string(), "{revoked}");
    for (i, url) in urls.iter().enumerate() {
        let host = format!("MAC:00000000001{i}");
        let reason = api
            .refused(
                url,
                Some(&key),
                "BorrowLicenseV1",
                halcon(&host),
                UNAUTHORIZED,
            )
            .await;
        assert!(reason.contains("revoked"), "node {}: {reason}", i + 1);
        api.refused(url, Some(&key), "ListLicensesV1", json!([]), UNAUTHORIZED)
            .await;
        api.refused(
            url,
            Some(&key),
            "GetBorrowedLicenseV1",
            json!({"borrowId": borrow_ids[i]}),
            UNAUTHORIZED,
        )
        .await;
        // The other key is untouched, and no borrow was made with the revoked one.
        let listed = api
            .ok(url, Some(&control), "ListLicensesV1", json!([]))
            .await;
        assert_eq!(borrows_listed(&listed).len(), 3, "node {}: {listed}", i + 1);
    }
}

// The state machine's own snapshot files, as a node writes, sends and loads them.

type C = TypeConfig;

fn lid(index: u64) -> LogIdOf<C> {
    log_id::<C>(1, 1, index)
}

fn entry(index: u64, command: Command) -> EntryOf<C> {
    EntryOf::<C>::new_normal(lid(index), command)
}

fn new_key(id: u64, fill: u8, scope: Scope) -> (ApiKeyText, Command) {
    let key = ApiKeyText::new(KeyId::from_u64(id), KeySecret::from_bytes([fill; 32]));
    let create = Command::ApiKey {
        now: 1_800_000_000,
        change: ApiKeyChange::Create(NewApiKey {
            id: key.id(),
            name: format!("key {id}"),
            scope,
            features: Some(vec!["MVTec_HALCON".into()]),
            secret_hash: key.secret().hash(),
        }),
    };
    (key, create)
}

/// A node's view of its keys after loading: the kept key authenticates, the revoked one
/// is refused as revoked.
fn assert_keys(store: &LedgerStore, kept: &ApiKeyText, gone: &ApiKeyText) {
    let ledger = store.ledger();
    let ledger = ledger.read();
    let record = ledger
        .api_keys()
        .authenticate(kept)
        .unwrap_or_else(|e| panic!("the kept key: {e}"));
    assert_eq!(record.scope, Scope::Borrow);
    assert_eq!(
        record.features.as_deref(),
        Some(&["MVTec_HALCON".to_string()][..])
    );
    let refused = ledger.api_keys().authenticate(gone).expect_err("revoked");
    assert!(refused.to_string().contains("revoked"), "{refused}");
}

fn snapshot_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("read dir")
        .filter(|e| {
            e.as_ref()
                .map(|e| e.file_name().to_string_lossy().ends_with(".snap"))
                .unwrap_or(false)
        })
        .count()
}

#[tokio::test]
async fn keys_survive_a_snapshot_file_its_transfer_and_a_restart() {
    let leader_dir = tempfile::tempdir().expect("temp dir");
    let follower_dir = tempfile::tempdir().expect("temp dir");
    let (kept, create_kept) = new_key(1, 1, Scope::Borrow);
    let (gone, create_gone) = new_key(2, 2, Scope::Borrow);
    let revoke = Command::ApiKey {
        now: 1_800_000_010,
        change: ApiKeyChange::Revoke(gone.id()),
    };
    let bootstrap = Command::Bootstrap(Box::new(Bootstrap {
        licenses: Vec::new(),
        max_borrow_secs: 86_400,
        retention_secs: 86_400,
        signing_key: [7; 32],
        audit_retention_secs: 90 * 86_400,
        max_audit_entries: 100_000,
        created_at: 0,
    }));
    {
        let mut leader = LedgerStore::open(leader_dir.path()).expect("open");
        let entries = [bootstrap, create_kept, create_gone, revoke]
            .into_iter()
            .enumerate()
            .map(|(i, command)| Ok((entry(i as u64 + 1, command), None)));
        leader.apply(stream::iter(entries)).await.expect("apply");
        let mut builder = leader.get_snapshot_builder().await;
        builder.build_snapshot().await.expect("build");
        assert_eq!(snapshot_files(leader_dir.path()), 1);
    }

    // A restart loads the snapshot file (the log after it is empty here).
    let mut leader = LedgerStore::open(leader_dir.path()).expect("reopen");
    assert_eq!(
        leader.applied_state().await.expect("applied").0,
        Some(lid(4))
    );
    assert_keys(&leader, &kept, &gone);

    // A follower that catches up from the snapshot, then restarts.
    let snapshot = leader
        .get_current_snapshot()
        .await
        .expect("current")
        .expect("a snapshot");
    {
        let mut follower = LedgerStore::open(follower_dir.path()).expect("open");
        follower
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .expect("install");
        assert_keys(&follower, &kept, &gone);
    }
    let follower = LedgerStore::open(follower_dir.path()).expect("reopen");
    assert_keys(&follower, &kept, &gone);
}
