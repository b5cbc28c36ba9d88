#!/usr/bin/env bash
# The README's main command: on a fresh Debian machine (as root) installs what is
# missing, builds weft, brings up a 3-host lab of network namespaces (etcd, weftd
# on every host, pods) and verifies that pods reach each other across hosts.
#   bash scripts/demo.sh [--backend vxlan|host-gw|udp] [--id demo] [--hosts 3] [--pods-per-host 2]
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND=vxlan; ID=demo; HOSTS=3; PODS=2
while [ $# -gt 0 ]; do
  case "$1" in
    --backend) BACKEND=$2; shift 2;;
    --id) ID=$2; shift 2;;
    --hosts) HOSTS=$2; shift 2;;
    --pods-per-host) PODS=$2; shift 2;;
    -h|--help) sed -n 2,5p "$0"; exit 0;;
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

WEFTCTL="node dist/cli/weftctl.js"
step "removing an older lab '$ID' if any"
$WEFTCTL lab down --id "$ID" >/dev/null 2>&1 || true
step "bringing up a $HOSTS-host lab '$ID' (backend $BACKEND, $PODS pods per host)"
$WEFTCTL lab up --id "$ID" --hosts "$HOSTS" --pods-per-host "$PODS" --backend "$BACKEND"
$WEFTCTL lab status --id "$ID"

step "verifying: every pod pings every other pod"
rc=0
node scripts/verify-ping --lab "$ID" || rc=$?

cat <<MSG

Look around:
  $WEFTCTL lab exec --id $ID h1 -- ip route          # routes weftd programmed
  $WEFTCTL lab exec --id $ID h1-p1 -- ping -c1 <pod IP>
  $WEFTCTL lab exec --id $ID sw -- true              # the switch (etcd at 192.0.2.254:2379)
  cat /run/weft-lab/$ID/h1/weftd.log                 # a host's daemon log
Stop:
  $WEFTCTL lab down --id $ID
MSG
exit $rc
