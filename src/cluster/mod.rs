//! Cluster behaviour on top of Raft ([`crate::raft`]): any node answers any client.
//!
//! - [`forward`]: writes reaching a follower go to the leader, reads on a follower wait
//!   for the leader's read index; `batcher` coalesces them into one request per round.
//! - [`admin`]: membership (status, add, remove, transfer-leader, admit), one file per
//!   operation, its messages and its client.
//! - [`formation`]: forming a cluster from `--peers`; `startup`: what a node does until
//!   it is ready; [`standing`]: whether a node must ask to be added (again).
//!
//! `DESIGN.md` beside this file walks a borrow and a read through followers and the
//! leader.

pub mod admin;
pub(crate) mod batcher;
pub mod formation;
pub mod forward;
pub mod standing;
pub(crate) mod startup;
