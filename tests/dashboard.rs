//! The Grafana dashboard `deploy/grafana/licensed.json` works against real data: it is well
//! formed (stable uid, a Prometheus `datasource` variable, `instance` and `feature`
//! variables, every panel with a unit and the `${datasource}` data source, rate windows of
//! `$__rate_interval`, ledger series taken as `max` over the nodes, never summed), and after
//! a workload on a 3-node cluster of the real binary, scraped by a real Prometheus, every
//! query of every panel returns data. The same Prometheus evaluates the alert rules of
//! `deploy/prometheus/alerts.yml` on that data: all of them evaluate without error, and the
//! license the workload exhausted shows up in `LicensedLicenseExhausted`.

mod common;
mod promserver;

use std::time::{Duration, Instant};

use common::Cluster;
use promserver::{package_path, Config, Prometheus};
use serde_json::{json, Value};

const DASHBOARD: &str = "deploy/grafana/licensed.json";
const RULES: &str = "deploy/prometheus/alerts.yml";

/// One license with seats to spare, one with a single seat (refusals with code 32).
const POOL: &str = r#"[
  {"feature":"MVTec_HALCON","uuid":"dash-many","version":"26.05","edition":"Steady","modules":"fc","count":100000},
  {"feature":"MVTec_HDevelop","uuid":"dash-one","version":"26.05","edition":"Steady","modules":"fc","count":1}
]"#;

/// How long the workload runs (Prometheus scrapes every second meanwhile).
const WORKLOAD: Duration = Duration::from_secs(20);
/// Bound on waiting for Prometheus to scrape the nodes (a slow machine).
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(180);

/// Series from the replicated ledger: the same on every node, never to be summed.
const LEDGER_METRICS: [&str; 6] = [
    "licensed_borrows_total",
    "licensed_borrow_rejections_total",
    "licensed_returns_total",
    "licensed_borrow_replays_total",
    "licensed_license_",
    "licensed_feature_",
];

