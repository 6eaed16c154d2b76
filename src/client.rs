//! A small async JSON-RPC 2.0 client for the Borrow API, shared by `licensectl`, the
//! end-to-end tests and the benchmarks so that all of them speak to the server the same way.
//!
//! It keeps the two kinds of failure apart: [`RpcCallError::Rpc`] means the server
//! answered and refused (a JSON-RPC error object, e.g. code 32 "not available"), every
//! other variant means there was no usable answer (connection, HTTP status, garbage).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Where `licensectl` looks when no server is given.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:22022";
/// The JSON-RPC endpoint, relative to the server's base URL.
pub const RPC_PATH: &str = "/licenses";
/// The public-key endpoint, relative to the server's base URL.
pub const PUBLIC_KEY_PATH: &str = "/public-key";

/// How long to wait for a TCP connection before calling the server unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound on a whole call; a borrow waits on a Raft commit, which is far shorter.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of an unexpected body an error message quotes.
const BODY_QUOTE_LIMIT: usize = 200;

/// A JSON-RPC error object as the server sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcErrorObject {
    /// The JSON-RPC code (`-32602`, or 32–39 for refusals; docs/protocol.md §7).
    pub code: i64,
    /// The fixed message for the code (docs/protocol.md §7).
    pub message: String,
    /// `data.reason`: the human-readable detail, when the server gave one.
    pub reason: Option<String>,
    /// The whole `data` member, for callers that want more than the reason.
    pub data: Option<Value>,
}

impl fmt::Display for RpcErrorObject {
    /// `error <code>: <message> (<reason>)`, the form `licensectl` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error {}: {}", self.code, self.message)?;
        if let Some(reason) = &self.reason {
            write!(f, " ({reason})")?;
        }
        Ok(())
    }
}

/// Why a call did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum RpcCallError {
    /// The server URL is not usable.
    #[error("invalid server URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No HTTP answer: connection refused, timeout, reset. The message already carries
    /// the whole cause chain in one line, so the error is not exposed as a `source` too
    /// (that would print every cause twice).
    #[error("cannot reach {url}: {}", describe(.error))]
    Transport {
        /// The URL called.
        url: String,
        /// The HTTP client's error.
        error: reqwest::Error,
    },
    /// An HTTP answer other than 200 (the Borrow API answers every call with 200).
    #[error("{url} answered HTTP {status}: {body}")]
    Http {
        /// The URL called.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// A 200 answer that is not the JSON-RPC response expected.
    #[error("{url} did not send a valid response: {reason}")]
    InvalidResponse {
        /// The URL called.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The server answered with a JSON-RPC error: it was reached and it refused.
    #[error("{0}")]
    Rpc(RpcErrorObject),
}

impl RpcCallError {
    /// The JSON-RPC error code, when the server refused.
    pub fn rpc_code(&self) -> Option<i64> {
        match self {
            RpcCallError::Rpc(error) => Some(error.code),
            _ => None,
        }
    }
}

/// Parameters of `BorrowLicenseV1`. Dates are passed through as text: the server is the
/// one judge of the date grammar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BorrowParams {
    /// The license's feature.
    pub feature: String,
    /// The license's uuid.
    pub uuid: String,
    /// The machine to bind the license to.
    pub host_id: String,
    /// Start; the server's clock when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<String>,
    /// End.
    pub valid_until: String,
    /// Free text stored with the borrow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_info: Option<String>,
    /// Idempotency key (extension): a retry with the same key gets the first answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

pub use crate::rpc::objects::{
    ApiKeyInfo, BorrowedInterval, BorrowedLicense, CreatedApiKey, LicenseInfo, PublicKeyInfo,
    ReturnedBorrow,
};

/// A JSON-RPC client bound to one server. Cheap to share: calls take `&self`, and the
/// inner HTTP client pools connections.
pub struct RpcClient {
    base_url: String,
    /// The JSON-RPC endpoint, parsed once: every call posts to it.
    endpoint: reqwest::Url,
    http: reqwest::Client,
    next_id: AtomicU64,
    /// Sent as `Authorization: Bearer ...` with every call, when set; wins over the key.
    admin_token: Option<String>,
    /// A client API key (`lk_…`), sent as the bearer token when no admin token is set.
    api_key: Option<String>,
}

/// Shows whether credentials are set, never what they are.
impl fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |value: &Option<String>| if value.is_some() { "set" } else { "none" };
        f.debug_struct("RpcClient")
            .field("base_url", &self.base_url)
            .field("admin_token", &set(&self.admin_token))
            .field("api_key", &set(&self.api_key))
            .finish_non_exhaustive()
    }
}

