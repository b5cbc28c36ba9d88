#!/usr/bin/env bash
# Vagrant provisioning for one weft node (runs inside the VM, as root).
#
#   provision.sh install NAME IP ETCD_IP ALL_NODES BACKEND PROXY_MODE
#   provision.sh verify  NAME IP ETCD_IP ALL_NODES BACKEND PROXY_MODE
#   provision.sh manifest    NAME IP ETCD_IP ALL_NODES BACKEND PROXY_MODE POD_IP
#   provision.sh verify-args NAME IP ETCD_IP ALL_NODES BACKEND PROXY_MODE POD_IP NETNS < slices.json
#   provision.sh iface       NAME IP ...   (the underlay interface weftd will be given)
#
# ALL_NODES is "node1=192.168.56.11,node2=...". `install` is safe to re-run:
# it builds weft from the synced checkout, runs the same install scripts CI
# runs (scripts/install-deps.sh, scripts/install-weft.sh), starts etcd on the
# etcd node, writes the network config once, starts a demo container, applies
# the demo Service and then runs `verify`. `verify` runs scripts/verify-ping
# and scripts/verify-curl from this node's demo container against every demo
# container registered so far.
#
# WEFT_OFFLINE=1 (the Vagrantfile's WEFT_VAGRANT_OFFLINE=1): nothing is
# downloaded. The synced checkout then carries the host's build (dist/,
# node_modules/ with the native addon, native/build/), used as it is instead
# of `npm ci` + `npm run build`; Node 20 and every Debian package must already
# be in the box (scripts/vagrant-box.sh builds such a box), else provisioning
# stops naming what is missing.
set -euo pipefail

ACTION=${1:?action}
NAME=${2:?node name}
IP=${3:?node private IP}
ETCD_IP=${4:?etcd IP}
ALL_NODES=${5:?all nodes}
BACKEND=${6:-vxlan}
PROXY_MODE=${7:-iptables}
OFFLINE=${WEFT_OFFLINE:-0}

SRC_SYNCED=/weft-src       # the rsync'd checkout (Vagrantfile)
WEFT=/opt/weft             # the copy this node builds and runs
ETCD=http://$ETCD_IP:2379
NETWORK=10.244.0.0/16
CLUSTER_IP=10.96.100.100
NODE_PORT=30080
DEMO=weft-demo             # container, image and Service name

say() { echo "[$NAME] $*"; }
die() { echo "[$NAME] error: $*" >&2; exit 1; }

# wait_for DESCRIPTION SECONDS CMD...: bounded poll, 1 s apart.
wait_for() {
  local what=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 1
  done
  die "timed out after ${secs}s waiting for $what"
}

weftctl() { /usr/local/bin/weftctl --etcd-endpoints "$ETCD" "$@"; }

# ------------------------------------------------------------------ steps

install_node20() {
  if command -v node >/dev/null && [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ]; then
    say "Node.js $(node --version) present"
    return
  fi
  [ "$OFFLINE" != 1 ] || die "offline: Node.js 20 is not in the box (found: $(node --version 2>/dev/null || echo none)); use a box from scripts/vagrant-box.sh"
  # Debian bookworm's nodejs is 18; weft needs 20 (NodeSource's apt repository).
  say "installing Node.js 20 from deb.nodesource.com"
  install -d -m 0755 /etc/apt/keyrings
  curl -fsSL https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key | gpg --dearmor --yes -o /etc/apt/keyrings/nodesource.gpg
  echo "deb [signed-by=/etc/apt/keyrings/nodesource.gpg] https://deb.nodesource.com/node_20.x nodistro main" \
    >/etc/apt/sources.list.d/nodesource.list
  apt-get update -qq
  apt-get install -y -qq nodejs >/dev/null
}

