#!/usr/bin/env bash
# The offline Vagrant path in one go (docs/vagrant.md), for this machine and
# test/vm/vagrant.test.ts. Run it inside a network namespace of your own:
#
#   ip netns exec NS unshare --mount --propagation private bash vagrant/offline-up.sh WORKDIR BOX
#
# WORKDIR (empty directory) holds libvirt's config, state, logs, the storage
# pool and VAGRANT_HOME; bind-mounted over /etc/libvirt, /run/libvirt,
# /var/lib/libvirt and /var/log/libvirt in this mount namespace only, so the
# host's libvirt (if any) is untouched. libvirtd and virtlogd are started here
# (qemu as root, no security driver), a pool `default` is defined in WORKDIR,
# the box is added, `vagrant up` (1 node, 1024 MB, 1 vCPU, the lab's
# documentation addresses) and `vagrant provision --provision-with verify`
# run, then `vagrant destroy -f`; the daemons are stopped by PID on exit.
set -euo pipefail
WORK=${1:?workdir}
BOX=${2:?box file}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
say() { echo "offline-up: $(date -u +%T) $*"; }
die() { echo "offline-up: error: $*" >&2; exit 1; }
[ -d "$WORK" ] || die "$WORK is not a directory"
[ -f "$BOX" ] || die "$BOX is not a box file"
for t in vagrant libvirtd virtlogd virsh; do command -v "$t" >/dev/null || die "$t not found"; done

mkdir -p "$WORK"/{etc,run,lib,log,pool,vagrant-home}
mount --bind "$WORK/etc" /etc/libvirt
mount --bind "$WORK/run" /run/libvirt 2>/dev/null || { mkdir -p /run/libvirt && mount --bind "$WORK/run" /run/libvirt; }
mount --bind "$WORK/lib" /var/lib/libvirt
mount --bind "$WORK/log" /var/log/libvirt
mkdir -p /var/lib/libvirt/qemu /var/log/libvirt/qemu /etc/libvirt/qemu
cat >/etc/libvirt/qemu.conf <<'EOF'
user = "root"
group = "root"
security_driver = "none"
dynamic_ownership = 0
EOF
cat >/etc/libvirt/libvirtd.conf <<'EOF'
unix_sock_group = "root"
unix_sock_rw_perms = "0770"
auth_unix_rw = "none"
EOF
: >/etc/libvirt/virtlogd.conf

PIDS=()
stop_all() {
  set +e
  if [ -n "${VAGRANT_HOME:-}" ] && [ -d "$HERE/.vagrant" ]; then (cd "$HERE" && vagrant destroy -f >/dev/null 2>&1); fi
  for p in "$WORK/run/libvirtd.pid" "$WORK/run/virtlogd.pid"; do
    [ -s "$p" ] && kill "$(cat "$p")" 2>/dev/null
  done
}
trap stop_all EXIT
virtlogd -d -p "$WORK/run/virtlogd.pid"
libvirtd -d -p "$WORK/run/libvirtd.pid"
for _ in $(seq 60); do virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 1; done
virsh -c qemu:///system version >/dev/null || die "libvirtd did not answer"
virsh -c qemu:///system pool-define-as default dir --target "$WORK/pool" >/dev/null
virsh -c qemu:///system pool-start default >/dev/null
say "libvirtd up (pid $(cat "$WORK/run/libvirtd.pid"))"

export VAGRANT_HOME=$WORK/vagrant-home VAGRANT_DEFAULT_PROVIDER=libvirt
export WEFT_VAGRANT_BOX=weft/bookworm WEFT_VAGRANT_OFFLINE=1 WEFT_VAGRANT_NODES=${WEFT_VAGRANT_NODES:-1}
export WEFT_VM_MEMORY=1024 WEFT_VM_CPUS=1 WEFT_VAGRANT_BOOT_TIMEOUT=${WEFT_VAGRANT_BOOT_TIMEOUT:-1200}
export WEFT_VAGRANT_NET=192.0.2.0/24 WEFT_VAGRANT_MGMT_NET=198.51.100.0/24
vagrant box add --force --name weft/bookworm "$BOX"
cd "$HERE"
t0=$(date +%s)
vagrant up --provider libvirt
say "vagrant up took $(( $(date +%s) - t0 ))s"
t1=$(date +%s)
vagrant provision --provision-with verify
say "verify took $(( $(date +%s) - t1 ))s"
say "PASS"
