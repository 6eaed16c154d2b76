//! The peer port against real processes: a process without the cluster's secret or
//! certificate cannot append, vote, install a snapshot, forward, read-index, admit or
//! change membership — each call refused with 401 and a reason, the cluster unharmed —
//! a cluster refuses to start with no peer credentials unless `--insecure-peers`, and a
//! cluster whose nodes hold certificates from the cluster CA (mutual TLS, no secret)
//! forms, serves, and turns away a client without a certificate.

mod common;

use std::time::Duration;

use common::{make_cert, Cluster};
use licensed::transport::peer::{ClusterSecret, AUTH_HEADER};
use licensed_testkit::{licensed_binary, peers_arg, NodeProcess, NodeSpec};
use serde_json::{json, Value};

/// Every node-to-node route that acts on the cluster.
const PEER_ROUTES: &[&str] = &[
    "/raft/append",
    "/raft/vote",
    "/raft/pre-vote",
    "/raft/snapshot",
    "/raft/snapshot-chunk",
    "/raft/transfer-leader",
    "/cluster/forward-batch",
    "/cluster/read-index",
    "/cluster/admin/admit",
    "/cluster/admin/add",
    "/cluster/admin/remove",
    "/cluster/admin/transfer-leader",
];

const POOL: &str = r#"[
  {"feature":"MVTec_HALCON","uuid":"bulk","version":"26.05","edition":"Steady","modules":"fc","count":1000}
]"#;

