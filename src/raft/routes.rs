//! Per-node overrides of the addresses peers are dialled at.
//!
//! The membership stores one Raft address per node, the same for every member. A node
//! behind NAT, a multi-homed host or a fault-injecting proxy in front of one link needs
//! this node to dial a different address for one peer: `--peer-route ID=ADDR`.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::NodeId;

/// The address overrides of this node; empty means "dial what the membership says".
#[derive(Debug, Clone, Default)]
pub struct PeerRoutes(Arc<BTreeMap<NodeId, String>>);

impl PeerRoutes {
    /// Routes from `(peer id, host:port)` pairs.
    pub fn new(routes: BTreeMap<NodeId, String>) -> PeerRoutes {
        PeerRoutes(Arc::new(routes))
    }

    /// Parses repeated `ID=HOST:PORT` flags.
    pub fn parse<S: AsRef<str>>(flags: &[S]) -> Result<PeerRoutes, String> {
        let mut routes = BTreeMap::new();
        for flag in flags {
            let flag = flag.as_ref();
            let (id, addr) = flag
                .split_once('=')
                .ok_or_else(|| format!("{flag:?} is not ID=HOST:PORT"))?;
            let id: NodeId = id
                .trim()
                .parse()
                .map_err(|_| format!("{id:?} in {flag:?} is not a node id"))?;
            let addr = addr.trim();
            if addr.is_empty() || !addr.contains(':') {
                return Err(format!("{addr:?} in {flag:?} is not HOST:PORT"));
            }
            if routes.insert(id, addr.to_string()).is_some() {
                return Err(format!("node {id} is routed twice"));
            }
        }
        Ok(PeerRoutes::new(routes))
    }

    /// The `host:port` to dial for peer `id`, whose membership address is `raft_addr`.
    pub fn resolve<'a>(&'a self, id: NodeId, raft_addr: &'a str) -> &'a str {
        self.0.get(&id).map(String::as_str).unwrap_or(raft_addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_override_only_the_named_peer() {
        let routes = PeerRoutes::parse(&["2=127.0.0.1:9002", " 3 = 127.0.0.1:9003"]).expect("ok");
        assert_eq!(routes.resolve(2, "10.0.0.2:22023"), "127.0.0.1:9002");
        assert_eq!(routes.resolve(3, "10.0.0.3:22023"), "127.0.0.1:9003");
        assert_eq!(routes.resolve(4, "10.0.0.4:22023"), "10.0.0.4:22023");
    }

    #[test]
    fn malformed_routes_are_refused() {
        assert!(PeerRoutes::parse(&["2"]).is_err());
        assert!(PeerRoutes::parse(&["x=127.0.0.1:1"]).is_err());
        assert!(PeerRoutes::parse(&["2=nowhere"]).is_err());
        assert!(PeerRoutes::parse(&["2=a:1", "2=b:2"]).is_err());
    }
}
