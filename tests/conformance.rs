//! The Borrow API's wire contract (docs/protocol.md), checked letter by letter against
//! the real `licensed` binary: error codes and texts, the check order, dates, host ids,
//! capacity over half-open intervals, batches, notifications, ids and the listing's shape.

mod common;

use chrono::{DateTime, FixedOffset, Utc};
use common::borrow_api::{
    assert_error, assert_result, borrow, get_license, interval, intervals, json_of, keys, license,
    licenses, names, now, params, parse, post_typed, z, DAY, HOUR,
};
use common::{Server, SAMPLE_POOL};
use serde_json::{json, Value};

const SEED_UUID: &str = "118cf2e7b3d20001";
const SEED_MAC: &str = "MAC:2C549188C9E3";
const OTHER_MAC: &str = "MAC:0A1B2C3D4E5F";
const DONGLE: &str = "CM:3-1234567890";

/// `SAMPLE_POOL` plus two licenses whose validity is relative to now: `expiring` (count 1,
/// ends in 2 days) and `window` (count 1, valid from in 1 day to in 3 days).
fn pool(t: DateTime<Utc>) -> String {
    let mut pool: Vec<Value> = serde_json::from_str(SAMPLE_POOL).expect("sample pool");
    pool.push(
        json!({"feature": "MVTec_HALCON", "uuid": "expiring", "version": "26.05",
        "edition": "Steady", "modules": "fc", "count": 1,
        "validFrom": z(t, -10 * DAY), "validUntil": z(t, 2 * DAY)}),
    );
    pool.push(
        json!({"feature": "MVTec_HALCON", "uuid": "window", "version": "26.05",
        "edition": "Progress", "modules": "f", "count": 1,
        "validFrom": z(t, DAY), "validUntil": z(t, 3 * DAY)}),
    );
    Value::Array(pool).to_string()
}

/// A fresh server and the test's reference time (pool dates are relative to it).
async fn start() -> (Server, DateTime<Utc>) {
    let t = now();
    (Server::start(&pool(t)).await, t)
}

/// A request object with `id`.
fn request(method: &str, params: Value, id: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params, "id": id})
}

/// A notification (no `id`).
fn notification(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params})
}

/// Params for `uuid` over `[t+from, t+until)` in seconds.
fn slot(uuid: &str, host: &str, t: DateTime<Utc>, from: i64, until: i64) -> Value {
    params(uuid, host, Some(&z(t, from)), Some(&z(t, until)))
}

/// `t + secs` written with a UTC offset of `offset_secs`, e.g. `2026-12-01T10:00:00+02:00`.
fn with_offset(t: DateTime<Utc>, secs: i64, offset_secs: i32, fraction: &str) -> String {
    let offset = FixedOffset::east_opt(offset_secs).expect("offset");
    let local = (t + chrono::Duration::seconds(secs)).with_timezone(&offset);
    format!(
        "{}{fraction}{}",
        local.format("%Y-%m-%dT%H:%M:%S"),
        local.format("%:z")
    )
}

