//! The library starts a node in-process (`licensed::run`): what the `licensed` binary
//! does around flag parsing, usable by tools and tests without spawning a process.

use std::time::Duration;

use clap::Parser;
use licensed::client::{BorrowParams, RpcClient};
use licensed::config::Config;
use licensed::{run, Listeners};

const POOL: &str = r#"[{"feature":"MVTec_HALCON","uuid":"in-process","version":"26.05",
  "edition":"Steady","modules":"fc","count":1}]"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_by_the_library_serves_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = dir.path().join("pool.json");
    std::fs::write(&pool, POOL).expect("write pool");
    let data = dir.path().join("data");
    let config = Config::parse_from([
        "licensed",
        "--listen",
        "127.0.0.1:0",
        "--raft-listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().expect("utf-8 path"),
        "--pool",
        pool.to_str().expect("utf-8 path"),
    ]);
    let listeners = Listeners::bind(&config).await.expect("bind");
    let url = format!("http://{}", listeners.api.local_addr().expect("bound"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let node = tokio::spawn(run(config, listeners, async {
        let _ = stopped.await;
    }));

    let client = RpcClient::new(&url).expect("client");
    let licenses = loop {
        match client.list_licenses().await {
            Ok(licenses) if !licenses.is_empty() => break licenses,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert_eq!(licenses[0].uuid, "in-process");
    let until = chrono::Utc::now() + chrono::Duration::hours(1);
    let params = BorrowParams {
        feature: "MVTec_HALCON".into(),
        uuid: "in-process".into(),
        host_id: "MAC:2c549188c9e3".into(),
        valid_from: None,
        valid_until: until.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        user_info: None,
        request_id: None,
    };
    let borrowed = client.borrow_license(&params).await.expect("borrow");
    assert!(borrowed.return_token.is_some());
    // The only seat is taken: the same node refuses a second borrow with 32.
    let refused = client.borrow_license(&params).await.expect_err("full");
    assert_eq!(refused.rpc_code(), Some(32));

    stop.send(()).expect("node still running");
    let finished = tokio::time::timeout(Duration::from_secs(30), node)
        .await
        .expect("run returns after shutdown")
        .expect("run task");
    assert!(finished.is_ok(), "{finished:?}");
    assert!(client.list_licenses().await.is_err(), "no longer serving");
}
