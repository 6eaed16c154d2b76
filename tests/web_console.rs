//! The web console (`/ui`) against a real 3-node cluster: its assets and security headers,
//! the methods it needs beyond the Borrow API (`WhoAmIV1`, `GetClusterStatusV1`,
//! `TransferLeadershipV1`), and the pages themselves in a real headless Chromium
//! (`tests/web_console.py`: log in, see the licenses and a borrow made through another
//! node on the timeline, return it, block a host, hand leadership over, a refusal's
//! reason, a read-only key without actions, no request leaving the serving node).
//! The browser test needs Debian's `chromium` and `chromium-driver` and PyPI `selenium`
//! (`.ci/run` installs them); its screenshots land in `<target>/tmp/web-console/`.

mod common;

use std::time::Duration;

use common::Cluster;
use serde_json::{json, Value};

const ADMIN: &str = "admin-token-of-the-console-tests";

/// Three licenses: one with seats to spare, one small and busy, one near its end.
fn pool() -> String {
    let near_end = (chrono::Utc::now() + chrono::Duration::days(40)).format("%Y-%m-%dT%H:%M:%SZ");
    format!(
        r#"[
  {{"feature":"MVTec_HALCON","uuid":"halcon-1","version":"26.05","edition":"Steady","modules":"fcbdo","count":5}},
  {{"feature":"MVTec_HDevelop","uuid":"hdevelop-1","version":"26.05","edition":"Progress","modules":"fc","count":2}},
  {{"feature":"MVTec_HALCON","uuid":"halcon-2","version":"25.11","edition":"Steady","modules":"fc","count":3,"validUntil":"{near_end}"}}
]"#
    )
}

