//! `licensed`: a high-availability license server that speaks MVTec's Borrow API
//! (JSON-RPC 2.0 on `POST /licenses`) and replicates its borrow ledger with Raft.
//! The protocol rules the code follows are in `docs/protocol.md`.
//!
//! # Layout
//! - [`run()`]: starts a node (the `licensed` binary is flag parsing around it).
//! - [`borrow`]: the pure domain — licenses, host ids, dates, the capacity index, the
//!   borrow checks in protocol order, the signed license document, the return token. No
//!   I/O, no clock.
//! - [`state`]: the replicated state machine — log commands and their deterministic apply.
//! - [`raft`]: openraft glue — type config, RocksDB log and state-machine stores with
//!   snapshots, the node-to-node transport and its codec, node lifecycle.
//! - [`cluster`]: behaviour on top of Raft — forwarding to the leader, batching, read
//!   index, membership and its admin API, forming and joining.
//! - [`app`]: the narrow interface the API uses (borrow, read, status) and its caches.
//! - [`rpc`]: JSON-RPC 2.0 envelope, methods, params, result objects, error codes.
//! - `server`: the axum router for clients; `console`: the web console at `/ui`, its
//!   assets embedded; `metrics`: Prometheus;
//!   [`telemetry`]: logging and signals.
//! - [`transport`]: the accept loop, TLS, limits, and the peer port's credentials.
//! - [`config`]: flags and environment.
//! - `broken` (chaos builds only): deliberately broken modes, `LICENSED_BROKEN`.
//! - [`client`]: the Borrow API client used by `licensectl`, the load generator, tests and
//!   the chaos suite.
#![cfg_attr(not(test), deny(unused_crate_dependencies))]
#![warn(missing_docs)]

// A dependency for its features only (see Cargo.toml): one RocksDB build for every target.
use libc as _;
// The server binary's allocator (src/bin/licensed.rs).
use mimalloc as _;

pub mod app;
pub mod borrow;
#[cfg(feature = "failpoints")]
pub mod broken;
pub mod client;
pub mod cluster;
pub mod config;
mod console;
mod metrics;
pub mod raft;
pub mod rpc;
mod run;
mod server;
pub mod state;
pub mod telemetry;
pub mod transport;

pub use run::{run, Listeners, RunError};

/// Internals the fuzz targets (`fuzz/`) drive directly. Not an API: no stability promise.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::raft::codec::{decode, decode_prefix, encode, CodecError};
    pub use crate::raft::node::{start as start_node, Node, NodeOptions};
}

/// The Borrow API's default port.
pub const DEFAULT_PORT: u16 = 22022;
