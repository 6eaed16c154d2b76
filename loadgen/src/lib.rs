#![deny(unused_crate_dependencies)]
#![warn(missing_docs)]
//! A load generator for `licensed` (and, for comparison, etcd): `licensectl bench` and the
//! `compare` benchmark are thin layers over it.
//!
//! # How a run works
//! A [`Target`](target::Target) (here [`LicensedTarget`] or [`EtcdTarget`]) makes one
//! worker per simulated client; each worker is a tokio task with its own keep-alive
//! HTTP/1.1 connection to one node (nodes are assigned round-robin), except where a
//! target shares connections on purpose ([`EtcdNativeTarget`]'s gRPC channels,
//! [`LicensedTarget::shared_http2`]). The [`engine`] runs
//! the workers in a closed loop (next request when the answer is in) or a fixed-rate open
//! loop (requests due at fixed times, latency counted from the due time so that queueing
//! is not hidden), first for a warm-up that is not recorded, then for the measured time.
//! Each worker records latencies in its own HDR histogram (microseconds, three
//! significant digits) and counts errors by code; the engine merges them into a
//! [`Report`] that prints as a table or serialises to JSON.
//!
//! # Layout
//! - [`engine`]: workers, loops, phases; [`schedule`]: the time arithmetic of a run.
//! - [`target`]: the target and worker traits; [`outcome`]: error codes.
//! - [`licensed_target`], [`licenses`]: the Borrow API load and the licenses it aims at.
//! - [`etcd_target`]: the etcd equivalents (compare-and-put, put, linearizable range)
//!   through etcd's JSON gateway; [`etcd_native_target`]: the same through its gRPC API.
//! - [`stats`]: per-worker recording; [`report`]: the merged result.
//! - [`mix`], [`duration`]: what the command line says; [`cli`]: `licensectl bench`.

pub mod cli;
pub mod duration;
pub mod engine;
pub mod etcd_native_target;
pub mod etcd_target;
pub mod licensed_target;
pub mod licenses;
pub mod mix;
pub mod outcome;
pub mod report;
pub mod schedule;
pub mod stats;
pub mod target;

pub use cli::{run_bench, BenchArgs, BenchOp};
pub use engine::{run, EngineConfig, EngineError};
pub use etcd_native_target::EtcdNativeTarget;
pub use etcd_target::{EtcdOp, EtcdTarget};
pub use licensed_target::{LicensedOp, LicensedTarget, LicensedWorkload};
pub use mix::Mix;
pub use report::{LatencySummary, Mode, OpReport, Report};