impl RpcClient {
    /// A client for `server` (see [`normalize_server_url`]) with default timeouts.
    pub fn new(server: &str) -> Result<RpcClient, RpcCallError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|error| RpcCallError::Transport {
                url: server.to_string(),
                error,
            })?;
        RpcClient::with_http_client(server, http)
    }

    /// A client using a caller-built HTTP client, e.g. with other timeouts or pool sizes.
    pub fn with_http_client(
        server: &str,
        http: reqwest::Client,
    ) -> Result<RpcClient, RpcCallError> {
        let base_url = normalize_server_url(server)?;
        let endpoint = reqwest::Url::parse(&format!("{base_url}{RPC_PATH}")).map_err(|e| {
            RpcCallError::BadUrl {
                url: server.to_string(),
                reason: e.to_string(),
            }
        })?;
        Ok(RpcClient {
            base_url,
            endpoint,
            http,
            next_id: AtomicU64::new(1),
            admin_token: None,
            api_key: None,
        })
    }

    /// The same client, sending the admin token with every call (an administrator may
    /// return any borrow and manage API keys). It is sent instead of an API key.
    pub fn with_admin_token(mut self, token: Option<String>) -> RpcClient {
        self.admin_token = token;
        self
    }

    /// The same client, sending a client API key (`lk_…`) with every call: what a server
    /// started with `--require-api-keys` asks for.
    pub fn with_api_key(mut self, key: Option<String>) -> RpcClient {
        self.api_key = key;
        self
    }

    /// The server's base URL, without a trailing slash or `/licenses`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The JSON-RPC endpoint.
    pub fn rpc_url(&self) -> String {
        self.endpoint.to_string()
    }

    /// Calls `method` with `params` and returns the `result` member.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, RpcCallError> {
        let (body, id) = self.post_request(method, &params).await?;
        parse_response(self.endpoint.as_str(), &body, id)
    }

    /// Calls `method` and returns its result as JSON text, checked but not decoded: for
    /// callers that only need to know a large answer arrived (the load generator).
    pub async fn call_raw(
        &self,
        method: &str,
        params: Value,
    ) -> Result<Box<serde_json::value::RawValue>, RpcCallError> {
        let (body, id) = self.post_request(method, &params).await?;
        parse_response_raw(self.endpoint.as_str(), &body, id)
    }

    /// Sends one request; returns the body of an HTTP 200 answer and the request's id.
    async fn post_request<P: Serialize>(
        &self,
        method: &str,
        params: &P,
    ) -> Result<(Vec<u8>, u64), RpcCallError> {
        #[derive(Serialize)]
        struct Request<'a, P> {
            jsonrpc: &'static str,
            method: &'a str,
            params: &'a P,
            id: u64,
        }
        let url = self.endpoint.as_str();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = Request {
            jsonrpc: "2.0",
            method,
            params,
            id,
        };
        let mut post = self.http.post(self.endpoint.clone()).json(&request);
        if let Some(bearer) = self.admin_token.as_ref().or(self.api_key.as_ref()) {
            post = post.bearer_auth(bearer);
        }
        let response = post.send().await.map_err(|error| RpcCallError::Transport {
            url: url.to_string(),
            error,
        })?;
        let body = read_ok_body(url, response).await?;
        Ok((body, id))
    }

    /// Calls `method` and decodes its result as `T`.
    pub async fn call_as<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T, RpcCallError> {
        self.call_typed(method, &params).await
    }

    /// Calls `method` with typed `params` and decodes its result as `T` straight from the
    /// answer's text, without a JSON tree in between.
    async fn call_typed<P: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        params: &P,
    ) -> Result<T, RpcCallError> {
        let url = self.endpoint.as_str();
        let (body, id) = self.post_request(method, params).await?;
        let result = parse_response_raw(url, &body, id)?;
        serde_json::from_str(result.get())
            .map_err(|e| invalid(url, format!("unexpected {method} result: {e}")))
    }

    /// `ListLicensesV1`.
    pub async fn list_licenses(&self) -> Result<Vec<LicenseInfo>, RpcCallError> {
        self.call_as("ListLicensesV1", json!([])).await
    }

    /// `BorrowLicenseV1`.
    pub async fn borrow_license(
        &self,
        params: &BorrowParams,
    ) -> Result<BorrowedLicense, RpcCallError> {
        self.call_typed("BorrowLicenseV1", params).await
    }

    /// `GetBorrowedLicenseV1`.
    pub async fn get_borrowed_license(
        &self,
        borrow_id: &str,
    ) -> Result<BorrowedLicense, RpcCallError> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Params<'a> {
            borrow_id: &'a str,
        }
        self.call_typed("GetBorrowedLicenseV1", &Params { borrow_id })
            .await
    }

    /// `ReturnLicenseV1` (extension): the borrow as it stands after the return. Needs the
    /// borrow's `return_token`, or a client made [`RpcClient::with_admin_token`].
    pub async fn return_license(
        &self,
        borrow_id: &str,
        return_token: Option<&str>,
    ) -> Result<Value, RpcCallError> {
        let mut params = json!({ "borrowId": borrow_id });
        if let Some(token) = return_token {
            params["returnToken"] = json!(token);
        }
        self.call("ReturnLicenseV1", params).await
    }

    /// `CreateApiKeyV1` (extension; admin token or admin key): the new key, its text
    /// shown this once.
    pub async fn create_api_key(
        &self,
        name: &str,
        scope: &str,
        features: Option<&[String]>,
    ) -> Result<CreatedApiKey, RpcCallError> {
        let mut params = json!({ "name": name, "scope": scope });
        if let Some(features) = features {
            params["features"] = json!(features);
        }
        self.call_as("CreateApiKeyV1", params).await
    }

    /// `ListApiKeysV1` (extension; admin token or admin key).
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>, RpcCallError> {
        self.call_as("ListApiKeysV1", json!([])).await
    }

    /// `RevokeApiKeyV1` (extension; admin token or admin key): the key as it now stands.
    pub async fn revoke_api_key(&self, key_id: &str) -> Result<ApiKeyInfo, RpcCallError> {
        self.call_as("RevokeApiKeyV1", json!({ "keyId": key_id }))
            .await
    }

    /// `GET /public-key`, as raw JSON.
    pub async fn public_key_json(&self) -> Result<Value, RpcCallError> {
        let url = format!("{}{PUBLIC_KEY_PATH}", self.base_url);
        let response =
            self.http
                .get(&url)
                .send()
                .await
                .map_err(|error| RpcCallError::Transport {
                    url: url.clone(),
                    error,
                })?;
        let body = read_ok_body(&url, response).await?;
        serde_json::from_slice(&body).map_err(|e| invalid(&url, format!("not JSON: {e}")))
    }

    /// `GET /public-key`, decoded.
    pub async fn public_key(&self) -> Result<PublicKeyInfo, RpcCallError> {
        let url = format!("{}{PUBLIC_KEY_PATH}", self.base_url);
        decode_result(&url, "GET /public-key", self.public_key_json().await?)
    }
}

