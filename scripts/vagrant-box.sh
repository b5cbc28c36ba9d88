#!/usr/bin/env bash
# Builds (once) a vagrant-libvirt box of Debian bookworm that can run
# vagrant/provision.sh without any network (docs/vagrant.md):
#
#   <cache>/<key>/weft-bookworm.box   the box: metadata.json, Vagrantfile,
#                                     box.img (qcow2, ext4 without partition
#                                     table, root=/dev/vda), vmlinuz, initrd.img
#   <cache>/<key>/manifest.txt        base, packages, kernel, build time
#   <cache>/current -> <key>          the newest complete build
#
# The root filesystem starts from the VM tier's image (scripts/vm-image.sh,
# /var/cache/weft/vm/current) when that is built, else from its own
# debootstrap (the same package list plus the box's). On top: systemd,
# openssh-server, sudo, rsync, podman and every package scripts/install-deps.sh
# wants (so provisioning installs nothing), the host's Node 20 binary as
# /usr/bin/node, a `vagrant` user with Vagrant's well-known insecure key
# (Vagrant replaces it on first `vagrant up`), DHCP on eth* by
# systemd-networkd, an empty /etc/machine-id and no ssh host keys (each VM
# makes its own on first boot). The box boots by direct kernel boot (the
# box's Vagrantfile gives libvirt the kernel, initrd and command line): no
# boot loader in the image.
#
# <key> hashes this script, the base image's key and the Node binary, so an
# unchanged input reuses the box (seconds). The only network used is Debian's
# apt mirror, the one configured in /etc/apt/sources.list*.
#
# Options: --print-box (print the box path; exit 1 if not built), --cache DIR
# (default /var/cache/weft/vagrant, env WEFT_VAGRANT_CACHE), --base DIR (a
# complete vm-image directory; default /var/cache/weft/vm/current if
# complete), --no-base (always debootstrap), --mirror URL.
set -euo pipefail

SUITE=bookworm
# The VM tier's packages (scripts/vm-image.sh), used when debootstrapping alone.
BASE_PKGS=(linux-image-cloud-amd64 initramfs-tools kmod udev iproute2 iptables nftables ipset ipvsadm
           conntrack etcd-server curl iperf3 iputils-ping procps ca-certificates e2fsprogs)
# What a Vagrant box needs on top: systemd as init (provision.sh and
# install-weft.sh use systemd units), ssh + sudo for Vagrant, rsync for the
# synced folder, dbus for hostnamectl, and the packages provision.sh and
# scripts/install-deps.sh check for (install-deps.sh installs only what is
# missing, so with these present it installs nothing).
BOX_PKGS=(systemd systemd-sysv dbus openssh-server sudo rsync gnupg etcd-client
          etcd-server iproute2 iptables nftables conntrack ipset iputils-ping curl iperf3 ethtool
          containernetworking-plugins podman runc busybox-static make g++ python3 ipvsadm)
CACHE=${WEFT_VAGRANT_CACHE:-/var/cache/weft/vagrant}
VM_CACHE=${WEFT_VM_CACHE:-/var/cache/weft/vm}
BASE=
NO_BASE=0
MIRROR=
MODE=build
while [ $# -gt 0 ]; do
  case "$1" in
    --print-box) MODE=box; shift ;;
    --cache) CACHE=$2; shift 2 ;;
    --base) BASE=$2; shift 2 ;;
    --no-base) NO_BASE=1; shift ;;
    --mirror) MIRROR=$2; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "vagrant-box: unknown option $1" >&2; exit 2 ;;
  esac
done

say() { echo "vagrant-box: $*"; }
die() { echo "vagrant-box: error: $*" >&2; exit 1; }

base_complete() { [ -f "$1/.complete" ] && [ -f "$1/rootfs.qcow2" ] && [ -f "$1/vmlinuz" ] && [ -f "$1/initrd.img" ]; }
if [ "$NO_BASE" = 1 ]; then
  BASE=
