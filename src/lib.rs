//! `licensed`: a high-availability license server that speaks MVTec's Borrow API
//! (JSON-RPC 2.0 on `POST /licenses`) and replicates its borrow ledger with Raft.
//!
//! # Layout
//! - [`borrow`]: the pure domain — licenses, host ids, dates, the capacity index, the
//!   borrow checks in SPEC order, the signed license document. No I/O, no clock.
//! - [`state`]: the replicated state machine — log commands and their deterministic apply.
//! - [`raft`]: openraft glue — type config, RocksDB log store, state-machine store with
//!   snapshots, node-to-node HTTP network, node lifecycle.
//! - [`app`]: the narrow interface the API uses (borrow, read, status).
//! - [`rpc`]: JSON-RPC 2.0 envelope, methods, params, wire objects, error mapping.
//! - [`server`]: the axum router and HTTP serving; [`metrics`]: Prometheus.
//! - [`config`]: flags and environment.
//! - [`client`]: a small JSON-RPC client used by `licensectl`, tests and benchmarks.

pub mod admin_client;
pub mod app;
pub mod borrow;
pub mod client;
pub mod config;
pub mod loadgen;
pub mod metrics;
pub mod raft;
pub mod rpc;
pub mod server;
pub mod signed_cache;
pub mod state;

/// The Borrow API's default port.
pub const DEFAULT_PORT: u16 = 22022;
