#!/usr/bin/env bash
# Validates the Helm chart helm/licensed, as CI runs it:
#
#   deploy/validate.sh               install what is missing, then validate the chart
#   deploy/validate.sh --self-test   show that the validation fails on a broken template,
#                                    a wrong value type and a removed API version
#   deploy/validate.sh --chart DIR   validate another copy of the chart (the self-test's)
#   deploy/validate.sh --no-install  use what is installed (fail if something is missing)
#   deploy/validate.sh --render VALUES.yaml...
#                                    print the chart rendered with these values (on top of
#                                    values.yaml) as one JSON list of objects; the tests
#                                    run the rendered StatefulSet's pods (tests/kubernetes.rs)
#
# Steps (each timed; every step runs even after a failure, so one run reports everything):
#   1. the chart's files/ (Grafana dashboard, Prometheus alerts) are deploy/'s files:
#      links to them, or (in a packaged or copied chart) identical copies; Chart.yaml's
#      appVersion (the default image tag) is Cargo.toml's version;
#   2. the chart README's values table matches values.yaml and values.schema.json;
#   3. with the real Helm library (PyPI helm-python-sdk: Helm's Go SDK through ctypes, no
#      helm binary): `helm lint --strict` and the values schema for every scenario of
#      deploy/validate/scenarios (1, 3, 5 and 7 replicas, every optional feature on),
#      renders and checks of what the server needs, value sets that must be refused
#      (deploy/validate/refused), and the packaged chart (deploy/validate/check_chart.py);
#   4. kubernetes-validate --strict on every rendered Kubernetes object, for every
#      Kubernetes minor version from the chart's kubeVersion minimum (1.25) to the newest
#      kubernetes-validate knows; an object it has no schema for (a removed API version)
#      fails;
#   5. the ServiceMonitor and PrometheusRule against npm's
#      @kubernetes-models/prometheus-operator (deploy/validate/check-monitoring.mjs);
#   6. promtool check rules on the rendered PrometheusRule's rules, and promtool test rules
#      of deploy/prometheus/alerts_test.yml against them.
#
# Exit status 0 when every step passes, 1 otherwise.
#
# Tools are installed once per machine under $LICENSED_VALIDATE_HOME (default
# ~/.cache/licensed/validate): a Python virtualenv with helm-python-sdk and
# kubernetes-validate, an npm prefix with the Prometheus Operator models; promtool from
# Debian's prometheus package (and python3-venv, nodejs, npm if missing) through apt-get.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
self="$root/deploy/$(basename "${BASH_SOURCE[0]}")"
here="$root/deploy/validate"
chart="$root/helm/licensed"
cache="${LICENSED_VALIDATE_HOME:-$HOME/.cache/licensed/validate}"
install=1
mode=validate
render_values=()

# Pinned tool versions (bump deliberately; the cache is refreshed when they change).
HELM_PYTHON_SDK_VERSION=0.2.2
KUBERNETES_VALIDATE_VERSION=1.37.0
PROMETHEUS_OPERATOR_MODELS_VERSION=6.0.0

while [ $# -gt 0 ]; do
  case "$1" in
    --self-test) mode="self-test" ;;
    --chart) chart="$(cd "$2" && pwd)"; shift ;;
    --no-install) install=0 ;;
    --render) mode=render; shift; render_values=("$@"); break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "validate: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
started="$(now)"

venv="$cache/venv"
npm_prefix="$cache/node"
models="$npm_prefix/node_modules"

# ---------------------------------------------------------------------------------------
# Installation (idempotent, quiet)
# ---------------------------------------------------------------------------------------
apt_updated=0
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if [ "$apt_updated" = 0 ]; then apt-get update -qq >/dev/null; apt_updated=1; fi
  apt-get install -y -qq "$@" >/dev/null
}