fn dashboard() -> Value {
    let path = package_path(DASHBOARD);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

/// Every panel that is not a row, rows' own panels included, in order.
fn panels(dashboard: &Value) -> Vec<Value> {
    fn collect(list: &Value, out: &mut Vec<Value>) {
        for panel in list.as_array().into_iter().flatten() {
            if panel["type"] == "row" {
                collect(&panel["panels"], out);
            } else {
                out.push(panel.clone());
            }
        }
    }
    let mut out = Vec::new();
    collect(&dashboard["panels"], &mut out);
    out
}

/// The titles of the rows, in order.
fn rows(dashboard: &Value) -> Vec<String> {
    dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|panel| panel["type"] == "row")
        .map(|row| row["title"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The `expr` of every target of `panel`.
fn exprs(panel: &Value) -> Vec<String> {
    panel["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|target| target["expr"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A data source reference to the `datasource` variable (the string or the object form).
fn is_datasource_variable(reference: &Value) -> bool {
    match reference {
        Value::String(text) => text == "${datasource}" || text == "$datasource",
        Value::Object(_) => {
            matches!(
                reference["uid"].as_str(),
                Some("${datasource}" | "$datasource")
            )
        }
        _ => false,
    }
}

fn variable<'a>(dashboard: &'a Value, name: &str) -> Option<&'a Value> {
    dashboard["templating"]["list"]
        .as_array()?
        .iter()
        .find(|variable| variable["name"] == name)
}

/// The query of a query variable, in the string or the object form.
fn variable_query(variable: &Value) -> String {
    match &variable["query"] {
        Value::String(text) => text.clone(),
        other => other["query"].as_str().unwrap_or_default().to_string(),
    }
}

/// What is wrong with the label selectors and range windows of `expr`.
fn expr_problems(expr: &str) -> Vec<String> {
    let mut problems = Vec::new();
    // Every selector is limited to the nodes in view.
    for selector in expr.split('{').skip(1) {
        let selector = selector.split('}').next().unwrap_or_default();
        if !selector.contains(r#"instance=~"$instance""#) {
            problems.push(format!(
                "selector {{{selector}}} without instance=~\"$instance\""
            ));
        }
    }
    // rate() and irate() over $__rate_interval.
    for (at, _) in expr.match_indices("rate(") {
        let window = expr[at..].split('[').nth(1).unwrap_or_default();
        if !window.starts_with("$__rate_interval]") {
            problems.push(format!(
                "a rate window [{window} instead of [$__rate_interval]"
            ));
        }
    }
    if LEDGER_METRICS.iter().any(|name| expr.contains(name))
        && (expr.contains("sum(") || expr.contains("sum by") || !expr.contains("max"))
    {
        problems.push("ledger series not taken as max over the nodes".into());
    }
    problems
}

#[test]
fn the_dashboard_is_well_formed() {
    let dashboard = dashboard();
    let mut problems = Vec::new();
    if dashboard["uid"] != "licensed-overview" {
        problems.push(format!(
            "uid {} instead of licensed-overview",
            dashboard["uid"]
        ));
    }
    if dashboard["title"] != "licensed" {
        problems.push(format!("title {}", dashboard["title"]));
    }
    if dashboard["schemaVersion"].as_u64().is_none_or(|v| v < 36) {
        problems.push(format!("schemaVersion {}", dashboard["schemaVersion"]));
    }
    match variable(&dashboard, "datasource") {
        Some(datasource) if datasource["type"] == "datasource" => {
            if datasource["query"] != "prometheus" {
                problems.push(format!(
                    "the datasource variable queries {} instead of prometheus",
                    datasource["query"]
                ));
            }
        }
        _ => problems.push("no datasource variable of type datasource".into()),
    }
    match variable(&dashboard, "instance") {
        Some(instance) => {
            if instance["type"] != "query"
                || variable_query(instance) != "label_values(licensed_raft_term, instance)"
                || instance["multi"] != true
                || instance["includeAll"] != true
                || instance["allValue"] != ".*"
                || !is_datasource_variable(&instance["datasource"])
            {
                problems.push(format!("the instance variable: {instance}"));
            }
        }
        None => problems.push("no instance variable".into()),
    }
    if let Some(feature) = variable(&dashboard, "feature") {
        if variable_query(feature) != "label_values(licensed_feature_seats, feature)"
            || feature["includeAll"] != true
            || feature["allValue"] != ".*"
        {
            problems.push(format!("the feature variable: {feature}"));
        }
    }
    let sections = rows(&dashboard);
    for section in ["Overview", "Borrows", "Requests", "Raft", "Node resources"] {
        if !sections.iter().any(|row| row == section) {
            problems.push(format!("no row {section:?}"));
        }
    }

    let panels = panels(&dashboard);
    let mut ids = std::collections::BTreeSet::new();
    for panel in &panels {
        let title = panel["title"].as_str().unwrap_or_default();
        let mut problem = |what: String| problems.push(format!("panel {title:?}: {what}"));
        if title.is_empty() {
            problem("no title".into());
        }
        if !ids.insert(panel["id"].to_string()) {
            problem(format!("id {} used twice", panel["id"]));
        }
        if !is_datasource_variable(&panel["datasource"]) {
            problem(format!(
                "data source {} is not ${{datasource}}",
                panel["datasource"]
            ));
        }
        let unit = panel["fieldConfig"]["defaults"]["unit"].as_str();
        if unit.is_none_or(str::is_empty) {
            problem("no fieldConfig.defaults.unit".into());
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            problem("no targets".into());
        }
        for target in &targets {
            let datasource = &target["datasource"];
            if !datasource.is_null() && !is_datasource_variable(datasource) {
                problem(format!("a target's data source {datasource}"));
            }
            let expr = target["expr"].as_str().unwrap_or_default();
            if expr.trim().is_empty() {
                problem("a target without expr".into());
            }
            for what in expr_problems(expr) {
                problem(format!("{what} in {expr}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) in {DASHBOARD}:\n{}",
        problems.len(),
        problems.join("\n")
    );
    println!("{} panels in rows {sections:?}", panels.len());
}

/// `expr` as Grafana sends it with every variable at "All" and a 1 s scrape interval.
fn substitute(expr: &str) -> String {
    [
        ("${instance}", ".*"),
        ("$instance", ".*"),
        ("${feature}", ".*"),
        ("$feature", ".*"),
        ("${__rate_interval}", "30s"),
        ("$__rate_interval", "30s"),
        ("${__interval}", "5s"),
        ("$__interval", "5s"),
        ("${__range}", "1m"),
        ("$__range", "1m"),
    ]
    .iter()
    .fold(expr.to_string(), |expr, (variable, value)| {
        expr.replace(variable, value)
    })
}

fn borrow(uuid: &str, host: u64, from: i64, until: i64) -> Value {
    let feature = if uuid == "dash-one" {
        "MVTec_HDevelop"
    } else {
        "MVTec_HALCON"
    };
    json!({"feature": feature, "uuid": uuid, "hostId": format!("MAC:{host:012X}"),
           "validFrom": common::at(from), "validUntil": common::at(until)})
}

/// What a worker's calls came to.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    granted: u64,
    refused: u64,
    returned: u64,
    replayed: u64,
    reads: u64,
    batches: u64,
    other_errors: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.granted += other.granted;
        self.refused += other.refused;
        self.returned += other.returned;
        self.replayed += other.replayed;
        self.reads += other.reads;
        self.batches += other.batches;
        self.other_errors += other.other_errors;
    }
}

/// Borrows (current and upcoming), refusals with 32 on the one-seat license, returns,
/// replays of a requestId, reads and batches, all through node `node` (followers forward
/// the writes) until `until`.
async fn worker(cluster: &Cluster, node: usize, until: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut round: u64 = 0;
    let host = |round: u64, kind: u64| ((node as u64 + 1) << 36) | (kind << 32) | round;
    while Instant::now() < until {
        round += 1;
        // A current borrow and an upcoming one, on the license with seats to spare.
        let current = cluster
            .call(
                node,
                "BorrowLicenseV1",
                borrow("dash-many", host(round, 0), -60, 3_600),
            )
            .await;
        let upcoming_start = 86_400 + round as i64;
        let upcoming = cluster
            .call(
                node,
                "BorrowLicenseV1",
                borrow(
                    "dash-many",
                    host(round, 1),
                    upcoming_start,
                    upcoming_start + 3_600,
                ),
            )
            .await;
        for answer in [&current, &upcoming] {
            if answer["result"]["borrowId"].is_string() {
                tally.granted += 1;
            } else {
                tally.other_errors += 1;
            }
        }
        // The single seat: granted once in the whole test, refused with 32 after that.
        let single = cluster
            .call(
                node,
                "BorrowLicenseV1",
                borrow("dash-one", host(round, 2), -60, 3_600),
            )
            .await;
        match (&single["result"], single["error"]["code"].as_i64()) {
            (Value::Object(_), _) => tally.granted += 1,
            (_, Some(32)) => tally.refused += 1,
            _ => tally.other_errors += 1,
        }
        // Reads: the current borrow, and now and then the listing.
        if let Some(id) = current["result"]["borrowId"].as_str() {
            let read = cluster
                .call(node, "GetBorrowedLicenseV1", json!({"borrowId": id}))
                .await;
            if read.get("result").is_some() {
                tally.reads += 1;
            } else {
                tally.other_errors += 1;
            }
        }
        if round % 5 == 0 {
            let listing = cluster.call(node, "ListLicensesV1", json!([])).await;
            if listing.get("result").is_some() {
                tally.reads += 1;
            } else {
                tally.other_errors += 1;
            }
        }
        // Every other upcoming borrow is returned.
        if round % 2 == 0 {
            let id = &upcoming["result"]["borrowId"];
            let token = &upcoming["result"]["returnToken"];
            if id.is_string() && token.is_string() {
                let params = json!({"borrowId": id, "returnToken": token});
                let answer = cluster.call(node, "ReturnLicenseV1", params).await;
                if answer.get("result").is_some() {
                    tally.returned += 1;
                } else {
                    tally.other_errors += 1;
                }
            }
        }
        if round % 5 == 0 {
            // A borrow sent twice with one requestId, through this node and the next.
            let mut with_id = borrow("dash-many", host(round, 3), 172_800, 176_400);
            with_id["requestId"] = json!(format!("dashboard-{node}-{round}"));
            for via in [node, (node + 1) % 3] {
                let answer = cluster.call(via, "BorrowLicenseV1", with_id.clone()).await;
                if !answer["result"]["borrowId"].is_string() {
                    tally.other_errors += 1;
                }
            }
            tally.granted += 1;
            tally.replayed += 1;
            // A batch of three calls in one body, and a call with bad parameters.
            let batch = json!([
                {"jsonrpc": "2.0", "method": "ListLicensesV1", "params": [], "id": 1},
                {"jsonrpc": "2.0", "method": "GetBorrowedLicenseV1",
                 "params": {"borrowId": current["result"]["borrowId"]}, "id": 2},
                {"jsonrpc": "2.0", "method": "BorrowLicenseV1",
                 "params": borrow("dash-many", host(round, 4), -60, 1_800), "id": 3},
            ]);
            match cluster.try_call(node, &batch).await {
                Ok(Value::Array(answers)) if answers.len() == 3 => tally.batches += 1,
                _ => tally.other_errors += 1,
            }
            let bad = cluster
                .call(node, "BorrowLicenseV1", json!({"feature": "MVTec_HALCON"}))
                .await;
            if bad["error"]["code"] != -32602 {
                tally.other_errors += 1;
            }
        }
    }
    tally
}

/// Waits until `expr` yields one sample of at least `at_least`.
async fn wait_for(prometheus: &Prometheus, expr: &str, at_least: f64, what: &str) {
    let deadline = Instant::now() + SCRAPE_TIMEOUT;
    loop {
        if prometheus.scalar(expr).await.is_some_and(|v| v >= at_least) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: `{expr}` not >= {at_least} within {SCRAPE_TIMEOUT:?}; last answer {:?}\n{}",
            prometheus.query(expr).await,
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_panel_query_returns_data_from_a_live_cluster() {
    let dashboard = dashboard();
    let cluster = Cluster::start(3, POOL, &["--snapshot-every", "200"]).await;
    cluster.leader().await;
    let targets: Vec<String> = (0..3)
        .map(|i| {
            let url = cluster.api_url(i);
            url.trim_start_matches("http://").to_string()
        })
        .collect();
    let prometheus = Prometheus::start(&Config {
        job: "licensed",
        targets,
        interval_secs: 1,
        rule_files: vec![package_path(RULES)],
    })
    .await;
    wait_for(
        &prometheus,
        r#"count(up{job="licensed"} == 1)"#,
        3.0,
        "all three nodes scraped",
    )
    .await;

    // The workload, through every node at once.
    let until = Instant::now() + WORKLOAD;
    let tallies = futures::future::join_all((0..3).map(|node| worker(&cluster, node, until))).await;
    let mut tally = Tally::default();
    for one in tallies {
        tally.add(one);
    }
    println!("workload: {tally:?}");
    assert!(
        tally.granted > 0
            && tally.refused > 0
            && tally.returned > 0
            && tally.replayed > 0
            && tally.reads > 0
            && tally.batches > 0,
        "the workload did not do all it should: {tally:?}"
    );

    // Enough samples of every node within the 30 s rate window, the workload's end included.
    wait_for(
        &prometheus,
        "min(count_over_time(licensed_raft_term[30s]))",
        10.0,
        "ten scrapes of every node in the rate window",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut failures = Vec::new();
    let mut queries = 0;
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().unwrap_or_default().to_string();
        for expr in exprs(&panel) {
            let query = substitute(&expr);
            queries += 1;
            match prometheus.query(&query).await {
                Ok(answer)
                    if answer["status"] == "success"
                        && answer["data"]["result"]
                            .as_array()
                            .is_some_and(|result| !result.is_empty()) => {}
                Ok(answer) => failures.push(format!("{title:?}: {query}\n    -> {answer}")),
                Err(error) => failures.push(format!("{title:?}: {query}\n    -> {error}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {queries} panel queries returned no data:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("{queries} panel queries, all with data");
    for expr in [
        "sum(licensed_raft_snapshots_built_total)",
        r#"sum(licensed_forward_batches_total{outcome="ok"})"#,
        "sum(licensed_read_index_rounds_total)",
        "sum(licensed_raft_proposals_committed_total)",
    ] {
        println!("{expr} = {:?}", prometheus.scalar(expr).await);
    }

    // The alert rules, evaluated every second on the same data.
    let rules = prometheus
        .get("/api/v1/rules", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut unhealthy = Vec::new();
    let mut evaluated = 0;
    for group in rules["data"]["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            evaluated += 1;
            if rule["health"] != "ok" {
                unhealthy.push(format!(
                    "{}: health {}, {}",
                    rule["name"], rule["health"], rule["lastError"]
                ));
            }
        }
    }
    assert!(evaluated > 0, "Prometheus loaded no alert rules: {rules}");
    assert!(
        unhealthy.is_empty(),
        "alert rules that fail on real data:\n{}",
        unhealthy.join("\n")
    );
    // The one-seat license is full and refuses: its alert is pending (it fires after 5 min).
    let alerts = prometheus
        .get("/api/v1/alerts", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let exhausted: Vec<&Value> = alerts["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|alert| alert["labels"]["alertname"] == "LicensedLicenseExhausted")
        .collect();
    assert!(
        exhausted.len() == 1
            && exhausted[0]["labels"]["uuid"] == "dash-one"
            && exhausted[0]["labels"]["feature"] == "MVTec_HDevelop",
        "LicensedLicenseExhausted should be active for dash-one only: {alerts}"
    );
    println!("{evaluated} alert rules evaluate without error; dash-one is exhausted");
}
