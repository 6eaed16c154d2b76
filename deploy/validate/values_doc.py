#!/usr/bin/env python3
"""The chart README's table of values, from values.yaml's `# --` comments.

    values_doc.py CHART_DIR --check   exit 1 when README.md's table is not what values.yaml says
    values_doc.py CHART_DIR --write   rewrite the table in README.md

A key preceded by a `# -- text` comment (continued on the following `#` lines) is one row:
its path, its default (as JSON) and the text. A mapping without such a comment is not a
row itself; its keys are. Any other key without a comment is an error, and so is a
documented path that values.schema.json does not describe, or a schema property that
values.yaml does not set: the three files are checked against each other.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from pathlib import Path

import yaml

START = "<!-- values-table:start (deploy/validate/values_doc.py --write) -->"
END = "<!-- values-table:end -->"


def rows_from_values(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(path, description) for each documented key, and the undocumented leaf paths."""
    data = yaml.safe_load(text)
    rows: list[tuple[str, str]] = []
    errors: list[str] = []
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing mappings
    comment: list[str] | None = None
    documented_prefixes: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            comment = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if comment is not None:
                comment.append(stripped[1:].strip())
            continue
        if not stripped:
            comment = None
            continue
        m = re.match(r"^( *)([A-Za-z_][A-Za-z0-9_]*):(.*)$", line)
        if not m:
            comment = None  # a list item or a continuation of a value
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [m.group(2)])
        inside_documented = any(path.startswith(p + ".") for p in documented_prefixes)
        value = lookup(data, path)
        if comment is not None and not inside_documented:
            rows.append((path, " ".join(comment)))
            documented_prefixes.append(path)
        elif not inside_documented and not isinstance(value, dict):
            errors.append(f"values.yaml: {path} has no '# --' comment")
        elif not inside_documented and isinstance(value, dict) and not value:
            errors.append(f"values.yaml: {path} has no '# --' comment")
        comment = None
        stack.append((indent, m.group(2)))
    return rows, errors


def lookup(data, path: str):
    for key in path.split("."):
        data = data[key]
    return data


def schema_paths(schema: dict, prefix: str = "") -> list[str]:
    out = []
    for key, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}{key}"
        out.append(path)
        if sub.get("type") == "object" and "properties" in sub:
            out.extend(schema_paths(sub, path + "."))
    return out


def table(chart: Path) -> tuple[str, list[str]]:
    text = (chart / "values.yaml").read_text()
    data = yaml.safe_load(text)
    rows, errors = rows_from_values(text)
    schema = json.loads((chart / "values.schema.json").read_text())
    documented = [p for p, _ in rows]
    known = set(schema_paths(schema))
    for path in documented:
        if path not in known:
            errors.append(f"values.schema.json does not describe {path}")
    for path in known - {"global"}:
        covered = any(path == d or path.startswith(d + ".") or d.startswith(path + ".") for d in documented)
        if not covered:
            errors.append(f"values.schema.json describes {path}, which values.yaml does not set")
    lines = ["| Value | Default | Meaning |", "|---|---|---|"]
    for path, description in rows:
        default = json.dumps(lookup(data, path), separators=(", ", ": "))
        cell = default.replace("|", "\\|")
        lines.append(f"| `{path}` | `{cell}` | {description.replace('|', chr(92) + '|')} |")
    return "\n".join(lines) + "\n", errors


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[2] not in ("--check", "--write"):
        print(__doc__)
        return 2
    chart = Path(sys.argv[1])
    readme = chart / "README.md"
    want, errors = table(chart)
    for e in errors:
        print(f"FAIL {e}")
    text = readme.read_text() if readme.exists() else ""
    if START not in text or END not in text:
        print(f"FAIL {readme}: no values table markers ({START} ... {END})")
        return 1
    head, rest = text.split(START, 1)
    current, tail = rest.split(END, 1)
    current = current.strip("\n") + "\n"
    if sys.argv[2] == "--write":
        readme.write_text(f"{head}{START}\n{want}{END}{tail}")
        print(f"wrote {readme}: {want.count(chr(10)) - 2} values")
        return 1 if errors else 0
    if current != want:
        diff = difflib.unified_diff(current.splitlines(), want.splitlines(), "README.md", "values.yaml", lineterm="")
        print(f"FAIL {readme}: the values table differs from values.yaml (run deploy/validate/values_doc.py {chart} --write):")
        print("\n".join(list(diff)[:40]))
        return 1
    if errors:
        return 1
    print(f"ok   {readme}: the values table lists every value ({want.count(chr(10)) - 2}), and matches values.schema.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
