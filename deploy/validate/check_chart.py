#!/usr/bin/env python3
"""Lint and render the licensed Helm chart with the real Helm library (helm-python-sdk,
which binds Helm's Go SDK through ctypes), and check what it renders.

    check_chart.py --chart helm/licensed --deploy deploy --out OUT

For every scenario (deploy/validate/scenarios/*.yaml, values on top of the chart's):
  - `helm lint --strict` with the values, for the oldest and newest Kubernetes checked;
  - values.schema.json (Helm's own validation) and a render;
  - the rendered documents go to OUT/<scenario>/core.yaml (Kubernetes kinds, for
    kubernetes-validate), OUT/<scenario>/monitoring.json (Prometheus Operator kinds, for
    the node check) and OUT/<scenario>/rules.yml (the PrometheusRule's rule file, for
    promtool);
  - assertions about what the server needs (peers list, ports, probes, security, PDB,
    references between objects, and that the dashboard and the alerts are exactly
    deploy/'s files).
Every value set of deploy/validate/refused/*.yaml must be refused, by the schema or by
the chart's own checks, with the message its `# expect:` line names.
Finally the chart is packaged and the package renders the same dashboard and alerts
(the links under files/ are followed into the package).

Exit status 0 when everything holds, 1 otherwise; findings go to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import yaml

import helm_python as helm

RELEASE = "demo"
NAMESPACE = "licensing"
MONITORING_GROUP = "monitoring.coreos.com/"


class Failures:
    def __init__(self) -> None:
        self.items: list[str] = []

    def check(self, condition: bool, where: str, what: str) -> None:
        if not condition:
            self.items.append(f"{where}: {what}")
            print(f"FAIL {where}: {what}")


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def load_values(path: Path) -> dict:
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise SystemExit(f"{path}: not a values mapping")
    return data


def split_documents(rendered: dict[str, str]) -> tuple[list[dict], str]:
    """All rendered objects (without NOTES.txt), and the NOTES text."""
    docs: list[dict] = []
    notes = ""
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            notes = text
            continue
        if not template.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("__template", template)
                docs.append(doc)
    return docs, notes


def strip(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "__template"}


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind]


def check_scenario(
    name: str, values: dict, docs: list[dict], notes: str, deploy: Path, f: Failures
) -> None:
    """What the server and the issue ask of the rendered objects."""
    merged_replicas = int(values.get("replicas", 3))
    w = f"{name}"
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    f.check(len(names) == len(set(names)), w, f"duplicate objects: {names}")
    f.check(bool(notes.strip()), w, "NOTES.txt rendered empty")

    sts_list = by_kind(docs, "StatefulSet")
    f.check(len(sts_list) == 1, w, "exactly one StatefulSet")
    if len(sts_list) != 1:
        return
    sts = sts_list[0]
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    f.check(spec["replicas"] == merged_replicas, w, f"replicas {spec['replicas']} != {merged_replicas}")
    f.check(spec.get("podManagementPolicy") == "Parallel", w, "podManagementPolicy Parallel")
    labels = spec["template"]["metadata"]["labels"]
    for key, value in spec["selector"]["matchLabels"].items():
        f.check(labels.get(key) == value, w, f"pod labels lack selector label {key}")

    headless = [s for s in by_kind(docs, "Service") if s["spec"].get("clusterIP") == "None"]
    clients = [s for s in by_kind(docs, "Service") if s["spec"].get("clusterIP") != "None"]
    f.check(len(headless) == 1 and len(clients) == 1, w, "one headless and one client Service")
    if headless:
        h = headless[0]
        f.check(spec["serviceName"] == h["metadata"]["name"], w, "serviceName is the headless Service")
        f.check(h["spec"].get("publishNotReadyAddresses") is True, w, "headless publishNotReadyAddresses")
        f.check({p["name"] for p in h["spec"]["ports"]} == {"api", "raft"}, w, "headless ports api and raft")
    if clients:
        c = clients[0]
        f.check([p["targetPort"] for p in c["spec"]["ports"]] == ["api"], w, "client Service targets the api port only")
        f.check(not c["spec"].get("publishNotReadyAddresses"), w, "client Service only balances over ready pods")

    containers = pod["containers"]
    f.check(len(containers) == 1, w, "one container")
    ctr = containers[0]
    args = ctr.get("args", [])
    flags = {}
    for arg in args:
        m = re.match(r"^(--[a-z0-9-]+)(?:=(.*))?$", arg)
        if m:
            flags[m.group(1)] = m.group(2)
    env_names = [e["name"] for e in ctr.get("env", [])]
    for arg in args:
        for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", arg):
            # Kubernetes expands $(VAR) only for variables defined earlier in env.
            f.check(var in env_names, w, f"argument {arg!r} uses $({var}), which env does not define")
    f.check(flags.get("--node-id") == "from-hostname", w, "--node-id=from-hostname")
    f.check(flags.get("--data-dir") == "/data", w, "--data-dir=/data")
    f.check(flags.get("--log-format") in ("json", "text"), w, "--log-format")
    f.check("--cluster-secret-file" in flags, w, "--cluster-secret-file")
    f.check("LICENSED_ADMIN_TOKEN" in env_names, w, "LICENSED_ADMIN_TOKEN from a Secret")
    f.check(env_names[:2] == ["POD_NAME", "POD_NAMESPACE"], w, "POD_NAME, POD_NAMESPACE first in env")
    ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
    peers = (flags.get("--peers") or "").split(",")
    f.check(len(peers) == merged_replicas, w, f"--peers has {len(peers)} entries, replicas {merged_replicas}")
    headless_name = spec["serviceName"]
    for i, peer in enumerate(peers):
        expected = re.compile(
            rf"^{i + 1}={re.escape(sts['metadata']['name'])}-{i}\.{re.escape(headless_name)}"
            rf"\.{NAMESPACE}\.svc\.[a-z0-9.-]+:{ports.get('raft')}$"
        )
        f.check(bool(expected.match(peer)), w, f"--peers entry {peer!r} is not id {i + 1} at pod {i}'s Raft address")
    f.check(
        flags.get("--advertise-raft", "").startswith(f"$(POD_NAME).{headless_name}.$(POD_NAMESPACE).svc.")
        and flags.get("--advertise-raft", "").endswith(f":{ports.get('raft')}"),
        w, "--advertise-raft is the pod's headless DNS name and Raft port")
    f.check(
        flags.get("--advertise-api", "").startswith(f"$(POD_NAME).{headless_name}.$(POD_NAMESPACE).svc.")
        and flags.get("--advertise-api", "").endswith(f":{ports.get('api')}"),
        w, "--advertise-api is the pod's headless DNS name and API port")
    f.check(flags.get("--listen", "").endswith(f":{ports.get('api')}"), w, "--listen on the api port")
    f.check(flags.get("--raft-listen", "").endswith(f":{ports.get('raft')}"), w, "--raft-listen on the raft port")

    # Probes.
    tcp_only = bool(values.get("tls", {}).get("clientCA", {}).get("enabled"))
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/healthz")):
        p = ctr.get(probe)
        f.check(p is not None, w, f"{probe} present")
        if p is None:
            continue
        if tcp_only:
            f.check(p.get("tcpSocket", {}).get("port") == "api", w, f"{probe} on the api port (TCP)")
        else:
            f.check(p.get("httpGet", {}).get("path") == path, w, f"{probe} on {path}")
            scheme = "HTTPS" if values.get("tls", {}).get("enabled") else "HTTP"
            f.check(p.get("httpGet", {}).get("scheme") == scheme, w, f"{probe} uses {scheme}")
    startup = ctr.get("startupProbe") or {}
    f.check(startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3) >= 300, w,
            "startup probe allows at least 5 minutes (snapshot restore)")
    f.check(pod.get("terminationGracePeriodSeconds", 30) >= 30, w, "terminationGracePeriodSeconds >= 30")

    # Security.
    psc = pod.get("securityContext", {})
    csc = ctr.get("securityContext", {})
    f.check(psc.get("runAsNonRoot") is True or csc.get("runAsNonRoot") is True, w, "runAsNonRoot")
    f.check(csc.get("readOnlyRootFilesystem") is True, w, "readOnlyRootFilesystem")
    f.check(csc.get("allowPrivilegeEscalation") is False, w, "allowPrivilegeEscalation false")
    f.check(csc.get("capabilities", {}).get("drop") == ["ALL"], w, "capabilities drop ALL")
    f.check((csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault", w,
            "seccomp RuntimeDefault")
    f.check(pod.get("automountServiceAccountToken") is False, w, "no service account token")
    f.check(pod.get("enableServiceLinks") is False, w, "enableServiceLinks false")

    # Volumes: every mount has a volume; config and secrets are mounted whole (no subPath,
    # so that updates reach the files); data is a claim, or an emptyDir without persistence.
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in ctr.get("volumeMounts", []):
        if mount["name"] == "data" and spec.get("volumeClaimTemplates"):
            continue
        f.check(mount["name"] in volumes, w, f"mount {mount['name']} has no volume")
        if mount["mountPath"].startswith("/etc/licensed/"):
            f.check("subPath" not in mount, w, f"mount {mount['mountPath']} uses subPath (no live updates)")
    persistence = values.get("persistence", {}).get("enabled", True)
    claims = [t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])]
    if persistence:
        f.check(claims == ["data"] and "data" not in volumes, w, "data on a volumeClaimTemplate")
    else:
        f.check(not claims and "emptyDir" in volumes.get("data", {}), w, "data on an emptyDir")

    # Mounted files and the flags that name them.
    mounts = {m["mountPath"]: m["name"] for m in ctr.get("volumeMounts", [])}
    for flag in ("--pool", "--signing-key", "--cluster-secret-file", "--tls-cert", "--tls-key", "--tls-client-ca",
                 "--peer-tls-cert", "--peer-tls-key", "--peer-tls-ca"):
        if flag in flags:
            path = flags[flag]
            directory, file = os.path.split(path)
            f.check(directory in mounts, w, f"{flag}={path}: nothing mounted at {directory}")
            vol = volumes.get(mounts.get(directory, ""), {})
            source = vol.get("secret") or vol.get("configMap") or {}
            items = [i["path"] for i in source.get("items", [])]
            f.check(not items or file in items, w, f"{flag}={path}: the volume has no item {file}")

    # Objects the pod refers to exist (or are the existing ones the values name).
    rendered = {(d["kind"], d["metadata"]["name"]) for d in docs}
    existing = {
        values.get("auth", {}).get("existingSecret"),
        values.get("signingKey", {}).get("existingSecret"),
        values.get("tls", {}).get("existingSecret"),
        values.get("tls", {}).get("clientCA", {}).get("existingSecret"),
        values.get("peerTls", {}).get("existingSecret"),
        values.get("pool", {}).get("existingConfigMap"),
    } - {None, ""}
    refs = []
    user_volumes = {v.get("name") for v in values.get("extraVolumes", [])}
    for v in volumes.values():
        if v["name"] in user_volumes:
            continue
        if "secret" in v:
            refs.append(("Secret", v["secret"]["secretName"]))
        if "configMap" in v:
            refs.append(("ConfigMap", v["configMap"]["name"]))
    for e in ctr.get("env", []):
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            refs.append(("Secret", ref["name"]))
    for kind, ref_name in refs:
        f.check((kind, ref_name) in rendered or ref_name in existing, w, f"{kind} {ref_name} is neither rendered nor an existing one")
    sa = pod.get("serviceAccountName")
    if values.get("serviceAccount", {}).get("create", True):
        f.check(("ServiceAccount", sa) in rendered, w, f"ServiceAccount {sa} rendered")

    # Disruption budget: keeps a majority; none for one replica.
    pdbs = by_kind(docs, "PodDisruptionBudget")
    if merged_replicas == 1:
        f.check(not pdbs, w, "no PodDisruptionBudget for 1 replica")
    elif values.get("pdb", {}).get("enabled", True):
        f.check(len(pdbs) == 1, w, "a PodDisruptionBudget")
        if pdbs:
            mu = pdbs[0]["spec"].get("maxUnavailable")
            f.check(isinstance(mu, int) and 1 <= mu <= (merged_replicas - 1) // 2, w,
                    f"PDB maxUnavailable {mu} keeps a quorum of {merged_replicas}")
            f.check(pdbs[0]["spec"]["selector"] == spec["selector"], w, "PDB selects the StatefulSet's pods")

    # Network policy: the Raft port only from this release's pods (plus raftFrom).
    if values.get("networkPolicy", {}).get("enabled", True):
        nps = by_kind(docs, "NetworkPolicy")
        f.check(len(nps) == 1, w, "a NetworkPolicy")
        if nps:
            rules = nps[0]["spec"]["ingress"]
            raft_rules = [r for r in rules if any(p.get("port") in ("raft", ports.get("raft")) for p in r.get("ports", []))]
            f.check(len(raft_rules) == 1, w, "one ingress rule for the Raft port")
            if raft_rules:
                sources = raft_rules[0].get("from")
                f.check(bool(sources), w, "the Raft port does not admit every source")
                own = {"podSelector": {"matchLabels": spec["selector"]["matchLabels"]}}
                f.check(bool(sources) and sources[0] == own, w, "the Raft port admits the chart's own pods")
                extra = values.get("networkPolicy", {}).get("raftFrom", [])
                f.check(bool(sources) and sources[1:] == extra, w, "the Raft port admits only networkPolicy.raftFrom besides")

    # Monitoring: the same files as deploy/.
    dashboards = [d for d in by_kind(docs, "ConfigMap") if "licensed.json" in (d.get("data") or {})]
    if values.get("metrics", {}).get("dashboard", {}).get("enabled"):
        f.check(len(dashboards) == 1, w, "a dashboard ConfigMap")
        if dashboards:
            d = dashboards[0]
            want = (deploy / "grafana" / "licensed.json").read_text().strip()
            f.check(d["data"]["licensed.json"].strip() == want, w, "dashboard ConfigMap differs from deploy/grafana/licensed.json")
            f.check(d["metadata"].get("labels", {}).get("grafana_dashboard") == "1", w, "dashboard labelled grafana_dashboard: \"1\"")
    rules = by_kind(docs, "PrometheusRule")
    if values.get("metrics", {}).get("prometheusRule", {}).get("enabled"):
        f.check(len(rules) == 1, w, "a PrometheusRule")
        if rules:
            want = yaml.safe_load((deploy / "prometheus" / "alerts.yml").read_text())
            f.check(rules[0]["spec"] == want, w, "PrometheusRule differs from deploy/prometheus/alerts.yml")
    monitors = by_kind(docs, "ServiceMonitor")
    if values.get("metrics", {}).get("serviceMonitor", {}).get("enabled"):
        f.check(len(monitors) == 1, w, "a ServiceMonitor")
        if monitors and headless:
            sel = monitors[0]["spec"]["selector"]["matchLabels"]
            services = [s for s in by_kind(docs, "Service")
                        if all(s["metadata"].get("labels", {}).get(k) == v for k, v in sel.items())]
            f.check([s["metadata"]["name"] for s in services] == [headless[0]["metadata"]["name"]], w,
                    "the ServiceMonitor selects exactly the headless Service")
            relabel = monitors[0]["spec"]["endpoints"][0].get("relabelings", [])
            jobs = [r.get("replacement") for r in relabel if r.get("targetLabel") == "job"]
            f.check(bool(jobs) and "licensed" in jobs[0], w, "the scrape job's name contains \"licensed\" (the alerts' selector)")


def write_outputs(out: Path, docs: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    core = [strip(d) for d in docs if not str(d.get("apiVersion", "")).startswith(MONITORING_GROUP)]
    monitoring = [strip(d) for d in docs if str(d.get("apiVersion", "")).startswith(MONITORING_GROUP)]
    (out / "core.yaml").write_text(yaml.safe_dump_all(core, sort_keys=False))
    (out / "monitoring.json").write_text(json.dumps(monitoring, indent=1))
    rules = [d for d in monitoring if d.get("kind") == "PrometheusRule"]
    if rules:
        (out / "rules.yml").write_text(yaml.safe_dump(rules[0]["spec"], sort_keys=False))


def lint(chart: Path, name: str, values: dict, kube_versions: list[str], f: Failures) -> None:
    for kv in kube_versions:
        report = helm.lint(str(chart), values, strict=True, namespace=NAMESPACE, kube_version=kv)
        for msg in report.get("messages", []):
            if msg.get("severity", 0) >= 2:
                f.check(False, f"{name} lint {kv}", f"{msg.get('path')}: {one_line(msg.get('error', ''))}")
        for err in report.get("errors", []):
            if not any(err.strip() in (m.get("error") or "") for m in report.get("messages", [])):
                f.check(False, f"{name} lint {kv}", one_line(err))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chart", required=True, type=Path)
    ap.add_argument("--deploy", required=True, type=Path, help="the deploy/ directory (dashboard and alerts)")
    ap.add_argument("--scenarios", required=True, type=Path)
    ap.add_argument("--refused", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--kube-versions", default="v1.25.0,v1.37.0")
    args = ap.parse_args()
    f = Failures()
    kube_versions = [v for v in args.kube_versions.split(",") if v]
    print(f"helm-python-sdk {helm.__version__}: libhelm_c {helm.helm_c_version()}, Helm SDK {helm.helm_sdk_version()}")

    t0 = time.monotonic()
    try:
        chart = helm.Chart.load(str(args.chart))
    except helm.HelmError as e:
        print(f"FAIL load {args.chart}: {e}")
        return 1
    with chart:
        scenarios = sorted(args.scenarios.glob("*.yaml"))
        for path in scenarios:
            name = path.stem
            values = load_values(path)
            lint(args.chart, name, values, kube_versions, f)
            try:
                chart.validate_schema(values)
                rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
            except helm.HelmError as e:
                f.check(False, name, f"refused: {one_line(str(e))}")
                continue
            docs, notes = split_documents(rendered)
            # The values the templates saw: the chart's defaults with the scenario's on top.
            merged = chart.merge_values(values)
            before = len(f.items)
            check_scenario(name, merged, docs, notes, args.deploy, f)
            write_outputs(args.out / name, docs)
            kinds = sorted({f"{d['kind']}" for d in docs})
            print(f"{'ok  ' if len(f.items) == before else 'FAIL'} {name}: lint {'+'.join(kube_versions)}, schema, render: {len(docs)} objects ({', '.join(kinds)})")
        if not scenarios:
            f.check(False, str(args.scenarios), "no scenarios")

        # Value sets that must be refused.
        for path in sorted(args.refused.glob("*.yaml")):
            text = path.read_text()
            m = re.search(r"^# expect: (.+)$", text, re.M)
            expect = m.group(1).strip() if m else ""
            values = yaml.safe_load(text) or {}
            try:
                chart.validate_schema(values)
                chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
            except helm.HelmError as e:
                message = one_line(str(e))
                f.check(expect in message, f"refused/{path.name}", f"refused, but the message lacks {expect!r}: {message}")
                if expect in message:
                    print(f"ok   refused/{path.name}: {message[:160]}")
                continue
            f.check(False, f"refused/{path.name}", "was accepted")

        # The package a user installs carries the linked dashboard and alerts.
        with tempfile.TemporaryDirectory() as tmp:
            archive = helm.package(str(args.chart), destination=tmp)
            with helm.Chart.load(archive) as packaged:
                want = {"metrics": {"dashboard": {"enabled": True}, "prometheusRule": {"enabled": True}}}
                a, _ = split_documents(chart.render(want, name=RELEASE, namespace=NAMESPACE))
                b, _ = split_documents(packaged.render(want, name=RELEASE, namespace=NAMESPACE))
                pick = lambda docs: [strip(d) for d in docs if d["kind"] in ("PrometheusRule",) or
                                     (d["kind"] == "ConfigMap" and "licensed.json" in (d.get("data") or {}))]
                f.check(len(pick(a)) == 2 and pick(a) == pick(b), "package",
                        f"{os.path.basename(archive)} renders other monitoring objects than the chart directory")
                print(f"ok   package {os.path.basename(archive)}: dashboard and alerts included")
    print(f"chart checks took {time.monotonic() - t0:.1f} s")
    if f.items:
        print(f"{len(f.items)} chart check(s) failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
