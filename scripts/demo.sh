#!/usr/bin/env bash
# The README's main command: on a fresh Debian machine (as root) installs what is
# missing, builds weft, brings up a 3-host lab of network namespaces (etcd, weftd and
# weft-proxy on every host, pods attached by the weft CNI plugin serving HTTP), applies
# a Service and verifies pings between all pods, the ClusterIP and the NodePort.
#   bash scripts/demo.sh [--backend vxlan|host-gw|udp] [--proxy-mode iptables|nftables] [--id demo]
#                        [--control-plane etcd|kubernetes]   (kubernetes: needs scripts/kube-apiserver.sh once)
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND=vxlan; PROXY=iptables; ID=demo; HOSTS=3; PODS=2; PLANE=etcd
while [ $# -gt 0 ]; do
  case "$1" in
    --backend) BACKEND=$2; shift 2;;
    --proxy-mode) PROXY=$2; shift 2;;
    --id) ID=$2; shift 2;;
    --hosts) HOSTS=$2; shift 2;;
    --pods-per-host) PODS=$2; shift 2;;
    --control-plane) PLANE=$2; shift 2;;
    -h|--help) sed -n 2,7p "$0"; exit 0;;
    *) echo "demo: unknown option $1" >&2; exit 2;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "demo: run as root (the lab creates network namespaces)" >&2; exit 1; }

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
step "installing Debian packages that are missing"
bash scripts/install-deps.sh
if [ ! -d node_modules ] || [ ! -f native/build/Release/weft_native.node ]; then
  step "npm ci (builds the native addon)"
  npm ci --no-audit --no-fund
fi
step "building"
npm run -s build

# Lab, pods through the CNI plugin, weft-proxy, a Service, then ping + curl checks.
exec node dist/cli/weftctl.js demo --id "$ID" --backend "$BACKEND" --proxy-mode "$PROXY" --hosts "$HOSTS" --pods-per-host "$PODS" --control-plane "$PLANE"
