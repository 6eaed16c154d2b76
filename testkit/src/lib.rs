//! The one process harness of `licensed`: runs the real `licensed` binary (and, for the
//! benchmarks, other servers) as child processes on loopback and drives them the way an
//! operator, a crash or a sick machine would.
//!
//! Layers, bottom up:
//!
//! - [`Process`]: any child process. Spawning with a log file, waiting for a ready line on
//!   stdout, SIGKILL / SIGSTOP / SIGCONT / SIGTERM, death with the parent
//!   (`PR_SET_PDEATHSIG`), log tails. The benchmarks run etcd with it.
//! - [`NodeProcess`] and [`NodeSpec`]: one `licensed` node. Its ports, data directory,
//!   flags and environment; restart on the same ports and data, wipe, a wall clock shifted
//!   by libfaketime, a tmpfs data directory that can be filled up, status and readiness
//!   probes, and admin calls through [`licensed::cluster::admin::AdminClient`].
//! - [`Server`] and [`Cluster`]: the conveniences the integration tests use, built on
//!   [`NodeProcess`]. They panic with clear messages instead of returning errors.
//!
//! Everything is async (tokio): start nodes from a runtime worker thread or the thread
//! that runs `block_on`, not from `spawn_blocking` (see [`Process`] on why).
//!
//! [`licensed_binary`] finds the `licensed` executable of the running build, [`free_port`]
//! hands out loopback ports.

mod binary;
mod cluster;
mod error;
mod node;
pub mod pods;
mod ports;
mod process;
mod server;

pub use binary::licensed_binary;
pub use cluster::Cluster;
pub use error::Error;
pub use node::{
    faketime_library, peers_arg, NodeProcess, NodeSpec, DEFAULT_READY_TIMEOUT, READY_LINE_PREFIX,
    TEST_CLUSTER_SECRET,
};
pub use ports::free_port;
pub use process::{proc_state, Process, ReadySignal};
pub use server::{at, error_code_of, Server, SAMPLE_POOL};
