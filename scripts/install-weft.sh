#!/usr/bin/env bash
# Installs weft on this host from a checkout: builds it if needed, puts
# weftd / weftctl / weft-proxy wrappers in /usr/local/bin, the systemd units,
# /etc/weft/{weftd,weft-proxy}.env and the CNI plugin (weftctl install-cni),
# then enables and starts the services when systemd runs this machine.
#
# Idempotent: a second run with the same options changes no file and exits 0
# (it prints "0 file(s) changed"). Files are replaced atomically (rename), so
# a runtime executing the CNI plugin never sees a half-written file.
#
# --prefix DIR installs below DIR (like DESTDIR: the files still name the
# final paths, /usr/local/bin/weftd etc.), enables the units offline
# (systemctl --root) and never starts anything; CI and
# tests use it. Run with --help for every option (each value option works as "--opt value"
# and as "--opt=value"). Used by vagrant/provision.sh.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: install-weft.sh [options]

Where and what:
  --prefix DIR            install below DIR instead of / (units enabled offline,
                          never started). Default /
  --src DIR               weft checkout to run from. Default: this script's checkout
  --no-build              never run npm ci / npm run build (fail if the build is missing)
  --build                 run npm run build even when dist/ exists
  --no-systemd            do not install unit files or call systemctl
  --no-start              install and enable the units but do not (re)start them
  --no-proxy              leave weft-proxy out (e.g. the node keeps kube-proxy)
  --no-cni                do not install the CNI plugin and conflist
  --cni-bin-dir DIR       CNI plugin directory. Default /opt/cni/bin
  --cni-conf-dir DIR      CNI config directory. Default /etc/cni/net.d
  --adopt-flannel         the CNI conflist takes over flannel's network (name cbr0,
                          bridge cni0, its host-local reservations) even when no
                          flannel conflist is found. Default: adopt when the CNI
                          config directory holds flannel's conflist
  --no-adopt-flannel      never adopt flannel's network (network weft, bridge weft0)
  --reconfigure           rewrite existing env files from the options below
                          (the old file is kept as <file>.bak). Without it an
                          existing env file is the operator's and is left alone.
  --uninstall             stop and disable the units and remove what the last install
                          listed in /var/lib/weft/install-manifest, except the env files
  --purge                 with --uninstall: remove the env files too

Options written to /etc/weft/weftd.env (first install, or with --reconfigure):
  --iface NAME|IP         underlay interface (repeatable). Default: the default route's
  --public-ip IP          address peers reach this host at
  --etcd-endpoints URLS   comma separated. Default http://127.0.0.1:2379
  --etcd-prefix PREFIX    Default /coreos.com/network
  --etcd-cafile FILE      CA of the etcd servers (https endpoints); also written to weft-proxy.env
  --etcd-certfile FILE    client certificate for etcd (with --etcd-keyfile); also for weft-proxy
  --etcd-keyfile FILE     client key for etcd; also for weft-proxy
                          (etcd users: set *_ETCD_USERNAME / *_ETCD_PASSWORD in the env files)
  --no-ip-masq            do not masquerade pod traffic leaving the network (default: masquerade)
  --no-cni-socket         weftd does not serve the CNI shim on /run/weft/cni.sock (every
                          CNI call then starts the Node plugin: slower, same results)
  --weftd-arg ARG         extra weftd argument (repeatable)

Options written to /etc/weft/weft-proxy.env:
  --proxy-mode MODE       iptables | nftables | ipvs. Default iptables
  --cluster-cidr CIDR     pod network, for masquerade decisions. Default 10.244.0.0/16
  --hostname-override N   node name. Default: the host name
  --proxy-arg ARG         extra weft-proxy argument (repeatable)
EOF
}

say() { echo "install-weft: $*"; }
die() { echo "install-weft: error: $*" >&2; exit 1; }
usage_error() { echo "install-weft: $*" >&2; echo "install-weft: see install-weft.sh --help" >&2; exit 2; }

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PREFIX=/
SRC=$(cd "$SCRIPT_DIR/.." && pwd)
BUILD=auto
SYSTEMD=1
START=1
PROXY=1
CNI=1
CNI_BIN_DIR=/opt/cni/bin
CNI_CONF_DIR=/etc/cni/net.d
ADOPT_FLANNEL=
RECONFIGURE=0
UNINSTALL=0
PURGE=0
IFACES=()
PUBLIC_IP=
ETCD_ENDPOINTS=http://127.0.0.1:2379
ETCD_PREFIX=/coreos.com/network
ETCD_CAFILE=
ETCD_CERTFILE=
ETCD_KEYFILE=
IP_MASQ=true
CNI_SOCKET=/run/weft/cni.sock
WEFTD_ARGS=()
PROXY_MODE=iptables
CLUSTER_CIDR=10.244.0.0/16
HOSTNAME_OVERRIDE=
PROXY_ARGS=()

