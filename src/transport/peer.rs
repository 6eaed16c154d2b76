//! Who may speak on the peer port. A node proves it belongs to the cluster with a
//! certificate signed by the cluster CA (mutual TLS), or, without certificates, with an
//! HMAC-SHA256 over each request made with the shared cluster secret (the secret itself
//! never crosses the wire). Without either — `--insecure-peers` — anyone who can connect
//! is a peer. Clients of the admin API (`licensectl cluster`) are no peers: membership
//! changes need a peer's credentials or the admin token; `status` is open.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::serve::ConnectionInfo;
use crate::metrics::transport as transport_metrics;

/// The header carrying a request's proof: `v1 <unix ms> <hex HMAC>`.
pub const AUTH_HEADER: &str = "x-licensed-peer-auth";
/// Shortest cluster secret accepted.
pub const MIN_SECRET_BYTES: usize = 16;
/// How far a signed request's time may be from the receiver's clock. Wide on purpose:
/// skewed clocks are the ledger clock's business (it refuses to stamp), not a reason to
/// cut a node off; the window only stops the replay of old captures.
pub const SIGNATURE_WINDOW: Duration = Duration::from_secs(6 * 3600);
/// Largest body the secret check reads (a snapshot chunk or an append is far below).
const MAX_SIGNED_BODY: usize = 256 * 1024 * 1024;

type HmacSha256 = Hmac<Sha256>;

/// The shared cluster secret.
#[derive(Clone)]
pub struct ClusterSecret(Arc<[u8]>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

/// A secret too short to be one.
#[derive(Debug, thiserror::Error)]
#[error("the cluster secret has {0} bytes; it needs at least {MIN_SECRET_BYTES} (e.g. `openssl rand -hex 32`)")]
pub struct WeakSecret(usize);

impl ClusterSecret {
    /// The secret from its text (surrounding whitespace, like a file's final newline, is
    /// not part of it).
    pub fn new(text: &str) -> Result<ClusterSecret, WeakSecret> {
        let text = text.trim();
        if text.len() < MIN_SECRET_BYTES {
            return Err(WeakSecret(text.len()));
        }
        Ok(ClusterSecret(Arc::from(text.as_bytes())))
    }

    fn mac(&self, at_ms: u64, method: &str, path: &str, body: &[u8]) -> HmacSha256 {
        // Any key length is valid for HMAC.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        let body_hash = Sha256::digest(body);
        mac.update(format!("v1\n{at_ms}\n{method}\n{path}\n").as_bytes());
        mac.update(&body_hash);
        mac
    }

    /// The header value proving a request.
    pub fn sign(&self, at_ms: u64, method: &str, path: &str, body: &[u8]) -> String {
        let tag = self.mac(at_ms, method, path, body).finalize().into_bytes();
        format!("v1 {at_ms} {}", hex(&tag))
    }

    /// Checks a header value against the request, at `now_ms`.
    pub fn verify(
        &self,
        header: &str,
        now_ms: u64,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(), &'static str> {
        let mut parts = header.split(' ');
        let (Some("v1"), Some(at), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("malformed signature header");
        };
        let at_ms: u64 = at.parse().map_err(|_| "malformed signature time")?;
        if now_ms.abs_diff(at_ms) > SIGNATURE_WINDOW.as_millis() as u64 {
            return Err("signature time outside the accepted window");
        }
        let tag = unhex(tag).ok_or("malformed signature")?;
        self.mac(at_ms, method, path, body)
            .verify_slice(&tag)
            .map_err(|_| "bad signature (another cluster secret?)")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How this node dials its peers: the URL scheme, TLS with a client certificate, and
/// request signing. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct PeerDialer {
    tls: Option<Arc<rustls::ClientConfig>>,
    secret: Option<ClusterSecret>,
}

impl PeerDialer {
    /// Plain HTTP, unsigned: `--insecure-peers`, or a client of the admin API.
    pub fn plain() -> PeerDialer {
        PeerDialer::default()
    }

    /// Dials with TLS (the cluster CA, this node's certificate when it has one) and/or
    /// signs with the cluster secret.
    pub fn new(tls: Option<rustls::ClientConfig>, secret: Option<ClusterSecret>) -> PeerDialer {
        PeerDialer {
            tls: tls.map(Arc::new),
            secret,
        }
    }

    /// `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The base URL of a peer at `addr` (`host:port`).
    pub fn base_url(&self, addr: &str) -> String {
        format!("{}://{addr}", self.scheme())
    }

    /// A client builder for peer traffic: no proxy from the environment, and this
    /// dialer's TLS.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let builder = reqwest::Client::builder().no_proxy();
        match &self.tls {
            Some(tls) => builder.use_preconfigured_tls((**tls).clone()),
            None => builder,
        }
    }

    /// Sends `request`, signed when this dialer has the cluster secret.
    pub async fn send(
        &self,
        client: &reqwest::Client,
        request: reqwest::RequestBuilder,
    ) -> reqwest::Result<reqwest::Response> {
        let mut request = request.build()?;
        if let Some(secret) = &self.secret {
            let body = request
                .body()
                .and_then(reqwest::Body::as_bytes)
                .unwrap_or_default();
            let path = match request.url().query() {
                Some(query) => format!("{}?{query}", request.url().path()),
                None => request.url().path().to_string(),
            };
            let signature = secret.sign(now_ms(), request.method().as_str(), &path, body);
            if let Ok(value) = HeaderValue::from_str(&signature) {
                request.headers_mut().insert(AUTH_HEADER, value);
            }
        }
        client.execute(request).await
    }
}

/// What the peer port asks of a request.
#[derive(Debug, Clone)]
pub struct PeerGate {
    /// The cluster secret, when peers sign.
    pub secret: Option<ClusterSecret>,
    /// `--insecure-peers`: everyone is a peer.
    pub insecure: bool,
    /// An admin token is configured: admin changes without peer credentials go on to the
    /// admin API, which checks it.
    pub admin_token_set: bool,
    /// Paths open to everyone (the admin status).
    pub open_paths: &'static [&'static str],
    /// Paths of admin changes: a peer's credentials or the admin token.
    pub admin_paths: &'static [&'static str],
}

