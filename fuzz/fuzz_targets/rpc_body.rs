//! `POST /licenses` bodies, through the real answer path (`handle_body`) of a one-node
//! cluster with the sample pool loaded: whatever the body, the node answers without
//! panicking, and every answer is JSON-RPC 2.0 — a response object (or a non-empty array
//! of them) with `jsonrpc`, `id` and exactly one of `result` and `error`, every error with
//! an integer `code` and a `message`. No answer only for notifications.
//!
//! A body whose last byte is a space is sent with the admin token (a trailing space is
//! still the same JSON), so what only an administrator may do is reached too.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use licensed::app::{App, Credential};
use licensed::borrow::pool::parse_pool;
use licensed::fuzzing::{start_node, NodeOptions};
use licensed::raft::routes::PeerRoutes;
use licensed::raft::NodeAddr;
use licensed::rpc::envelope::handle_body;
use licensed::rpc::methods::Caller;
use licensed::state::Bootstrap;
use licensed::transport::peer::PeerDialer;
use serde_json::{Map, Value};

/// The pool the README and the deployment examples use.
const POOL: &str = include_str!("../../deploy/sample-pool.json");

/// The node, started once per fuzzing process; never stopped (the process ends first).
struct Node {
    runtime: tokio::runtime::Runtime,
    app: App,
    /// Holds the data directory for the life of the process.
    _dir: tempfile::TempDir,
}

fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| match start() {
        Ok(node) => node,
        Err(reason) => panic!("cannot start the node: {reason}"),
    })
}

fn start() -> Result<Node, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    // Raft's tasks run on the worker while the fuzzer's thread waits in `block_on`.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let options = NodeOptions {
        id: 1,
        data_dir: dir.path().join("data"),
        heartbeat_ms: 100,
        election_ms: (250, 500),
        snapshot_every: 10_000,
        routes: PeerRoutes::default(),
        max_clock_offset: Duration::from_millis(500),
        dialer: PeerDialer::plain(),
    };
    let app = runtime.block_on(async {
        let node = start_node(&options).await.map_err(|e| e.to_string())?;
        // Never dialled: a one-node cluster has no peers.
        let addr = NodeAddr {
            raft_addr: "127.0.0.1:9".to_string(),
            api_addr: "127.0.0.1:9".to_string(),
        };
        node.initialize_single(&addr)
            .await
            .map_err(|e| e.to_string())?;
        node.wait_ready(Duration::from_secs(30))
            .await
            .map_err(|e| e.to_string())?;
        let app = App::new(node, Duration::from_secs(5)).map_err(|e| e.to_string())?;
        let pool = parse_pool(POOL).map_err(|e| e.to_string())?;
        let bootstrap = Bootstrap {
            licenses: pool.licenses,
            max_borrow_secs: pool.max_borrow_secs,
            retention_secs: 30 * 86_400,
            signing_key: [7; 32],
            audit_retention_secs: 90 * 86_400,
            max_audit_entries: 100_000,
            created_at: 0,
        };
        match app.bootstrap(bootstrap).await {
            Ok(true) => Ok(app),
            Ok(false) => Err("the new ledger was already bootstrapped".to_string()),
            Err(e) => Err(e.to_string()),
        }
    })?;
    Ok(Node {
        runtime,
        app,
        _dir: dir,
    })
}

fuzz_target!(|body: &[u8]| {
    let node = node();
    let mut caller = Caller::default();
    if body.last() == Some(&b' ') {
        caller.credential = Credential::AdminToken;
    }
    let answer = node.runtime.block_on(handle_body(&node.app, caller, body));
    check_answer(body, answer.as_deref());
});

fn check_answer(body: &[u8], answer: Option<&str>) {
    let sent: Option<Value> = serde_json::from_slice(body).ok();
    let Some(answer) = answer else {
        // Unanswered: valid JSON (a parse error is always answered) made of notifications.
        let sent = sent.expect("a body that is not JSON gets a parse error");
        match &sent {
            Value::Object(request) => assert!(!request.contains_key("id"), "{sent}"),
            Value::Array(requests) => {
                assert!(!requests.is_empty(), "an empty batch is answered");
                for request in requests {
                    let request = request.as_object().expect("a non-object is answered");
                    assert!(!request.contains_key("id"), "{sent}");
                }
            }
            other => panic!("{other} is answered as an invalid request"),
        }
        return;
    };
    let answer: Value = match serde_json::from_str(answer) {
        Ok(value) => value,
        Err(e) => panic!("the answer is not JSON ({e}): {answer}"),
    };
    match (&answer, &sent) {
        (Value::Array(responses), Some(Value::Array(requests))) => {
            assert!(!responses.is_empty(), "an empty array is no answer");
            assert!(
                responses.len() <= requests.len(),
                "more answers than requests"
            );
            for response in responses {
                check_response(response);
            }
        }
        (Value::Array(_), _) => panic!("only a batch is answered with an array: {answer}"),
        (response, sent) => {
            let response = check_response(response);
            // A single request's integer or string id comes back as it was sent.
            if let Some(Value::Object(request)) = sent {
                match request.get("id") {
                    Some(id @ Value::String(_)) => assert_eq!(&response["id"], id),
                    Some(Value::Number(id)) if id.is_i64() || id.is_u64() => {
                        assert_eq!(response["id"], Value::Number(id.clone()))
                    }
                    _ => {}
                }
            }
        }
    }
}

fn check_response(response: &Value) -> &Map<String, Value> {
    let Value::Object(object) = response else {
        panic!("a response is an object: {response}");
    };
    assert_eq!(
        object.get("jsonrpc"),
        Some(&Value::from("2.0")),
        "{response}"
    );
    assert!(
        matches!(
            object.get("id"),
            Some(Value::Null | Value::String(_) | Value::Number(_))
        ),
        "id: {response}"
    );
    match (object.get("result"), object.get("error")) {
        (Some(_), None) => {}
        (None, Some(Value::Object(error))) => {
            assert!(error.get("code").is_some_and(Value::is_i64), "{response}");
            assert!(
                error.get("message").is_some_and(Value::is_string),
                "{response}"
            );
        }
        _ => panic!("exactly one of result and error (an object): {response}"),
    }
    assert_eq!(
        object.len(),
        3,
        "jsonrpc, id and result or error only: {response}"
    );
    object
}