install_tools() {
  local t0 pins; t0="$(now)"
  mkdir -p "$cache"

  # promtool (Debian's prometheus package), node and npm.
  local need=()
  command -v promtool >/dev/null 2>&1 || need+=(prometheus)
  command -v node >/dev/null 2>&1 || need+=(nodejs)
  command -v npm >/dev/null 2>&1 || need+=(npm)
  if [ ${#need[@]} -gt 0 ]; then
    echo "install: apt-get install ${need[*]}"
    apt_install "${need[@]}"
  fi

  # Python: a virtualenv with helm-python-sdk (its wheel carries libhelm_c, Helm's Go SDK
  # built as a C library) and kubernetes-validate (its schemas are in the wheel).
  pins="helm-python-sdk==$HELM_PYTHON_SDK_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  if [ "$(cat "$venv/.pins" 2>/dev/null)" != "$pins" ] \
    || ! "$venv/bin/python" -c 'import helm_python, kubernetes_validate, yaml' >/dev/null 2>&1; then
    echo "install: Python virtualenv $venv ($pins)"
    rm -rf "$venv"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
      apt_install python3-venv
      rm -rf "$venv"
      python3 -m venv "$venv"
    fi
    # shellcheck disable=SC2086
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check $pins PyYAML
    echo "$pins" >"$venv/.pins"
  fi

  # npm: the Prometheus Operator models.
  local want="@kubernetes-models/prometheus-operator@$PROMETHEUS_OPERATOR_MODELS_VERSION"
  local have
  have="$(node -p "require('$models/@kubernetes-models/prometheus-operator/package.json').version" 2>/dev/null || true)"
  if [ "$have" != "$PROMETHEUS_OPERATOR_MODELS_VERSION" ]; then
    echo "install: npm $want in $npm_prefix"
    mkdir -p "$npm_prefix"
    [ -f "$npm_prefix/package.json" ] || echo '{"private": true}' >"$npm_prefix/package.json"
    npm install --prefix "$npm_prefix" --no-audit --no-fund --silent "$want" >/dev/null
  fi
  echo "install: ready in $(since "$t0") s (helm-python-sdk $HELM_PYTHON_SDK_VERSION," \
    "kubernetes-validate $KUBERNETES_VALIDATE_VERSION, $want, $(promtool --version 2>&1 | head -n1 | cut -d' ' -f1-3))"
}

check_tools() {
  local missing=()
  [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import helm_python, kubernetes_validate' 2>/dev/null \
    || missing+=("$venv with helm-python-sdk and kubernetes-validate")
  [ -d "$models/@kubernetes-models/prometheus-operator" ] || missing+=("$models/@kubernetes-models/prometheus-operator")
  command -v promtool >/dev/null 2>&1 || missing+=(promtool)
  command -v node >/dev/null 2>&1 || missing+=(node)
  if [ ${#missing[@]} -gt 0 ]; then
    printf 'validate: missing (run without --no-install): %s\n' "${missing[@]}" >&2
    exit 1
  fi
}

# ---------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------
passed=0
failed=0
failed_steps=()
step() { # step NAME COMMAND... : run, time and record one step
  local name="$1" t0 rc; shift
  t0="$(now)"
  echo "== $name"
  set +e
  "$@"
  rc=$?
  set -e
  if [ "$rc" = 0 ]; then
    passed=$((passed + 1)); echo "-- $name: ok ($(since "$t0") s)"
  else
    failed=$((failed + 1)); failed_steps+=("$name"); echo "-- $name: FAILED ($(since "$t0") s)"
  fi
}

check_links() {
  # The chart's copies of deploy/ files: links into deploy/ in the repository, so they
  # cannot drift; a chart copied with its links followed must hold identical files.
  local rc=0 pair link target
  for pair in "files/licensed.json:grafana/licensed.json" "files/alerts.yml:prometheus/alerts.yml"; do
    link="$chart/${pair%%:*}"; target="$root/deploy/${pair#*:}"
    if [ ! -e "$link" ]; then
      echo "FAIL $link is missing (a link to deploy/${pair#*:})"; rc=1
    elif ! cmp -s "$link" "$target"; then
      echo "FAIL $link differs from deploy/${pair#*:}:"; diff -u "$target" "$link" | head -n 20; rc=1
    elif [ -L "$link" ]; then
      echo "ok   ${pair%%:*} -> $(readlink "$link")"
    else
      echo "ok   ${pair%%:*} is a copy identical to deploy/${pair#*:}"
    fi
  done
  # The image tag defaults to appVersion: it must be the version the workspace builds.
  local app cargo
  app="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$chart/Chart.yaml")"
  cargo="$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml" | head -n 1)"
  if [ "$app" = "$cargo" ]; then
    echo "ok   Chart.yaml appVersion $app is Cargo.toml's version"
  else
    echo "FAIL Chart.yaml appVersion '$app' is not Cargo.toml's version '$cargo' (the default image tag)"; rc=1
  fi
  return $rc
}

render_and_lint() {
  local log="$out/check_chart.log" rc=0
  "$venv/bin/python" "$here/check_chart.py" --chart "$chart" --deploy "$root/deploy" \
    --scenarios "$here/scenarios" --refused "$here/refused" --out "$out/rendered" \
    --kube-versions "v$min_kube,v$max_kube" >"$log" 2>&1 || rc=$?
  # Helm's loader logs every followed link (files/ -> deploy/): expected, not news.
  grep -v 'found symbolic link in path' "$log" || true
  return $rc
}

kube_validate() {
  local rc=0 files=() f output args=()
  for f in "$out"/rendered/*/core.yaml; do [ -f "$f" ] && files+=("$f"); done
  if [ ${#files[@]} -eq 0 ]; then echo "FAIL nothing rendered to validate"; return 1; fi
  for v in "${kube_versions[@]}"; do args+=(-k "$v"); done
  echo "kubernetes-validate --strict, Kubernetes ${kube_versions[0]} to ${kube_versions[-1]}, ${#files[@]} scenario(s)"
  output="$("$venv/bin/kubernetes-validate" --strict --quiet "${args[@]}" "${files[@]}" 2>&1)" || rc=1
  if [ -n "$output" ]; then echo "${output//$out\/rendered\//}"; fi
  # A WARN is an object without a schema for that version: a removed or unknown API.
  if echo "$output" | grep -q '^WARN'; then rc=1; fi
  if [ "$rc" = 0 ]; then
    echo "ok   $(cat "${files[@]}" | grep -c '^kind:') objects valid against each of ${#kube_versions[@]} Kubernetes versions"
  fi
  return $rc
}

monitoring_validate() {
  local files=() f
  for f in "$out"/rendered/*/monitoring.json; do
    [ -f "$f" ] && [ "$(tr -d '[:space:]' <"$f")" != "[]" ] && files+=("$f")
  done
  if [ ${#files[@]} -eq 0 ]; then echo "FAIL no ServiceMonitor or PrometheusRule rendered"; return 1; fi
  node "$here/check-monitoring.mjs" "$models" "${files[@]}" | sed "s|$out/rendered/||g"
  return "${PIPESTATUS[0]}"
}

promtool_rules() {
  local rc=0 f dir n=0
  for f in "$out"/rendered/*/rules.yml; do
    [ -f "$f" ] || continue
    n=$((n + 1))
    promtool check rules "$f" 2>&1 | sed "s|$out/rendered/||g" || rc=1
    # The unit tests of deploy/prometheus/alerts_test.yml, against the rendered rules.
    dir="$(dirname "$f")/promtool-test"
    mkdir -p "$dir"
    cp "$f" "$dir/alerts.yml"
    cp "$root/deploy/prometheus/alerts_test.yml" "$dir/alerts_test.yml"
    (cd "$dir" && promtool test rules alerts_test.yml) 2>&1 | sed "s|$out/rendered/||g" || rc=1
  done
  if [ "$n" = 0 ]; then echo "FAIL no PrometheusRule rendered"; return 1; fi
  return $rc
}

validate() {
  out="$(mktemp -d "${TMPDIR:-/tmp}/licensed-validate.XXXXXX")"
  trap 'rm -rf "${out:?}"' EXIT
  echo "validate: chart $chart"
  # Every Kubernetes minor version from the chart's minimum to the newest known.
  min_kube="$(sed -n 's/^kubeVersion: *"*>=\([0-9]*\.[0-9]*\).*/\1/p' "$chart/Chart.yaml")"
  mapfile -t kube_versions < <("$venv/bin/python" - "${min_kube:-1.25}" <<'EOF'
import sys
from packaging.version import Version
from kubernetes_validate.utils import all_versions
low = Version(sys.argv[1])
for v in sorted({v for v in all_versions() if Version(v) >= low}, key=Version):
    print(v)
EOF
  )
  max_kube="${kube_versions[-1]}"
  min_kube="${kube_versions[0]}"

  step "chart files are deploy/'s files, appVersion is Cargo's" check_links
  step "values table (helm/licensed/README.md)" "$venv/bin/python" "$here/values_doc.py" "$chart" --check
  step "helm lint, values schema, render, chart checks" render_and_lint
  step "kubernetes-validate --strict" kube_validate
  step "Prometheus Operator objects (@kubernetes-models/prometheus-operator)" monitoring_validate
  step "promtool check rules / test rules" promtool_rules

  local list
  list="$(printf '%s; ' "${failed_steps[@]}")"
  echo "validate: $passed passed, $failed failed in $(since "$started") s${failed_steps[*]:+ (failed: ${list%; })}"
  [ "$failed" = 0 ]
}

# ---------------------------------------------------------------------------------------
# Self-test: the validation must fail on each breakage of a copy of the chart
# ---------------------------------------------------------------------------------------
self_test() {
  local rc=0 name t0 log
  work="$(mktemp -d "${TMPDIR:-/tmp}/licensed-validate-selftest.XXXXXX")"
  trap 'rm -rf "${work:?}"' EXIT
  breakages=(
    "unchanged copy (must pass)"
    "broken template"
    "wrong value type"
    "removed API version"
  )
  for name in "${breakages[@]}"; do
    t0="$(now)"
    rm -rf "$work/licensed"
    cp -RL "$chart" "$work/licensed"   # links followed: the copy holds deploy/'s files
    case "$name" in
      "broken template")
        # An action that is never closed: the template no longer parses.
        printf '%s\n' '{{- if .Values.service.annotations }}' >>"$work/licensed/templates/service.yaml" ;;
      "wrong value type")
        sed -i 's/^replicas: 3$/replicas: "three"/' "$work/licensed/values.yaml"
        grep -q '^replicas: "three"$' "$work/licensed/values.yaml" ;;
      "removed API version")
        # policy/v1beta1 PodDisruptionBudget: removed in Kubernetes 1.25.
        sed -i 's|^apiVersion: policy/v1$|apiVersion: policy/v1beta1|' "$work/licensed/templates/pdb.yaml"
        grep -q '^apiVersion: policy/v1beta1$' "$work/licensed/templates/pdb.yaml" ;;
    esac
    log="$work/${name// /-}.log"
    if bash "$self" --no-install --chart "$work/licensed" >"$log" 2>&1; then result=passed; else result=failed; fi
    if [ "$name" = "unchanged copy (must pass)" ]; then
      if [ "$result" = passed ]; then
        echo "self-test: $name: validation passed, as it should ($(since "$t0") s)"
      else
        echo "self-test: $name: validation FAILED on an unchanged copy:"; sed 's/^/    /' "$log"; rc=1
      fi
      continue
    fi
    if [ "$result" = failed ]; then
      echo "self-test: $name: validation failed, as it should ($(since "$t0") s)"
      grep -E '^validate: .* failed' "$log" | sed 's/^/    /'
      # The distinct messages, without the scenario each was found in.
      grep -E '^(FAIL|ERROR|WARN) ' "$log" \
        | grep -v 'refused, but the message lacks' \
        | sed -E 's/^WARN [^ ]+ /WARN /; s/^(FAIL|ERROR) [^:]*: /\1 /; s/for kubernetes version [0-9.]+$/for kubernetes version …/' \
        | awk '!seen[$0]++' | cut -c1-200 | head -n 6 | sed 's/^/    /'
    else
      echo "self-test: $name: validation PASSED a broken chart:"; sed 's/^/    /' "$log"; rc=1
    fi
  done
  echo "self-test: $([ "$rc" = 0 ] && echo ok || echo FAILED) in $(since "$started") s"
  return $rc
}

if [ "$install" = 1 ]; then
  # Rendering needs only the Python tools; their installation talks on stderr, not stdout.
  if [ "$mode" = render ]; then install_tools >&2; else install_tools; fi
else
  check_tools
fi
case "$mode" in
  self-test) self_test ;;
  # Helm's loader logs every followed link (files/ -> deploy/): expected, not news.
  render) "$venv/bin/python" "$here/render.py" --chart "$chart" "${render_values[@]}" \
    2> >(grep -v 'found symbolic link in path' >&2) ;;
  *) validate ;;
esac
