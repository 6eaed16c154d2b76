//! The proxy mesh in front of a real three-node cluster: traffic really crosses the
//! proxies, and a partition of the leader makes the others elect a new one.
//!
//! Needs the `licensed` binary (`cargo build --bin licensed`, or `LICENSED_BIN`), hence
//! ignored by default: `cargo test -p licensed-chaos --test proxy -- --ignored`.

use std::time::Duration;

use licensed_chaos::proxy::ProxyMesh;
use licensed_testkit::{licensed_binary, peers_arg, NodeProcess, NodeSpec};

/// Leader ids as the given nodes see them (None: unknown or unreachable).
async fn leaders(nodes: &[NodeProcess], which: &[usize]) -> Vec<Option<u64>> {
    let mut seen = Vec::new();
    for &index in which {
        let leader = match nodes[index].status().await {
            Ok(status) => status.leader,
            Err(_) => None,
        };
        seen.push(leader);
    }
    seen
}

/// Waits until the given nodes agree on one leader satisfying `accept`.
async fn agreed_leader(
    nodes: &[NodeProcess],
    which: &[usize],
    accept: impl Fn(u64) -> bool,
) -> Option<u64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        let seen = leaders(nodes, which).await;
        if let Some(Some(first)) = seen.first() {
            if seen.iter().all(|leader| *leader == Some(*first)) && accept(*first) {
                return Some(*first);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioning_the_leader_moves_leadership() {
    let binary = licensed_binary().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().expect("temp dir");
    let specs: Vec<NodeSpec> = (1..=3)
        .map(|id| {
            NodeSpec::new(
                id,
                &binary,
                dir.path().join(format!("node-{id}")).join("data"),
            )
            .expect("ports")
        })
        .collect();
    let mesh = ProxyMesh::start(specs.iter().map(|spec| (spec.id, spec.raft_addr())))
        .await
        .expect("mesh");
    let peers = peers_arg(&specs);
    let mut nodes: Vec<NodeProcess> = specs
        .into_iter()
        .map(|spec| {
            let routes = mesh.route_args(spec.id);
            let spec = spec
                .args(["--peers", peers.as_str()])
                .args(routes)
                .args(["--heartbeat-ms", "50"])
                .args(["--election-min-ms", "300", "--election-max-ms", "600"])
                .ready_timeout(Duration::from_secs(60));
            NodeProcess::new(spec).expect("node")
        })
        .collect();
    // The lowest id waits for its peers before creating the cluster: start all at once.
    for result in futures::future::join_all(nodes.iter_mut().map(NodeProcess::start)).await {
        result.expect("node start");
    }

    let leader = agreed_leader(&nodes, &[0, 1, 2], |_| true)
        .await
        .expect("a leader");
    // Raft traffic crossed the leader's outgoing proxies.
    for (&(from, to), stats) in &mesh.stats() {
        if from == leader {
            assert!(stats.bytes_to_target > 0, "link {from}->{to}: {stats:?}");
        }
    }

    mesh.isolate(leader);
    let others: Vec<usize> = (0..3).filter(|index| *index as u64 + 1 != leader).collect();
    let new_leader = agreed_leader(&nodes, &others, |id| id != leader)
        .await
        .expect("the majority elects a new leader");

    // The isolated node kept trying: its outgoing bytes went nowhere.
    let stats = mesh.stats();
    assert!(others
        .iter()
        .any(|index| stats[&(leader, *index as u64 + 1)].bytes_discarded > 0));

    mesh.heal();
    // The old leader rejoins and follows whoever leads now.
    let after = agreed_leader(&nodes, &[0, 1, 2], |_| true)
        .await
        .expect("one leader after the heal");
    eprintln!("leader {leader} isolated, {new_leader} took over, {after} leads after the heal");

    mesh.shutdown().await;
    for node in &mut nodes {
        node.kill9().await.expect("kill");
    }
}
