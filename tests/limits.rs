//! Bounds on the state clients can make every replica keep, against a real node: a flood
//! of tiny upcoming borrows and of refused borrows with unique `requestId`s leaves the
//! ledger bounded, memory bounded and the node serving.

mod common;

use common::Server;
use serde_json::{json, Value};

const POOL: &str = r#"[
  {"feature":"MVTec_HALCON","uuid":"one","version":"26.05","edition":"Steady","modules":"fc","count":1},
  {"feature":"MVTec_HALCON","uuid":"bulk","version":"26.05","edition":"Steady","modules":"fc","count":1000000}
]"#;

/// The per-seat bound documented in the README.
const PER_SEAT: usize = 64;

fn request(id: usize, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": "BorrowLicenseV1", "params": params, "id": id})
}

/// A one-minute borrow of license `uuid`, `minute` minutes from now.
fn tiny(uuid: &str, minute: i64, host: usize) -> Value {
    json!({"feature": "MVTec_HALCON", "uuid": uuid, "hostId": format!("MAC:{host:012X}"),
           "validFrom": common::at(minute * 60), "validUntil": common::at(minute * 60 + 60)})
}

/// Sends one JSON-RPC batch; returns its responses.
async fn batch(server: &Server, requests: Vec<Value>) -> Vec<Value> {
    let response = server.post(&Value::Array(requests)).await;
    response.as_array().expect("a batch answer").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_tiny_borrows_and_unique_refusals_stays_bounded() {
    let server = Server::start(POOL).await;

    // Tiny upcoming borrows of the one seat, laid end to end, each from its own host.
    let tiny_borrows = (0..300)
        .map(|n| request(n, tiny("one", 10 + n as i64, n)))
        .collect();
    let answers = batch(&server, tiny_borrows).await;
    let granted = answers.iter().filter(|a| a["result"].is_object()).count();
    assert_eq!(granted, PER_SEAT, "granted tiny borrows");
    for refused in answers.iter().filter(|a| a["error"].is_object()) {
        assert_eq!(refused["error"]["code"], 32, "{refused}");
        let reason = refused["error"]["data"]["reason"].as_str().unwrap_or("");
        assert!(reason.contains("current and upcoming"), "{refused}");
    }

    // Refused borrows (the seat is taken at minute 10), each with a unique requestId.
    let baseline = server.rss_kib().expect("rss");
    let mut floods = Vec::new();
    for worker in 0..8 {
        let url = server.endpoint();
        floods.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for round in 0..10 {
                let requests: Vec<Value> = (0..500)
                    .map(|n| {
                        let mut params = tiny("one", 10, 99_999);
                        params["requestId"] = json!(format!("flood-{worker}-{round}-{n}"));
                        request(n, params)
                    })
                    .collect();
                let answers: Vec<Value> = http
                    .post(&url)
                    .json(&requests)
                    .send()
                    .await
                    .expect("send")
                    .json()
                    .await
                    .expect("json");
                assert!(answers.iter().all(|a| a["error"]["code"] == 32));
            }
        }));
    }
    for flood in floods {
        flood.await.expect("flood");
    }
    let after = server.rss_kib().expect("rss");

    // Still serving, every earlier borrow intact.
    let ok = server.result("BorrowLicenseV1", tiny("bulk", 5, 1)).await;
    assert!(ok["borrowId"].is_string(), "{ok}");
    let list = server.result("ListLicensesV1", json!([])).await;
    let one = list
        .as_array()
        .expect("list")
        .iter()
        .find(|l| l["uuid"] == "one")
        .cloned();
    let listed = one.and_then(|l| l["borrowedIntervals"].as_array().map(Vec::len));
    assert_eq!(listed, Some(PER_SEAT));
    // 40 000 remembered refusals would be tens of MB; the bound keeps 10 000. The margin
    // covers RocksDB's memtables and the allocator.
    let grown_mib = after.saturating_sub(baseline) / 1024;
    eprintln!("rss {baseline} KiB -> {after} KiB");
    assert!(grown_mib < 256, "RSS grew by {grown_mib} MiB");
}