elif [ -z "$BASE" ] && [ -e "$VM_CACHE/current" ] && base_complete "$(readlink -f "$VM_CACHE/current")"; then
  BASE=$(readlink -f "$VM_CACHE/current")
fi
[ -z "$BASE" ] || base_complete "$BASE" || die "$BASE is not a complete vm-image directory"

NODE_BIN=$(command -v node || true)
[ -n "$NODE_BIN" ] || die "node not found: the box carries the host's Node 20 binary"
NODE_BIN=$(readlink -f "$NODE_BIN")
[ "$("$NODE_BIN" -p 'process.versions.node.split(".")[0]')" -ge 20 ] || die "the host's node is older than 20"
INSECURE_KEY=
for k in /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub /opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.pub; do
  [ -f "$k" ] && INSECURE_KEY=$k && break
done
[ -n "$INSECURE_KEY" ] || die "Vagrant's insecure public key (keys/vagrant.pub) not found: is vagrant installed?"

SELF=$(readlink -f "${BASH_SOURCE[0]}")
BASE_ID=debootstrap
[ -z "$BASE" ] || BASE_ID=$(basename "$BASE")
KEY=$( { cat "$SELF"; echo "$SUITE $BASE_ID"; sha256sum "$NODE_BIN" "$INSECURE_KEY" | cut -d' ' -f1; } | sha256sum | cut -c1-16)
DIR=$CACHE/$KEY
BOX=$DIR/weft-bookworm.box
complete() { [ -f "$DIR/.complete" ] && [ -f "$BOX" ]; }
if [ "$MODE" = box ]; then echo "$BOX"; complete; exit $?; fi

if complete; then
  ln -sfn "$KEY" "$CACHE/current"
  say "cached: $BOX"
  exit 0
fi
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot, mkfs)"
for t in debootstrap mkfs.ext4 qemu-img chroot; do command -v "$t" >/dev/null || die "$t not found"; done

if [ -z "$MIRROR" ]; then
  MIRROR=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -1 | tr -d ' ' || true)
  [ -n "$MIRROR" ] || die "no Debian mirror found in /etc/apt/sources.list*; give --mirror URL"
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock-$KEY"
flock -w 3600 9 || die "another build of $KEY held the lock for an hour"
if complete; then ln -sfn "$KEY" "$CACHE/current"; say "cached: $BOX (built by another run)"; exit 0; fi

start=$(date +%s)
WORK=$(mktemp -d "$CACHE/.build-$KEY.XXXXXX")
ROOT=$WORK/root
MNT=$WORK/base-mnt
unmount_all() {
  local m
  for m in "$ROOT/dev/pts" "$ROOT/dev" "$ROOT/proc" "$ROOT/sys" "$MNT"; do
    mountpoint -q "$m" 2>/dev/null && umount -l "$m" || true
  done
}
cleanup() { unmount_all; rm -rf "$WORK"; }
trap cleanup EXIT

policy_rc() {
  # Services must not start inside the chroot (etcd-server's, ssh's postinst).
  mkdir -p "$ROOT/usr/sbin"
  printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
  chmod 755 "$ROOT/usr/sbin/policy-rc.d"
}

if [ -n "$BASE" ]; then
  say "base: the VM tier's image $BASE"
  qemu-img convert -f qcow2 -O raw "$BASE/rootfs.qcow2" "$WORK/base.raw"
  mkdir -p "$MNT" "$ROOT"
  mount -o loop,ro "$WORK/base.raw" "$MNT"
  cp -a "$MNT/." "$ROOT/"
  umount "$MNT"
  rm -f "$WORK/base.raw"
  # The tier's own init is not the box's: Vagrant needs systemd and sshd.
  rm -f "$ROOT/sbin/weft-init"
  policy_rc
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  [ -s "$ROOT/etc/apt/sources.list" ] || echo "deb $MIRROR $SUITE main" >"$ROOT/etc/apt/sources.list"
  mount -t proc proc "$ROOT/proc"
  mount -t sysfs sys "$ROOT/sys"
  mount --bind /dev "$ROOT/dev"
  mount --bind /dev/pts "$ROOT/dev/pts"
  say "apt-get install in the image: ${BOX_PKGS[*]}"
  chroot "$ROOT" /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$WORK/apt.log" 2>&1 ||
    { tail -20 "$WORK/apt.log" >&2; die "apt-get update in the image failed"; }
  chroot "$ROOT" /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${BOX_PKGS[@]}" >>"$WORK/apt.log" 2>&1 || { tail -30 "$WORK/apt.log" >&2; die "apt-get install in the image failed"; }
  cp "$BASE/vmlinuz" "$WORK/vmlinuz"
  cp "$BASE/initrd.img" "$WORK/initrd.img"
  KVER=$(ls "$ROOT/lib/modules" | head -1)
  unmount_all
