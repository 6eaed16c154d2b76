//! Hostile and broken input against the real `licensed` binary: each gets a clear
//! JSON-RPC error (code and reason), and afterwards the server is still up and still hands
//! out the very license string it issued before.

mod common;

use common::borrow_api::{
    assert_error, borrow, get_license, json_of, now, params, post_typed, z, HOUR,
};
use common::{Server, SAMPLE_POOL};
use serde_json::{json, Value};

const SEED_UUID: &str = "118cf2e7b3d20001";
const SEED_MAC: &str = "MAC:2C549188C9E3";
/// The body limit of `/licenses`.
const MIB: usize = 1024 * 1024;

/// A server with one borrow made, to check it survives what follows.
struct Survivor {
    server: Server,
    license: String,
    borrow_id: String,
}

impl Survivor {
    async fn start() -> Survivor {
        let server = Server::start(SAMPLE_POOL).await;
        let t = now();
        let mut p = params(
            SEED_UUID,
            SEED_MAC,
            Some(&z(t, HOUR)),
            Some(&z(t, 2 * HOUR)),
        );
        p["userInfo"] = json!("survivor");
        let (license, borrow_id) = borrow(&server, p).await;
        Survivor {
            server,
            license,
            borrow_id,
        }
    }

    /// The process runs, `/healthz` is 200 and the first borrow is unchanged.
    async fn assert_unharmed(&mut self) {
        assert!(self.server.is_running(), "licensed exited");
        let (status, _) = self.server.get("/healthz").await;
        assert_eq!(status, 200, "/healthz");
        assert_eq!(
            get_license(&self.server, &self.borrow_id).await,
            self.license
        );
    }

    /// Posts `body` as JSON and asserts one error object with `code` and id null; returns the
    /// response text.
    async fn expect_error(&self, body: impl Into<reqwest::Body>, code: i64, what: &str) -> String {
        let (status, text) = self.server.post_raw(body).await;
        assert_eq!(status, 200, "{what}: HTTP status, body {text:.300}");
        let response = json_of(&text);
        assert!(
            response.is_object(),
            "{what}: one error object, got {text:.300}"
        );
        let got = response["error"]["code"].as_i64();
        assert_eq!(got, Some(code), "{what}: {text:.300}");
        assert_error(&response, code);
        text
    }
}

/// A request body whose `params` is `params` and whose id is 1.
fn body(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).to_string()
}

#[tokio::test]
async fn malformed_json_is_a_parse_error() {
    let mut s = Survivor::start().await;
    let bodies: [&[u8]; 16] = [
        b"{",
        b"}",
        b"[[[[",
        b"\"unterminated",
        b"{\"jsonrpc\":\"2.0\",\"method\":\"ListLicensesV1\",\"id\":1,}",
        b"{\"jsonrpc\":\"2.0\" \"method\":\"ListLicensesV1\",\"id\":1}",
        b"{\"jsonrpc\":\"2.0\",\"method\":\"ListLicensesV1\",\"id\":1}{}",
        b"{\"jsonrpc\":\"2.0\",\"method\":\"List\\xLicensesV1\",\"id\":1}",
        b"{\"jsonrpc\":\"2.0\",\"method\":\"\\ud800\",\"id\":1}",
        b"{\"jsonrpc\":\"2.0\",\"method\":\"List\x01\",\"id\":1}",
        b"{\"jsonrpc\":\"2.0\",\"method\":\"ListLicensesV1\",\"id\":Infinity}",
        b"{\"jsonrpc\":\"2.0\",\"method\":\"ListLicensesV1\",\"id\":0x10}",
        b"\0",
        b"undefined",
        b"<?xml version=\"1.0\"?><methodCall/>",
        b"jsonrpc=2.0&method=ListLicensesV1&id=1",
    ];
    for raw in bodies {
        let what = String::from_utf8_lossy(raw).to_string();
        let text = s.expect_error(raw.to_vec(), -32700, &what).await;
        assert_eq!(json_of(&text)["id"], Value::Null, "{what}");
    }
    s.assert_unharmed().await;
}

#[tokio::test]
async fn empty_bodies_are_parse_errors() {
    let mut s = Survivor::start().await;
    s.expect_error("", -32700, "empty body").await;
    s.expect_error(" \r\n\t", -32700, "whitespace body").await;
    for content_type in [None, Some("application/json"), Some("text/plain")] {
        let (status, _, text) = post_typed(&s.server, content_type, "").await;
        assert_eq!(status, 200, "{content_type:?}");
        assert_error(&json_of(&text), -32700);
    }
    s.assert_unharmed().await;
}

