//! `chaos`: runs a workload against a real `licensed` cluster while injecting faults, then
//! checks the recorded history.

fn main() {}