/// Turns what a user typed into a base URL: `host:port` gets `http://`, a trailing `/` and
/// a trailing `/licenses` (the Borrow API's endpoint URL, docs/protocol.md §1.1) are dropped. Only http and https.
pub fn normalize_server_url(text: &str) -> Result<String, RpcCallError> {
    let refuse = |reason: &str| RpcCallError::BadUrl {
        url: text.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(refuse("it is empty"));
    }
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    };
    let mut url = reqwest::Url::parse(&with_scheme).map_err(|e| refuse(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(refuse("the scheme must be http or https"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(refuse("it must not have a query or fragment"));
    }
    let path = url.path().trim_end_matches('/');
    let path = path.strip_suffix(RPC_PATH).unwrap_or(path).to_string();
    url.set_path(&path);
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// Decodes a `result` (or other JSON answer) as `T`; a mismatch is an invalid response.
pub fn decode_result<T: DeserializeOwned>(
    url: &str,
    what: &str,
    value: Value,
) -> Result<T, RpcCallError> {
    serde_json::from_value(value)
        .map_err(|e| invalid(url, format!("unexpected {what} result: {e}")))
}

async fn read_ok_body(url: &str, response: reqwest::Response) -> Result<Vec<u8>, RpcCallError> {
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|error| RpcCallError::Transport {
            url: url.to_string(),
            error,
        })?;
    if !status.is_success() {
        return Err(RpcCallError::Http {
            url: url.to_string(),
            status: status.as_u16(),
            body: quote(&body),
        });
    }
    Ok(body.to_vec())
}

/// Reads a single JSON-RPC response to request `id`.
fn parse_response(url: &str, body: &[u8], id: u64) -> Result<Value, RpcCallError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| invalid(url, format!("not JSON ({e}): {}", quote(body))))?;
    let Value::Object(mut object) = value else {
        return Err(invalid(url, format!("not a JSON object: {}", quote(body))));
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid(url, "missing \"jsonrpc\": \"2.0\"".into()));
    }
    if let Some(error) = object.remove("error") {
        return Err(RpcCallError::Rpc(parse_error_object(url, error)?));
    }
    // Checked after the error: a parse error may carry a null id.
    if object.get("id").and_then(Value::as_u64) != Some(id) {
        return Err(invalid(
            url,
            format!("the response is not for request id {id}"),
        ));
    }
    object
        .remove("result")
        .ok_or_else(|| invalid(url, "neither \"result\" nor \"error\"".into()))
}

