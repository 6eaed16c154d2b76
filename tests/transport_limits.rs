//! Each limit of the client port against a real node: the client gets the documented
//! error (HTTP 503 with a JSON-RPC -32603 naming the flag for capacity limits, -32600 for
//! a body's shape or a body too slow), the node stays up, and a borrow made before is
//! intact. A slowloris client holds only its own connections.

mod common;

use std::time::Duration;

use common::Server;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const POOL: &str = r#"[
  {"feature":"MVTec_HALCON","uuid":"bulk","version":"26.05","edition":"Steady","modules":"fc","count":1000000}
]"#;

fn borrow_body() -> Value {
    json!({"jsonrpc": "2.0", "method": "BorrowLicenseV1", "id": 1, "params":
        {"feature": "MVTec_HALCON", "uuid": "bulk", "hostId": "MAC:0A0B0C0D0E0F",
         "validFrom": common::at(60), "validUntil": common::at(3600)}})
}

/// Borrows once; returns the borrow id.
async fn borrow(server: &Server) -> String {
    let answer = server.post(&borrow_body()).await;
    answer["result"]["borrowId"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .to_string()
}

/// The borrow is still there, and the node still borrows.
async fn intact(server: &Server, borrow_id: &str) {
    let got = server
        .result("GetBorrowedLicenseV1", json!({"borrowId": borrow_id}))
        .await;
    assert_eq!(got["borrowId"], borrow_id, "{got}");
    borrow(server).await;
}

fn addr(server: &Server) -> String {
    server
        .endpoint()
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("host:port")
        .to_string()
}

/// Sends raw bytes and reads the whole answer (until the server closes or `wait` passes).
async fn raw_exchange(stream: &mut TcpStream, bytes: &[u8], wait: Duration) -> String {
    stream.write_all(bytes).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).to_string()
}

/// The JSON body of a raw HTTP answer.
fn body_of(answer: &str) -> Value {
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|_| panic!("no JSON body in {answer:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_beyond_the_limit_get_503_and_the_node_serves_again_once_they_close() {
    let server = Server::start_with(
        POOL,
        &[
            "--max-connections",
            "3",
            "--header-read-timeout-ms",
            "60000",
        ],
    )
    .await;
    let borrow_id = borrow(&server).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(addr(&server)).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(addr(&server)).await.expect("connect");
    let answer = raw_exchange(&mut extra, b"", Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_lowercase().contains("retry-after: 1"), "{answer}");
    let error = &body_of(&answer)["error"];
    assert_eq!(error["code"], -32603, "{answer}");
    let reason = error["data"]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("--max-connections"), "{answer}");

    drop(idle);
    let mut served = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (status, _) = server.get("/healthz").await;
        if status == 200 {
            served = true;
            break;
        }
    }
    assert!(
        served,
        "the node does not serve again after the connections closed"
    );
    intact(&server, &borrow_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_body_times_out_and_requests_beyond_the_concurrency_limit_are_turned_away() {
    let server = Server::start_with(
        POOL,
        &[
            "--max-concurrent-requests",
            "1",
            "--body-read-timeout-ms",
            "1500",
        ],
    )
    .await;
    let borrow_id = borrow(&server).await;
    // One request in progress: headers sent, its body trickling.
    let mut slow = TcpStream::connect(addr(&server)).await.expect("connect");
    slow.write_all(
        b"POST /licenses HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"jsonrpc\"",
    )
    .await
    .expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (status, text) = server.post_raw(borrow_body().to_string()).await;
    assert_eq!(status, 503, "{text}");
    let answer: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(answer["error"]["code"], -32603, "{answer}");
    let reason = answer["error"]["data"]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("--max-concurrent-requests"), "{answer}");

    // The slow body is cut off with a reason, and the slot is free again.
    let answer = raw_exchange(&mut slow, b"", Duration::from_secs(10)).await;
    let error = &body_of(&answer)["error"];
    assert_eq!(error["code"], -32600, "{answer}");
    let reason = error["data"]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("--body-read-timeout-ms"), "{answer}");
    intact(&server, &borrow_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_past_its_deadline_gets_503_with_the_flag() {
    let server = Server::start_with(
        POOL,
        &[
            "--request-deadline-ms",
            "700",
            "--body-read-timeout-ms",
            "60000",
        ],
    )
    .await;
    let borrow_id = borrow(&server).await;
    let mut slow = TcpStream::connect(addr(&server)).await.expect("connect");
    let answer = raw_exchange(
        &mut slow,
        b"POST /licenses HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n[",
        Duration::from_secs(10),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let error = &body_of(&answer)["error"];
    assert_eq!(error["code"], -32603, "{answer}");
    let reason = error["data"]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("--request-deadline-ms"), "{answer}");
    assert!(reason.contains("requestId"), "{answer}");
    intact(&server, &borrow_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deep_json_and_long_strings_are_refused_with_the_flag() {
    let server =
        Server::start_with(POOL, &["--max-json-depth", "6", "--max-string-bytes", "64"]).await;
    let borrow_id = borrow(&server).await;
    let deep = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
    let (status, text) = server.post_raw(deep).await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(answer["error"]["code"], -32600, "{answer}");
    let reason = answer["error"]["data"]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("--max-json-depth"), "{answer}");

    let mut long = borrow_body();
    long["params"]["userInfo"] = json!("x".repeat(65));
    let answer = server.post(&long).await;
    assert_eq!(answer["error"]["code"], -32600, "{answer}");
    let reason = answer["error"]["data"]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("--max-string-bytes"), "{answer}");

    // At the bounds: accepted.
    let mut fits = borrow_body();
    fits["params"]["userInfo"] = json!("x".repeat(64));
    let answer = server.post(&fits).await;
    assert!(answer["result"]["borrowId"].is_string(), "{answer}");
    intact(&server, &borrow_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slowloris_connections_are_closed_and_do_not_block_other_clients() {
    let server = Server::start_with(
        POOL,
        &[
            "--header-read-timeout-ms",
            "1000",
            "--max-connections",
            "64",
        ],
    )
    .await;
    let borrow_id = borrow(&server).await;
    // Forty connections sending their headers one byte every 200 ms.
    let target = addr(&server);
    let slow: Vec<_> = (0..40)
        .map(|_| {
            let target = target.clone();
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(&target).await.expect("connect");
                let header = b"POST /licenses HTTP/1.1\r\nhost: x\r\nx-slow: ";
                let started = std::time::Instant::now();
                for byte in header
                    .iter()
                    .chain(b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter())
                {
                    if stream.write_all(&[*byte]).await.is_err() {
                        return started.elapsed();
                    }
                    let mut probe = [0u8; 1];
                    if let Ok(Ok(0)) =
                        tokio::time::timeout(Duration::from_millis(200), stream.read(&mut probe))
                            .await
                    {
                        return started.elapsed();
                    }
                }
                Duration::MAX
            })
        })
        .collect();
    // Meanwhile other clients are served.
    for _ in 0..20 {
        borrow(&server).await;
    }
    for handle in slow {
        let held = handle.await.expect("slow client");
        assert!(
            held < Duration::from_secs(15),
            "a slowloris connection was never closed"
        );
    }
    intact(&server, &borrow_id).await;
}
