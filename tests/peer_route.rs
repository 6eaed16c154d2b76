//! `--peer-route` holds for every node-to-node call: Raft, forwarded writes, and the
//! admin changes a follower passes to the leader.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use serde_json::json;

const POOL: &str = r#"[
  {"feature":"MVTec_HALCON","uuid":"five","version":"26.05","edition":"Steady","modules":"fc","count":5}
]"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_changes_reach_a_leader_that_is_only_reachable_through_its_route() {
    let mut cluster = Cluster::unstarted(3, POOL, &["--request-timeout-ms", "3000"]);
    // Node 2 advertises an address nobody can dial; every node routes to its real one.
    let real = cluster.nodes[1].raft_addr().to_string();
    cluster.set_env(1, "LICENSED_ADVERTISE_RAFT", "127.0.0.1:1");
    cluster.add_args(&["--peer-route", &format!("2={real}")]);
    cluster.start_all().await;

    // Node 2 takes the lead (asked through whichever node leads now).
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.leader().await != 1 {
        let via = cluster.leader().await;
        let _ = cluster.transfer_leader(via, 2).await;
        assert!(Instant::now() < deadline, "node 2 did not take the lead");
    }

    // A follower passes an admin change to the leader at its routed address.
    let answer = cluster.transfer_leader(2, 1).await;
    assert!(answer.is_ok(), "{answer:?}");
    assert_eq!(cluster.leader().await, 0);

    // Writes through a follower still reach the leader.
    let borrow = json!({"feature": "MVTec_HALCON", "uuid": "five", "hostId": "MAC:0A0B0C0D0E0F",
        "validFrom": common::at(60), "validUntil": common::at(3_600)});
    let borrowed = cluster.call(2, "BorrowLicenseV1", borrow).await;
    assert!(borrowed["result"]["borrowId"].is_string(), "{borrowed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_without_a_quorum_answers_a_forwarded_batch_within_its_deadline() {
    use licensed::borrow::check::BorrowRequest;
    use licensed::borrow::host_id::HostId;
    use licensed::borrow::license::LicenseKey;
    use licensed::cluster::forward::{ClusterClient, Proposal};
    use licensed::raft::routes::PeerRoutes;
    use licensed::raft::NodeAddr;

    let mut cluster = Cluster::start(3, POOL, &["--request-timeout-ms", "2000"]).await;
    let leader = leader_alone(&mut cluster).await;
    let proposal = Proposal::Borrow {
        borrow_id: uuid::Uuid::new_v4(),
        request: BorrowRequest {
            key: LicenseKey {
                feature: "MVTec_HALCON".into(),
                uuid: "five".into(),
            },
            host_id: HostId::parse("MAC:0A0B0C0D0E0F").expect("host id"),
            valid_from: None,
            valid_until: None,
            user_info: None,
        },
        request_id: None,
    };
    let addr = NodeAddr {
        raft_addr: cluster.nodes[leader].raft_addr().to_string(),
        api_addr: cluster.nodes[leader].api_addr().to_string(),
    };
    // The cluster's own secret: forwarding is for peers only.
    let dialer = licensed::transport::peer::PeerDialer::new(
        None,
        licensed::transport::peer::ClusterSecret::new(licensed_testkit::TEST_CLUSTER_SECRET).ok(),
    );
    let peers = ClusterClient::new(PeerRoutes::default(), &dialer).expect("client");
    let started = Instant::now();
    let answer = peers
        .forward_batch(
            (cluster.nodes[leader].id(), &addr),
            vec![(proposal, None)],
            Duration::from_secs(60),
        )
        .await;
    let waited = started.elapsed();
    // The leader's own deadline (the 2 s request timeout) ends the wait, not the
    // caller's 60 s: an answer per proposal, saying the outcome is unknown.
    let answers = answer.expect("the leader answered the batch");
    assert_eq!(answers.len(), 1);
    assert!(answers[0].is_err(), "{answers:?}");
    assert!(waited < Duration::from_secs(30), "held for {waited:?}");
}

/// Freezes every node but the leader, and returns the leader's index once the others are
/// stopped and it still calls itself the leader (on a loaded machine an election can move
/// the lead between asking who leads and freezing the others: then it starts over).
async fn leader_alone(cluster: &mut Cluster) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let leader = cluster.leader().await;
        let others: Vec<usize> = (0..cluster.nodes.len()).filter(|i| *i != leader).collect();
        for &i in &others {
            cluster.pause(i);
        }
        while others
            .iter()
            .any(|&i| cluster.nodes[i].proc_state() != Some('T'))
        {
            assert!(Instant::now() < deadline, "the followers did not stop");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let status = cluster.nodes[leader].status().await;
        let leads = matches!(&status, Ok(s) if s.leader == Some(cluster.nodes[leader].id()));
        if leads {
            return leader;
        }
        for &i in &others {
            cluster.resume(i);
        }
        assert!(Instant::now() < deadline, "no stable leader: {status:?}");
    }
}