install_base_packages() {
  export DEBIAN_FRONTEND=noninteractive
  local pkgs=(ca-certificates curl gnupg rsync etcd-client) missing=() p
  for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$OFFLINE" != 1 ] || die "offline: the box lacks ${missing[*]}; use a box from scripts/vagrant-box.sh"
    say "installing ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# Builds weft in /opt/weft from the synced checkout. The copy keeps a later
# `vagrant rsync` from changing the code the services run until the next
# provision; npm ci reruns only when package-lock.json changed (the stamp is
# excluded from the rsync, or --delete would remove it every run).
build_weft() {
  if [ "$OFFLINE" = 1 ]; then
    use_bundle
    return
  fi
  rsync -a --delete --exclude node_modules/ --exclude dist/ --exclude native/build/ --exclude .git/ \
    --exclude /.npm-ci-stamp "$SRC_SYNCED/" "$WEFT/"
  local lock_sum
  lock_sum=$(sha256sum "$WEFT/package-lock.json" | cut -d' ' -f1)
  if [ ! -d "$WEFT/node_modules" ] || [ "$(cat "$WEFT/.npm-ci-stamp" 2>/dev/null)" != "$lock_sum" ]; then
    say "npm ci (builds the native addon)"
    (cd "$WEFT" && npm ci --no-audit --no-fund)
    echo "$lock_sum" >"$WEFT/.npm-ci-stamp"
  else
    say "npm ci: skipped (package-lock.json unchanged)"
  fi
  say "npm run build"
  (cd "$WEFT" && npm run build >/dev/null)
}

# Offline: the synced checkout is the built tree (the host's dist/,
# node_modules/ and native addon, same Debian release, CPU architecture and
# Node major as the box). Copied as it is; checked, not rebuilt.
use_bundle() {
  local f
  for f in dist/cli/weftctl.js dist/cni/weft-cni.cjs node_modules/.package-lock.json; do
    [ -e "$SRC_SYNCED/$f" ] || die "offline: $SRC_SYNCED/$f is missing: run npm ci && npm run build on the host before vagrant up"
  done
  rsync -a --delete --exclude .git/ --exclude /.npm-ci-stamp "$SRC_SYNCED/" "$WEFT/"
  local addon
  addon=$(find "$WEFT/native/build" -name '*.node' -print -quit 2>/dev/null || true)
  [ -n "$addon" ] || die "offline: no native addon under $WEFT/native/build (run npm ci on the host)"
  node -e 'require(process.argv[1])' "$addon" || die "offline: the native addon $addon does not load here (host and box differ in Node ABI or libc)"
  say "offline: using the host's build ($(cd "$WEFT" && node -p 'require("./package.json").version'), addon $(basename "$addon")); no npm ci"
}

# node1: etcd listens on the private IP for the other nodes (and on loopback).
# Other nodes: the Debian etcd-server package (pulled in by install-deps.sh)
# starts a local etcd; it is not used, so stop it.
setup_etcd() {
  if [ "$IP" = "$ETCD_IP" ]; then
    # Only the client URLs change; name, data dir and peer URLs stay the
    # package's (a single-member cluster).
    local conf=/etc/default/etcd want
    want=$(cat <<EOF
# Written by weft's vagrant/provision.sh: the cluster's etcd for weftd and weft-proxy.
ETCD_LISTEN_CLIENT_URLS=http://$ETCD_IP:2379,http://127.0.0.1:2379
ETCD_ADVERTISE_CLIENT_URLS=http://$ETCD_IP:2379
EOF
)
    if [ "$(cat "$conf" 2>/dev/null)" != "$want" ]; then
      echo "$want" >"$conf"
      say "etcd: listening on $ETCD"
      systemctl restart etcd
    fi
    systemctl enable --quiet etcd
  else
    systemctl disable --now --quiet etcd 2>/dev/null || true
  fi
  wait_for "etcd at $ETCD" 60 curl -fsS --max-time 2 "$ETCD/health"
}

# The network config is written once, validated, with weftctl (built in
# /opt/weft, not installed yet): an existing one (maybe edited by the
# operator, maybe holding another backend) is left alone.
write_network_config() {
  [ "$IP" = "$ETCD_IP" ] || return 0
  local ctl=("$(command -v node)" "$WEFT/dist/cli/weftctl.js" --etcd-endpoints "$ETCD") current err
  if current=$("${ctl[@]}" config get 2>/tmp/weft-config-get.err); then
    say "network config present: $(echo "$current" | tr -d '\n')"
    return
  fi
  err=$(cat /tmp/weft-config-get.err)
  [[ "$err" == *ERR_CONFIG_MISSING* ]] || die "reading the network config failed: $err"
  "${ctl[@]}" config set --network "$NETWORK" --subnet-len 24 --backend "$BACKEND"
  say "network config written: $("${ctl[@]}" config get | tr -d '\n')"
}

# Bridged pod-to-pod answers must pass conntrack, or a pod calling a
# ClusterIP whose endpoint sits on the same bridge never gets a reply
# (docs/troubleshooting.md, br_netfilter). Now and at boot.
setup_kernel() {
  echo br_netfilter >/etc/modules-load.d/weft.conf
  modprobe br_netfilter
  echo net.bridge.bridge-nf-call-iptables=1 >/etc/sysctl.d/90-weft.conf
  sysctl -q -p /etc/sysctl.d/90-weft.conf
}

# The interface that holds this node's private IP. Never the NAT interface
# (10.0.2.15), which every Vagrant VM has and peers cannot reach.
private_iface() {
  local dev
  dev=$(ip -o -4 addr show | awk -v ip="$IP" '{ split($4, a, "/"); if (a[1] == ip) { print $2; exit } }')
  [ -n "$dev" ] || die "no interface holds $IP (is the private network up?)"
  [ "$IP" != 10.0.2.15 ] || die "refusing the NAT address 10.0.2.15 as the underlay"
  echo "$dev"
}

install_weft() {
  local iface
  iface=$(private_iface)
  say "underlay interface: $iface ($IP)"
  # --reconfigure: the Vagrantfile is the source of truth for the env files.
  bash "$WEFT/scripts/install-weft.sh" --src "$WEFT" --reconfigure \
    --iface "$iface" --etcd-endpoints "$ETCD" \
    --proxy-mode "$PROXY_MODE" --cluster-cidr "$NETWORK" --hostname-override "$NAME"
  wait_for "weftd to write /run/flannel/subnet.env" 60 test -s /run/flannel/subnet.env
  say "subnet.env: $(tr '\n' ' ' </run/flannel/subnet.env)"
}

# podman with its CNI backend, so it calls the weft plugin (FACTS: runc).
setup_podman() {
  local conf=/etc/containers/containers.conf want
  want=$(cat <<'EOF'
# Written by weft's vagrant/provision.sh: containers get their network from CNI (weft).
[network]
network_backend = "cni"

[engine]
runtime = "runc"
EOF
)
  if [ "$(cat "$conf" 2>/dev/null)" != "$want" ]; then
    install -d /etc/containers
    echo "$want" >"$conf"
    say "podman: CNI network backend"
  fi
  # An offline image: busybox-static (installed by install-deps.sh) as the rootfs.
  if ! podman image exists "localhost/$DEMO:latest"; then
    local root
    root=$(mktemp -d)
    install -d "$root/bin" "$root/www" "$root/tmp"
    cp /bin/busybox "$root/bin/busybox"
    # Relative links: `busybox --install -s` would point them at this temp dir.
    local applet
    for applet in $(/bin/busybox --list); do
      [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
    done
    tar -C "$root" -c . | podman import -q - "localhost/$DEMO:latest" >/dev/null
    rm -rf "$root"
    say "podman: image localhost/$DEMO built from busybox-static"
  fi
  # Brings --restart always containers back after a reboot (ordered after
  # weftd.service, whose readiness means subnet.env is there).
  systemctl enable --quiet podman-restart.service 2>/dev/null || true
}

# One container per node, attached by weft, answering "<pod name> <pod IP>".
start_demo() {
  local pod=$DEMO-$NAME
  if [ "$(podman inspect -f '{{.State.Running}}' "$DEMO" 2>/dev/null)" != true ]; then
    podman rm -f "$DEMO" >/dev/null 2>&1 || true
    # Written at start, so the page names the address CNI gave this run.
    podman run -d --name "$DEMO" --hostname "$pod" --network weft --restart always \
      --env POD_NAME="$pod" "localhost/$DEMO:latest" /bin/sh -c \
      'ip=$(ip -4 -o addr show eth0 | awk "{ split(\$4, a, \"/\"); print a[1] }"); echo "$POD_NAME $ip" >/www/index.html; exec httpd -f -p 8080 -h /www' \
      >/dev/null
    say "podman: started $DEMO"
  fi
  wait_for "$DEMO to answer on :8080" 30 sh -c "podman exec $DEMO wget -qO- http://127.0.0.1:8080/ | grep -q '$pod'"
  say "demo container: $(podman exec "$DEMO" cat /www/index.html)"
}

pod_ip() { podman inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$DEMO"; }
pod_netns() { podman inspect -f '{{.NetworkSettings.SandboxKey}}' "$DEMO"; }

# The Service once (any node may apply it: apply is create-or-update), and
# one EndpointSlice per node holding that node's container.
# demo_manifest POD_IP: the Service and this node's EndpointSlice.
demo_manifest() {
  cat <<EOF
apiVersion: v1
kind: Service
metadata:
  name: $DEMO
  namespace: default
spec:
  type: NodePort
  clusterIP: $CLUSTER_IP
  ports:
    - name: http
      protocol: TCP
      port: 80
      targetPort: 8080
      nodePort: $NODE_PORT
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: $DEMO-$NAME
  namespace: default
  labels:
    kubernetes.io/service-name: $DEMO
addressType: IPv4
ports:
  - name: http
    protocol: TCP
    port: 8080
endpoints:
  - addresses: ["$1"]
    nodeName: $NAME
    conditions: { ready: true }
EOF
}

apply_service() {
  local ip
  ip=$(pod_ip)
  [ -n "$ip" ] || die "$DEMO has no IP"
  demo_manifest "$ip" | weftctl apply -f -
}

# verify arguments from the Service's EndpointSlices: a --pod for every demo
# container registered so far (this node's own one with its netns path, so
# the checks run from inside it) and a --host for every node that has one
# (nodes not provisioned yet are left out).
# verify_args OWN_IP OWN_NETNS < `weftctl get endpointslices -o json`
verify_args() {
  node -e '
    const [ownIp, ownNs, svc, allNodes] = process.argv.slice(1);
    const nodeIps = new Map(allNodes.split(",").map((kv) => kv.split("=")));
    let text = "";
    process.stdin.on("data", (d) => (text += d)).on("end", () => {
      const hosts = new Set();
      for (const s of JSON.parse(text).items ?? []) {
        if (s.metadata?.labels?.["kubernetes.io/service-name"] !== svc) continue;
        for (const e of s.endpoints ?? []) {
          for (const a of e.addresses ?? []) {
            const name = `${svc}-${e.nodeName ?? a}`;
            console.log("--pod");
            console.log(a === ownIp ? `${name}=${a}@${ownNs}` : `${name}=${a}`);
          }
          if (nodeIps.has(e.nodeName)) hosts.add(`${e.nodeName}=${nodeIps.get(e.nodeName)}`);
        }
      }
      for (const h of hosts) console.log("--host\n" + h);
    });' "$1" "$2" "$DEMO" "$ALL_NODES"
}

verify() {
  local args=() rc=0
  mapfile -t args < <(weftctl get endpointslices -n default -o json | verify_args "$(pod_ip)" "$(pod_netns)")
  printf '%s\n' "${args[@]}" | grep -q '@' || die "this node's $DEMO is not among the Service's endpoints (run the weft provisioner)"
  local pods
  pods=$(printf '%s\n' "${args[@]}" | grep -c '^--pod$' || true)
  if [ "$pods" -lt 2 ]; then
    # The first node provisioned has nobody to ping yet.
    say "verify-ping: skipped (only this node's container so far; nodes provisioned later check it)"
  else
    say "verify-ping: from $DEMO-$NAME to every demo container ($pods)"
    node "$WEFT/scripts/verify-ping" "${args[@]}" || rc=1
  fi
  say "verify-curl: ClusterIP $CLUSTER_IP:80 from $DEMO-$NAME, NodePort $NODE_PORT on every provisioned node"
  node "$WEFT/scripts/verify-curl" "${args[@]}" --cluster-ip "$CLUSTER_IP:80" --node-port "$NODE_PORT" \
    --expect "$DEMO-" --tries 3 || rc=1
  if [ $rc -ne 0 ]; then
    say "verification FAILED; see docs/troubleshooting.md (re-run: vagrant provision --provision-with verify)"
    return 1
  fi
  say "verification passed"
}

case "$ACTION" in
  install)
    install_base_packages
    install_node20
    # The same script CI and the lab demo use (it also brings the compilers
    # npm ci needs for the native addon).
    bash "$SRC_SYNCED/scripts/install-deps.sh"
    build_weft
    setup_etcd
    write_network_config
    setup_kernel
    install_weft
    setup_podman
    start_demo
    apply_service
    ;;
  verify)
    verify
    ;;
  # For inspection and tests: the demo manifests for a pod IP, and the verify
  # arguments computed from EndpointSlice JSON on stdin.
  manifest)
    demo_manifest "${8:?pod IP}"
    ;;
  verify-args)
    verify_args "${8:?own pod IP}" "${9:?own pod netns}"
    ;;
  iface)
    private_iface
    ;;
  *) die "unknown action $ACTION (install | verify | manifest | verify-args | iface)" ;;
esac