fn borrow_params() -> Value {
    json!({"feature": "MVTec_HALCON", "uuid": "bulk", "hostId": "MAC:0A0B0C0D0E0F",
           "validFrom": common::at(60), "validUntil": common::at(3600)})
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_the_cluster_secret_no_route_of_the_peer_port_acts() {
    let cluster = Cluster::start(3, POOL, &[]).await;
    let leader = cluster.leader().await;
    let borrowed = cluster
        .call(leader, "BorrowLicenseV1", borrow_params())
        .await;
    let borrow_id = borrowed["result"]["borrowId"]
        .as_str()
        .unwrap_or_else(|| panic!("{borrowed}"))
        .to_string();
    let before = cluster.status(leader).await;

    let outsider = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let wrong = ClusterSecret::new("a secret of another cluster entirely").expect("secret");
    // A vote request for a far future term, as bytes: the gate refuses before decoding.
    let body = b"\x00\xff\xff\xff\xff\xff\xff\xff\x7f".to_vec();
    for node in &cluster.nodes {
        let base = format!("http://{}", node.spec().raft_addr());
        for path in PEER_ROUTES {
            let unsigned = outsider
                .post(format!("{base}{path}"))
                .body(body.clone())
                .send()
                .await
                .expect("the port answers");
            let status = unsigned.status().as_u16();
            let reason = unsigned.text().await.unwrap_or_default();
            assert_eq!(status, 401, "{path} without credentials: {reason}");
            assert!(reason.contains("cluster"), "{path}: {reason}");

            let forged = wrong.sign(now_ms(), "POST", path, &body);
            let signed_wrong = outsider
                .post(format!("{base}{path}"))
                .header(AUTH_HEADER, forged)
                .body(body.clone())
                .send()
                .await
                .expect("the port answers");
            let status = signed_wrong.status().as_u16();
            let reason = signed_wrong.text().await.unwrap_or_default();
            assert_eq!(status, 401, "{path} with another secret: {reason}");
            assert!(reason.contains("bad signature"), "{path}: {reason}");
        }
        // Status stays open to operators.
        let status = outsider
            .get(format!("{base}/cluster/admin/status"))
            .send()
            .await
            .expect("status");
        assert_eq!(status.status().as_u16(), 200);
    }

    // The same garbage with the cluster's own secret passes the gate and is refused by
    // the route itself (the gate is what stopped the outsider).
    let right = ClusterSecret::new(licensed_testkit::TEST_CLUSTER_SECRET).expect("secret");
    let base = format!("http://{}", cluster.nodes[leader].spec().raft_addr());
    let signed = outsider
        .post(format!("{base}/raft/vote"))
        .header(
            AUTH_HEADER,
            right.sign(now_ms(), "POST", "/raft/vote", &body),
        )
        .body(body.clone())
        .send()
        .await
        .expect("answer");
    assert_eq!(signed.status().as_u16(), 400, "{:?}", signed.text().await);

    // Unharmed: same leader, term and members; the borrow is on every node; writes go on.
    let after = cluster.status(leader).await;
    for key in ["leader", "term", "voters"] {
        assert_eq!(before[key], after[key], "{key}: {before} vs {after}");
    }
    for i in 0..3 {
        let got = cluster
            .call(i, "GetBorrowedLicenseV1", json!({"borrowId": borrow_id}))
            .await;
        assert_eq!(
            got["result"]["borrowId"],
            borrow_id,
            "node {}: {got}",
            i + 1
        );
    }
    let again = cluster
        .call(leader, "BorrowLicenseV1", borrow_params())
        .await;
    assert!(again["result"]["borrowId"].is_string(), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_peer_credentials_refuses_to_start_unless_insecure() {
    let temp = tempfile::tempdir().expect("temp");
    let binary = licensed_binary().unwrap_or_else(|e| panic!("{e}"));
    let specs: Vec<NodeSpec> = (1..=2)
        .map(|id| {
            NodeSpec::new(id, &binary, temp.path().join(format!("n{id}")))
                .expect("ports")
                .cluster_secret(None)
        })
        .collect();
    let peers = peers_arg(&specs);
    let output = std::process::Command::new(&binary)
        .args([
            "--node-id",
            "1",
            "--peers",
            &peers,
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--raft-listen")
        .arg(specs[0].raft_addr().to_string())
        .arg("--data-dir")
        .arg(temp.path().join("n1"))
        .env_remove("LICENSED_CLUSTER_SECRET")
        .env_remove("LICENSED_INSECURE_PEERS")
        .output()
        .expect("run licensed");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--cluster-secret-file"), "{stderr}");
    assert!(stderr.contains("--insecure-peers"), "{stderr}");

    // With --insecure-peers the same cluster forms, and says so in its log.
    let mut nodes: Vec<NodeProcess> = specs
        .into_iter()
        .map(|spec| {
            let spec = spec.args(["--peers", &peers, "--insecure-peers"]);
            NodeProcess::new(spec).expect("node")
        })
        .collect();
    for result in futures::future::join_all(nodes.iter_mut().map(NodeProcess::start)).await {
        result.expect("an insecure cluster starts");
    }
    let log = std::fs::read_to_string(nodes[0].log_path()).expect("log");
    assert!(log.contains("--insecure-peers"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_peer_certificates_a_cluster_forms_and_a_process_without_one_is_refused() {
    let temp = tempfile::tempdir().expect("temp");
    let certs = temp.path().join("certs");
    let pool = temp.path().join("pool.json");
    std::fs::write(&pool, POOL).expect("pool");
    let binary = licensed_binary().unwrap_or_else(|e| panic!("{e}"));
    let specs: Vec<NodeSpec> = (1..=3u64)
        .map(|id| {
            make_cert(&certs, &format!("node-{id}"), &["127.0.0.1", "localhost"]);
            let file = |suffix: &str| {
                certs
                    .join(format!("node-{id}{suffix}"))
                    .display()
                    .to_string()
            };
            NodeSpec::new(id, &binary, temp.path().join(format!("n{id}")))
                .expect("ports")
                .cluster_secret(None)
                .arg("--pool")
                .arg(pool.display().to_string())
                .args([
                    "--peer-tls-cert",
                    &file(".pem"),
                    "--peer-tls-key",
                    &file("-key.pem"),
                ])
                .arg("--peer-tls-ca")
                .arg(certs.join("ca.pem").display().to_string())
                .env("RUST_LOG", "warn")
        })
        .collect();
    let peers = peers_arg(&specs);
    let mut nodes: Vec<NodeProcess> = specs
        .into_iter()
        .map(|spec| NodeProcess::new(spec.args(["--peers", &peers])).expect("node"))
        .collect();
    for result in futures::future::join_all(nodes.iter_mut().map(NodeProcess::start)).await {
        result.expect("a mutual-TLS cluster starts");
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    for node in &nodes {
        let answer: Value = client
            .post(format!("{}/licenses", node.api_url()))
            .json(&json!({"jsonrpc": "2.0", "method": "BorrowLicenseV1", "params": borrow_params(), "id": 1}))
            .send()
            .await
            .expect("borrow")
            .json()
            .await
            .expect("json");
        assert!(answer["result"]["borrowId"].is_string(), "{answer}");
    }

    // A client that trusts the CA but has no certificate reaches the port, not the routes.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.join("ca.pem")).unwrap()).unwrap();
    let anonymous = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca.clone())
        .build()
        .unwrap();
    let base = format!("https://{}", nodes[0].spec().raft_addr());
    for path in PEER_ROUTES {
        let response = anonymous
            .post(format!("{base}{path}"))
            .body("x")
            .send()
            .await
            .expect("TLS without a client certificate connects");
        assert_eq!(response.status().as_u16(), 401, "{path}");
    }
    // A certificate from another CA does not even complete the handshake.
    let other = temp.path().join("other");
    make_cert(&other, "node-9", &["127.0.0.1"]);
    let mut pem = std::fs::read(other.join("node-9.pem")).unwrap();
    pem.extend(std::fs::read(other.join("node-9-key.pem")).unwrap());
    let stranger = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let refused = stranger
        .post(format!("{base}/raft/vote"))
        .body("x")
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");
    // Plain HTTP on the peer port gets nowhere either.
    let plain = client
        .post(format!("http://{}/raft/vote", nodes[0].spec().raft_addr()))
        .body("x")
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
}