#[tokio::test]
async fn bodies_over_one_mib_are_refused_with_a_reason() {
    let mut s = Survivor::start().await;
    // A request padded with spaces to exactly the limit is served; one byte more is not.
    let request = body("ListLicensesV1", json!([]));
    let exact = format!("{request}{}", " ".repeat(MIB - request.len()));
    assert_eq!(exact.len(), MIB);
    let response = json_of(&s.server.post_raw(exact.clone()).await.1);
    assert!(
        response["result"].is_array(),
        "a body of exactly 1 MiB: {response:.300}"
    );
    let text = s
        .expect_error(format!("{exact} "), -32600, "1 MiB + 1 byte")
        .await;
    let reason = json_of(&text)["error"]["data"]["reason"]
        .as_str()
        .unwrap_or("")
        .to_lowercase();
    assert!(
        reason.contains("1048576") || reason.contains("mib") || reason.contains("limit"),
        "the reason names the limit: {reason}"
    );
    assert_eq!(json_of(&text)["id"], Value::Null);

    // 10 MiB of a perfectly valid request. The client must get to read the answer: the
    // server has to take in (and discard) the rest of the body before it closes, or the
    // client sees a broken pipe instead (whether it does is a race, hence several rounds).
    let padding = "x".repeat(10 * MIB);
    let huge = body(
        "BorrowLicenseV1",
        json!({"feature": "MVTec_HALCON", "uuid": "halcon-3",
        "hostId": SEED_MAC, "validUntil": null, "userInfo": padding}),
    );
    for round in 0..5 {
        let response = reqwest::Client::new()
            .post(s.server.endpoint())
            .header("Content-Type", "application/json")
            .body(huge.clone())
            .send()
            .await;
        let response = response.unwrap_or_else(|e| {
            panic!("10 MiB body, round {round}: no answer, the client saw {e:?}")
        });
        assert_eq!(response.status().as_u16(), 200);
        let answer = json_of(&response.text().await.expect("body"));
        assert_error(&answer, -32600);
    }
    s.assert_unharmed().await;
}

#[tokio::test]
async fn deeply_nested_json_is_refused_before_parsing() {
    let mut s = Survivor::start().await;
    let depth = 100_000;
    let open = "[".repeat(depth);
    // Deeper than --max-json-depth (32): -32600 naming the flag, before any parsing.
    let reason = s.expect_error(open.clone(), -32600, "100 000 [").await;
    assert!(reason.contains("--max-json-depth"), "{reason}");
    s.expect_error(
        format!("{open}{}", "]".repeat(depth)),
        -32600,
        "100 000 [ ]",
    )
    .await;
    s.expect_error("{\"a\":".repeat(depth), -32600, "100 000 {\"a\":")
        .await;
    let nested_params = format!(
        "{{\"jsonrpc\":\"2.0\",\"method\":\"ListLicensesV1\",\"id\":1,\"params\":{{\"x\":{}{}}}}}",
        open,
        "]".repeat(depth)
    );
    s.expect_error(nested_params, -32600, "deep params").await;
    // Moderate nesting parses, and a nested value where a string belongs is -32602.
    let nested = format!("{}\"x\"{}", "[".repeat(20), "]".repeat(20));
    let request = format!(
        "{{\"jsonrpc\":\"2.0\",\"method\":\"BorrowLicenseV1\",\"id\":1,\"params\":{{\"feature\":\"MVTec_HALCON\",\"uuid\":\"halcon-3\",\"hostId\":\"{SEED_MAC}\",\"validUntil\":null,\"userInfo\":{nested}}}}}"
    );
    s.expect_error(request, -32602, "20-deep userInfo").await;
    s.assert_unharmed().await;
}

