#!/usr/bin/env python3
"""Render the licensed Helm chart with the real Helm library (helm-python-sdk) and print
the rendered Kubernetes objects as one JSON list on stdout.

    render.py --chart helm/licensed [--release NAME] [--namespace NS] VALUES.yaml...

The values files are merged in order on top of the chart's values.yaml, checked against
values.schema.json, and rendered as an install. tests/kubernetes.rs runs the rendered
StatefulSet's pods as real processes (through `deploy/validate.sh --render`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

import helm_python as helm


def merge(base: dict, top: dict) -> dict:
    """Helm's merge of values files: maps merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chart", required=True, type=Path)
    ap.add_argument("--release", default="licensed")
    ap.add_argument("--namespace", default="licensing")
    ap.add_argument("values", nargs="*", type=Path)
    args = ap.parse_args()
    values: dict = {}
    for path in args.values:
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            print(f"{path}: not a values mapping", file=sys.stderr)
            return 1
        values = merge(values, data)
    try:
        with helm.Chart.load(str(args.chart)) as chart:
            chart.validate_schema(values)
            rendered = chart.render(values, name=args.release, namespace=args.namespace, is_install=True)
    except helm.HelmError as e:
        print(f"render: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    docs = []
    for template, text in sorted(rendered.items()):
        if not template.endswith((".yaml", ".yml")):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    json.dump(docs, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