else
  say "base: debootstrap $SUITE from $MIRROR (the VM tier's image is not built)"
  policy_rc
  inc=$(printf '%s\n' "${BASE_PKGS[@]}" "${BOX_PKGS[@]}" | sort -u | paste -sd,)
  debootstrap --variant=minbase --include="$inc" "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -30 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
  say "debootstrap done after $(( $(date +%s) - start ))s"
  KVER=$(ls "$ROOT/lib/modules" | head -1)
  [ -n "$KVER" ] || die "no kernel in the image"
  printf 'virtio_pci\nvirtio_blk\nvirtio_net\nvirtio_console\next4\n' >>"$ROOT/etc/initramfs-tools/modules"
  mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
  chroot "$ROOT" update-initramfs -u -k "$KVER" >"$WORK/initramfs.log" 2>&1 || { cat "$WORK/initramfs.log" >&2; die "update-initramfs failed"; }
  cp "$ROOT/boot/vmlinuz-$KVER" "$WORK/vmlinuz"
  cp "$ROOT/boot/initrd.img-$KVER" "$WORK/initrd.img"
  unmount_all
fi
for m in ip_vs dummy vxlan br_netfilter virtio_blk virtio_net; do
  find "$ROOT/lib/modules/$KVER" -name "$m.ko*" | grep -q . || die "module $m missing from kernel $KVER"
done

# ---- the box's configuration
echo weft-box >"$ROOT/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 weft-box\n' >"$ROOT/etc/hosts"
printf '/dev/vda / ext4 rw,relatime 0 1\n' >"$ROOT/etc/fstab"
: >"$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id"
ln -s /etc/machine-id "$ROOT/var/lib/dbus/machine-id"
rm -f "$ROOT/etc/resolv.conf"
: >"$ROOT/etc/resolv.conf"
# Node 20: the host's binary (Debian's standard libraries only; bookworm's own is 18).
install -m 0755 "$NODE_BIN" "$ROOT/usr/bin/node"
chroot "$ROOT" /usr/bin/node -e 'process.exit(process.versions.node.split(".")[0] >= 20 ? 0 : 1)' ||
  die "the host's node does not run in the image"

# The vagrant user, passwordless sudo, Vagrant's insecure key.
chroot "$ROOT" useradd -m -s /bin/bash -U vagrant 2>/dev/null || true
install -d -m 0700 -o 1000 -g 1000 "$ROOT/home/vagrant/.ssh"
install -m 0600 -o 1000 -g 1000 "$INSECURE_KEY" "$ROOT/home/vagrant/.ssh/authorized_keys"
chroot "$ROOT" chown -R vagrant:vagrant /home/vagrant
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' >"$ROOT/etc/sudoers.d/vagrant"
chmod 0440 "$ROOT/etc/sudoers.d/vagrant"
# Vagrant's commands must not wait on a DNS lookup that never answers.
printf 'UseDNS no\n' >"$ROOT/etc/ssh/sshd_config.d/weft-box.conf"

