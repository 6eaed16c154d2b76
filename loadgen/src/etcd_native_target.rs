//! etcd as a load target through its native gRPC API (the `etcd-client` crate, tonic over
//! HTTP/2): what a user choosing etcd would deploy, with none of the JSON gateway's
//! translation inside the server. The operations are the gateway target's
//! ([`EtcdOp`]): `cas` (create a fresh key if its version is 0), `put`, and a
//! linearizable `range` (etcd's default; never `serializable`).
//!
//! Connections are shared the way gRPC clients share them: each endpoint gets
//! `connections_per_endpoint` HTTP/2 connections (one by default, like one
//! `clientv3.Client` per endpoint in Go), and the workers assigned to an endpoint
//! multiplex their requests over them. Worker `i` talks to endpoint `i mod n`, the same
//! spread as every other target, so one worker talks to `urls[0]`.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, KvClient, Txn, TxnOp};
use rand::rngs::StdRng;

use super::etcd_target::{borrow_record, ClientKeys, EtcdOp, KEY_PREFIX};
use super::mix::Mix;
use super::outcome::{ErrorCode, Failure};
use super::target::{timed, Step, Target, TargetError, Worker};

/// Why the native etcd target could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EtcdNativeSetupError {
    /// No endpoint given.
    #[error("no etcd URL given")]
    NoUrl,
    /// Zero connections per endpoint asked for.
    #[error("at least one connection per etcd endpoint is needed")]
    NoConnections,
    /// An endpoint could not be connected to.
    #[error("cannot connect to etcd at {url}: {error}")]
    Connect {
        /// The endpoint.
        url: String,
        /// What the client said.
        error: etcd_client::Error,
    },
}

/// An etcd cluster under load through gRPC.
#[derive(Clone)]
pub struct EtcdNativeTarget {
    urls: Vec<String>,
    /// `clients[endpoint][connection]`: a KV client per connection (a clone shares it).
    clients: Vec<Vec<KvClient>>,
    mix: Arc<Mix<EtcdOp>>,
    /// Separates the keys of this run from those of earlier runs, which `cas` needs.
    run_id: String,
}

impl std::fmt::Debug for EtcdNativeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdNativeTarget")
            .field("urls", &self.urls)
            .field("connections_per_endpoint", &self.connections_per_endpoint())
            .field("mix", &self.mix)
            .finish()
    }
}

/// `http://host:port` for an endpoint given as `host:port` or with a trailing slash.
pub fn endpoint_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    }
}

impl EtcdNativeTarget {
    /// Connects to the etcd client endpoints `urls` (e.g. `http://127.0.0.1:2379`),
    /// `connections_per_endpoint` connections each, every request bounded by `timeout`.
    pub async fn connect(
        urls: &[String],
        mix: Mix<EtcdOp>,
        timeout: Duration,
        connections_per_endpoint: usize,
    ) -> Result<EtcdNativeTarget, EtcdNativeSetupError> {
        if urls.is_empty() {
            return Err(EtcdNativeSetupError::NoUrl);
        }
        if connections_per_endpoint == 0 {
            return Err(EtcdNativeSetupError::NoConnections);
        }
        let urls: Vec<String> = urls.iter().map(|url| endpoint_url(url)).collect();
        let mut clients = Vec::with_capacity(urls.len());
        for url in &urls {
            let mut connections = Vec::with_capacity(connections_per_endpoint);
            for _ in 0..connections_per_endpoint {
                // One endpoint per client: the balancer would otherwise spread a worker's
                // requests over all members, and "through a follower" would mean nothing.
                let options = ConnectOptions::new()
                    .with_timeout(timeout)
                    .with_connect_timeout(timeout);
                let client = Client::connect([url.as_str()], Some(options))
                    .await
                    .map_err(|error| EtcdNativeSetupError::Connect {
                        url: url.clone(),
                        error,
                    })?;
                connections.push(client.kv_client());
            }
            clients.push(connections);
        }
        Ok(EtcdNativeTarget {
            urls,
            clients,
            mix: Arc::new(mix),
            run_id: uuid::Uuid::new_v4().simple().to_string(),
        })
    }

    fn connections_per_endpoint(&self) -> usize {
        self.clients.first().map_or(0, Vec::len)
    }
}

impl Target for EtcdNativeTarget {
    type Worker = EtcdNativeWorker;

    fn name(&self) -> &'static str {
        "etcd-grpc"
    }

    fn workload(&self) -> String {
        self.mix.to_string()
    }

    fn urls(&self) -> &[String] {
        &self.urls
    }

    fn notes(&self) -> Vec<String> {
        vec![
            format!("keys under {KEY_PREFIX}{}/", self.run_id),
            format!(
                "native gRPC, {} HTTP/2 connection(s) per endpoint shared by its workers",
                self.connections_per_endpoint()
            ),
        ]
    }

    fn worker(&self, index: usize) -> Result<EtcdNativeWorker, TargetError> {
        let endpoints = self.clients.len();
        let connections = self.clients.first().ok_or(TargetError::NoUrl)?;
        let connection = (index / endpoints) % connections.len();
        Ok(EtcdNativeWorker {
            kv: self.clients[index % endpoints][connection].clone(),
            keys: ClientKeys::new(&self.run_id, index),
            mix: self.mix.clone(),
        })
    }
}

