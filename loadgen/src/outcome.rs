//! What one request came to: the error codes the report counts by.

use std::fmt;

use licensed::client::RpcCallError;

/// The class of a failed request. JSON-RPC refusals keep their code; failures without a
/// usable answer are grouped by what went wrong on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorCode {
    /// The server answered with a JSON-RPC error object of this code (e.g. 32 "not
    /// available", -32603 internal error).
    Rpc(i64),
    /// No answer within the request timeout.
    Timeout,
    /// No connection could be made.
    Connect,
    /// An HTTP status other than success, or the connection broke mid-request.
    Http,
    /// A success status whose body is not the answer the protocol promises.
    Invalid,
    /// A well-formed answer that still says no, for targets without JSON-RPC codes
    /// (etcd's failed compare, a key that is gone).
    Refused(&'static str),
}

impl fmt::Display for ErrorCode {
    /// The key used in reports: the bare number for JSON-RPC codes, a word otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorCode::Rpc(code) => write!(f, "{code}"),
            ErrorCode::Timeout => f.write_str("timeout"),
            ErrorCode::Connect => f.write_str("connect"),
            ErrorCode::Http => f.write_str("http"),
            ErrorCode::Invalid => f.write_str("invalid"),
            ErrorCode::Refused(what) => f.write_str(what),
        }
    }
}

/// A failed request: its class and a message for the report's error samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What the report counts it under.
    pub code: ErrorCode,
    /// What happened, in one line.
    pub message: String,
}

impl Failure {
    /// A failure of class `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// Classifies an HTTP client error: timeout, connect, or anything else on the wire.
    pub fn from_transport(error: &reqwest::Error) -> Failure {
        let code = if error.is_timeout() {
            ErrorCode::Timeout
        } else if error.is_connect() {
            ErrorCode::Connect
        } else {
            ErrorCode::Http
        };
        Failure::new(code, one_line(error))
    }
}

impl From<RpcCallError> for Failure {
    fn from(error: RpcCallError) -> Failure {
        match &error {
            RpcCallError::Rpc(object) => {
                Failure::new(ErrorCode::Rpc(object.code), error.to_string())
            }
            RpcCallError::Transport { error: cause, .. } => {
                // The transport message already names the URL and the whole cause chain.
                Failure::new(Failure::from_transport(cause).code, error.to_string())
            }
            RpcCallError::Http { .. } => Failure::new(ErrorCode::Http, error.to_string()),
            RpcCallError::InvalidResponse { .. } => {
                Failure::new(ErrorCode::Invalid, error.to_string())
            }
            RpcCallError::BadUrl { .. } => Failure::new(ErrorCode::Connect, error.to_string()),
        }
    }
}

/// An error and its causes on one line, skipping causes the previous text already ends with.
fn one_line(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        let part = current.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = current.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use licensed::client::RpcErrorObject;

    #[test]
    fn codes_have_stable_report_keys() {
        assert_eq!(ErrorCode::Rpc(32).to_string(), "32");
        assert_eq!(ErrorCode::Rpc(-32603).to_string(), "-32603");
        assert_eq!(ErrorCode::Timeout.to_string(), "timeout");
        assert_eq!(ErrorCode::Connect.to_string(), "connect");
        assert_eq!(ErrorCode::Http.to_string(), "http");
        assert_eq!(ErrorCode::Invalid.to_string(), "invalid");
        assert_eq!(
            ErrorCode::Refused("compare-failed").to_string(),
            "compare-failed"
        );
    }

    #[test]
    fn rpc_refusals_keep_their_code() {
        let error = RpcCallError::Rpc(RpcErrorObject {
            code: 32,
            message: "License not available".into(),
            reason: None,
            data: None,
        });
        let failure = Failure::from(error);
        assert_eq!(failure.code, ErrorCode::Rpc(32));
        assert_eq!(failure.message, "error 32: License not available");
        let http = RpcCallError::Http {
            url: "http://x/licenses".into(),
            status: 503,
            body: String::new(),
        };
        assert_eq!(Failure::from(http).code, ErrorCode::Http);
    }

    #[tokio::test]
    async fn refused_connections_are_connect_errors() {
        // Nothing listens on port 1 of loopback: the connection is refused at once.
        let client = reqwest::Client::new();
        let error = client
            .post("http://127.0.0.1:1/licenses")
            .send()
            .await
            .unwrap_err();
        assert_eq!(Failure::from_transport(&error).code, ErrorCode::Connect);
    }
}