need_arg() { [ $# -ge 2 ] && [ -n "$2" ] || usage_error "$1 needs a value"; }
# Options that take a value: each works as "--opt value" and as "--opt=value".
VALUE_OPTS=" --prefix --src --cni-bin-dir --cni-conf-dir --iface --public-ip --etcd-endpoints --etcd-prefix --etcd-cafile --etcd-certfile --etcd-keyfile --weftd-arg --proxy-mode --cluster-cidr --hostname-override --proxy-arg "
while [ $# -gt 0 ]; do
  if [[ "$1" == --*=* ]]; then
    # Split at the first "=" only: --weftd-arg=--etcd-cafile=/x gives --etcd-cafile=/x.
    opt=${1%%=*}
    case "$VALUE_OPTS" in
      *" $opt "*) val=${1#*=}; shift; set -- "$opt" "$val" "$@" ;;
      *) usage_error "$opt takes no value (or is unknown): $1" ;;
    esac
  fi
  case "$1" in
    --prefix) need_arg "$@"; PREFIX=$2; shift 2 ;;
    --src) need_arg "$@"; SRC=$2; shift 2 ;;
    --no-build) BUILD=never; shift ;;
    --build) BUILD=always; shift ;;
    --no-systemd) SYSTEMD=0; shift ;;
    --no-start) START=0; shift ;;
    --no-proxy) PROXY=0; shift ;;
    --no-cni) CNI=0; shift ;;
    --adopt-flannel) ADOPT_FLANNEL=--adopt-flannel; shift ;;
    --no-adopt-flannel) ADOPT_FLANNEL=--no-adopt-flannel; shift ;;
    --cni-bin-dir) need_arg "$@"; CNI_BIN_DIR=$2; shift 2 ;;
    --cni-conf-dir) need_arg "$@"; CNI_CONF_DIR=$2; shift 2 ;;
    --reconfigure) RECONFIGURE=1; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    --purge) PURGE=1; shift ;;
    --iface) need_arg "$@"; IFACES+=("$2"); shift 2 ;;
    --public-ip) need_arg "$@"; PUBLIC_IP=$2; shift 2 ;;
    --etcd-endpoints) need_arg "$@"; ETCD_ENDPOINTS=$2; shift 2 ;;
    --etcd-prefix) need_arg "$@"; ETCD_PREFIX=$2; shift 2 ;;
    --etcd-cafile) need_arg "$@"; ETCD_CAFILE=$2; shift 2 ;;
    --etcd-certfile) need_arg "$@"; ETCD_CERTFILE=$2; shift 2 ;;
    --etcd-keyfile) need_arg "$@"; ETCD_KEYFILE=$2; shift 2 ;;
    --no-ip-masq) IP_MASQ=false; shift ;;
    --no-cni-socket) CNI_SOCKET=; shift ;;
    --weftd-arg) need_arg "$@"; WEFTD_ARGS+=("$2"); shift 2 ;;
    --proxy-mode) need_arg "$@"; PROXY_MODE=$2; shift 2 ;;
    --cluster-cidr) need_arg "$@"; CLUSTER_CIDR=$2; shift 2 ;;
    --hostname-override) need_arg "$@"; HOSTNAME_OVERRIDE=$2; shift 2 ;;
    --proxy-arg) need_arg "$@"; PROXY_ARGS+=("$2"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage_error "unknown option: $1" ;;
  esac
done

[ "$PURGE" = 0 ] || [ "$UNINSTALL" = 1 ] || usage_error "--purge goes with --uninstall"
if [ -n "$ETCD_CERTFILE$ETCD_KEYFILE" ] && { [ -z "$ETCD_CERTFILE" ] || [ -z "$ETCD_KEYFILE" ]; }; then
  usage_error "--etcd-certfile and --etcd-keyfile go together"
fi
case "$PROXY_MODE" in iptables|nftables|ipvs) ;; *) usage_error "--proxy-mode must be iptables, nftables or ipvs" ;; esac
# Values end up in env files read by systemd and in wrapper scripts: refuse
# characters that would need quoting rather than quote them subtly wrong.
for v in "$PREFIX" "$SRC" "$CNI_BIN_DIR" "$CNI_CONF_DIR" "${IFACES[@]}" "$PUBLIC_IP" "$ETCD_ENDPOINTS" \
         "$ETCD_PREFIX" "$ETCD_CAFILE" "$ETCD_CERTFILE" "$ETCD_KEYFILE" "$CLUSTER_CIDR" "$HOSTNAME_OVERRIDE" \
         "${WEFTD_ARGS[@]}" "${PROXY_ARGS[@]}"; do
  [[ "$v" =~ ^[A-Za-z0-9_./:,@%=+-]*$ ]] || usage_error "value \"$v\" has characters that would need quoting"