/// Middleware of the peer port: lets through peers (verified certificate or valid
/// signature), the open paths, and admin changes the admin API will check; refuses the
/// rest with HTTP 401 and a reason.
pub async fn gate(State(gate): State<Arc<PeerGate>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    if gate.insecure || gate.open_paths.contains(&path.as_str()) {
        return next.run(request).await;
    }
    let by_certificate = request
        .extensions()
        .get::<ConnectionInfo>()
        .is_some_and(|info| info.verified_client_cert);
    if by_certificate {
        return next.run(request).await;
    }
    let is_admin_change = gate.admin_paths.iter().any(|p| path.starts_with(p));
    let signature = signature_of(request.headers());
    match (&gate.secret, signature) {
        (Some(secret), Some(signature)) => {
            let (parts, body) = request.into_parts();
            let Ok(bytes) = to_bytes(body, MAX_SIGNED_BODY).await else {
                return refuse("bad_signature", "the request body could not be read");
            };
            let path_and_query = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or(path);
            match secret.verify(
                &signature,
                now_ms(),
                parts.method.as_str(),
                &path_and_query,
                &bytes,
            ) {
                Ok(()) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
                Err(reason) => refuse("bad_signature", &format!("not a cluster peer: {reason}")),
            }
        }
        _ if is_admin_change && gate.admin_token_set => next.run(request).await,
        _ if is_admin_change => refuse(
            "admin",
            "membership changes need the admin token (--admin-token on the nodes, --admin-token for licensectl) or a cluster peer's credentials",
        ),
        _ => refuse(
            "unauthenticated",
            "not a cluster peer: this node requires the cluster secret (--cluster-secret-file) or a certificate from the cluster CA (--peer-tls-ca)",
        ),
    }
}

fn signature_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get(AUTH_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
}

fn refuse(reason: &'static str, message: &str) -> Response {
    transport_metrics::peer_refused(reason);
    tracing::warn!(reason, message, "refused a request on the peer port");
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> ClusterSecret {
        ClusterSecret::new("correct horse battery staple\n").expect("long enough")
    }

    #[test]
    fn a_signature_verifies_only_for_the_same_request_and_secret() {
        let signature = secret().sign(1_000, "POST", "/raft/vote", b"body");
        assert_eq!(
            secret().verify(&signature, 1_000, "POST", "/raft/vote", b"body"),
            Ok(())
        );
        for (method, path, body) in [
            ("GET", "/raft/vote", &b"body"[..]),
            ("POST", "/raft/append", b"body"),
            ("POST", "/raft/vote", b"bodY"),
        ] {
            assert!(secret()
                .verify(&signature, 1_000, method, path, body)
                .is_err());
        }
        let other = ClusterSecret::new("another secret of enough length").expect("long");
        assert!(other
            .verify(&signature, 1_000, "POST", "/raft/vote", b"body")
            .is_err());
    }

    #[test]
    fn old_signatures_and_garbage_are_refused() {
        let signature = secret().sign(1_000, "POST", "/p", b"");
        let late = 1_000 + SIGNATURE_WINDOW.as_millis() as u64 + 1;
        assert!(secret()
            .verify(&signature, late, "POST", "/p", b"")
            .is_err());
        for garbage in [
            "",
            "v1",
            "v1 x y",
            "v2 1000 00",
            "v1 1000 zz",
            "v1 1000 abc",
        ] {
            assert!(
                secret().verify(garbage, 1_000, "POST", "/p", b"").is_err(),
                "{garbage}"
            );
        }
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(ClusterSecret::new("  short  \n").is_err());
        assert!(format!("{:?}", secret()).contains(".."));
    }
}