#[tokio::test]
async fn huge_strings_get_short_clear_errors() {
    let mut s = Survivor::start().await;
    // Just under --max-string-bytes (64 KiB): each field answers with its own code.
    let big = "A".repeat(60 * 1024);
    let wide = format!("MAC:{}", "é".repeat(30 * 1024));
    let t = now();
    let good = params(
        "halcon-3",
        SEED_MAC,
        Some(&z(t, HOUR)),
        Some(&z(t, 2 * HOUR)),
    );
    let with = |field: &str, value: &str| {
        let mut p = good.clone();
        p[field] = json!(value);
        body("BorrowLicenseV1", p)
    };
    let cases = [
        ("uuid", with("uuid", &big), -32602),
        ("feature", with("feature", &big), -32602),
        ("userInfo", with("userInfo", &big), -32602),
        ("hostId", with("hostId", &big), 36),
        ("multi-byte hostId", with("hostId", &wide), 36),
        ("validFrom", with("validFrom", &big), 35),
        ("validUntil", with("validUntil", &big), 35),
        (
            "borrowId",
            body("GetBorrowedLicenseV1", json!({"borrowId": big})),
            34,
        ),
        (
            "method",
            json!({"jsonrpc": "2.0", "method": big, "id": 1}).to_string(),
            -32601,
        ),
        (
            "jsonrpc",
            json!({"jsonrpc": big, "method": "ListLicensesV1", "id": 1}).to_string(),
            -32600,
        ),
    ];
    for (what, request, code) in cases {
        assert!(request.len() < MIB, "{what} stays within the body limit");
        let (status, text) = s.server.post_raw(request).await;
        assert_eq!(status, 200, "{what}");
        let response = json_of(&text);
        assert_error(&response, code);
        assert_eq!(response["id"], 1, "{what}");
        // The answer does not echo half a megabyte back.
        assert!(text.len() < 4096, "{what}: answer of {} bytes", text.len());
    }
    // Beyond --max-string-bytes: refused before parsing, the flag named.
    let huge = with("userInfo", &"A".repeat(100 * 1024));
    let text = s.expect_error(huge, -32600, "a 100 KiB string").await;
    assert!(text.contains("--max-string-bytes"), "{text:.300}");
    // Nothing was borrowed on halcon-3.
    let listing = s.server.result("ListLicensesV1", json!([])).await;
    let halcon = listing
        .as_array()
        .and_then(|l| l.iter().find(|l| l["uuid"] == "halcon-3"))
        .expect("halcon-3 listed")
        .clone();
    assert!(halcon.get("borrowedIntervals").is_none(), "{halcon}");
    s.assert_unharmed().await;
}

#[tokio::test]
async fn invalid_utf8_is_a_parse_error() {
    let mut s = Survivor::start().await;
    let prefix = b"{\"jsonrpc\":\"2.0\",\"method\":\"BorrowLicenseV1\",\"id\":1,\"params\":{\"feature\":\"MVTec_HALCON\",\"uuid\":\"halcon-3\",\"validUntil\":null,\"hostId\":\"MAC:2C549188C9E3\",\"userInfo\":\"";
    for bad in [
        &b"\xff\xfe"[..],
        &b"\xc0\x80"[..],
        &b"\xed\xa0\x80"[..],
        &b"caf\xc3"[..],
        &b"\xf8\x88\x80\x80\x80"[..],
    ] {
        let mut raw = prefix.to_vec();
        raw.extend_from_slice(bad);
        raw.extend_from_slice(b"\"}}");
        s.expect_error(raw, -32700, &format!("invalid UTF-8 {bad:x?} in a string"))
            .await;
        s.expect_error(
            bad.to_vec(),
            -32700,
            &format!("invalid UTF-8 {bad:x?} alone"),
        )
        .await;
    }
    s.assert_unharmed().await;
}

#[tokio::test]
async fn other_content_types_are_answered_like_json() {
    let mut s = Survivor::start().await;
    let request = body("ListLicensesV1", json!([]));
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/octet-stream"),
        Some("multipart/form-data; boundary=x"),
        Some("application/json; charset=latin1"),
        None,
    ] {
        // A JSON-RPC request is answered with JSON-RPC, whatever the label says: either
        // served or refused with a reason, never a bare HTTP error.
        let (status, response_type, text) =
            post_typed(&s.server, content_type, request.clone()).await;
        assert_eq!(status, 200, "{content_type:?}: {text}");
        assert!(
            response_type
                .unwrap_or_default()
                .starts_with("application/json"),
            "{content_type:?}"
        );
        let response = json_of(&text);
        assert_eq!(response["id"], 1, "{content_type:?}: {text}");
        if response.get("result").is_none() {
            let code = response["error"]["code"].as_i64().unwrap_or(0);
            assert_error(&response, code);
        }
        // A body that is not JSON is a parse error under any label.
        let (status, _, text) = post_typed(&s.server, content_type, "feature=MVTec_HALCON").await;
        assert_eq!(status, 200, "{content_type:?}");
        assert_error(&json_of(&text), -32700);
    }
    s.assert_unharmed().await;
}