done
mkdir -p "$PREFIX" || die "cannot create --prefix $PREFIX"
PREFIX=$(cd "$PREFIX" && pwd)
ROOT=${PREFIX%/}            # "" for /, so "$ROOT/etc" is "/etc"
SRC=$(cd "$SRC" && pwd)
if ! grep -qs '"name": "weft"' "$SRC/package.json"; then die "$SRC is not a weft checkout"; fi

# ---------------------------------------------------------------- helpers
CHANGED=0
CHANGED_FILES=()
# Changes per group decide which services to restart.
declare -A GROUP_CHANGED=()

# put_file GROUP DEST MODE < content (never in a pipeline: it counts changes
# in this shell's variables): writes DEST only when its content or
# mode differs (temp file in the same directory + rename = atomic).
put_file() {
  local group=$1 dest=$2 mode=$3 tmp
  mkdir -p "$(dirname "$dest")"
  tmp=$(mktemp "$(dirname "$dest")/.$(basename "$dest").XXXXXX")
  cat >"$tmp"
  if [ -f "$dest" ] && cmp -s "$tmp" "$dest" && [ "$(stat -c %a "$dest")" = "$mode" ]; then
    rm -f "$tmp"
    return 0
  fi
  chmod "$mode" "$tmp"
  mv -f "$tmp" "$dest"
  CHANGED=$((CHANGED + 1))
  CHANGED_FILES+=("$dest")
  GROUP_CHANGED[$group]=1
  say "wrote $dest"
}

