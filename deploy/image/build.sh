#!/usr/bin/env bash
# Builds the licensed container image without a registry or a Docker engine: a root
# filesystem made of the already-built binaries (stripped) and exactly the shared
# libraries `ldd` says they need, turned into an OCI image from `scratch` with buildah.
#
#   deploy/image/build.sh [--out DIR] [--no-oci] [--no-install] [--allow-chaos-build]
#                         [LICENSED [LICENSECTL]]
#
# LICENSED defaults to ${CARGO_TARGET_DIR:-target}/debug/licensed, LICENSECTL to the
# licensectl beside it. Build them first, without the chaos crate (whose `failpoints`
# feature `cargo test --workspace` turns on):
#
#   cargo build --locked --bin licensed --bin licensectl
#
# Writes into DIR (default target/image):
#   rootfs/                 the root filesystem (deploy/image/smoke-test.sh runs it)
#   rootfs.tar              the same as one tar (numeric owners, sorted, fixed mtimes)
#   licensed-image.oci.tar  the OCI image (oci-archive), unless --no-oci or no buildah:
#                           `podman load -i`, `docker load -i` (Docker 25+) or
#                           `skopeo copy oci-archive:... docker://REGISTRY/licensed:TAG`
#
# buildah (Debian package `buildah`) is installed with apt when missing and this runs as
# root, unless --no-install. It runs with a private, throw-away store (vfs driver: no
# overlay or FUSE needed) and never runs a container (so no isolation is needed), which
# is why it works in a sandbox; nothing is pulled.
#
# The image: / holds only /usr/local/bin/{licensed,licensectl}, their libraries and the
# dynamic loader, /etc/{passwd,group,nsswitch.conf,hosts}, /tmp (1777) and /data (the
# data dir, a volume, owned by the non-root user licensed, uid/gid 65532). No CA bundle:
# the server's outgoing TLS (peers, licensectl) trusts only the CAs it is given
# (rustls with manual roots), and its OTLP exporter speaks plain HTTP. No shell.
# Entrypoint `licensed`; user 65532:65532; ports 22022 (clients) and 22023 (Raft);
# LICENSED_DATA_DIR=/data and LICENSED_RAFT_LISTEN=0.0.0.0:22023 (peers in other
# containers must reach the Raft port; set LICENSED_ADVERTISE_RAFT in a cluster);
# NO_COLOR=1 (plain log lines on stderr, no terminal escapes in `docker logs`).
# deploy/Dockerfile makes the equivalent image for users with Docker.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
start=$PWD
# Paths given on the command line are relative to where it was run; defaults to the repo.
abs() { case "$1" in /*) echo "$1" ;; *) echo "$start/$1" ;; esac; }
cd "$repo"

out=target/image
oci=1
install=1
allow_chaos=0
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$(abs "$2"); shift 2 ;;
    --out=*) out=$(abs "${1#--out=}"); shift ;;
    --no-oci) oci=0; shift ;;
    --no-install) install=0; shift ;;
    --allow-chaos-build) allow_chaos=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "build.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) args+=("$(abs "$1")"); shift ;;
  esac
done
[ ${#args[@]} -le 2 ] || { echo "build.sh: at most two binaries (licensed, licensectl)" >&2; exit 2; }
licensed=${args[0]:-${CARGO_TARGET_DIR:-target}/debug/licensed}
licensectl=${args[1]:-$(dirname "$licensed")/licensectl}

UID_GID=65532
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f s", b - a }'; }
mib() { awk -v n="$1" 'BEGIN { printf "%.1f MiB", n / 1048576 }'; }
die() { echo "build.sh: $*" >&2; exit 1; }

t0=$(now)
for bin in "$licensed" "$licensectl"; do
  [ -x "$bin" ] || die "$bin: no such executable (build it: cargo build --locked --bin licensed --bin licensectl)"
done
for tool in ldd strip tar; do
  command -v "$tool" >/dev/null || die "$tool is needed (Debian: libc-bin, binutils, tar)"
done
version_line=$("$licensed" --version) || die "$licensed --version failed"
version=$(awk '{print $2}' <<<"$version_line")
case "$version_line" in
  *chaos*)
    if [ "$allow_chaos" = 1 ]; then
      echo "WARNING: $licensed is a chaos build ($version_line): for tests only, never ship it" >&2
    else
      die "$licensed is a chaos build ($version_line), not for an image. Build without the chaos crate: cargo build --locked --bin licensed --bin licensectl (or pass --allow-chaos-build for a test image)"
    fi ;;
esac
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}
revision=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)

mkdir -p "$out"
out=$(cd "$out" && pwd)
rootfs=$out/rootfs
rm -rf "$rootfs" "$out/rootfs.tar" "$out/licensed-image.oci.tar"
mkdir -p "$rootfs"

# --- the root filesystem ------------------------------------------------------------
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc"
for bin in "$licensed" "$licensectl"; do
  strip --strip-all -o "$rootfs/usr/local/bin/$(basename "$bin")" "$bin"
  chmod 0755 "$rootfs/usr/local/bin/$(basename "$bin")"
done

# Every library ldd resolves (transitively), at the path it resolved, and the loader at
# the path in the binaries' PT_INTERP. linux-vdso is the kernel's; "not found" is fatal.
libs=()
for bin in "$licensed" "$licensectl"; do
  listing=$(ldd "$bin" 2>&1) || {
    grep -q 'not a dynamic executable' <<<"$listing" && continue
    die "ldd $bin failed: $listing"
  }
  if grep -q 'not found' <<<"$listing"; then die "ldd $bin: $(grep 'not found' <<<"$listing")"; fi
  while read -r path; do libs+=("$path"); done < <(awk '
    $2 == "=>" && $3 ~ /^\// { print $3; next }
    $1 ~ /^\// { print $1 }' <<<"$listing")
done
mapfile -t libs < <(printf '%s\n' "${libs[@]}" | sort -u)
for lib in "${libs[@]}"; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
  chmod 0755 "$rootfs$lib"
done

cat >"$rootfs/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
licensed:x:$UID_GID:$UID_GID:licensed:/data:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
EOF
cat >"$rootfs/etc/group" <<EOF
root:x:0:
licensed:x:$UID_GID:
nogroup:x:65534:
EOF
# glibc's resolver (peer host names in --peers, --join): /etc/hosts first, then DNS.
# Container runtimes mount their own /etc/hosts and /etc/resolv.conf over these.
echo 'hosts: files dns' >"$rootfs/etc/nsswitch.conf"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$rootfs/etc/hosts"
chmod 0644 "$rootfs"/etc/*
mkdir -p "$rootfs/tmp" "$rootfs/data"
chmod 1777 "$rootfs/tmp"
chmod 0750 "$rootfs/data"
chown "$UID_GID:$UID_GID" "$rootfs/data"
chmod 0755 "$rootfs" "$rootfs/etc" "$rootfs/usr" "$rootfs/usr/local" "$rootfs/usr/local/bin"

# Reproducible: fixed mtimes, sorted entries, numeric owners.
find "$rootfs" -exec touch -h -d "@$epoch" {} +
tar --numeric-owner --sort=name --mtime="@$epoch" -C "$rootfs" -cf "$out/rootfs.tar" .
t_rootfs=$(now)

# --- the OCI image --------------------------------------------------------------------
oci_status="not built (--no-oci)"
if [ "$oci" = 1 ] && ! command -v buildah >/dev/null; then
  if [ "$install" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "build.sh: installing buildah (Debian package)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq buildah >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq buildah >/dev/null; } \
      || echo "build.sh: could not install buildah" >&2
  fi
  command -v buildah >/dev/null || oci_status="not built: buildah is not installed (apt-get install buildah)"
fi
if [ "$oci" = 1 ] && command -v buildah >/dev/null; then
  store=$(mktemp -d "${TMPDIR:-/tmp}/licensed-buildah.XXXXXX")
  ctr=
  # buildah also keeps a blob-info cache and a network config dir of its own: remove
  # them too when this run made them.
  made=()
  for dir in /var/lib/containers /run/containers; do [ -e "$dir" ] || made+=("$dir"); done
  cleanup_store() {
    if [ -n "$ctr" ]; then "${B[@]}" rm "$ctr" >/dev/null 2>&1 || true; fi
    rm -rf "$store"
    if [ ${#made[@]} -gt 0 ]; then rm -rf "${made[@]}"; fi
  }
  trap cleanup_store EXIT
  # A private store (nothing left in /var/lib/containers), vfs: no overlay mounts.
  B=(buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs)
  ctr=$("${B[@]}" from --name "licensed-image-$$" scratch)
  # `add` of a tar keeps its owners (/data is 65532's); `copy` would make them root's.
  "${B[@]}" add --quiet "$ctr" "$out/rootfs.tar" / >/dev/null
  "${B[@]}" config \
    --os linux --arch "$(uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')" \
    --user "$UID_GID:$UID_GID" \
    --entrypoint '["/usr/local/bin/licensed"]' --cmd '' \
    --port 22022/tcp --port 22023/tcp \
    --volume /data --workingdir /data \
    --env PATH=/usr/local/bin \
    --env LICENSED_DATA_DIR=/data \
    --env LICENSED_RAFT_LISTEN=0.0.0.0:22023 \
    --env NO_COLOR=1 \
    --stop-signal SIGTERM \
    --created-by "deploy/image/build.sh" \
    --label org.opencontainers.image.title=licensed \
    --label "org.opencontainers.image.description=High-availability license server (MVTec Borrow API, Raft)" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.revision=$revision" \
    --label org.opencontainers.image.licenses=Apache-2.0 \
    "$ctr"
  "${B[@]}" commit --quiet --format oci --timestamp "$epoch" --identity-label=false --rm "$ctr" \
    "oci-archive:$out/licensed-image.oci.tar:licensed:$version" >/dev/null
  ctr=
  cleanup_store
  trap - EXIT
  oci_status="$out/licensed-image.oci.tar"
fi
t_oci=$(now)

# --- report -----------------------------------------------------------------------------
echo "licensed image $version ($version_line) from $licensed, revision ${revision:0:12}"
echo "files in the root filesystem:"
(cd "$rootfs" && find . -type f -printf '%s %P\n' | sort -k2 | awk '{ printf "  %10d  /%s\n", $1, $2 }')
bins=$(stat -c %s "$licensed" "$licensectl" | awk '{ s += $1 } END { print s }')
stripped=$(stat -c %s "$rootfs"/usr/local/bin/* | awk '{ s += $1 } END { print s }')
echo "binaries: $(mib "$bins") as built, $(mib "$stripped") stripped; ${#libs[@]} libraries and the loader"
echo "root filesystem: $(mib "$(stat -c %s "$out/rootfs.tar")") ($out/rootfs.tar)"
if [ -f "$out/licensed-image.oci.tar" ]; then
  layer_gz=$(gzip -6 -c "$out/rootfs.tar" | wc -c)
  echo "image size: $(mib "$(stat -c %s "$out/licensed-image.oci.tar")") uncompressed OCI archive, $(mib "$layer_gz") as a gzip layer in a registry ($oci_status, tag licensed:$version)"
else
  echo "image: $oci_status"
fi
echo "timings: root filesystem $(secs "$t0" "$t_rootfs"), OCI image $(secs "$t_rootfs" "$t_oci"), total $(secs "$t0" "$(now)")"