/// A JSON-RPC call to node `i` with a bearer token; the whole response.
async fn call(cluster: &Cluster, i: usize, token: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
    reqwest::Client::new()
        .post(format!("{}/licenses", cluster.api_url(i)))
        .bearer_auth(token)
        .json(&body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("an answer")
        .json()
        .await
        .expect("JSON")
}

fn result(answer: &Value) -> &Value {
    answer
        .get("result")
        .unwrap_or_else(|| panic!("expected a result, got {answer}"))
}

fn at(hours: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::hours(hours))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Current and upcoming borrows that overlap, and a refusal, for the pages to show.
async fn seed(cluster: &Cluster) {
    let borrows = [
        (
            "MVTec_HALCON",
            "halcon-1",
            "MAC:00163E5A0001",
            None,
            8,
            "build server",
        ),
        (
            "MVTec_HALCON",
            "halcon-1",
            "MAC:00163E5A0002",
            None,
            30,
            "Jane Doe",
        ),
        (
            "MVTec_HALCON",
            "halcon-1",
            "CM:3-1234567890",
            Some(4),
            48,
            "field laptop",
        ),
        (
            "MVTec_HDevelop",
            "hdevelop-1",
            "MAC:00163E5A0003",
            None,
            10,
            "Max Muster",
        ),
        (
            "MVTec_HDevelop",
            "hdevelop-1",
            "MAC:00163E5A0004",
            Some(2),
            26,
            "night shift",
        ),
        (
            "MVTec_HDevelop",
            "hdevelop-1",
            "MAC:00163E5A0005",
            Some(12),
            40,
            "lab PC 2",
        ),
        (
            "MVTec_HALCON",
            "halcon-2",
            "MAC:00163E5A0006",
            None,
            20,
            "training rig",
        ),
    ];
    for (i, (feature, uuid, host, from, until, user)) in borrows.into_iter().enumerate() {
        let mut params = json!({"feature": feature, "uuid": uuid, "hostId": host,
            "validUntil": at(until), "userInfo": user});
        if let Some(from) = from {
            params["validFrom"] = json!(at(from));
        }
        let answer = call(cluster, i % 3, ADMIN, "BorrowLicenseV1", params).await;
        result(&answer);
    }
    // Both HDevelop seats are taken from +2 h to +10 h: this one is refused (32).
    let refused = call(
        cluster,
        1,
        ADMIN,
        "BorrowLicenseV1",
        json!({"feature": "MVTec_HDevelop", "uuid": "hdevelop-1", "hostId": "MAC:00163E5A0007",
            "validUntil": at(12)}),
    )
    .await;
    assert_eq!(refused["error"]["code"], 32, "{refused}");
}

async fn create_key(cluster: &Cluster, name: &str, scope: &str) -> String {
    let answer = call(
        cluster,
        0,
        ADMIN,
        "CreateApiKeyV1",
        json!({"name": name, "scope": scope}),
    )
    .await;
    result(&answer)["key"]
        .as_str()
        .expect("the key text")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let cluster = Cluster::start(3, &pool(), &["--admin-token", ADMIN]).await;
    seed(&cluster).await;
    let read_key = create_key(&cluster, "dashboards", "read").await;
    let admin_key = create_key(&cluster, "console operator", "admin").await;
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-console");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("screenshot directory");
    // The page comes from a follower; borrows are made through another node.
    let leader = cluster.leader().await;
    let mut order: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    order.push(leader);
    let nodes: Vec<String> = order.iter().map(|i| cluster.api_url(*i)).collect();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web_console.py");
    let output = tokio::process::Command::new("python3")
        .arg(&script)
        .env("CONSOLE_NODES", nodes.join(","))
        .env("CONSOLE_ADMIN", ADMIN)
        .env("CONSOLE_READ_KEY", &read_key)
        .env("CONSOLE_ADMIN_KEY", &admin_key)
        .env("CONSOLE_OUT", &out)
        .output()
        .await
        .expect("run python3 (the browser test needs python3 with selenium)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the browser test failed ({}):\n{stdout}\n{stderr}\nscreenshots in {}",
        output.status,
        out.display()
    );
    for page in [
        "login",
        "overview",
        "licenses",
        "borrow-detail",
        "borrows",
        "audit",
        "hosts",
        "cluster",
        "refused",
        "read-only",
        "phone-licenses",
        "phone-overview",
    ] {
        let path = out.join(format!("{page}.png"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{} is a real screenshot",
            path.display()
        );
    }
    println!("screenshots in {}", out.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_serves_the_console_with_its_security_headers() {
    let cluster = Cluster::start(3, &pool(), &["--admin-token", ADMIN]).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    for i in 0..3 {
        let base = cluster.api_url(i);
        let page = http.get(format!("{base}/ui")).send().await.expect("/ui");
        assert_eq!(page.status().as_u16(), 200);
        let csp = page.headers()["content-security-policy"]
            .to_str()
            .expect("text")
            .to_string();
        assert!(csp.contains("default-src 'self'") && csp.contains("connect-src 'self'"));
        assert_eq!(page.headers()["x-content-type-options"], "nosniff");
        let html = page.text().await.expect("html");
        assert!(html.contains("/ui/assets/app.js"), "{html}");
        let script = http
            .get(format!("{base}/ui/assets/app.js"))
            .send()
            .await
            .expect("app.js");
        assert_eq!(script.status().as_u16(), 200);
        assert!(script.headers()["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("text/javascript")));
        let missing = http
            .get(format!("{base}/ui/assets/nothing.js"))
            .send()
            .await
            .expect("answer");
        assert_eq!(missing.status().as_u16(), 404);
        let root = http.get(format!("{base}/")).send().await.expect("/");
        assert!(root.status().is_redirection());
        assert_eq!(root.headers()["location"], "/ui");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_am_i_cluster_status_and_leadership_transfer_through_any_node() {
    let cluster = Cluster::start(3, &pool(), &["--admin-token", ADMIN]).await;
    let read_key = create_key(&cluster, "dashboards", "read").await;

    let admin = call(&cluster, 1, ADMIN, "WhoAmIV1", json!({})).await;
    assert_eq!(result(&admin)["credential"], "admin-token");
    assert_eq!(result(&admin)["scope"], "admin");
    assert_eq!(result(&admin)["node"], 2);
    let reader = call(&cluster, 2, &read_key, "WhoAmIV1", json!([])).await;
    assert_eq!(result(&reader)["credential"], "api-key");
    assert_eq!(result(&reader)["scope"], "read");
    assert_eq!(result(&reader)["name"], "dashboards");
    assert_eq!(result(&reader)["keyId"], read_key[3..19]);
    let stranger = call(
        &cluster,
        0,
        "lk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "WhoAmIV1",
        json!({}),
    )
    .await;
    assert_eq!(stranger["error"]["code"], 38, "{stranger}");

    // A follower answers with its own view and the leader's, which has every member's lag.
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let views = call(
        &cluster,
        follower,
        &read_key,
        "GetClusterStatusV1",
        json!({}),
    )
    .await;
    let views = result(&views);
    assert_eq!(views["servedBy"], follower as u64 + 1);
    assert_eq!(views["node"]["node"], follower as u64 + 1);
    assert_eq!(views["leader"]["node"], leader as u64 + 1);
    let members = views["leader"]["members"].as_array().expect("members");
    assert_eq!(members.len(), 3);
    assert!(members.iter().all(|m| m["lag"].is_u64()), "{members:?}");

    // A read key may not hand leadership over; an unknown node is not a voter.
    let target = (leader + 2) % 3;
    let forbidden = call(
        &cluster,
        follower,
        &read_key,
        "TransferLeadershipV1",
        json!({"to": target + 1}),
    )
    .await;
    assert_eq!(forbidden["error"]["code"], 39, "{forbidden}");
    let unknown = call(
        &cluster,
        follower,
        ADMIN,
        "TransferLeadershipV1",
        json!({"to": 9}),
    )
    .await;
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
    assert!(unknown["error"]["data"]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("not a voter")));
    let missing = call(&cluster, follower, ADMIN, "TransferLeadershipV1", json!({})).await;
    assert_eq!(missing["error"]["code"], -32602, "{missing}");

    // Through a follower that is not the target: passed on to the leader.
    let moved = call(
        &cluster,
        follower,
        ADMIN,
        "TransferLeadershipV1",
        json!({"to": target + 1}),
    )
    .await;
    assert!(
        result(&moved)["message"]
            .as_str()
            .is_some_and(|m| m.contains("leads")),
        "{moved}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while cluster.leader().await != target {
        assert!(
            std::time::Instant::now() < deadline,
            "node {} leads",
            target + 1
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
