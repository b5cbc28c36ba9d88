#!/usr/bin/env bash
# Builds (once) the Debian bookworm guest image of weft's VM tier (docs/vm.md):
#
#   /var/cache/weft/vm/<key>/rootfs.qcow2   ext4 root filesystem, no partition
#                                           table (root=/dev/vda), qcow2
#   /var/cache/weft/vm/<key>/vmlinuz        the guest kernel (direct kernel boot)
#   /var/cache/weft/vm/<key>/initrd.img     its initramfs
#   /var/cache/weft/vm/<key>/manifest.txt   suite, packages, kernel, build time
#   /var/cache/weft/vm/current -> <key>     the newest complete build
#
# <key> is a hash of this script (which holds the package list and the guest's
# init) and the suite, so a change to either builds a new image and an
# unchanged one is reused (seconds). The only network used is Debian's apt
# mirror, the one configured in /etc/apt/sources.list*; nothing is downloaded
# from inside a guest, ever. weft itself is NOT in the image: each `weftctl vm
# up` hands the built tree to the guests on a read-only second disk.
#
# Options: --print-key (print the key and exit), --print-dir (print the image
# directory and exit 0 if it is complete, 1 if not), --cache DIR (default
# /var/cache/weft/vm, env WEFT_VM_CACHE), --mirror URL (default: from apt).
set -euo pipefail

SUITE=bookworm
# The guest's packages. linux-image-cloud-amd64 has ip_vs, dummy, vxlan,
# ip_set, nf_tables and virtio (no 9p: weft comes on a disk, see above).
PKGS=(linux-image-cloud-amd64 initramfs-tools kmod udev iproute2 iptables nftables ipset ipvsadm
      conntrack etcd-server curl iperf3 iputils-ping procps ca-certificates e2fsprogs)
CACHE=${WEFT_VM_CACHE:-/var/cache/weft/vm}
MIRROR=
MODE=build
while [ $# -gt 0 ]; do
  case "$1" in
    --print-key) MODE=key; shift ;;
    --print-dir) MODE=dir; shift ;;
    --cache) CACHE=$2; shift 2 ;;
    --mirror) MIRROR=$2; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "vm-image: unknown option $1" >&2; exit 2 ;;
  esac
done

say() { echo "vm-image: $*"; }
die() { echo "vm-image: error: $*" >&2; exit 1; }

SELF=$(readlink -f "${BASH_SOURCE[0]}")
KEY=$( { cat "$SELF"; echo "$SUITE"; printf '%s\n' "${PKGS[@]}"; } | sha256sum | cut -c1-16)
DIR=$CACHE/$KEY
complete() { [ -f "$DIR/.complete" ] && [ -f "$DIR/rootfs.qcow2" ] && [ -f "$DIR/vmlinuz" ] && [ -f "$DIR/initrd.img" ]; }
case "$MODE" in
  key) echo "$KEY"; exit 0 ;;
  dir) echo "$DIR"; complete; exit $? ;;
esac

if complete; then
  ln -sfn "$KEY" "$CACHE/current"
  say "cached: $DIR"
  exit 0
fi
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, mkfs)"
for t in debootstrap mkfs.ext4 qemu-img; do command -v "$t" >/dev/null || die "$t not found (bash scripts/install-deps.sh)"; done

if [ -z "$MIRROR" ]; then
  # The first Debian (not -security) URI apt is configured with, deb822 or one-line form.
  MIRROR=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -1 | tr -d ' ' || true)
  [ -n "$MIRROR" ] || die "no Debian mirror found in /etc/apt/sources.list*; give --mirror URL"
fi

mkdir -p "$CACHE"
# One build per key at a time: a second caller waits for the first (bounded by flock -w).
exec 9>"$CACHE/.lock-$KEY"
flock -w 3600 9 || die "another build of $KEY held the lock for an hour"
if complete; then ln -sfn "$KEY" "$CACHE/current"; say "cached: $DIR (built by another run)"; exit 0; fi

