#!/usr/bin/env bash
# Installs the Debian packages weft needs (idempotent: installs only what is
# missing). Used by the demo, the test command, CI and the Vagrant provisioning.
set -euo pipefail
# make, g++ and python3: node-gyp builds the native addon and the CNI shim
# during npm ci.
PKGS=(etcd-server iproute2 iptables nftables conntrack ipset iputils-ping curl iperf3 ethtool
      containernetworking-plugins podman runc busybox-static make g++ python3)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "install-deps: all Debian packages present"
fi
# The Debian etcd-server package starts a system etcd on 127.0.0.1:2379; weft's
# lab and tests run their own, so leave the system one alone.
command -v node >/dev/null || { echo "install-deps: Node.js 20 is required (node not found)" >&2; exit 1; }

# The VM tier (weftctl vm, the vm test project, scripts/vm-image.sh): QEMU,
# qemu-img, debootstrap and mkfs.ext4 -d. Only Debian packages.
VM_PKGS=(qemu-system-x86 qemu-utils debootstrap e2fsprogs)
vm_missing=()
for p in "${VM_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || vm_missing+=("$p")
done
if [ ${#vm_missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${vm_missing[*]} (VM tier)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${vm_missing[@]}" >/dev/null
fi
