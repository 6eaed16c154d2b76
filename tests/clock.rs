//! Time on a cluster whose nodes' clocks disagree: answers that depend on time come from
//! the replicated side (the leader's read point), never from the answering node's clock.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::Cluster;
use serde_json::{json, Value};

const POOL: &str = r#"[
  {"feature":"MVTec_HALCON","uuid":"five","version":"26.05","edition":"Steady","modules":"fc","count":5}
]"#;

fn borrow(from: i64, until: i64) -> Value {
    json!({"feature": "MVTec_HALCON", "uuid": "five", "hostId": "MAC:0A0B0C0D0E0F",
           "validFrom": common::at(from), "validUntil": common::at(until)})
}

async fn listed(cluster: &Cluster, i: usize) -> BTreeSet<String> {
    let list = cluster.call(i, "ListLicensesV1", json!([])).await;
    list["result"][0]["borrowedIntervals"]
        .as_array()
        .map(|intervals| {
            intervals
                .iter()
                .filter_map(|interval| interval["borrowId"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Makes node `to` the leader.
async fn lead_with(cluster: &Cluster, to: usize) {
    for _ in 0..50 {
        if cluster.leader().await == to {
            return;
        }
        let answer = cluster.transfer_leader(0, cluster.nodes[to].id()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = answer;
    }
    panic!("node {to} did not take the lead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_whose_clock_is_an_hour_behind_lists_what_the_others_list() {
    let mut cluster = Cluster::unstarted(3, POOL, &["--request-timeout-ms", "3000"]);
    cluster.set_clock_offset(2, -3_600);
    cluster.start_all().await;
    lead_with(&cluster, 0).await;

    // One borrow that ends in a few seconds, one that lasts.
    let ending = cluster.call(0, "BorrowLicenseV1", borrow(-7_200, 3)).await;
    let ending = ending["result"]["borrowId"]
        .as_str()
        .expect("borrowed")
        .to_string();
    let lasting = cluster
        .call(0, "BorrowLicenseV1", borrow(-7_200, 3_600))
        .await;
    let lasting = lasting["result"]["borrowId"]
        .as_str()
        .expect("borrowed")
        .to_string();
    tokio::time::sleep(Duration::from_secs(5)).await;

    let expected = BTreeSet::from([lasting]);
    for i in 0..3 {
        let on_node = listed(&cluster, i).await;
        assert!(!on_node.contains(&ending), "node {i} lists an ended borrow");
        assert_eq!(on_node, expected, "node {i}");
    }
}

/// Asks the cluster (through node 0) to hand leadership to node `to`; it may not stay.
async fn offer_lead(cluster: &Cluster, to: usize) {
    let via = cluster.leader().await;
    let _ = cluster.transfer_leader(via, cluster.nodes[to].id()).await;
}

/// Unix seconds now, on this (unskewed) machine.
fn real_now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_an_hour_ahead_stamps_nothing_and_no_borrow_is_refused_for_it() {
    let mut cluster = Cluster::unstarted(3, POOL, &["--request-timeout-ms", "5000"]);
    cluster.set_clock_offset(2, 3_600);
    cluster.start_all().await;

    let mut borrowed = Vec::new();
    for round in 0..6 {
        // Make the skewed node lead (it hands leadership on), then borrow through every
        // node with real dates: no validFrom (the leader's stamp) and an end 30 min away.
        offer_lead(&cluster, 2).await;
        for via in 0..3 {
            let params = json!({"feature": "MVTec_HALCON", "uuid": "five",
                "hostId": format!("MAC:0000000000{round}{via}"), "validUntil": common::at(1_800)});
            let answer = cluster.call(via, "BorrowLicenseV1", params).await;
            let id = answer["result"]["borrowId"].as_str();
            let id = id.unwrap_or_else(|| panic!("round {round} via node {via}: {answer}"));
            borrowed.push(id.to_string());
            let returned = cluster
                .call(
                    via,
                    "ReturnLicenseV1",
                    json!({"borrowId": id,
                    "returnToken": answer["result"]["returnToken"]}),
                )
                .await;
            assert!(returned["result"].is_object(), "{returned}");
        }
    }

    // The skewed node says why it is not fit to lead.
    let (status, body) = {
        let response = reqwest::get(format!("{}/readyz", cluster.nodes[2].api_url()))
            .await
            .expect("readyz");
        (
            response.status().as_u16(),
            response.text().await.unwrap_or_default(),
        )
    };
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("clock"), "{body}");

    // The ledger clock never ran ahead: every stamp (the default validFrom, and the end
    // a return cut the borrow to) is within the bound of the real time.
    let bound = 1 + 2; // --max-clock-offset (1 s) plus whole-second rounding and slack
    for id in &borrowed {
        let record = cluster
            .call(0, "GetBorrowedLicenseV1", json!({"borrowId": id}))
            .await;
        let license = record["result"]["license"].as_str().expect("license");
        let document = licensed::borrow::document::decode(license)
            .expect("decodes")
            .0;
        for stamp in [
            &document.valid_from,
            &document.valid_until,
            &document.issued_at,
        ] {
            let at = chrono::DateTime::parse_from_rfc3339(stamp).expect("rfc 3339");
            assert!(
                at.timestamp() <= real_now() + bound,
                "{id}: stamp {stamp} is ahead of the real time"
            );
        }
    }
}