start=$(date +%s)
WORK=$(mktemp -d "$CACHE/.build-$KEY.XXXXXX")
ROOT=$WORK/root
cleanup() {
  # Never leave mounts behind (debootstrap mounts proc/sys in the target).
  for m in "$ROOT/proc" "$ROOT/sys" "$ROOT/dev/pts" "$ROOT/dev"; do
    mountpoint -q "$m" 2>/dev/null && umount -l "$m" || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

say "debootstrap $SUITE from $MIRROR into $ROOT (key $KEY)"
inc=$(IFS=,; echo "${PKGS[*]}")
# Keep services from starting inside the chroot (etcd-server's postinst).
mkdir -p "$ROOT/usr/sbin"
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
debootstrap --variant=minbase --include="$inc" "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
  { tail -30 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
say "debootstrap done after $(( $(date +%s) - start ))s"

KVER=$(ls "$ROOT/lib/modules" | head -1)
[ -n "$KVER" ] || die "no kernel in the image"
for m in ip_vs dummy vxlan ip_set virtio_blk virtio_net virtio_console nf_tables; do
  find "$ROOT/lib/modules/$KVER" -name "$m.ko*" | grep -q . || die "module $m missing from kernel $KVER"
done

# ---- guest configuration
echo weft-vm >"$ROOT/etc/hostname"
printf '127.0.0.1 localhost\n' >"$ROOT/etc/hosts"
printf '/dev/vda / ext4 rw,relatime 0 1\n' >"$ROOT/etc/fstab"
# Empty machine-id: each guest (and a Vagrant box made from this image) gets its own.
: >"$ROOT/etc/machine-id"
# The virtio drivers the initramfs must carry for root=/dev/vda.
printf 'virtio_pci\nvirtio_blk\nvirtio_net\nvirtio_console\next4\n' >>"$ROOT/etc/initramfs-tools/modules"
# The guest's etcd comes from weft's tier (guest 1 only), not from the package's unit.
rm -f "$ROOT/etc/systemd/system/multi-user.target.wants/etcd.service"

# The tier's init (PID 1): mounts, the underlay address from the kernel command
# line, then the tier's agent from the weft disk (/opt/weft), restarted if it
# exits. Chosen over systemd: booting 3 guests at once under TCG on a loaded
# 2-core host took ~270 s with systemd and 41-65 s with an init like this
# (issue 22); weftd and weft-proxy are then started by the tier (docs/vm.md).
cat >"$ROOT/sbin/weft-init" <<'EOF'
#!/bin/bash
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
mount -o remount,rw /
arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^$1=//p" | tail -1; }
host=$(arg weft.hostname); ip4=$(arg weft.ip); gw=$(arg weft.gw)
[ -n "$host" ] && hostname "$host" && echo "$host" >/etc/hostname
[ -s /etc/machine-id ] || tr -d - </proc/sys/kernel/random/uuid >/etc/machine-id
for m in virtio_net virtio_console virtio_blk; do modprobe "$m" 2>/dev/null; done
ip link set lo up
for i in $(seq 1 100); do [ -e /sys/class/net/eth0 ] && break; sleep 0.1; done
ip link set eth0 up
[ -n "$ip4" ] && ip addr add "$ip4" dev eth0
[ -n "$gw" ] && ip route add default via "$gw" dev eth0
mkdir -p /opt/weft
for i in $(seq 1 100); do [ -e /dev/vdb ] && break; sleep 0.1; done
mount -o ro /dev/vdb /opt/weft
ln -sf /opt/weft/node/node /usr/local/bin/node
echo "weft-init: $host $ip4 up after $(cut -d' ' -f1 /proc/uptime)s"
trap '' TERM
while :; do
  /opt/weft/node/node /opt/weft/tree/dist/vm/agent.js >>/run/weft-agent.log 2>&1
  echo "weft-init: agent exited $?, restarting" >>/run/weft-agent.log
  sleep 1
done
EOF
chmod 755 "$ROOT/sbin/weft-init"

chroot "$ROOT" update-initramfs -u -k "$KVER" >"$WORK/initramfs.log" 2>&1 || { cat "$WORK/initramfs.log" >&2; die "update-initramfs failed"; }
rm -f "$ROOT/usr/sbin/policy-rc.d"

mkdir -p "$WORK/out"
cp "$ROOT/boot/vmlinuz-$KVER" "$WORK/out/vmlinuz"
cp "$ROOT/boot/initrd.img-$KVER" "$WORK/out/initrd.img"
# Smaller image: apt's package cache and lists are not needed in a guest.
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*
mountpoint -q "$ROOT/proc" && umount -l "$ROOT/proc" || true
mountpoint -q "$ROOT/sys" && umount -l "$ROOT/sys" || true
mkfs.ext4 -q -F -L weft-root -d "$ROOT" "$WORK/rootfs.raw" 2G
qemu-img convert -f raw -O qcow2 "$WORK/rootfs.raw" "$WORK/out/rootfs.qcow2"
{
  echo "suite: $SUITE"
  echo "mirror: $MIRROR"
  echo "kernel: $KVER"
  echo "init: /sbin/weft-init"
  echo "packages: ${PKGS[*]}"
  echo "built: $(date -u +%FT%TZ) in $(( $(date +%s) - start ))s"
} >"$WORK/out/manifest.txt"
touch "$WORK/out/.complete"
rm -rf "$DIR"
mv "$WORK/out" "$DIR"
ln -sfn "$KEY" "$CACHE/current"
say "built $DIR in $(( $(date +%s) - start ))s"