# No shared host keys: each VM makes its own before sshd starts.
rm -f "$ROOT"/etc/ssh/ssh_host_*
cat >"$ROOT/etc/systemd/system/weft-ssh-hostkeys.service" <<'EOF'
[Unit]
Description=Generate this VM's ssh host keys (weft Vagrant box)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=ssh.service
EOF
mkdir -p "$ROOT/etc/systemd/system/ssh.service.wants"
ln -sf ../weft-ssh-hostkeys.service "$ROOT/etc/systemd/system/ssh.service.wants/weft-ssh-hostkeys.service"

# DHCP on every eth* (Vagrant's management network); Vagrant writes its own
# 50-vagrant-*.network files for the private network, which match first.
cat >"$ROOT/etc/systemd/network/80-weft-box-dhcp.network" <<'EOF'
[Match]
Name=eth*

[Network]
DHCP=ipv4
EOF
mkdir -p "$ROOT/etc/systemd/system/multi-user.target.wants" "$ROOT/etc/systemd/system/sockets.target.wants"
ln -sf /lib/systemd/system/systemd-networkd.service "$ROOT/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
ln -sf /lib/systemd/system/systemd-networkd.socket "$ROOT/etc/systemd/system/sockets.target.wants/systemd-networkd.socket"
ln -sf /lib/systemd/system/ssh.service "$ROOT/etc/systemd/system/multi-user.target.wants/ssh.service"
# Boot-time work that only slows an emulated guest.
for u in apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer; do
  ln -sf /dev/null "$ROOT/etc/systemd/system/$u"
done
# The Debian etcd-server package starts a local etcd (as after install-deps.sh
# on a stock box); provision.sh reconfigures it on node1 and stops it elsewhere.
rm -f "$ROOT/usr/sbin/policy-rc.d"
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*

say "filesystem and box"
mkdir -p "$WORK/box"
mkfs.ext4 -q -F -L weft-box -d "$ROOT" "$WORK/box.raw" 4G
qemu-img convert -f raw -O qcow2 "$WORK/box.raw" "$WORK/box/box.img"
rm -f "$WORK/box.raw"
mv "$WORK/vmlinuz" "$WORK/initrd.img" "$WORK/box/"
cat >"$WORK/box/metadata.json" <<'EOF'
{ "provider": "libvirt", "format": "qcow2", "virtual_size": 4 }
EOF
cat >"$WORK/box/Vagrantfile" <<'EOF'
# weft's local bookworm box (scripts/vagrant-box.sh): direct kernel boot, no
# boot loader in the image. KVM where the CPU has it, else QEMU's emulation
# (TCG); WEFT_VAGRANT_DRIVER=kvm|qemu overrides.
Vagrant.configure('2') do |config|
  config.vm.provider :libvirt do |lv|
    kvm = File.readable?('/proc/cpuinfo') && File.read('/proc/cpuinfo').match?(/\b(vmx|svm)\b/)
    lv.driver = ENV.fetch('WEFT_VAGRANT_DRIVER', kvm ? 'kvm' : 'qemu')
    lv.kernel = File.join(__dir__, 'vmlinuz')
    lv.initrd = File.join(__dir__, 'initrd.img')
    lv.cmd_line = 'root=/dev/vda rw console=ttyS0 net.ifnames=0 biosdevname=0'
    lv.disk_bus = 'virtio'
  end
end
EOF
tar -C "$WORK/box" -cf "$WORK/weft-bookworm.box" metadata.json Vagrantfile box.img vmlinuz initrd.img
mkdir -p "$WORK/out"
mv "$WORK/weft-bookworm.box" "$WORK/out/"
{
  echo "suite: $SUITE"
  echo "base: ${BASE:-debootstrap from $MIRROR}"
  echo "kernel: $KVER"
  echo "node: $("$NODE_BIN" --version) from $NODE_BIN"
  echo "packages: ${BOX_PKGS[*]}"
  echo "built: $(date -u +%FT%TZ) in $(( $(date +%s) - start ))s"
} >"$WORK/out/manifest.txt"
touch "$WORK/out/.complete"
rm -rf "$DIR"
mv "$WORK/out" "$DIR"
ln -sfn "$KEY" "$CACHE/current"
say "built $BOX in $(( $(date +%s) - start ))s"
