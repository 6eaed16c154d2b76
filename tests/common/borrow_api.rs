//! Helpers for checking the Borrow API's wire contract (docs/protocol.md) from the
//! outside: the error texts, the listing, and dates relative to the test's clock.
#![allow(dead_code)]

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{json, Value};

use super::Server;

/// The `message` text for each error code, letter for letter (docs/protocol.md §7).
pub fn expected_message(code: i64) -> &'static str {
    match code {
        -32700 => "Parse error",
        -32600 => "Invalid Request",
        -32601 => "Method not found",
        -32602 => "Invalid params",
        -32603 => "Internal error",
        32 => "License not available for borrowing in the requested time interval",
        33 => "Borrowing after license expiration not allowed",
        34 => "No matching license found",
        35 => "Invalid borrow interval",
        36 => "Invalid host id",
        other => panic!("no Borrow API message for code {other}"),
    }
}

/// Asserts that `response` is a JSON-RPC error with `code`, the Borrow API's message and a
/// non-empty `data.reason`, and nothing else; returns the reason.
pub fn assert_error(response: &Value, code: i64) -> String {
    assert_eq!(response["jsonrpc"], "2.0", "jsonrpc member of {response}");
    assert!(
        response.get("result").is_none(),
        "an error must not carry a result: {response}"
    );
    let error = response
        .get("error")
        .unwrap_or_else(|| panic!("expected error {code}, got {response}"));
    assert_eq!(error["code"], json!(code), "error code of {response}");
    assert_eq!(
        error["message"],
        expected_message(code),
        "error message of {response}"
    );
    let reason = error["data"]["reason"].as_str().unwrap_or_default();
    assert!(
        !reason.trim().is_empty(),
        "error without data.reason: {response}"
    );
    reason.to_string()
}

/// Asserts that `response` is a success with id `id`; returns the result.
pub fn assert_result(response: &Value, id: &Value) -> Value {
    assert_eq!(response["jsonrpc"], "2.0", "jsonrpc member of {response}");
    assert!(
        response.get("error").is_none(),
        "expected a result, got {response}"
    );
    assert_eq!(&response["id"], id, "id of {response}");
    response
        .get("result")
        .unwrap_or_else(|| panic!("no result in {response}"))
        .clone()
}

/// `ListLicensesV1`'s result array.
pub async fn licenses(server: &Server) -> Vec<Value> {
    let result = server.result("ListLicensesV1", json!([])).await;
    result
        .as_array()
        .unwrap_or_else(|| panic!("ListLicensesV1 result is not an array: {result}"))
        .clone()
}

/// The listing entry of the license with `uuid`.
pub async fn license(server: &Server, uuid: &str) -> Value {
    licenses(server)
        .await
        .into_iter()
        .find(|license| license["uuid"] == uuid)
        .unwrap_or_else(|| panic!("license {uuid} not listed"))
}

/// The `borrowedIntervals` of the license with `uuid` (empty when omitted).
pub async fn intervals(server: &Server, uuid: &str) -> Vec<Value> {
    let entry = license(server, uuid).await;
    match entry.get("borrowedIntervals") {
        None => Vec::new(),
        Some(Value::Array(items)) => {
            assert!(
                !items.is_empty(),
                "an empty borrowedIntervals must be omitted: {entry}"
            );
            items.clone()
        }
        Some(other) => panic!("borrowedIntervals is not an array: {other}"),
    }
}

/// The interval with `borrow_id` in the listing of `uuid`.
pub async fn interval(server: &Server, uuid: &str, borrow_id: &str) -> Value {
    intervals(server, uuid)
        .await
        .into_iter()
        .find(|interval| interval["borrowId"] == borrow_id)
        .unwrap_or_else(|| panic!("borrow {borrow_id} not listed under {uuid}"))
}

/// Borrows and returns `(license, borrowId)`, panicking on an error.
pub async fn borrow(server: &Server, params: Value) -> (String, String) {
    let result = server.result("BorrowLicenseV1", params).await;
    let license = result["license"].as_str().unwrap_or_default().to_string();
    let borrow_id = result["borrowId"].as_str().unwrap_or_default().to_string();
    assert!(
        !license.is_empty(),
        "borrow without a license string: {result}"
    );
    assert!(
        uuid::Uuid::parse_str(&borrow_id).is_ok(),
        "borrowId is not a UUID: {result}"
    );
    (license, borrow_id)
}

/// The `license` string `GetBorrowedLicenseV1` returns for `borrow_id`.
pub async fn get_license(server: &Server, borrow_id: &str) -> String {
    let result = server
        .result("GetBorrowedLicenseV1", json!({ "borrowId": borrow_id }))
        .await;
    assert_eq!(
        result["borrowId"], borrow_id,
        "GetBorrowedLicenseV1 result {result}"
    );
    result["license"]
        .as_str()
        .unwrap_or_else(|| panic!("no license string in {result}"))
        .to_string()
}

/// Params of a borrow of `uuid` (feature picked by uuid as in `SAMPLE_POOL`).
pub fn params(uuid: &str, host: &str, from: Option<&str>, until: Option<&str>) -> Value {
    let feature = feature_of(uuid);
    let mut params =
        json!({ "feature": feature, "uuid": uuid, "hostId": host, "validUntil": until });
    if let Some(from) = from {
        params["validFrom"] = json!(from);
    }
    params
}

/// The feature of a license by its uuid: `MVTec_HDevelop` for the Borrow API's example license and
/// `future`, `MVTec_HALCON` for every other license the tests use.
pub fn feature_of(uuid: &str) -> &'static str {
    match uuid {
        "118cf2e7b3d20001" | "future" => "MVTec_HDevelop",
        _ => "MVTec_HALCON",
    }
}

/// The test's clock, whole seconds.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

/// `t + secs`, formatted the way the server answers (RFC 3339, UTC, `Z`, whole seconds).
pub fn z(t: DateTime<Utc>, secs: i64) -> String {
    (t + chrono::Duration::seconds(secs))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Parses an RFC 3339 instant the server sent.
pub fn parse(text: &Value) -> DateTime<Utc> {
    let text = text
        .as_str()
        .unwrap_or_else(|| panic!("date is not a string: {text}"));
    assert!(
        text.ends_with('Z') && !text.contains('.'),
        "dates are RFC 3339 UTC with Z and whole seconds: {text}"
    );
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

/// The sorted key names of a JSON object.
pub fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// Sorted owned strings, for comparing with [`keys`].
pub fn names(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    names.sort();
    names
}

/// `HH` hours as seconds.
pub const HOUR: i64 = 3600;
/// One day in seconds.
pub const DAY: i64 = 86_400;

/// Sends `body` to `/licenses` with the given `Content-Type` (none when `None`); returns
/// the HTTP status, the response's `Content-Type` and its body.
pub async fn post_typed(
    server: &Server,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, Option<String>, String) {
    let mut request = reqwest::Client::new().post(server.endpoint()).body(body);
    if let Some(content_type) = content_type {
        request = request.header("Content-Type", content_type);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let response_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    (status, response_type, response.text().await.expect("body"))
}

/// Parses a response body that must be JSON.
pub fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("response is not JSON ({e}): {text}"))
}
