#!/usr/bin/env bash
# Smoke test of the image deploy/image/build.sh makes, without a container engine: unpack
# its root filesystem and chroot into it (as root), then
#   1. check the image config (user 65532, entrypoint licensed, ports, /data volume),
#   2. run `licensed --version` and `licensectl --version` in it,
#   3. start a one-node server in it as uid/gid 65532 (`chroot --userspec`) with the
#      sample pool, as PID 1 of its own PID namespace with /proc mounted when `unshare`
#      allows it (as in a container), wait for its ready line, call ListLicensesV1 with
#      curl from outside over loopback and compare the answer with the pool, run
#      `licensectl list` in the image against it, check /readyz, that the web console
#      (/ui) is served with its Content-Security-Policy, and that the data dir belongs
#      to 65532,
#   4. stop it with SIGTERM and check it exits 0.
# Removes everything it made; exits non-zero on any failure; prints timings.
#
#   deploy/image/smoke-test.sh [IMAGE.oci.tar | ROOTFS.tar | ROOTFS_DIR]
#
# Default: target/image/licensed-image.oci.tar, else target/image/rootfs.tar. Needs root
# (chroot), curl and python3. Ports: free ones (--listen 127.0.0.1:0, the ready line
# names the port), or SMOKE_PORT and SMOKE_RAFT_PORT. SMOKE_UNSHARE=0: plain chroot.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
image=${1:-}
case "$image" in ''|/*) ;; *) image=$PWD/$image ;; esac
cd "$repo"
UID_GID=65532
READY_TIMEOUT=${SMOKE_READY_TIMEOUT:-60}

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f s", b - a }'; }
die() { echo "smoke-test: FAIL: $*" >&2; exit 1; }
step() { echo "smoke-test: $*"; }
# Whether process $1 runs (a zombie child of this shell does not).
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

if [ -z "$image" ]; then
  image=target/image/licensed-image.oci.tar
  [ -f "$image" ] || image=target/image/rootfs.tar
fi
[ -e "$image" ] || die "$image: not found (run deploy/image/build.sh first)"
[ "$(id -u)" = 0 ] || die "chroot needs root"
for tool in chroot curl python3 tar; do
  command -v "$tool" >/dev/null || die "$tool is needed"
done
CHROOT=$(command -v chroot)

work=$(mktemp -d "${TMPDIR:-/tmp}/licensed-smoke.XXXXXX")
root=$work/rootfs
launcher=  # pid of unshare/chroot
server=    # pid of licensed (the same as the launcher without unshare)
cleanup() {
  local rc=$?
  if [ -n "$server" ] && alive "$server"; then
    kill -TERM "$server" 2>/dev/null || true
    for _ in $(seq 50); do alive "$server" || break; sleep 0.1; done
    kill -KILL "$server" 2>/dev/null || true
  fi
  if [ -n "$launcher" ]; then
    kill -KILL "$launcher" 2>/dev/null || true
    wait "$launcher" 2>/dev/null || true
  fi
  if [ $rc -ne 0 ] && [ -s "$work/stderr" ]; then
    echo "smoke-test: the server's stderr (last 40 lines):" >&2
    tail -n 40 "$work/stderr" >&2
  fi
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t0=$(now)
# --- unpack -------------------------------------------------------------------------------
mkdir -p "$root"
if [ -d "$image" ]; then
  step "root filesystem: the directory $image (copied)"
  cp -a "$image/." "$root/"
elif tar -tf "$image" oci-layout >/dev/null 2>&1; then
  step "image: $image (OCI archive)"
  mkdir "$work/oci"
  tar -C "$work/oci" -xf "$image"
  # The manifest's layers in order, and the config's checks.
  python3 - "$work/oci" "$work/layers" "$work/env" <<'EOF' || die "the image's manifest or config is not as expected"
import json, os, sys
oci = sys.argv[1]
def blob(digest):
    algo, hexdigest = digest.split(":", 1)
    return os.path.join(oci, "blobs", algo, hexdigest)
index = json.load(open(os.path.join(oci, "index.json")))
manifests = index["manifests"]
if len(manifests) != 1:
    sys.exit(f"expected one manifest in index.json, found {len(manifests)}")
manifest = json.load(open(blob(manifests[0]["digest"])))
config = json.load(open(blob(manifest["config"]["digest"])))["config"]
want = {
    "User": "65532:65532",
    "Entrypoint": ["/usr/local/bin/licensed"],
    "ExposedPorts": {"22022/tcp": {}, "22023/tcp": {}},
    "Volumes": {"/data": {}},
}
for key, value in want.items():
    if config.get(key) != value:
        sys.exit(f"image config {key} is {config.get(key)!r}, expected {value!r}")
env = dict(e.split("=", 1) for e in config.get("Env", []))
if env.get("LICENSED_DATA_DIR") != "/data":
    sys.exit(f"image config Env LICENSED_DATA_DIR is {env.get('LICENSED_DATA_DIR')!r}")
print(f"smoke-test: config: user {config['User']}, entrypoint {config['Entrypoint']}, ports "
      f"{sorted(config['ExposedPorts'])}, volumes {sorted(config['Volumes'])}, env {config.get('Env')}")
with open(sys.argv[2], "w") as out:
    for layer in manifest["layers"]:
        print(blob(layer["digest"]), file=out)
with open(sys.argv[3], "w") as out:
    for entry in config.get("Env", []):
        print(entry, file=out)
EOF
  while read -r layer; do
    if tar -tf "$layer" | grep -q '\(^\|/\)\.wh\.'; then die "layer $layer has whiteouts (one layer expected)"; fi
    tar -C "$root" --numeric-owner -xpf "$layer"
  done <"$work/layers"
  rm -rf "$work/oci"
else
  step "root filesystem: $image (tar)"
  tar -C "$root" --numeric-owner -xpf "$image"
fi
t_unpack=$(now)

# The server runs with the image's environment (as a container would), else a PATH.
[ -s "$work/env" ] || echo PATH=/usr/local/bin >"$work/env"
mapfile -t image_env <"$work/env"

# --- what is in it --------------------------------------------------------------------------
[ -x "$root/usr/local/bin/licensed" ] || die "no /usr/local/bin/licensed in the image"
[ -x "$root/usr/local/bin/licensectl" ] || die "no /usr/local/bin/licensectl in the image"
[ "$(stat -c %u:%g "$root/data")" = "$UID_GID:$UID_GID" ] || die "/data is not owned by $UID_GID"
[ "$(stat -c %a "$root/tmp")" = 1777 ] || die "/tmp is not 1777"
grep -q "^[^:]*:x:$UID_GID:$UID_GID:" "$root/etc/passwd" || die "no user $UID_GID in /etc/passwd"
grep -q "^[^:]*:x:$UID_GID:" "$root/etc/group" || die "no group $UID_GID in /etc/group"
setid=$(find "$root" -xdev -perm /6000 -type f)
[ -z "$setid" ] || die "set-id files in the image: $setid"
[ ! -e "$root/bin/sh" ] || echo "smoke-test: note: the image has a shell"
step "size: $(du -sh --apparent-size "$root" | cut -f1) unpacked, $(find "$root" -type f | wc -l) files"

# --- --version, as root in the chroot -------------------------------------------------------
version=$(env -i "$CHROOT" "$root" /usr/local/bin/licensed --version) || die "licensed --version failed in the chroot"
ctl_version=$(env -i "$CHROOT" "$root" /usr/local/bin/licensectl --version) || die "licensectl --version failed in the chroot"
step "chroot: $version; $ctl_version"
t_version=$(now)

# --- a one-node server as uid 65532 ---------------------------------------------------------
install -m 0444 deploy/sample-pool.json "$root/pool.json"
mkdir -p "$root/proc"
run_as=("$CHROOT" --userspec="$UID_GID:$UID_GID" --groups="$UID_GID" "$root")
server_cmd=(/usr/local/bin/licensed --pool /pool.json --data-dir /data
  --listen "127.0.0.1:${SMOKE_PORT:-0}" --raft-listen "127.0.0.1:${SMOKE_RAFT_PORT:-0}")
# As in a container: its own PID namespace (licensed is PID 1 and must handle SIGTERM
# itself) and mount namespace with /proc (process metrics). Plain chroot where the
# sandbox refuses namespaces.
UNSHARE=$(command -v unshare || true)
if [ "${SMOKE_UNSHARE:-1}" = 1 ] && [ -n "$UNSHARE" ] && "$UNSHARE" --mount --pid --fork --mount-proc="$root/proc" true 2>/dev/null; then
  mode="PID 1 of its own PID and mount namespaces, /proc mounted"
  env -i "${image_env[@]}" HOME=/data "$UNSHARE" --mount --pid --fork --mount-proc="$root/proc" \
    --kill-child=SIGKILL "${run_as[@]}" "${server_cmd[@]}" >"$work/stdout" 2>"$work/stderr" &
  launcher=$!
  for _ in $(seq 100); do
    server=$(awk '{ print $1 }' "/proc/$launcher/task/$launcher/children" 2>/dev/null || true)
    [ -n "$server" ] && break
    alive "$launcher" || break
    sleep 0.05
  done
  [ -n "$server" ] || die "unshare did not start the server"
else
  mode="plain chroot, no /proc"
  env -i "${image_env[@]}" HOME=/data "${run_as[@]}" "${server_cmd[@]}" >"$work/stdout" 2>"$work/stderr" &
  launcher=$!
  server=$launcher
fi
t_start=$(now)
step "started: chroot --userspec=$UID_GID:$UID_GID ROOTFS ${server_cmd[*]} ($mode)"

url=
deadline=$(( $(date +%s) + READY_TIMEOUT ))
while :; do
  url=$(sed -n 's|^licensed listening on \(http://[^ ]*\)$|\1|p' "$work/stdout" | head -n 1)
  [ -n "$url" ] && break
  alive "$server" || die "the server exited before it was ready"
  [ "$(date +%s)" -lt "$deadline" ] || die "no ready line within ${READY_TIMEOUT} s"
  sleep 0.05
done
t_ready=$(now)
step "ready: $url after $(secs "$t_start" "$t_ready")"

# It runs as 65532, and what it wrote belongs to 65532.
ids=$(awk '/^Uid:|^Gid:/ { print $2, $3, $4, $5 }' "/proc/$server/status" | tr '\n' ' ')
[ "$ids" = "$UID_GID $UID_GID $UID_GID $UID_GID $UID_GID $UID_GID $UID_GID $UID_GID " ] \
  || die "the server runs with uid/gid $ids, not $UID_GID"
foreign=$(find "$root/data" ! -uid "$UID_GID" -print -quit)
[ -z "$foreign" ] || die "$foreign in the data dir does not belong to $UID_GID"

# ListLicensesV1 from outside, over loopback, against the pool file.
answer=$(curl -sS --max-time 10 "$url/licenses" -H 'Content-Type: application/json' \
  -d '{"jsonrpc":"2.0","method":"ListLicensesV1","params":[],"id":1}') || die "ListLicensesV1: curl failed"
python3 - "$answer" deploy/sample-pool.json <<'EOF' || die "ListLicensesV1 answered $answer"
import json, sys
answer = json.loads(sys.argv[1])
pool = json.load(open(sys.argv[2]))
licenses = pool["licenses"] if isinstance(pool, dict) else pool
assert answer.get("jsonrpc") == "2.0" and answer.get("id") == 1 and "error" not in answer, answer
got = sorted((l["feature"], l["uuid"], l["count"]) for l in answer["result"])
want = sorted((l["feature"], l["uuid"], l["count"]) for l in licenses)
assert got == want, f"licenses {got}, expected {want}"
print(f"smoke-test: ListLicensesV1: the {len(got)} licenses of the pool, counts included")
EOF
code=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "$url/readyz") || die "/readyz: curl failed"
[ "$code" = 200 ] || die "/readyz answered $code"
env -i "${run_as[@]}" /usr/local/bin/licensectl --server "$url" list >"$work/list" \
  || die "licensectl list in the image failed: $(cat "$work/list")"
[ "$(grep -c MVTec_ "$work/list")" = "$(python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); print(len(p["licenses"] if isinstance(p, dict) else p))' deploy/sample-pool.json)" ] \
  || die "licensectl list printed: $(cat "$work/list")"
step "licensectl list in the image (uid $UID_GID): $(grep -c MVTec_ "$work/list") licenses; /readyz 200"
curl -sS --max-time 10 -D "$work/ui.headers" -o "$work/ui.html" "$url/ui" || die "/ui: curl failed"
grep -qi "^content-security-policy: default-src 'self'" "$work/ui.headers" \
  || die "/ui has no same-origin Content-Security-Policy: $(cat "$work/ui.headers")"
grep -q '/ui/assets/app.js' "$work/ui.html" || die "/ui is not the console page"
code=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "$url/ui/assets/app.js") || die "app.js: curl failed"
[ "$code" = 200 ] || die "/ui/assets/app.js answered $code"
step "web console: /ui and its script served, same-origin Content-Security-Policy"
rss=$(awk '/^VmRSS:/ { printf "%.0f MiB", $2 / 1024 }' "/proc/$server/status")
t_checked=$(now)

# --- stop ---------------------------------------------------------------------------------
kill -TERM "$server"
status=0
if [ "$launcher" = "$server" ]; then
  wait "$launcher" || status=$?
else
  for _ in $(seq 200); do alive "$server" || break; sleep 0.05; done
  if alive "$server"; then die "the server did not stop within 10 s of SIGTERM"; fi
  wait "$launcher" || status=$?
fi
launcher=
server=
t_stopped=$(now)
[ "$status" = 0 ] || die "the server exited with status $status after SIGTERM"
grep -q 'shutting down' "$work/stderr" || die "no 'shutting down' in the server's log"
if printf '%s\n' "${image_env[@]}" | grep -q '^NO_COLOR=' && grep -q $'\e' "$work/stderr"; then
  die "terminal escapes in the log despite the image's NO_COLOR"
fi
step "stopped by SIGTERM: exit 0 after $(secs "$t_checked" "$t_stopped")"

echo "smoke-test: PASS ($version, RSS $rss): unpack $(secs "$t0" "$t_unpack"), --version $(secs "$t_unpack" "$t_version"), start to ready $(secs "$t_start" "$t_ready"), checks $(secs "$t_ready" "$t_checked"), stop $(secs "$t_checked" "$t_stopped"), total $(secs "$t0" "$t_stopped")"