/// One client of etcd over gRPC.
pub struct EtcdNativeWorker {
    kv: KvClient,
    keys: ClientKeys,
    mix: Arc<Mix<EtcdOp>>,
}

impl Worker for EtcdNativeWorker {
    async fn run_op(&mut self, rng: &mut StdRng, steps: &mut Vec<Step>) {
        match self.mix.pick(rng) {
            EtcdOp::Put => self.put(rng, steps).await,
            EtcdOp::Cas => {
                let key = self.keys.fresh();
                let txn = Txn::new()
                    .when([Compare::version(key.as_str(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key.as_str(), borrow_record(rng), None)]);
                let kv = &mut self.kv;
                let created = timed("cas", steps, async {
                    let answer = kv.txn(txn).await.map_err(failure)?;
                    if answer.succeeded() {
                        Ok(())
                    } else {
                        Err(Failure::new(
                            ErrorCode::Refused("compare-failed"),
                            format!("txn on {key} did not succeed"),
                        ))
                    }
                })
                .await;
                if created.is_some() {
                    self.keys.remember(key, rng);
                }
            }
            EtcdOp::Range => {
                if self.keys.any_written(rng).is_none() {
                    self.put(rng, steps).await;
                }
                if let Some(key) = self.keys.any_written(rng).map(str::to_string) {
                    let kv = &mut self.kv;
                    timed("range", steps, async {
                        let answer = kv.get(key.as_str(), None).await.map_err(failure)?;
                        if answer.kvs().is_empty() {
                            Err(Failure::new(
                                ErrorCode::Refused("not-found"),
                                format!("range of {key} found nothing"),
                            ))
                        } else {
                            Ok(())
                        }
                    })
                    .await;
                }
            }
        }
    }
}

impl EtcdNativeWorker {
    async fn put(&mut self, rng: &mut StdRng, steps: &mut Vec<Step>) {
        let key = self.keys.fresh();
        let value = borrow_record(rng);
        let kv = &mut self.kv;
        let written = timed("put", steps, async {
            kv.put(key.as_str(), value, None)
                .await
                .map(drop)
                .map_err(failure)
        })
        .await;
        if written.is_some() {
            self.keys.remember(key, rng);
        }
    }
}

/// Classifies a client error like the HTTP targets do: deadline, connection, or an
/// answer that says no.
fn failure(error: etcd_client::Error) -> Failure {
    use etcd_client::Error;
    let code = match &error {
        Error::GRpcStatus(status) => match status.code() {
            tonic::Code::DeadlineExceeded => ErrorCode::Timeout,
            tonic::Code::Unavailable => ErrorCode::Connect,
            _ => ErrorCode::Refused("grpc-status"),
        },
        Error::TransportError(_) | Error::IoError(_) => ErrorCode::Connect,
        _ => ErrorCode::Invalid,
    };
    Failure::new(code, error.to_string().replace('\n', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_a_scheme_and_lose_trailing_slashes() {
        assert_eq!(endpoint_url("127.0.0.1:2379"), "http://127.0.0.1:2379");
        assert_eq!(
            endpoint_url("http://127.0.0.1:2379/"),
            "http://127.0.0.1:2379"
        );
        assert_eq!(endpoint_url("https://etcd:2379"), "https://etcd:2379");
    }

    #[tokio::test]
    async fn setup_refuses_no_endpoint_and_zero_connections() {
        let mix = || Mix::single(EtcdOp::Cas);
        let second = Duration::from_secs(1);
        assert!(matches!(
            EtcdNativeTarget::connect(&[], mix(), second, 1).await,
            Err(EtcdNativeSetupError::NoUrl)
        ));
        assert!(matches!(
            EtcdNativeTarget::connect(&["127.0.0.1:2379".into()], mix(), second, 0).await,
            Err(EtcdNativeSetupError::NoConnections)
        ));
    }

    #[test]
    fn status_codes_map_to_report_classes() {
        let status = |code| etcd_client::Error::GRpcStatus(tonic::Status::new(code, "x"));
        assert_eq!(
            failure(status(tonic::Code::DeadlineExceeded)).code,
            ErrorCode::Timeout
        );
        assert_eq!(
            failure(status(tonic::Code::Unavailable)).code,
            ErrorCode::Connect
        );
        assert_eq!(
            failure(status(tonic::Code::FailedPrecondition)).code,
            ErrorCode::Refused("grpc-status")
        );
    }
}
