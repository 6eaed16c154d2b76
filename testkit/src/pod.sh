#!/usr/bin/env bash
# One pod of a rendered StatefulSet, as a container runtime would start it. Run by
# `licensed_testkit::pods` as `unshare --net --mount --uts -- bash pod.sh -- COMMAND ARGS...`,
# so this script already has the pod's own network, mount and UTS namespaces. It waits for
# the harness to move the pod's network interface (eth0) in, sets the pod's address and
# hostname, builds the container's root filesystem from bind mounts (read-only, with the
# pod's volumes on top), then replaces itself with the container's command, run as the
# pod's user in that root with exactly the container's environment.
#
# Settings (environment):
#   POD_NAME       hostname of the pod (NAME-ORDINAL)
#   POD_IP         the pod's address, with its prefix length (10.77.0.10/24)
#   POD_ROOT       an empty directory that becomes the container's /
#   POD_BINARY     the licensed executable, mounted at /usr/local/bin/licensed
#   POD_HOSTS      the cluster's hosts file (the headless Service's DNS names)
#   POD_MOUNTS     file of volume mounts, one per line: SOURCE<TAB>PATH<TAB>ro|rw
#   POD_ENV        file of the container's environment, one NAME=VALUE per line
#   POD_USER       uid:gid the container runs as; POD_GROUPS its supplementary groups
#   POD_READ_ONLY  1 for a read-only root filesystem
set -euo pipefail
[ "${1:-}" = "--" ] && shift

for _ in $(seq 1 1000); do
  ip link show eth0 >/dev/null 2>&1 && break
  sleep 0.01
done
ip link set lo up
ip addr add "$POD_IP" dev eth0
ip link set eth0 up
hostname "$POD_NAME"

root="$POD_ROOT"
mount --bind "$root" "$root"
mkdir -p "$root/usr/lib" "$root/usr/lib64" "$root/usr/local/bin" "$root/etc" "$root/proc" "$root/dev"
ln -sfn usr/lib "$root/lib"
ln -sfn usr/lib64 "$root/lib64"
# The shared libraries the binary needs (the image carries exactly those; the host's
# library directories, read-only, hold them too).
mount --bind -o ro /usr/lib "$root/usr/lib"
mount --bind -o ro /usr/lib64 "$root/usr/lib64"
touch "$root/usr/local/bin/licensed"
mount --bind -o ro "$POD_BINARY" "$root/usr/local/bin/licensed"
printf 'root:x:0:0:root:/:/sbin/nologin\nlicensed:x:65532:65532:licensed:/data:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nlicensed:x:65532:\n' >"$root/etc/group"
printf 'hosts: files\n' >"$root/etc/nsswitch.conf"
touch "$root/etc/hosts"
mount --bind -o ro "$POD_HOSTS" "$root/etc/hosts"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
while IFS=$'\t' read -r source path mode; do
  [ -n "$source" ] || continue
  mkdir -p "$root$path"
  if [ "$mode" = ro ]; then
    mount --bind -o ro "$source" "$root$path"
  else
    mount --bind "$source" "$root$path"
  fi
done <"$POD_MOUNTS"
if [ "${POD_READ_ONLY:-0}" = 1 ]; then
  mount -o remount,bind,ro "$root"
fi

mapfile -t container_env <"$POD_ENV"
exec /usr/bin/env -i "${container_env[@]}" \
  /usr/sbin/chroot --userspec="$POD_USER" --groups="$POD_GROUPS" "$root" "$@"
