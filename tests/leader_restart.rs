//! A leader that restarts leads again only after an election, in a new term. Leading on
//! in its old term would reuse the log ids of entries a power cut took from its log but a
//! follower kept, and that follower's ledger would silently part from the others (the
//! chaos suite's power cuts found it; see `src/raft/node.rs`).

mod common;

use common::Cluster;
use serde_json::{json, Value};

const POOL: &str = r#"[
  {"feature":"MVTec_HALCON","uuid":"two","version":"26.05","edition":"Steady","modules":"fc","count":2}
]"#;

fn term_and_leader(status: &Value) -> (u64, Option<u64>) {
    (
        status["term"].as_u64().expect("status has a term"),
        status["leader"].as_u64(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_leader_leads_again_only_in_a_new_term() {
    // One voter: no follower can time out and start an election while it is down, so only
    // the node itself decides whether it leads on in its old term.
    let mut cluster = Cluster::start(1, POOL, &[]).await;
    let leader = cluster.leader().await;
    let answer = cluster
        .call(
            leader,
            "BorrowLicenseV1",
            json!({"feature": "MVTec_HALCON", "uuid": "two", "hostId": "MAC:0A0B0C0D0E0F",
                   "validFrom": common::at(60), "validUntil": common::at(3_600)}),
        )
        .await;
    assert!(answer["result"]["borrowId"].is_string(), "borrow: {answer}");
    let (term_before, _) = term_and_leader(&cluster.status(leader).await);

    // With openraft's leader restore it would simply lead on in `term_before`.
    cluster.restart(leader).await;
    let now_leading = cluster.leader().await;
    let (term_after, known) = term_and_leader(&cluster.status(now_leading).await);
    assert!(known.is_some(), "a leader is known after the restart");
    assert!(
        term_after > term_before,
        "the restarted leader (node {}) came back and a leader leads in term {term_after}, \
         not after term {term_before}",
        leader + 1
    );
    let listed = cluster.call(now_leading, "ListLicensesV1", json!([])).await;
    let borrows = listed["result"][0]["borrowedIntervals"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(borrows, 1, "the acknowledged borrow survives: {listed}");
}
