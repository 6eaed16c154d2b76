//! The operator's alerting rules, `deploy/prometheus/alerts.yml`: `promtool check rules`
//! accepts them, their unit tests (`alerts_test.yml`, run by `promtool test rules`) pass,
//! Prometheus itself loads every alert with a severity, a summary, a description and a
//! one-line runbook, every alert the operator documentation promises is there, and the unit
//! tests make every alert fire in one case and stay silent in another.

mod promserver;

use std::collections::BTreeMap;
use std::process::Command;

use promserver::{package_path, Config, Prometheus};
use serde_json::Value;

const RULES: &str = "deploy/prometheus/alerts.yml";
const RULE_TESTS: &str = "deploy/prometheus/alerts_test.yml";

/// The alerts the README documents; more may exist.
const REQUIRED: [&str; 10] = [
    "LicensedNoLeader",
    "LicensedMembersMissing",
    "LicensedFrequentLeaderChanges",
    "LicensedProposalFailures",
    "LicensedSlowFsync",
    "LicensedApplyLag",
    "LicensedInternalErrors",
    "LicensedLicenseExhausted",
    "LicensedClockOffset",
    "LicensedInstanceDown",
];

/// Runs `promtool` with `args`; panics with its output unless it succeeds.
fn promtool(args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("promtool (Debian package prometheus) must be installed: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool {} failed:\n{text}",
        args.join(" ")
    );
    text
}

#[test]
fn promtool_accepts_the_rules_and_their_unit_tests_pass() {
    let rules = package_path(RULES).display().to_string();
    let tests = package_path(RULE_TESTS).display().to_string();
    let checked = promtool(&["check", "rules", &rules]);
    assert!(
        checked.contains("SUCCESS"),
        "promtool check rules: {checked}"
    );
    let tested = promtool(&["test", "rules", &tests]);
    assert!(tested.contains("SUCCESS"), "promtool test rules: {tested}");
}

/// Unit test cases by alert name: (cases where it fires, cases where it must not).
///
/// Read from the text of `alerts_test.yml` (no YAML parser among the dependencies): every
/// `alertname:` line is followed by its `exp_alerts:`, either `[]` (silent) or a list whose
/// first item is `- exp_labels:` (fires).
fn unit_test_cases(text: &str) -> BTreeMap<String, (usize, usize)> {
    let mut cases: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line.strip_prefix("alertname:") else {
            continue;
        };
        let name = name.trim().to_string();
        let mut rest = lines[i + 1..]
            .iter()
            .filter(|line| !line.is_empty() && !line.starts_with('#'));
        let expected = rest.next().copied().unwrap_or_default();
        let entry = cases.entry(name.clone()).or_default();
        match expected.strip_prefix("exp_alerts:").map(str::trim) {
            Some("[]") => entry.1 += 1,
            Some("") => {
                let first = rest.next().copied().unwrap_or_default();
                assert!(
                    first.starts_with("- exp_labels:"),
                    "{RULE_TESTS}: the case of {name} lists an alert without exp_labels: {first:?}"
                );
                entry.0 += 1;
            }
            _ => panic!(
                "{RULE_TESTS}: `alertname: {name}` is not followed by `exp_alerts:` but {expected:?}"
            ),
        }
    }
    cases
}

/// The alerting rules as Prometheus loaded them (`/api/v1/rules`), by group.
async fn loaded_rules() -> Vec<(String, Value)> {
    let prometheus = Prometheus::start(&Config {
        job: "licensed",
        targets: Vec::new(),
        interval_secs: 15,
        rule_files: vec![package_path(RULES)],
    })
    .await;
    let answer = prometheus
        .get("/api/v1/rules", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", prometheus.log()));
    assert_eq!(answer["status"], "success", "/api/v1/rules: {answer}");
    let groups = answer["data"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    groups
        .into_iter()
        .flat_map(|group| {
            let name = group["name"].as_str().unwrap_or_default().to_string();
            let rules = group["rules"].as_array().cloned().unwrap_or_default();
            rules.into_iter().map(move |rule| (name.clone(), rule))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_is_documented_and_unit_tested_both_ways() {
    let rules = loaded_rules().await;
    assert!(!rules.is_empty(), "Prometheus loaded no rule from {RULES}");

    let mut problems = Vec::new();
    let mut names = Vec::new();
    for (group, rule) in &rules {
        let name = rule["name"].as_str().unwrap_or_default().to_string();
        let mut problem = |what: String| problems.push(format!("{name}: {what}"));
        if group != "licensed" {
            problem(format!("in group {group:?}, not \"licensed\""));
        }
        if rule["type"] != "alerting" {
            problem(format!("a {} rule, not an alert", rule["type"]));
            continue;
        }
        if !name.starts_with("Licensed") {
            problem("the name does not start with Licensed".into());
        }
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        if !matches!(severity, "critical" | "warning") {
            problem(format!("severity {severity:?}, not critical or warning"));
        }
        if rule["duration"].as_f64().is_none_or(|secs| secs > 3600.0) {
            problem(format!(
                "`for` of {} s: missing or over an hour",
                rule["duration"]
            ));
        }
        for annotation in ["summary", "description", "runbook"] {
            let text = rule["annotations"][annotation].as_str().unwrap_or_default();
            if text.trim().is_empty() {
                problem(format!("no {annotation} annotation"));
            }
        }
        let runbook = rule["annotations"]["runbook"].as_str().unwrap_or_default();
        if runbook.contains('\n') {
            problem("the runbook is more than one line".into());
        }
        names.push(name);
    }
    for required in REQUIRED {
        if !names.iter().any(|name| name == required) {
            problems.push(format!("{required}: missing from {RULES}"));
        }
    }

    let text = std::fs::read_to_string(package_path(RULE_TESTS)).expect("read the unit tests");
    let cases = unit_test_cases(&text);
    for name in &names {
        let (fires, silent) = cases.get(name).copied().unwrap_or_default();
        if fires == 0 {
            problems.push(format!("{name}: no unit test case where it fires"));
        }
        if silent == 0 {
            problems.push(format!(
                "{name}: no unit test case where it stays silent (exp_alerts: [])"
            ));
        }
    }
    // promtool passes a case of a misspelt alert that expects nothing: catch those here.
    for tested in cases.keys() {
        if !names.contains(tested) {
            problems.push(format!(
                "{RULE_TESTS} tests {tested}, which no rule defines"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) with the alerts:\n{}",
        problems.len(),
        problems.join("\n")
    );
    println!(
        "{} alerts, each with a runbook and unit tests both ways: {}",
        names.len(),
        names.join(", ")
    );
}