#[tokio::test]
async fn huge_numbers_as_id_are_refused_or_echoed_exactly() {
    let mut s = Survivor::start().await;
    let mut changed = Vec::new();
    for id in [
        "1e400",
        "-1e400",
        "123456789012345678901234567890",
        "-123456789012345678901234567890",
        "18446744073709551616",
        "-9223372036854775809",
    ] {
        let request = format!("{{\"jsonrpc\":\"2.0\",\"method\":\"ListLicensesV1\",\"id\":{id}}}");
        let (status, text) = s.server.post_raw(request).await;
        assert_eq!(status, 200, "id {id}: {text:.300}");
        let response = json_of(&text);
        if response.get("error").is_some() {
            let code = response["error"]["code"].as_i64().unwrap_or(0);
            assert!(code == -32700 || code == -32600, "id {id}: {text:.300}");
            assert_error(&response, code);
            assert_eq!(response["id"], Value::Null, "id {id}");
        } else {
            // A client matches answers to requests by id: an integer id must come back as the
            // same integer, not rounded to a float.
            if !text.contains(&format!("\"id\":{id}")) {
                changed.push(format!("{id} came back as {}", response["id"]));
            }
        }
    }
    assert!(changed.is_empty(), "ids changed: {changed:?}");
    // Huge numbers where strings belong are wrongly typed params.
    let request = r#"{"jsonrpc":"2.0","method":"GetBorrowedLicenseV1","id":1,"params":{"borrowId":123456789012345678901234567890}}"#;
    s.expect_error(request, -32602, "numeric borrowId").await;
    s.assert_unharmed().await;
}

#[tokio::test]
async fn a_batch_of_five_thousand_is_refused_with_a_reason() {
    let mut s = Survivor::start().await;
    let batch: Vec<Value> = (0..5_000)
        .map(|i| json!({"jsonrpc": "2.0", "method": "ListLicensesV1", "id": i}))
        .collect();
    let request = Value::Array(batch).to_string();
    assert!(request.len() < MIB);
    let text = s.expect_error(request, -32600, "batch of 5 000").await;
    assert_eq!(json_of(&text)["id"], Value::Null);
    // Same for 5 000 borrows: none of them is carried out.
    let t = now();
    let batch: Vec<Value> = (0..5_000)
        .map(|i| {
            json!({"jsonrpc": "2.0", "method": "BorrowLicenseV1", "id": i,
                   "params": params("halcon-3", SEED_MAC, Some(&z(t, HOUR)), Some(&z(t, 2 * HOUR)))})
        })
        .collect();
    s.expect_error(
        Value::Array(batch).to_string(),
        -32600,
        "batch of 5 000 borrows",
    )
    .await;
    let listing = s.server.result("ListLicensesV1", json!([])).await;
    let halcon = listing
        .as_array()
        .and_then(|l| l.iter().find(|l| l["uuid"] == "halcon-3"))
        .expect("halcon-3 listed")
        .clone();
    assert!(halcon.get("borrowedIntervals").is_none(), "{halcon}");
    s.assert_unharmed().await;
}

#[tokio::test]
async fn wrong_http_methods_and_paths_do_not_harm_the_server() {
    let mut s = Survivor::start().await;
    let http = reqwest::Client::new();
    let url = s.server.endpoint();
    for request in [
        http.get(&url),
        http.put(&url).body("{}"),
        http.delete(&url),
        http.post(format!("{}/licenses/extra", s.server.url))
            .body("{}"),
        http.post(format!("{}/nope", s.server.url)).body("{}"),
    ] {
        let status = request.send().await.expect("request").status().as_u16();
        assert!((400..500).contains(&status), "status {status}");
    }
    s.assert_unharmed().await;
}

#[tokio::test]
async fn a_flood_of_concurrent_garbage_leaves_the_server_serving() {
    let mut s = Survivor::start().await;
    let bodies: Vec<Vec<u8>> = (0..200)
        .map(|i| match i % 5 {
            0 => b"{".to_vec(),
            1 => "[".repeat(50_000).into_bytes(),
            2 => vec![0xff; 1000],
            3 => body("BorrowLicenseV1", json!({"feature": 1})).into_bytes(),
            _ => body(
                "GetBorrowedLicenseV1",
                json!({"borrowId": "x".repeat(100_000)}),
            )
            .into_bytes(),
        })
        .collect();
    let answers = futures::future::join_all(bodies.into_iter().map(|b| s.server.post_raw(b))).await;
    for (status, text) in answers {
        assert_eq!(status, 200);
        let response = json_of(&text);
        let code = response["error"]["code"].as_i64().unwrap_or(0);
        assert_error(&response, code);
    }
    s.assert_unharmed().await;
}