/// [`parse_response`] without decoding the result.
fn parse_response_raw(
    url: &str,
    body: &[u8],
    id: u64,
) -> Result<Box<serde_json::value::RawValue>, RpcCallError> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        jsonrpc: Option<String>,
        id: Option<Value>,
        result: Option<Box<serde_json::value::RawValue>>,
        error: Option<Value>,
    }
    let envelope: Envelope = serde_json::from_slice(body).map_err(|e| {
        invalid(
            url,
            format!("not a JSON-RPC response ({e}): {}", quote(body)),
        )
    })?;
    if envelope.jsonrpc.as_deref() != Some("2.0") {
        return Err(invalid(url, "missing \"jsonrpc\": \"2.0\"".into()));
    }
    if let Some(error) = envelope.error {
        return Err(RpcCallError::Rpc(parse_error_object(url, error)?));
    }
    if envelope.id.as_ref().and_then(Value::as_u64) != Some(id) {
        return Err(invalid(
            url,
            format!("the response is not for request id {id}"),
        ));
    }
    envelope
        .result
        .ok_or_else(|| invalid(url, "neither \"result\" nor \"error\"".into()))
}

fn parse_error_object(url: &str, error: Value) -> Result<RpcErrorObject, RpcCallError> {
    let code = error.get("code").and_then(Value::as_i64);
    let message = error.get("message").and_then(Value::as_str);
    let (Some(code), Some(message)) = (code, message) else {
        return Err(invalid(url, format!("malformed error object: {error}")));
    };
    let data = error.get("data").cloned();
    let reason = data
        .as_ref()
        .and_then(|data| data.get("reason"))
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(RpcErrorObject {
        code,
        message: message.to_string(),
        reason,
        data,
    })
}

/// One line from an HTTP client error and its causes: the top message only repeats the
/// URL, so it is used only when there is no cause; a cause whose text the previous one
/// already ends with is skipped.
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".to_string();
    }
    let mut parts: Vec<String> = Vec::new();
    let mut cause = std::error::Error::source(error);
    while let Some(current) = cause {
        let text = current.to_string();
        if !parts.last().is_some_and(|last| last.ends_with(&text)) {
            parts.push(text);
        }
        cause = current.source();
    }
    if parts.is_empty() {
        return error.to_string();
    }
    parts.join(": ")
}

fn invalid(url: &str, reason: String) -> RpcCallError {
    RpcCallError::InvalidResponse {
        url: url.to_string(),
        reason,
    }
}

fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(BODY_QUOTE_LIMIT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(text: &str) -> String {
        normalize_server_url(text).unwrap()
    }

    #[test]
    fn server_urls_are_normalised_to_a_base() {
        assert_eq!(normalized(DEFAULT_SERVER), "http://127.0.0.1:22022");
        assert_eq!(
            normalized("http://127.0.0.1:22022/"),
            "http://127.0.0.1:22022"
        );
        assert_eq!(
            normalized("http://127.0.0.1:22022/licenses"),
            "http://127.0.0.1:22022"
        );
        assert_eq!(
            normalized("https://localhost:22022/licenses/"),
            "https://localhost:22022"
        );
        assert_eq!(normalized(" localhost:22022 "), "http://localhost:22022");
        assert_eq!(
            normalized("http://lb.example/pool-a/licenses"),
            "http://lb.example/pool-a"
        );
        assert_eq!(
            normalized("http://lb.example/licenses-x"),
            "http://lb.example/licenses-x"
        );
    }

    #[test]
    fn unusable_server_urls_are_refused() {
        for bad in [
            "",
            "ftp://host",
            "http://",
            "http://host/licenses?x=1",
            "http://host#frag",
        ] {
            assert!(
                matches!(normalize_server_url(bad), Err(RpcCallError::BadUrl { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn client_builds_endpoint_urls() {
        let client = RpcClient::new("127.0.0.1:1/licenses").unwrap();
        assert_eq!(client.base_url(), "http://127.0.0.1:1");
        assert_eq!(client.rpc_url(), "http://127.0.0.1:1/licenses");
    }

    #[test]
    fn results_and_errors_are_told_apart() {
        let url = "http://x/licenses";
        let ok = br#"{"jsonrpc":"2.0","result":[1],"id":7}"#;
        assert_eq!(parse_response(url, ok, 7).unwrap(), json!([1]));
        let refused = br#"{"jsonrpc":"2.0","error":{"code":32,"message":"License not available for borrowing in the requested time interval","data":{"reason":"count 1 reached"}},"id":7}"#;
        let err = parse_response(url, refused, 7).unwrap_err();
        assert_eq!(err.rpc_code(), Some(32));
        assert_eq!(
            err.to_string(),
            "error 32: License not available for borrowing in the requested time interval (count 1 reached)"
        );
        let bare =
            br#"{"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error"},"id":null}"#;
        assert_eq!(
            parse_response(url, bare, 7).unwrap_err().to_string(),
            "error -32700: Parse error"
        );
    }

    #[test]
    fn malformed_responses_are_invalid_not_refusals() {
        let url = "http://x/licenses";
        for body in [
            &b"<html>"[..],
            br#"[]"#,
            br#"{"result":1,"id":7}"#,
            br#"{"jsonrpc":"2.0","result":1,"id":8}"#,
            br#"{"jsonrpc":"2.0","id":7}"#,
            br#"{"jsonrpc":"2.0","error":{"code":"x"},"id":7}"#,
        ] {
            let err = parse_response(url, body, 7).unwrap_err();
            assert!(
                matches!(err, RpcCallError::InvalidResponse { .. }),
                "{err:?}"
            );
            assert_eq!(err.rpc_code(), None);
        }
    }

    #[test]
    fn borrow_params_omit_what_is_absent() {
        let params = BorrowParams {
            feature: "MVTec_HALCON".into(),
            uuid: "u".into(),
            host_id: "MAC:2C549188C9E3".into(),
            valid_from: None,
            valid_until: "2025-12-01".into(),
            user_info: None,
            request_id: None,
        };
        assert_eq!(
            serde_json::to_value(&params).unwrap(),
            json!({"feature": "MVTec_HALCON", "uuid": "u", "hostId": "MAC:2C549188C9E3", "validUntil": "2025-12-01"})
        );
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let client = RpcClient::new("127.0.0.1:1")
            .unwrap()
            .with_admin_token(Some("admin-secret".into()))
            .with_api_key(Some("lk_0123456789abcdef_secret".into()));
        let shown = format!("{client:?}");
        assert!(!shown.contains("admin-secret"), "{shown}");
        assert!(!shown.contains("lk_"), "{shown}");
        assert!(shown.contains("api_key: \"set\""), "{shown}");
    }

    #[test]
    fn long_bodies_are_quoted_short() {
        let body = "é".repeat(1000);
        assert_eq!(quote(body.as_bytes()).chars().count(), BODY_QUOTE_LIMIT + 1);
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_transport_error() {
        // Port 1 on loopback: nothing listens there, the connection is refused at once.
        let client = RpcClient::new("http://127.0.0.1:1").unwrap();
        let err = client.list_licenses().await.unwrap_err();
        assert!(matches!(err, RpcCallError::Transport { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with("cannot reach http://127.0.0.1:1/licenses: "),
            "{text}"
        );
        assert!(text.contains("refused"), "{text}");
        assert_eq!(text.matches("127.0.0.1:1").count(), 1, "{text}");
    }
}