async fn code_of(server: &Server, method: &str, params: Value) -> i64 {
    let response = server.call(method, params).await;
    let code = response["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("{method} should have failed: {response}"));
    assert_error(&response, code);
    code
}

#[tokio::test]
async fn every_error_code_carries_the_expected_message_and_a_reason() {
    let (server, t) = start().await;

    let (status, text) = server.post_raw("{").await;
    assert_eq!(status, 200);
    let response = json_of(&text);
    assert_error(&response, -32700);
    assert_eq!(response["id"], Value::Null);

    let response = server.post(&json!({"jsonrpc": "2.0", "id": 1})).await;
    assert_error(&response, -32600);

    let response = server.call("NoSuchMethodV1", json!({})).await;
    assert_error(&response, -32601);
    assert_eq!(response["id"], 1);

    let response = server.call("GetBorrowedLicenseV1", json!({})).await;
    assert_error(&response, -32602);
    assert_eq!(response["id"], 1);

    let response = server
        .call(
            "BorrowLicenseV1",
            slot(SEED_UUID, "MAC:2C549188C9E", t, HOUR, 2 * HOUR),
        )
        .await;
    assert_error(&response, 36);

    let response = server
        .call(
            "BorrowLicenseV1",
            slot(SEED_UUID, SEED_MAC, t, 2 * HOUR, HOUR),
        )
        .await;
    assert_error(&response, 35);

    let response = server
        .call(
            "BorrowLicenseV1",
            slot("no-such-uuid", SEED_MAC, t, HOUR, 2 * HOUR),
        )
        .await;
    assert_error(&response, 34);

    let response = server
        .call(
            "BorrowLicenseV1",
            slot("expiring", SEED_MAC, t, HOUR, 3 * DAY),
        )
        .await;
    assert_error(&response, 33);

    borrow(&server, slot(SEED_UUID, SEED_MAC, t, HOUR, 2 * HOUR)).await;
    let response = server
        .call(
            "BorrowLicenseV1",
            slot(SEED_UUID, OTHER_MAC, t, HOUR, 2 * HOUR),
        )
        .await;
    assert_error(&response, 32);
    assert_eq!(response["id"], 1);
    // Error objects carry exactly code, message and data.
    assert_eq!(keys(&response), names(&["jsonrpc", "error", "id"]));
    assert_eq!(
        keys(&response["error"]),
        names(&["code", "message", "data"])
    );
}

#[tokio::test]
async fn malformed_json_is_a_parse_error_with_id_null() {
    let (server, _) = start().await;
    let bodies = [
        "{",
        "nope",
        "{\"jsonrpc\":\"2.0\",\"method\":\"ListLicensesV1\",\"id\":1",
        "{\"jsonrpc\":\"2.0\",\"method\":\"ListLicensesV1\",\"id\":1}}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"ListLicensesV1\",\"id\":1} x",
        "[{\"jsonrpc\":\"2.0\",\"method\":\"ListLicensesV1\",\"id\":1},]",
        "{'jsonrpc':'2.0','method':'ListLicensesV1','id':1}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"ListLicensesV1\",\"id\":01}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"ListLicensesV1\",\"id\":NaN}",
        "[{\"jsonrpc\":\"2.0\",\"method\":\"ListLicensesV1\",\"id\":1},",
        "",
        "   \n",
    ];
    for body in bodies {
        let (status, content_type, text) =
            post_typed(&server, Some("application/json"), body).await;
        assert_eq!(status, 200, "HTTP status for {body:?}: {text}");
        assert!(
            content_type
                .as_deref()
                .unwrap_or("")
                .starts_with("application/json"),
            "content type {content_type:?} for {body:?}"
        );
        let response = json_of(&text);
        assert!(response.is_object(), "a parse error is one object: {text}");
        assert_error(&response, -32700);
        assert_eq!(
            response["id"],
            Value::Null,
            "id of a parse error for {body:?}"
        );
    }
}

#[tokio::test]
async fn objects_that_are_not_requests_are_invalid_requests() {
    let (server, _) = start().await;
    // (body, id the answer must carry): the id is echoed when it could be read.
    let cases = [
        ("1", Value::Null),
        ("\"ListLicensesV1\"", Value::Null),
        ("null", Value::Null),
        ("true", Value::Null),
        ("{}", Value::Null),
        (r#"{"method":"ListLicensesV1","id":1}"#, json!(1)),
        (
            r#"{"jsonrpc":"1.0","method":"ListLicensesV1","id":2}"#,
            json!(2),
        ),
        (
            r#"{"jsonrpc":2.0,"method":"ListLicensesV1","id":3}"#,
            json!(3),
        ),
        (r#"{"jsonrpc":"2.0","method":5,"id":4}"#, json!(4)),
        (r#"{"jsonrpc":"2.0","id":5}"#, json!(5)),
        (
            r#"{"jsonrpc":"2.0","method":null,"id":"six"}"#,
            json!("six"),
        ),
        (
            r#"{"jsonrpc":"2.0","method":["ListLicensesV1"],"id":7}"#,
            json!(7),
        ),
        (
            r#"{"jsonrpc":"2.0","method":"ListLicensesV1","id":{"a":1}}"#,
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","method":"ListLicensesV1","id":[1]}"#,
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","method":"ListLicensesV1","id":true}"#,
            Value::Null,
        ),
        // Without an id but invalid: still answered (only valid notifications are silent).
        (
            r#"{"jsonrpc":"1.0","method":"ListLicensesV1"}"#,
            Value::Null,
        ),
        (r#"{"method":"ListLicensesV1"}"#, Value::Null),
    ];
    for (body, id) in cases {
        let (status, text) = server.post_raw(body).await;
        assert_eq!(status, 200, "HTTP status for {body}: {text}");
        let response = json_of(&text);
        assert_error(&response, -32600);
        assert_eq!(response["id"], id, "id for {body}");
        assert!(
            response.as_object().is_some_and(|o| o.contains_key("id")),
            "id member present: {text}"
        );
    }
}

#[tokio::test]
async fn unknown_methods_are_method_not_found() {
    let (server, _) = start().await;
    for method in [
        "NoSuchMethodV1",
        "listlicensesv1",
        "LISTLICENSESV1",
        "ListLicensesV2",
        "ListLicenses",
        "ListLicensesV1 ",
        "",
        "rpc.discover",
        "ReturnLicenseV0",
    ] {
        let response = server.post(&request(method, json!({}), json!(9))).await;
        assert_error(&response, -32601);
        assert_eq!(response["id"], 9, "id for {method:?}");
    }
    // The method is looked up before its params are checked.
    let response = server
        .post(&request("NoSuchMethodV1", json!([1, 2]), json!(1)))
        .await;
    assert_error(&response, -32601);
}

#[tokio::test]
async fn list_licenses_takes_absent_null_empty_or_unknown_params() {
    let (server, _) = start().await;
    let reference = licenses(&server).await;
    assert_eq!(reference.len(), 6);
    let forms = [
        json!({"jsonrpc": "2.0", "method": "ListLicensesV1", "id": 1}),
        request("ListLicensesV1", Value::Null, json!(1)),
        request("ListLicensesV1", json!([]), json!(1)),
        request("ListLicensesV1", json!({}), json!(1)),
        request(
            "ListLicensesV1",
            json!({"extra": 1, "feature": "MVTec_HALCON"}),
            json!(1),
        ),
    ];
    for body in forms {
        let response = server.post(&body).await;
        let result = assert_result(&response, &json!(1));
        assert_eq!(result, Value::Array(reference.clone()), "result for {body}");
    }
    for bad in [
        json!([1]),
        json!(["x"]),
        json!("params"),
        json!(5),
        json!(true),
    ] {
        let response = server.call("ListLicensesV1", bad.clone()).await;
        assert_error(&response, -32602);
        assert_eq!(response["id"], 1, "id for params {bad}");
    }
}

#[tokio::test]
async fn missing_or_wrongly_typed_params_are_invalid_params() {
    let (server, t) = start().await;
    let good = slot("halcon-3", SEED_MAC, t, HOUR, 2 * HOUR);
    let mut cases: Vec<Value> = Vec::new();
    for field in ["feature", "uuid", "hostId", "validUntil"] {
        let mut params = good.clone();
        params.as_object_mut().expect("object").remove(field);
        cases.push(params);
    }
    let wrong: [(&str, Value); 19] = [
        ("feature", json!(5)),
        ("feature", Value::Null),
        ("feature", json!([])),
        ("feature", json!(true)),
        ("uuid", json!({})),
        ("uuid", json!(3.5)),
        ("uuid", Value::Null),
        ("hostId", json!({"mac": SEED_MAC})),
        ("hostId", json!(42)),
        ("hostId", Value::Null),
        ("hostId", json!([SEED_MAC])),
        ("validFrom", json!(1_900_000_000)),
        ("validFrom", json!({})),
        ("validUntil", json!(5)),
        ("validUntil", json!([])),
        ("validUntil", json!(false)),
        ("userInfo", json!(7)),
        ("userInfo", json!({})),
        ("userInfo", json!(["Jane"])),
    ];
    for (field, value) in wrong {
        let mut params = good.clone();
        params[field] = value;
        cases.push(params);
    }
    // Parameters go by name: positional or scalar params are refused.
    cases.push(json!([
        "MVTec_HALCON",
        "halcon-3",
        SEED_MAC,
        z(t, HOUR),
        z(t, 2 * HOUR)
    ]));
    cases.push(json!("MVTec_HALCON"));
    cases.push(json!(17));
    cases.push(json!({}));
    cases.push(json!([]));
    cases.push(Value::Null);
    for params in cases {
        let response = server.call("BorrowLicenseV1", params.clone()).await;
        assert_error(&response, -32602);
        assert_eq!(response["id"], 1, "id for {params}");
    }
    for params in [
        json!({}),
        json!({"borrowId": 5}),
        json!({"borrowId": null}),
        json!({"borrowId": {}}),
        json!({"id": "934c1302-1320-42c3-a3ef-6340ff8cd2f3"}),
        json!(["934c1302-1320-42c3-a3ef-6340ff8cd2f3"]),
    ] {
        let response = server.call("GetBorrowedLicenseV1", params.clone()).await;
        assert_error(&response, -32602);
        assert_eq!(response["id"], 1, "id for {params}");
    }
    // None of the refused calls borrowed anything.
    assert!(intervals(&server, "halcon-3").await.is_empty());
    // The base params were fine, and unknown extra names are ignored.
    let mut params = good.clone();
    params["colour"] = json!("blue");
    params["count"] = json!(99);
    borrow(&server, params).await;
    assert_eq!(intervals(&server, "halcon-3").await.len(), 1);
}

#[tokio::test]
async fn checks_run_in_order_and_the_first_failure_wins() {
    let (server, t) = start().await;
    let bad_host = "MAC:2C549188C9E";
    let long_text = "x".repeat(129);
    let mut cases: Vec<(&str, Value, i64)> = Vec::new();

    // 1 (params) before 2 (host id)
    let mut p = slot(SEED_UUID, bad_host, t, HOUR, 2 * HOUR);
    p.as_object_mut().expect("object").remove("feature");
    cases.push(("missing feature + bad host", p, -32602));
    let mut p = slot(SEED_UUID, bad_host, t, HOUR, 2 * HOUR);
    p.as_object_mut().expect("object").remove("validUntil");
    cases.push(("missing validUntil + bad host", p, -32602));
    let mut p = slot(SEED_UUID, bad_host, t, HOUR, 2 * HOUR);
    p["feature"] = json!(long_text);
    cases.push(("129-char feature + bad host", p, -32602));
    let mut p = slot(SEED_UUID, bad_host, t, HOUR, 2 * HOUR);
    p["uuid"] = json!(long_text);
    cases.push(("129-char uuid + bad host", p, -32602));
    let mut p = slot(SEED_UUID, bad_host, t, HOUR, 2 * HOUR);
    p["userInfo"] = json!("u".repeat(1025));
    cases.push(("1025-char userInfo + bad host", p, -32602));
    let mut p = slot(SEED_UUID, bad_host, t, HOUR, 2 * HOUR);
    p["validFrom"] = json!(12);
    cases.push(("numeric validFrom + bad host", p, -32602));
    let mut p = slot(SEED_UUID, SEED_MAC, t, 2 * HOUR, HOUR);
    p["userInfo"] = json!(1);
    cases.push(("numeric userInfo + reversed interval", p, -32602));

    // 2 (host id) before 3 (interval)
    let p = params(SEED_UUID, bad_host, Some("garbage"), Some(&z(t, HOUR)));
    cases.push(("bad host + unparsable date", p, 36));
    cases.push((
        "bad host + reversed",
        slot(SEED_UUID, bad_host, t, 2 * HOUR, HOUR),
        36,
    ));
    cases.push((
        "bad host + too long",
        slot(SEED_UUID, bad_host, t, HOUR, 40 * DAY),
        36,
    ));
    cases.push((
        "bad host + unknown license",
        slot("nope", bad_host, t, HOUR, 2 * HOUR),
        36,
    ));
    cases.push((
        "bad host + past",
        slot(SEED_UUID, bad_host, t, -2 * HOUR, -HOUR),
        36,
    ));

    // 3 (interval) before 4 (license exists)
    let p = params("nope", SEED_MAC, Some("garbage"), Some(&z(t, HOUR)));
    cases.push(("unknown license + unparsable validFrom", p, 35));
    let p = params("nope", SEED_MAC, None, Some("2026-12-01T08:00:00"));
    cases.push(("unknown license + validUntil without offset", p, 35));
    cases.push((
        "unknown license + reversed",
        slot("nope", SEED_MAC, t, 2 * HOUR, HOUR),
        35,
    ));
    cases.push((
        "unknown license + empty",
        slot("nope", SEED_MAC, t, HOUR, HOUR),
        35,
    ));
    cases.push((
        "unknown license + past",
        slot("nope", SEED_MAC, t, -2 * HOUR, -HOUR),
        35,
    ));
    cases.push((
        "unknown license + validFrom > 24h ago",
        slot("nope", SEED_MAC, t, -25 * HOUR, HOUR),
        35,
    ));
    cases.push((
        "unknown license + 31 days",
        slot("nope", SEED_MAC, t, HOUR, HOUR + 31 * DAY),
        35,
    ));
    let mut p = slot(SEED_UUID, SEED_MAC, t, HOUR, 2 * HOUR);
    p["feature"] = json!("MVTec_HALCON");
    cases.push(("uuid exists only under the other feature", p, 34));
    let p = slot("halcon-3", SEED_MAC, t, HOUR, 2 * HOUR);
    let mut p2 = p.clone();
    p2["feature"] = json!("MVTec_HDevelop");
    cases.push(("halcon uuid under HDevelop", p2, 34));
    let mut p = slot("nope", SEED_MAC, t, HOUR, 2 * HOUR);
    p["uuid"] = json!("x".repeat(128));
    cases.push(("128-char uuid is a well-formed unknown license", p, 34));

    // 3 (length, per license) before 5 (validity)
    cases.push((
        "short-lived 8 days",
        slot("short-lived", SEED_MAC, t, HOUR, HOUR + 8 * DAY),
        35,
    ));
    // 5: ending after the license's end (33) wins over starting before its start (35)
    cases.push((
        "window: starts before and ends after",
        slot("window", SEED_MAC, t, HOUR, 4 * DAY),
        33,
    ));
    cases.push((
        "window: starts before",
        slot("window", SEED_MAC, t, HOUR, 2 * DAY),
        35,
    ));
    cases.push((
        "window: ends after",
        slot("window", SEED_MAC, t, DAY + HOUR, 3 * DAY + 1),
        33,
    ));
    cases.push((
        "expiring: ends 1 s after",
        slot("expiring", SEED_MAC, t, HOUR, 2 * DAY + 1),
        33,
    ));
    cases.push((
        "future: starts now",
        params("future", SEED_MAC, None, Some(&z(t, DAY))),
        35,
    ));

    for (what, params, code) in cases {
        let response = server.call("BorrowLicenseV1", params.clone()).await;
        let got = response["error"]["code"].as_i64();
        assert_eq!(got, Some(code), "{what}: {params} -> {response}");
        assert_error(&response, code);
    }
    // Nothing was borrowed by the refusals.
    for license in licenses(&server).await {
        assert!(license.get("borrowedIntervals").is_none(), "{license}");
    }

    // The license's own edges are allowed: exactly its validity.
    borrow(&server, slot("window", SEED_MAC, t, DAY, 3 * DAY)).await;
    borrow(&server, slot("expiring", SEED_MAC, t, HOUR, 2 * DAY)).await;
    // 5 before 6: a full license refuses a too-late end with 33, an in-range one with 32.
    let p = slot("expiring", OTHER_MAC, t, HOUR, 3 * DAY);
    assert_eq!(code_of(&server, "BorrowLicenseV1", p).await, 33);
    let p = slot("window", OTHER_MAC, t, HOUR, 2 * DAY);
    assert_eq!(code_of(&server, "BorrowLicenseV1", p).await, 35);
    let p = slot("expiring", OTHER_MAC, t, HOUR, 2 * HOUR);
    assert_eq!(code_of(&server, "BorrowLicenseV1", p).await, 32);
    // 2 and 3 before 6 on a full license.
    let p = slot("expiring", "CM:3-12345", t, HOUR, 2 * HOUR);
    assert_eq!(code_of(&server, "BorrowLicenseV1", p).await, 36);
    let p = slot("expiring", OTHER_MAC, t, 2 * HOUR, HOUR);
    assert_eq!(code_of(&server, "BorrowLicenseV1", p).await, 35);
}

#[tokio::test]
async fn interval_rules_at_their_edges() {
    let (server, t) = start().await;
    // Maximum borrow: 30 days by default, 7 days on `short-lived`; exactly the limit is fine.
    borrow(
        &server,
        slot("halcon-3", SEED_MAC, t, HOUR, HOUR + 30 * DAY),
    )
    .await;
    let p = slot("halcon-3", SEED_MAC, t, HOUR, HOUR + 30 * DAY + 1);
    assert_eq!(code_of(&server, "BorrowLicenseV1", p).await, 35);
    borrow(
        &server,
        slot("short-lived", SEED_MAC, t, HOUR, HOUR + 7 * DAY),
    )
    .await;
    let p = slot("short-lived", SEED_MAC, t, HOUR, HOUR + 7 * DAY + 1);
    assert_eq!(code_of(&server, "BorrowLicenseV1", p).await, 35);
    // validFrom up to 24 h in the past is fine, more is not.
    borrow(&server, slot("halcon-3", OTHER_MAC, t, -23 * HOUR, HOUR)).await;
    let p = slot("halcon-3", OTHER_MAC, t, -24 * HOUR - 120, HOUR);
    assert_eq!(code_of(&server, "BorrowLicenseV1", p).await, 35);
    // validUntil must be later than validFrom and in the future.
    let p = slot("halcon-3", OTHER_MAC, t, 2 * HOUR, 2 * HOUR);
    assert_eq!(code_of(&server, "BorrowLicenseV1", p).await, 35);
    let p = slot("halcon-3", OTHER_MAC, t, 2 * HOUR, 2 * HOUR - 1);
    assert_eq!(code_of(&server, "BorrowLicenseV1", p).await, 35);
    let p = slot("halcon-3", OTHER_MAC, t, -3 * HOUR, -60);
    assert_eq!(code_of(&server, "BorrowLicenseV1", p).await, 35);
    let p = params("halcon-3", OTHER_MAC, None, Some(&z(t, -60)));
    assert_eq!(code_of(&server, "BorrowLicenseV1", p).await, 35);
    // A license that starts in 2090 can be borrowed in 2090, within its maximum length.
    let (_, id) = borrow(
        &server,
        params("future", DONGLE, Some("2090-01-01"), Some("2090-01-07")),
    )
    .await;
    let listed = interval(&server, "future", &id).await;
    assert_eq!(listed["validFrom"], "2090-01-01T00:00:00Z");
    assert_eq!(listed["validUntil"], "2090-01-07T23:59:59Z");
    let p = params(
        "future",
        DONGLE,
        Some("2090-03-01T00:00:00Z"),
        Some("2090-04-01T00:00:00Z"),
    );
    assert_eq!(code_of(&server, "BorrowLicenseV1", p).await, 35);
    let p = params(
        "future",
        DONGLE,
        Some("2089-12-31T23:59:59Z"),
        Some("2090-01-02T00:00:00Z"),
    );
    assert_eq!(code_of(&server, "BorrowLicenseV1", p).await, 35);
}

#[tokio::test]
async fn user_info_and_key_lengths() {
    let (server, t) = start().await;
    let mut p = slot("halcon-3", SEED_MAC, t, HOUR, 2 * HOUR);
    p["userInfo"] = json!("u".repeat(1024));
    let (_, id) = borrow(&server, p).await;
    assert_eq!(
        interval(&server, "halcon-3", &id).await["userInfo"],
        "u".repeat(1024)
    );
    // The limit counts characters, not bytes.
    let mut p = slot("halcon-3", SEED_MAC, t, 3 * HOUR, 4 * HOUR);
    p["userInfo"] = json!("ä".repeat(1024));
    let (_, id) = borrow(&server, p).await;
    assert_eq!(
        interval(&server, "halcon-3", &id).await["userInfo"],
        "ä".repeat(1024)
    );
    let mut p = slot("halcon-3", SEED_MAC, t, 5 * HOUR, 6 * HOUR);
    p["userInfo"] = json!("u".repeat(1025));
    assert_eq!(code_of(&server, "BorrowLicenseV1", p).await, -32602);
    let mut p = slot("halcon-3", SEED_MAC, t, 5 * HOUR, 6 * HOUR);
    p["feature"] = json!("F".repeat(128));
    assert_eq!(code_of(&server, "BorrowLicenseV1", p).await, 34);
    let mut p = slot("halcon-3", SEED_MAC, t, 5 * HOUR, 6 * HOUR);
    p["feature"] = json!("F".repeat(129));
    assert_eq!(code_of(&server, "BorrowLicenseV1", p).await, -32602);
    // userInfo null is the same as absent.
    let mut p = slot("halcon-3", SEED_MAC, t, 5 * HOUR, 6 * HOUR);
    p["userInfo"] = Value::Null;
    let (_, id) = borrow(&server, p).await;
    assert!(interval(&server, "halcon-3", &id)
        .await
        .get("userInfo")
        .is_none());
}

#[tokio::test]
async fn every_date_form_is_understood_and_answered_in_utc_whole_seconds() {
    let (server, t) = start().await;
    let today = t.format("%Y-%m-%d").to_string();
    let tomorrow = (t + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    // (validFrom, validUntil, listed validFrom, listed validUntil), on disjoint slots except
    // the plain-date ones (count 3 leaves room for them).
    let cases = [
        (z(t, HOUR), z(t, 2 * HOUR), z(t, HOUR), z(t, 2 * HOUR)),
        (
            with_offset(t, 3 * HOUR, 2 * 3600, ""),
            with_offset(t, 4 * HOUR, -(5 * 3600 + 1800), ""),
            z(t, 3 * HOUR),
            z(t, 4 * HOUR),
        ),
        (
            with_offset(t, 5 * HOUR, 2 * 3600, ".5"),
            format!("{}.999Z", z(t, 6 * HOUR).trim_end_matches('Z')),
            z(t, 5 * HOUR),
            z(t, 6 * HOUR),
        ),
        (
            with_offset(t, 7 * HOUR, 0, ".123456789"),
            with_offset(t, 8 * HOUR, 14 * 3600, ".000"),
            z(t, 7 * HOUR),
            z(t, 8 * HOUR),
        ),
        (
            today.clone(),
            tomorrow.clone(),
            format!("{today}T00:00:00Z"),
            format!("{tomorrow}T23:59:59Z"),
        ),
        (
            z(t, 9 * HOUR),
            tomorrow.clone(),
            z(t, 9 * HOUR),
            format!("{tomorrow}T23:59:59Z"),
        ),
    ];
    for (from, until, listed_from, listed_until) in cases {
        let (_, id) = borrow(
            &server,
            params("halcon-3", SEED_MAC, Some(&from), Some(&until)),
        )
        .await;
        let listed = interval(&server, "halcon-3", &id).await;
        assert_eq!(listed["validFrom"], json!(listed_from), "validFrom {from}");
        assert_eq!(
            listed["validUntil"],
            json!(listed_until),
            "validUntil {until}"
        );
    }
    // The seed example's fractional offset form.
    let from = with_offset(t, 10 * HOUR, 2 * 3600, ".5");
    let (_, id) = borrow(
        &server,
        params("short-lived", SEED_MAC, Some(&from), Some(&z(t, 11 * HOUR))),
    )
    .await;
    assert_eq!(
        interval(&server, "short-lived", &id).await["validFrom"],
        json!(z(t, 10 * HOUR))
    );

    let no_offset = (t + chrono::Duration::hours(20))
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    for bad in [
        no_offset.as_str(),
        "garbage",
        "",
        "tomorrow",
        "2026-13-01",
        "2026-12-32",
        "2026-12-01T25:00:00Z",
        "2026-12-01T08:60:00Z",
        "12/01/2026",
        "01.12.2026",
        "1900000000",
        "2026-12-01T08:00:00+25:00",
    ] {
        let p = params("halcon-3", SEED_MAC, Some(bad), Some(&z(t, 21 * HOUR)));
        assert_eq!(
            code_of(&server, "BorrowLicenseV1", p).await,
            35,
            "validFrom {bad:?}"
        );
        let p = params("halcon-3", SEED_MAC, Some(&z(t, 20 * HOUR)), Some(bad));
        assert_eq!(
            code_of(&server, "BorrowLicenseV1", p).await,
            35,
            "validUntil {bad:?}"
        );
    }
    // Every listed date is RFC 3339 UTC with Z and whole seconds.
    for license in licenses(&server).await {
        for field in ["validFrom", "validUntil"] {
            if let Some(date) = license.get(field) {
                parse(date);
            }
        }
        for interval in license["borrowedIntervals"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            parse(&interval["validFrom"]);
            parse(&interval["validUntil"]);
        }
    }
}

#[tokio::test]
async fn host_ids_are_mac_or_dongle_and_listed_upper_case() {
    let (server, t) = start().await;
    let valid = [
        ("MAC:2C549188C9E3", "MAC:2C549188C9E3"),
        ("MAC:2c549188c9e3", "MAC:2C549188C9E3"),
        ("MAC:aBcDeF012345", "MAC:ABCDEF012345"),
        ("CM:3-1234567890", "CM:3-1234567890"),
        ("CM:3-0000000000", "CM:3-0000000000"),
    ];
    for (i, (given, listed)) in valid.iter().enumerate() {
        let from = (2 * i as i64 + 1) * HOUR;
        let (_, id) = borrow(&server, slot("halcon-3", given, t, from, from + HOUR)).await;
        assert_eq!(
            interval(&server, "halcon-3", &id).await["hostId"],
            *listed,
            "{given}"
        );
    }
    for bad in [
        "",
        "2C549188C9E3",
        "MAC:",
        "MAC:2C549188C9E",
        "MAC:2C549188C9E3A",
        "MAC:2C549188C9EG",
        "MAC 2C549188C9E3",
        "MAC:2C:54:91:88:C9:E3",
        "MAC:2C-54-91-88-C9-E3",
        " MAC:2C549188C9E3",
        "MAC:2C549188C9E3 ",
        "MAC:2C549188C9E3\u{0}",
        "MAC:２C549188C9E3",
        "CM:3-123456789",
        "CM:3-12345678901",
        "CM:3-12345abcde",
        "CM:2-1234567890",
        "CM:31234567890",
        "CM:3-+123456789",
        "IP:127.0.0.1",
    ] {
        let p = slot("halcon-3", bad, t, 20 * HOUR, 21 * HOUR);
        assert_eq!(
            code_of(&server, "BorrowLicenseV1", p).await,
            36,
            "hostId {bad:?}"
        );
    }
}

#[tokio::test]
async fn intervals_are_half_open_so_touching_borrows_fit() {
    let (server, t) = start().await;
    let a = borrow(&server, slot(SEED_UUID, SEED_MAC, t, 2 * HOUR, 3 * HOUR))
        .await
        .1;
    let b = borrow(&server, slot(SEED_UUID, OTHER_MAC, t, 3 * HOUR, 4 * HOUR))
        .await
        .1;
    let c = borrow(&server, slot(SEED_UUID, DONGLE, t, HOUR, 2 * HOUR))
        .await
        .1;
    for (from, until) in [
        (3 * HOUR - 1, 3 * HOUR + 1),
        (4 * HOUR - 1, 5 * HOUR),
        (HOUR / 2, HOUR + 1),
        (HOUR, 4 * HOUR),
        (2 * HOUR + 60, 2 * HOUR + 120),
    ] {
        let p = slot(SEED_UUID, OTHER_MAC, t, from, until);
        assert_eq!(
            code_of(&server, "BorrowLicenseV1", p).await,
            32,
            "[{from}, {until})"
        );
    }
    let d = borrow(&server, slot(SEED_UUID, OTHER_MAC, t, 4 * HOUR, 5 * HOUR))
        .await
        .1;
    let e = borrow(&server, slot(SEED_UUID, OTHER_MAC, t, HOUR / 2, HOUR))
        .await
        .1;
    // Listed sorted by validFrom.
    let listed: Vec<Value> = intervals(&server, SEED_UUID)
        .await
        .iter()
        .map(|i| i["borrowId"].clone())
        .collect();
    assert_eq!(
        listed,
        vec![json!(e), json!(c), json!(a), json!(b), json!(d)]
    );
}

#[tokio::test]
async fn count_three_allows_three_at_any_instant() {
    let (server, t) = start().await;
    let hosts = [SEED_MAC, OTHER_MAC, DONGLE];
    for host in hosts {
        borrow(&server, slot("halcon-3", host, t, HOUR, 3 * HOUR)).await;
    }
    let p = slot("halcon-3", "MAC:111111111111", t, 2 * HOUR, 4 * HOUR);
    assert_eq!(code_of(&server, "BorrowLicenseV1", p).await, 32);
    let p = slot("halcon-3", "MAC:111111111111", t, HOUR, 2 * HOUR);
    assert_eq!(code_of(&server, "BorrowLicenseV1", p).await, 32);
    borrow(
        &server,
        slot("halcon-3", "MAC:111111111111", t, 3 * HOUR, 4 * HOUR),
    )
    .await;

    // The limit is per instant, not per overlapping interval: P, Q, R are disjoint, S spans
    // them all, so S overlaps three borrows but never more than one at a time.
    let h = |n: i64| n * HOUR;
    for (from, until) in [(10, 12), (14, 16), (18, 20), (10, 20), (11, 15)] {
        borrow(&server, slot("halcon-3", SEED_MAC, t, h(from), h(until))).await;
    }
    // At 11..12 P, S and T are out: a fourth is refused.
    let p = slot("halcon-3", SEED_MAC, t, h(11), h(12));
    assert_eq!(code_of(&server, "BorrowLicenseV1", p).await, 32);
    // 12..14 has S and T only (P ends at 12, Q starts at 14).
    borrow(&server, slot("halcon-3", SEED_MAC, t, h(12), h(14))).await;
    // 15..16 has Q and S (T ends at 15).
    borrow(&server, slot("halcon-3", SEED_MAC, t, h(15), h(16))).await;
    let p = slot("halcon-3", SEED_MAC, t, h(15), h(16));
    assert_eq!(code_of(&server, "BorrowLicenseV1", p).await, 32);
    assert_eq!(intervals(&server, "halcon-3").await.len(), 11);
}

#[tokio::test]
async fn the_same_host_counts_against_capacity() {
    let (server, t) = start().await;
    borrow(&server, slot(SEED_UUID, SEED_MAC, t, HOUR, 2 * HOUR)).await;
    for host in [SEED_MAC, "MAC:2c549188c9e3"] {
        let p = slot(SEED_UUID, host, t, HOUR, 2 * HOUR);
        assert_eq!(code_of(&server, "BorrowLicenseV1", p).await, 32, "{host}");
        let p = slot(SEED_UUID, host, t, HOUR + 1800, 3 * HOUR);
        assert_eq!(code_of(&server, "BorrowLicenseV1", p).await, 32, "{host}");
    }
    for _ in 0..3 {
        borrow(&server, slot("halcon-3", DONGLE, t, HOUR, 2 * HOUR)).await;
    }
    let p = slot("halcon-3", DONGLE, t, HOUR, 2 * HOUR);
    assert_eq!(code_of(&server, "BorrowLicenseV1", p).await, 32);
}

#[tokio::test]
async fn valid_from_defaults_to_now_and_null_until_means_the_longest_borrow() {
    let (server, t) = start().await;
    let before = Utc::now().timestamp();
    let (_, id) = borrow(
        &server,
        params("halcon-3", SEED_MAC, None, Some(&z(t, HOUR))),
    )
    .await;
    let after = Utc::now().timestamp();
    let listed = interval(&server, "halcon-3", &id).await;
    let from = parse(&listed["validFrom"]).timestamp();
    assert!(
        (before - 1..=after + 1).contains(&from),
        "default validFrom {from} not within [{before}, {after}]"
    );
    assert_eq!(listed["validUntil"], json!(z(t, HOUR)));

    // null validUntil: the license's maximum (7 days on `short-lived`, 30 days by default).
    let (_, id) = borrow(&server, params("short-lived", SEED_MAC, None, None)).await;
    let listed = interval(&server, "short-lived", &id).await;
    let (from, until) = (parse(&listed["validFrom"]), parse(&listed["validUntil"]));
    assert!((before - 1..=Utc::now().timestamp() + 1).contains(&from.timestamp()));
    assert_eq!((until - from).num_seconds(), 7 * DAY, "{listed}");

    let (_, id) = borrow(
        &server,
        params("halcon-3", SEED_MAC, Some(&z(t, 2 * HOUR)), None),
    )
    .await;
    let listed = interval(&server, "halcon-3", &id).await;
    assert_eq!(listed["validFrom"], json!(z(t, 2 * HOUR)));
    assert_eq!(listed["validUntil"], json!(z(t, 2 * HOUR + 30 * DAY)));

    let (_, id) = borrow(&server, params(SEED_UUID, SEED_MAC, None, None)).await;
    let listed = interval(&server, SEED_UUID, &id).await;
    let (from, until) = (parse(&listed["validFrom"]), parse(&listed["validUntil"]));
    assert_eq!((until - from).num_seconds(), 30 * DAY, "{listed}");

    // validUntil is required: absent is not the same as null.
    let mut p = params("halcon-3", SEED_MAC, None, None);
    p.as_object_mut().expect("object").remove("validUntil");
    assert_eq!(code_of(&server, "BorrowLicenseV1", p).await, -32602);
}

#[tokio::test]
async fn borrow_and_get_return_the_same_license_string() {
    let (server, t) = start().await;
    let mut p = slot(SEED_UUID, SEED_MAC, t, HOUR, 13 * HOUR);
    p["userInfo"] = json!("Jane Doe");
    let response = server.post(&request("BorrowLicenseV1", p, json!(2))).await;
    let result = assert_result(&response, &json!(2));
    assert_eq!(keys(&response), names(&["jsonrpc", "result", "id"]));
    // The Borrow API's two members, plus the borrower's return proof (an extension
    // MVTec's clients ignore); a served-again license carries the two only.
    assert_eq!(
        keys(&result),
        names(&["license", "borrowId", "returnToken"])
    );
    let license = result["license"]
        .as_str()
        .expect("license string")
        .to_string();
    let borrow_id = result["borrowId"].as_str().expect("borrowId").to_string();
    assert!(
        uuid::Uuid::parse_str(&borrow_id).is_ok(),
        "borrowId {borrow_id}"
    );

    let response = server
        .post(&request(
            "GetBorrowedLicenseV1",
            json!({"borrowId": borrow_id}),
            json!("g"),
        ))
        .await;
    let got = assert_result(&response, &json!("g"));
    assert_eq!(keys(&got), names(&["license", "borrowId"]));
    assert_eq!(got["license"], json!(license));
    assert_eq!(got["borrowId"], json!(borrow_id));
    assert_eq!(get_license(&server, &borrow_id).await, license);

    let (other_license, other_id) =
        borrow(&server, slot("halcon-3", SEED_MAC, t, HOUR, 13 * HOUR)).await;
    assert_ne!(other_id, borrow_id);
    assert_ne!(other_license, license);
    assert_eq!(get_license(&server, &other_id).await, other_license);

    for unknown in [
        "934c1302-1320-42c3-a3ef-6340ff8cd2f3",
        "00000000-0000-0000-0000-000000000000",
        "not-a-uuid",
        "",
        license.as_str(),
    ] {
        let code = code_of(
            &server,
            "GetBorrowedLicenseV1",
            json!({"borrowId": unknown}),
        )
        .await;
        assert_eq!(code, 34, "borrowId {unknown:?}");
    }
}

#[tokio::test]
async fn batches_answer_in_order_and_skip_notifications() {
    let (server, t) = start().await;
    let batch = json!([
        request(
            "BorrowLicenseV1",
            slot(SEED_UUID, SEED_MAC, t, HOUR, 2 * HOUR),
            json!(1)
        ),
        notification("ListLicensesV1", json!([])),
        request(
            "BorrowLicenseV1",
            slot(SEED_UUID, OTHER_MAC, t, HOUR, 2 * HOUR),
            json!("two")
        ),
        request("NoSuchMethodV1", json!({}), json!(3)),
        5,
        request(
            "GetBorrowedLicenseV1",
            json!({"borrowId": "not-a-uuid"}),
            Value::Null
        ),
        request("ListLicensesV1", json!([]), json!(-7)),
        notification(
            "BorrowLicenseV1",
            slot("halcon-3", DONGLE, t, HOUR, 2 * HOUR)
        ),
        request(
            "BorrowLicenseV1",
            slot("halcon-3", "bad", t, HOUR, 2 * HOUR),
            json!(8)
        ),
    ]);
    let response = server.post(&batch).await;
    let answers = response
        .as_array()
        .unwrap_or_else(|| panic!("batch answer is not an array: {response}"));
    let ids: Vec<Value> = answers.iter().map(|a| a["id"].clone()).collect();
    assert_eq!(
        ids,
        vec![
            json!(1),
            json!("two"),
            json!(3),
            Value::Null,
            Value::Null,
            json!(-7),
            json!(8)
        ]
    );
    let first = assert_result(&answers[0], &json!(1));
    assert_error(&answers[1], 32);
    assert_error(&answers[2], -32601);
    assert_error(&answers[3], -32600);
    assert_error(&answers[4], 34);
    // The listing in the batch sees the borrow made earlier in the same batch.
    let listing = assert_result(&answers[5], &json!(-7));
    let seed = listing
        .as_array()
        .and_then(|l| l.iter().find(|l| l["uuid"] == SEED_UUID))
        .expect("seed license listed")
        .clone();
    assert_eq!(seed["borrowedIntervals"][0]["borrowId"], first["borrowId"]);
    assert_error(&answers[6], 36);
    // The notification's borrow was carried out.
    let halcon = intervals(&server, "halcon-3").await;
    assert_eq!(halcon.len(), 1);
    assert_eq!(halcon[0]["hostId"], DONGLE);

    // Only notifications: no body at all.
    let only = json!([
        notification("ListLicensesV1", json!([])),
        notification("NoSuchMethodV1", json!([])),
        notification(
            "BorrowLicenseV1",
            slot("halcon-3", DONGLE, t, 3 * HOUR, 4 * HOUR)
        ),
    ]);
    let (status, text) = server.post_raw(only.to_string()).await;
    assert_eq!((status, text.as_str()), (204, ""));
    assert_eq!(intervals(&server, "halcon-3").await.len(), 2);

    // An empty batch is one error object, not an array.
    let response = server.post(&json!([])).await;
    assert!(response.is_object(), "{response}");
    assert_error(&response, -32600);
    assert_eq!(response["id"], Value::Null);

    // Invalid members each get their own answer.
    for batch in [json!([1]), json!([[]]), json!([{}]), json!([null, "x"])] {
        let response = server.post(&batch).await;
        let answers = response
            .as_array()
            .unwrap_or_else(|| panic!("{batch} -> {response}"));
        assert_eq!(
            answers.len(),
            batch.as_array().map_or(0, Vec::len),
            "{batch}"
        );
        for answer in answers {
            assert_error(answer, -32600);
            assert_eq!(answer["id"], Value::Null);
        }
    }

    // A batch of many calls keeps their order.
    let batch: Vec<Value> = (0..100)
        .map(|i| request("ListLicensesV1", json!([]), json!(i)))
        .collect();
    let response = server.post(&Value::Array(batch)).await;
    let ids: Vec<Value> = response
        .as_array()
        .expect("array")
        .iter()
        .map(|a| a["id"].clone())
        .collect();
    assert_eq!(ids, (0..100).map(|i| json!(i)).collect::<Vec<_>>());
}

#[tokio::test]
async fn notifications_get_204_and_no_body() {
    let (server, t) = start().await;
    let cases = [
        notification("ListLicensesV1", json!([])),
        json!({"jsonrpc": "2.0", "method": "ListLicensesV1"}),
        notification("NoSuchMethodV1", json!({})),
        notification("GetBorrowedLicenseV1", json!({})),
        notification(
            "BorrowLicenseV1",
            slot("halcon-3", "MAC:bad", t, HOUR, 2 * HOUR),
        ),
        notification(
            "BorrowLicenseV1",
            slot("halcon-3", SEED_MAC, t, HOUR, 2 * HOUR),
        ),
    ];
    for body in cases {
        let (status, text) = server.post_raw(body.to_string()).await;
        assert_eq!(status, 204, "{body}: {text}");
        assert_eq!(text, "", "{body}");
    }
    // Only the valid borrow notification borrowed.
    let listed = intervals(&server, "halcon-3").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["hostId"], SEED_MAC);
}

#[tokio::test]
async fn ids_of_every_allowed_form_are_echoed() {
    let (server, _) = start().await;
    for id in [
        json!("abc"),
        json!(""),
        json!("🦀 ü"),
        json!(7),
        json!(0),
        json!(-3),
        json!(1.5),
        json!(12_345_678_901_i64),
        json!(u64::MAX),
        Value::Null,
    ] {
        for method in ["ListLicensesV1", "NoSuchMethodV1"] {
            let response = server.post(&request(method, json!([]), id.clone())).await;
            assert!(
                response.as_object().is_some_and(|o| o.contains_key("id")),
                "id member present for {id}: {response}"
            );
            assert_eq!(response["id"], id, "{method} with id {id}");
        }
    }
}

#[tokio::test]
async fn the_listing_has_the_seed_shape() {
    let (server, t) = start().await;
    let listing = licenses(&server).await;
    let order: Vec<(String, String)> = listing
        .iter()
        .map(|l| {
            (
                l["feature"].as_str().unwrap_or("").into(),
                l["uuid"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("MVTec_HALCON", "expiring"),
        ("MVTec_HALCON", "halcon-3"),
        ("MVTec_HALCON", "short-lived"),
        ("MVTec_HALCON", "window"),
        ("MVTec_HDevelop", SEED_UUID),
        ("MVTec_HDevelop", "future"),
    ]
    .iter()
    .map(|(f, u)| (f.to_string(), u.to_string()))
    .collect();
    assert_eq!(order, expected, "sorted by feature then uuid");

    let base = ["feature", "uuid", "version", "edition", "modules", "count"];
    let with = |extra: &[&str]| names(&[&base[..], extra].concat());
    let by_uuid = |uuid: &str| {
        listing
            .iter()
            .find(|l| l["uuid"] == uuid)
            .expect("listed")
            .clone()
    };
    assert_eq!(
        by_uuid(SEED_UUID),
        json!({"feature": "MVTec_HDevelop", "uuid": SEED_UUID, "version": "26.05",
               "edition": "Progress", "modules": "fc123bdomit",
               "validUntil": "2099-12-31T23:59:59Z", "count": 1})
    );
    assert_eq!(keys(&by_uuid("halcon-3")), with(&[]));
    assert_eq!(by_uuid("halcon-3")["count"], 3);
    assert_eq!(
        by_uuid("short-lived"),
        json!({"feature": "MVTec_HALCON", "uuid": "short-lived", "version": "25.11",
               "edition": "Steady-Progress", "modules": "", "count": 2,
               "validFrom": "2020-01-01T00:00:00Z", "validUntil": "2030-06-30T23:59:59Z"})
    );
    assert_eq!(keys(&by_uuid("future")), with(&["validFrom"]));
    assert_eq!(by_uuid("future")["validFrom"], "2090-01-01T00:00:00Z");
    assert_eq!(by_uuid("expiring")["validUntil"], json!(z(t, 2 * DAY)));
    assert_eq!(by_uuid("window")["validFrom"], json!(z(t, DAY)));

    // Borrowed intervals: sorted by validFrom, userInfo only when given.
    let mut p = slot("halcon-3", SEED_MAC, t, 5 * HOUR, 6 * HOUR);
    p["userInfo"] = json!("Jane Doe");
    let late = borrow(&server, p).await.1;
    let early = borrow(
        &server,
        slot("halcon-3", "MAC:0a1b2c3d4e5f", t, HOUR, 2 * HOUR),
    )
    .await
    .1;
    let middle = borrow(&server, slot("halcon-3", DONGLE, t, 3 * HOUR, 4 * HOUR))
        .await
        .1;
    let entry = license(&server, "halcon-3").await;
    assert_eq!(keys(&entry), with(&["borrowedIntervals"]));
    let listed = entry["borrowedIntervals"]
        .as_array()
        .expect("intervals")
        .clone();
    assert_eq!(
        listed,
        vec![
            json!({"validFrom": z(t, HOUR), "validUntil": z(t, 2 * HOUR),
                   "hostId": OTHER_MAC, "borrowId": early}),
            json!({"validFrom": z(t, 3 * HOUR), "validUntil": z(t, 4 * HOUR),
                   "hostId": DONGLE, "borrowId": middle}),
            json!({"validFrom": z(t, 5 * HOUR), "validUntil": z(t, 6 * HOUR),
                   "hostId": SEED_MAC, "userInfo": "Jane Doe", "borrowId": late}),
        ]
    );
    // Other licenses are untouched.
    assert_eq!(
        keys(&license(&server, SEED_UUID).await),
        with(&["validUntil"])
    );
}

#[tokio::test]
async fn operations_endpoints_answer() {
    let (server, _) = start().await;
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200);
    let (status, text) = server.get("/readyz").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(json_of(&text)["ready"], true, "{text}");
    let (status, text) = server.get("/public-key").await;
    assert_eq!(status, 200, "{text}");
    let key = json_of(&text);
    assert_eq!(
        keys(&key),
        names(&["keyId", "algorithm", "publicKey", "pem"])
    );
    assert_eq!(key["algorithm"], "Ed25519");
    assert!(!key["keyId"].as_str().unwrap_or("").is_empty(), "{key}");
    assert!(!key["publicKey"].as_str().unwrap_or("").is_empty(), "{key}");
    assert!(
        key["pem"]
            .as_str()
            .unwrap_or("")
            .contains("-----BEGIN PUBLIC KEY-----"),
        "{key}"
    );
    let (status, text) = server.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(text.contains("# TYPE "), "Prometheus text: {text}");
    // JSON-RPC answers are JSON.
    let body = request("ListLicensesV1", json!([]), json!(1)).to_string();
    let (status, content_type, _) = post_typed(&server, Some("application/json"), body).await;
    assert_eq!(status, 200);
    assert!(content_type
        .unwrap_or_default()
        .starts_with("application/json"));
}

#[tokio::test]
async fn expired_borrows_leave_the_listing_but_stay_retrievable() {
    let (server, _) = start().await;
    let t = now();
    let (license, id) = borrow(&server, params("halcon-3", SEED_MAC, None, Some(&z(t, 3)))).await;
    let (_, upcoming) = borrow(&server, slot(SEED_UUID, SEED_MAC, t, HOUR, 2 * HOUR)).await;
    assert_eq!(intervals(&server, "halcon-3").await.len(), 1);
    // Wait for the borrow's end to pass (a condition on the wall clock, polled).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !intervals(&server, "halcon-3").await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "expired borrow still listed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        Utc::now() >= t + chrono::Duration::seconds(3),
        "dropped from the listing early"
    );
    // Omitted, not empty, and the upcoming borrow of another license is still listed.
    assert!(license_entry_has_no_intervals(&server, "halcon-3").await);
    assert_eq!(
        interval(&server, SEED_UUID, &upcoming).await["borrowId"],
        json!(upcoming)
    );
    // Still retrievable with the same string.
    assert_eq!(get_license(&server, &id).await, license);
}

async fn license_entry_has_no_intervals(server: &Server, uuid: &str) -> bool {
    license(server, uuid)
        .await
        .get("borrowedIntervals")
        .is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_borrows_of_one_slot_never_exceed_the_count() {
    let (server, t) = start().await;
    let requests: Vec<Value> = (0..30)
        .map(|i| {
            let host = format!("MAC:{:012X}", i + 1);
            request(
                "BorrowLicenseV1",
                slot("halcon-3", &host, t, HOUR, 2 * HOUR),
                json!(i),
            )
        })
        .collect();
    let answers = futures::future::join_all(requests.iter().map(|r| server.post(r))).await;
    let mut granted = 0;
    for answer in &answers {
        if answer.get("result").is_some() {
            granted += 1;
        } else {
            assert_error(answer, 32);
        }
    }
    assert_eq!(granted, 3, "{answers:?}");
    assert_eq!(intervals(&server, "halcon-3").await.len(), 3);
}

#[tokio::test]
async fn dates_past_year_9999_are_refused_or_still_rfc3339() {
    let (server, _) = start().await;
    // A null validUntil adds the maximum borrow length to validFrom; near the end of
    // year 9999 that leaves the four-digit years RFC 3339 can write.
    let p = params("halcon-3", SEED_MAC, Some("9999-12-31T00:00:00Z"), None);
    let response = server.call("BorrowLicenseV1", p).await;
    if response.get("error").is_some() {
        assert_error(&response, 35);
    } else {
        let id = response["result"]["borrowId"]
            .as_str()
            .expect("borrowId")
            .to_string();
        let listed = interval(&server, "halcon-3", &id).await;
        parse(&listed["validFrom"]);
        parse(&listed["validUntil"]);
    }
    let p = params(
        "halcon-3",
        SEED_MAC,
        Some("9999-12-31T00:00:00Z"),
        Some("10000-01-01T00:00:00Z"),
    );
    let response = server.call("BorrowLicenseV1", p).await;
    assert_error(&response, 35);
}
