//! The chaos suite's library: a cluster of real `licensed` processes behind fault-injecting
//! proxies, a workload, a nemesis, the recorded history of a run and the checks applied to
//! it. `chaos/README.md` says how to run it.

pub mod checker;
pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod proxy;
pub mod run;
pub mod workload;
