//! Loopback ports for nodes to listen on.

use std::collections::BTreeSet;
use std::io;
use std::net::Ipv4Addr;
use std::sync::{Mutex, PoisonError};

use rand::Rng;

/// Ports below this are left to well-known services.
const PORT_FLOOR: u16 = 20_000;

/// Ports handed out by [`free_port`] in this process, so no two nodes get the same one.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A free loopback port for a node to listen on, never the same twice in one process.
///
/// Picked below the kernel's ephemeral range when possible: a restarted node must bind the
/// same port again, and an ephemeral port may meanwhile have become the local end of some
/// outgoing connection. Freeness is checked by binding; the port is released at once, so
/// another process could still take it before the node binds it.
pub fn free_port() -> io::Result<u16> {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let ephemeral_start = ephemeral_port_range().map_or(32_768, |(start, _)| start);
    if ephemeral_start > PORT_FLOOR {
        let mut rng = rand::thread_rng();
        for _ in 0..256 {
            let port = rng.gen_range(PORT_FLOOR..ephemeral_start);
            if !handed_out.contains(&port)
                && std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
            {
                handed_out.insert(port);
                return Ok(port);
            }
        }
    }
    // Fall back on the kernel's choice.
    for _ in 0..64 {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        if handed_out.insert(port) {
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no free loopback port found",
    ))
}

/// The kernel's ephemeral port range, from procfs.
fn ephemeral_port_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut bounds = text.split_whitespace().map(str::parse::<u16>);
    Some((bounds.next()?.ok()?, bounds.next()?.ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct() {
        let ports: BTreeSet<u16> = (0..50).map(|_| free_port().unwrap()).collect();
        assert_eq!(ports.len(), 50);
    }
}