# ---------------------------------------------------------------- uninstall
# Removes exactly what the manifest lists. The data path (routes, devices,
# rules) stays, as on any stop: run `weftd --cleanup` / `weft-proxy --cleanup`
# first to remove it. Safe to repeat.
systemd_live() { [ -z "$ROOT" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }
if [ "$UNINSTALL" = 1 ]; then
  manifest_file=$ROOT/var/lib/weft/install-manifest
  if [ ! -f "$manifest_file" ]; then
    say "nothing to uninstall ($manifest_file is missing)"
    exit 0
  fi
  removed=0
  kept=()
  mapfile -t listed < <(grep -v '^#' "$manifest_file")
  for f in "${listed[@]}"; do
    case "$f" in
      /etc/systemd/system/*.service)
        u=$(basename "$f")
        if systemd_live; then
          systemctl disable --now --quiet "$u" 2>/dev/null || true
        elif command -v systemctl >/dev/null; then
          systemctl --root="$PREFIX" disable --quiet "$u" 2>/dev/null || true
        fi
        ;;
    esac
  done
  for f in "${listed[@]}"; do
    case "$f" in
      /etc/weft/*.env)
        if [ "$PURGE" = 0 ] && [ -e "$ROOT$f" ]; then
          say "kept $ROOT$f (--uninstall --purge removes it)"
          kept+=("$f")
          continue
        fi
        ;;
    esac
    if [ -e "$ROOT$f" ] || [ -L "$ROOT$f" ]; then
      rm -f "$ROOT$f" "$ROOT$f.bak"
      removed=$((removed + 1))
      say "removed $ROOT$f"
    fi
  done
  if [ ${#kept[@]} -gt 0 ]; then
    # Still ours: a later --uninstall --purge finds them here.
    printf '%s\n' "# kept by install-weft.sh --uninstall (no --purge)" "${kept[@]}" >"$manifest_file"
  else
    rm -f "$manifest_file"
  fi
  if systemd_live; then systemctl daemon-reload; fi
  say "uninstalled: $removed file(s) removed; routes, devices and rules stay (weftd --cleanup, weft-proxy --cleanup remove them)"
  exit 0
fi

# ---------------------------------------------------------------- build
NODE=$(command -v node || true)
[ -n "$NODE" ] || die "Node.js 20 or newer is required (node not found)"
NODE=$(readlink -f "$NODE")
node_major=$("$NODE" -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "Node.js 20 or newer is required (found $("$NODE" --version))"

PROGRAMS=(weftd weftctl)
[ "$PROXY" = 1 ] && PROGRAMS+=(weft-proxy)

if [ ! -d "$SRC/node_modules" ]; then
  [ "$BUILD" = never ] && die "$SRC/node_modules is missing and --no-build was given (run npm ci)"
  say "npm ci in $SRC"
  (cd "$SRC" && npm ci --no-audit --no-fund)
  BUILD=always
fi
missing_build() {
  local p
  for p in "${PROGRAMS[@]}"; do [ -f "$SRC/dist/cli/$p.js" ] || { echo "dist/cli/$p.js"; return 0; }; done
  return 1
}
if [ "$BUILD" = always ] || missing_build >/dev/null; then
  [ "$BUILD" = never ] && die "$SRC/$(missing_build) is missing and --no-build was given (run npm run build)"
  say "npm run build in $SRC"
  (cd "$SRC" && npm run build)
  if m=$(missing_build); then die "the build did not produce $SRC/$m"; fi
fi
# The CNI plugin pair (dist/cni/weft + weft-cni.cjs) comes from
# scripts/build-cni.mjs, part of npm run build; make it for a checkout built
# without it.
if [ "$CNI" = 1 ] && [ -f "$SRC/scripts/build-cni.mjs" ] && [ ! -f "$SRC/dist/cni/weft-cni.cjs" ]; then
  [ "$BUILD" = never ] && die "$SRC/dist/cni/weft-cni.cjs is missing and --no-build was given (run node scripts/build-cni.mjs, or give --no-cni)"
  say "node scripts/build-cni.mjs in $SRC"
  (cd "$SRC" && "$NODE" scripts/build-cni.mjs)
fi

# ---------------------------------------------------------------- programs
for p in "${PROGRAMS[@]}"; do
  # The daemons' V8 flags come from the build (src/cli/node-flags.ts); none for weftctl.
  flags=$("$NODE" --input-type=module -e "const m = await import('$SRC/dist/cli/node-flags.js'); process.stdout.write(m.nodeFlagsFor('$p').map((f) => f + ' ').join(''))" 2>/dev/null || true)
  put_file "$p" "$ROOT/usr/local/bin/$p" 755 <<EOF
#!/bin/sh
# $p, installed by weft's scripts/install-weft.sh: runs the build in $SRC.
exec $NODE $flags$SRC/dist/cli/$p.js "\$@"
EOF
done

# ---------------------------------------------------------------- env files
# An existing env file belongs to the operator unless --reconfigure is given.
put_env() {
  local group=$1 dest=$2 content
  content=$(cat)
  if [ -f "$dest" ] && [ "$RECONFIGURE" = 0 ]; then
    if [ "$content" != "$(cat "$dest")" ]; then
      say "kept $dest (the operator's; --reconfigure rewrites it from the options)"
    fi
    return 0
  fi
  if [ -f "$dest" ] && [ "$content" != "$(cat "$dest")" ]; then
    cp -p "$dest" "$dest.bak"
    say "saved the previous $dest as $dest.bak"
  fi
  put_file "$group" "$dest" 600 < <(printf '%s\n' "$content")
}

opt_line() { # opt_line NAME VALUE: NAME=VALUE, or a commented default when empty
  if [ -n "$2" ]; then echo "$1=$2"; else echo "#$1="; fi
}
ifaces=$(IFS=,; echo "${IFACES[*]}")
put_env weftd "$ROOT/etc/weft/weftd.env" <<EOF
# weftd options (systemd EnvironmentFile; weftd reads WEFTD_<FLAG> for every
# --<flag>, see weftd --help and docs/operations.md). Written by install-weft.sh.
WEFTD_ETCD_ENDPOINTS=$ETCD_ENDPOINTS
WEFTD_ETCD_PREFIX=$ETCD_PREFIX
# Underlay interface name or IP, comma separated; first match wins. Set it on
# hosts with several NICs (Vagrant: the private network, never 10.0.2.15).
$(opt_line WEFTD_IFACE "$ifaces")
$(opt_line WEFTD_PUBLIC_IP "$PUBLIC_IP")
WEFTD_IP_MASQ=$IP_MASQ
WEFTD_SUBNET_FILE=/run/flannel/subnet.env
# The weft CNI shim (/opt/cni/bin/weft) hands each call to weftd here: no Node
# start-up per container. Without it (or while weftd restarts) the shim runs
# the standalone plugin instead.
$(opt_line WEFTD_CNI_SOCKET "$CNI_SOCKET")
# The unit's readiness probe polls http://WEFTD_HEALTHZ_IP:WEFTD_HEALTHZ_PORT/readyz.
WEFTD_HEALTHZ_IP=127.0.0.1
WEFTD_HEALTHZ_PORT=9808
# etcd TLS (https endpoints) and auth; the same five settings in weft-proxy.env.
$(opt_line WEFTD_ETCD_CAFILE "$ETCD_CAFILE")
$(opt_line WEFTD_ETCD_CERTFILE "$ETCD_CERTFILE")
$(opt_line WEFTD_ETCD_KEYFILE "$ETCD_KEYFILE")
#WEFTD_ETCD_USERNAME=
#WEFTD_ETCD_PASSWORD=
#WEFTD_LOG_LEVEL=info
# Extra arguments, split on spaces.
WEFTD_EXTRA_ARGS=${WEFTD_ARGS[*]}
EOF

if [ "$PROXY" = 1 ]; then
  put_env weft-proxy "$ROOT/etc/weft/weft-proxy.env" <<EOF
# weft-proxy options (systemd EnvironmentFile; weft-proxy reads
# WEFT_PROXY_<FLAG> for every --<flag>, see weft-proxy --help and
# docs/operations.md). Written by install-weft.sh.
WEFT_PROXY_ETCD_ENDPOINTS=$ETCD_ENDPOINTS
# etcd TLS (https endpoints) and auth, as in weftd.env.
$(opt_line WEFT_PROXY_ETCD_CAFILE "$ETCD_CAFILE")
$(opt_line WEFT_PROXY_ETCD_CERTFILE "$ETCD_CERTFILE")
$(opt_line WEFT_PROXY_ETCD_KEYFILE "$ETCD_KEYFILE")
#WEFT_PROXY_ETCD_USERNAME=
#WEFT_PROXY_ETCD_PASSWORD=
WEFT_PROXY_PROXY_MODE=$PROXY_MODE
# Node name matched against EndpointSlice nodeName; unset = the host name.
$(opt_line WEFT_PROXY_HOSTNAME_OVERRIDE "$HOSTNAME_OVERRIDE")
WEFT_PROXY_CLUSTER_CIDR=$CLUSTER_CIDR
# The unit's readiness probe polls http://WEFT_PROXY_HEALTHZ_BIND_ADDRESS/healthz.
WEFT_PROXY_HEALTHZ_BIND_ADDRESS=127.0.0.1:10256
WEFT_PROXY_METRICS_BIND_ADDRESS=127.0.0.1:10249
#WEFT_PROXY_NODE_IP=
#WEFT_PROXY_LOG_LEVEL=info
# Extra arguments, split on spaces.
WEFT_PROXY_EXTRA_ARGS=${PROXY_ARGS[*]}
EOF
fi

# ---------------------------------------------------------------- units
UNITS=(weftd.service)
[ "$PROXY" = 1 ] && UNITS+=(weft-proxy.service)
if [ "$SYSTEMD" = 1 ]; then
  for u in "${UNITS[@]}"; do
    put_file "${u%.service}" "$ROOT/etc/systemd/system/$u" 644 <"$SRC/systemd/$u"
  done
fi

# ---------------------------------------------------------------- CNI
# weftctl install-cni writes into a staging directory; put_file then copies
# what differs. That keeps a re-run from touching unchanged files and
# replaces the plugin by rename (a runtime may be executing it right now).
if [ "$CNI" = 1 ]; then
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' EXIT
  # flannel's conflist is looked for where the runtime reads it, not in the stage.
  cni_out=$("$NODE" "$SRC/dist/cli/weftctl.js" install-cni --bin-dir "$stage/bin" --conf-dir "$stage/conf" \
    --flannel-conf-dir "$ROOT$CNI_CONF_DIR" ${ADOPT_FLANNEL:+"$ADOPT_FLANNEL"}) \
    || die "weftctl install-cni failed (give --no-cni to leave the CNI plugin out)"
  while IFS= read -r line; do
    case "$line" in adopted*) say "cni: $line" ;; esac
  done <<<"$cni_out"
  # Data files before executables: the plugin must never find its bundle missing.
  for pass in data exec; do
    for f in "$stage"/bin/*; do
      [ -f "$f" ] || continue
      if [ -x "$f" ]; then [ $pass = exec ] || continue; else [ $pass = data ] || continue; fi
      put_file cni "$ROOT$CNI_BIN_DIR/$(basename "$f")" "$(stat -c %a "$f")" <"$f"
    done
  done
  for f in "$stage"/conf/*; do
    if [ -f "$f" ]; then put_file cni "$ROOT$CNI_CONF_DIR/$(basename "$f")" 644 <"$f"; fi
  done
fi

# ---------------------------------------------------------------- manifest
# What this script owns, for operators (and a later uninstall).
manifest() {
  echo "# files installed by scripts/install-weft.sh from $SRC"
  for p in "${PROGRAMS[@]}"; do echo "/usr/local/bin/$p"; done
  echo /etc/weft/weftd.env
  if [ "$PROXY" = 1 ]; then echo /etc/weft/weft-proxy.env; fi
  if [ "$SYSTEMD" = 1 ]; then for u in "${UNITS[@]}"; do echo "/etc/systemd/system/$u"; done; fi
  if [ "$CNI" = 1 ]; then
    for f in "$stage"/bin/* "$stage"/conf/*; do
      [ -f "$f" ] || continue
      case "$f" in "$stage"/bin/*) echo "$CNI_BIN_DIR/$(basename "$f")" ;; *) echo "$CNI_CONF_DIR/$(basename "$f")" ;; esac
    done
  fi
}
put_file manifest "$ROOT/var/lib/weft/install-manifest" 644 < <(manifest)

# ---------------------------------------------------------------- services
# Without a running systemd (a --prefix image root, a container, CI) the
# units are still enabled the offline way (`systemctl --root`, which only
# makes the wants/ symlinks), so a machine booted from that root starts them.
enable_offline() {
  local u
  if ! command -v systemctl >/dev/null; then
    say "systemd: systemctl not found; units installed but not enabled"
    return 0
  fi
  for u in "${UNITS[@]}"; do
    if ! systemctl --root="$PREFIX" is-enabled --quiet "$u" 2>/dev/null; then
      # stderr: warnings about targets absent from the root; failures still fail.
      systemctl --root="$PREFIX" enable --quiet "$u" 2>/dev/null || die "systemctl --root=$PREFIX enable $u failed"
      CHANGED=$((CHANGED + 1))
      say "enabled $u (offline, in $PREFIX)"
    fi
  done
}
if [ "$SYSTEMD" = 0 ]; then
  say "systemd: skipped (--no-systemd)"
elif [ -n "$ROOT" ]; then
  enable_offline
  say "systemd: not started (--prefix $PREFIX is not /); units are in $ROOT/etc/systemd/system"
elif [ ! -d /run/systemd/system ] || ! command -v systemctl >/dev/null; then
  enable_offline
  say "systemd: not started (systemd is not running this machine); start the programs another way"
else
  if [ -n "${GROUP_CHANGED[weftd]:-}${GROUP_CHANGED[weft-proxy]:-}" ]; then systemctl daemon-reload; fi
  for u in "${UNITS[@]}"; do
    systemctl is-enabled --quiet "$u" 2>/dev/null || systemctl enable --quiet "$u"
  done
  if [ "$START" = 0 ]; then
    say "systemd: units enabled, not started (--no-start)"
  else
    for u in "${UNITS[@]}"; do
      # Restart only what changed (weftd keeps the data path across restarts);
      # otherwise start, which is a no-op for a running service.
      if [ -n "${GROUP_CHANGED[${u%.service}]:-}" ] && systemctl is-active --quiet "$u"; then
        say "systemd: restarting $u (its files changed)"
        systemctl restart "$u" || die "$u did not become ready (see: journalctl -u $u -b; docs/troubleshooting.md)"
      elif ! systemctl is-active --quiet "$u"; then
        say "systemd: starting $u (waits for its readiness probe)"
        systemctl start "$u" || die "$u did not become ready (see: journalctl -u $u -b; docs/troubleshooting.md)"
      fi
    done
  fi
fi

say "done: $CHANGED file(s) changed"
