#!/usr/bin/env bash
# Builds kube-apiserver and kube-proxy 1.20 from Debian bookworm's `kubernetes`
# source package (offline, Debian archive only) and installs kubectl 1.20
# (Debian's kubernetes-client). The binaries are cached under
# /var/cache/weft/kube/<key>/bin, where <key> hashes every input (source package
# version, this script, `go version`, the reflect2 package version), so a second
# run only checks and prints the paths. /var/cache/weft/kube/current points at
# the last good build; test/helpers/kube.ts finds the binaries there.
#
# Usage (root, Debian bookworm): bash scripts/kube-apiserver.sh
# Env: WEFT_KUBE_CACHE (default /var/cache/weft/kube), WEFT_KUBE_KEEP_SRC=1
# keeps the extracted source tree ($CACHE/work) after a successful build.
# Cache layout: <key>/bin/{kube-apiserver,kube-proxy}, <key>/build.log,
# <key>/ok (written last), current -> <key>, bin/kubectl, gocache/ (Go's
# build cache, carried from one cold build to the next), .lock.
set -euo pipefail

CACHE=${WEFT_KUBE_CACHE:-/var/cache/weft/kube}
SELF=$(readlink -f "$0")
SRC_LIST=/etc/apt/sources.list.d/weft-deb-src.sources
# rsync/make/dpkg-dev: the build scripts and `apt-get source`; golang-go 1.19
# builds 1.20 in GOPATH mode; reflect2 1.0.2 replaces the vendored 1.0.1.
PKGS=(golang-go golang-github-modern-go-reflect2-dev rsync make dpkg-dev gcc libc6-dev)

log() { echo "kube-apiserver.sh: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (installs Debian packages, writes $CACHE)"

# A deb-src entry beside the machine's own sources (never edits debian.sources):
# the same archives and keyring, source packages only.
ensure_deb_src() {
  [ -f "$SRC_LIST" ] && return 1
  local main=/etc/apt/sources.list.d/debian.sources
  local uris='http://deb.debian.org/debian' suites='bookworm bookworm-updates'
  local signed='/usr/share/keyrings/debian-archive-keyring.gpg'
  if [ -f "$main" ]; then
    # First stanza of the machine's debian.sources: its mirror and keyring.
    local u s k
    u=$(awk '/^$/{exit} /^URIs:/{sub(/^URIs: */,""); print}' "$main")
    s=$(awk '/^$/{exit} /^Suites:/{sub(/^Suites: */,""); print}' "$main")
    k=$(awk '/^$/{exit} /^Signed-By:/{sub(/^Signed-By: */,""); print}' "$main")
    [ -n "$u" ] && uris=$u
    [ -n "$s" ] && suites=$s
    [ -n "$k" ] && signed=$k
  fi
  log "adding $SRC_LIST (deb-src $uris $suites)"
  cat >"$SRC_LIST" <<EOF
# Added by weft's scripts/kube-apiserver.sh: source packages (apt-get source kubernetes).
Types: deb-src
URIs: $uris
Suites: $suites
Components: main
Signed-By: $signed
EOF
  return 0
}

need_update=0
ensure_deb_src && need_update=1
missing=()
# kubectl 1.20 from kubernetes-client, unless another package (e.g. a cloud
# SDK's kubectl) owns /usr/bin/kubectl: then the .deb is unpacked into the cache
# instead of replacing someone else's kubectl (see ensure_kubectl).
kubectl_owner=$(dpkg-query -S /usr/bin/kubectl 2>/dev/null | cut -d: -f1 || true)
if [ -z "$kubectl_owner" ]; then PKGS+=(kubernetes-client); fi
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# (Counted, not grep -q: with pipefail an early grep exit can fail the pipe.)
if [ "$need_update" = 0 ] && [ "$(apt-cache showsrc kubernetes 2>/dev/null | grep -c '^Version:')" = 0 ]; then
  need_update=1
fi
if [ ${#missing[@]} -gt 0 ] || [ "$need_update" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  log "apt-get update"
  apt-get update -qq
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# $CACHE/bin/kubectl: a kubectl 1.20 for the tests and the lab.
ensure_kubectl() {
  mkdir -p "$CACHE/bin"
  local owner ver dest
  owner=$(dpkg-query -S /usr/bin/kubectl 2>/dev/null | cut -d: -f1 || true)
  if [ "$owner" = kubernetes-client ]; then
    ln -sfn /usr/bin/kubectl "$CACHE/bin/kubectl"
    return
  fi
  ver=$(apt-cache policy kubernetes-client | awk '/Candidate:/{print $2}')
  [ -n "$ver" ] && [ "$ver" != '(none)' ] || die "no kubernetes-client package in the apt lists"
  dest=$CACHE/kubectl/$ver
  if [ ! -x "$dest/usr/bin/kubectl" ]; then
    log "/usr/bin/kubectl belongs to '$owner'; unpacking kubernetes-client $ver into $dest"
    rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
    chown _apt "$dest.tmp" 2>/dev/null || true  # apt downloads as _apt
    (cd "$dest.tmp" && apt-get download -qq "kubernetes-client=$ver" && dpkg-deb -x kubernetes-client_*.deb . && rm -f ./*.deb)
    rm -rf "$dest" && mv "$dest.tmp" "$dest"
  fi
  ln -sfn "$dest/usr/bin/kubectl" "$CACHE/bin/kubectl"
}
mkdir -p "$CACHE"
ensure_kubectl

GO=/usr/lib/go/bin/go
[ -x "$GO" ] || GO=$(command -v go) || die "go not found after installing golang-go"
SRC_VERSION=$(apt-cache showsrc kubernetes | awk '/^Version:/{print $2}' | sort -V | tail -1)
case "$SRC_VERSION" in
  *1.20.*) ;;
  *) die "expected a kubernetes 1.20 source package, apt offers '${SRC_VERSION:-none}'" ;;
esac
REFLECT2_VERSION=$(dpkg-query -W -f='${Version}' golang-github-modern-go-reflect2-dev)
GO_VERSION=$("$GO" version)
KEY=$(printf '%s\n' "kubernetes=$SRC_VERSION" "reflect2=$REFLECT2_VERSION" "$GO_VERSION" "$(sha256sum "$SELF" | cut -d' ' -f1)" \
  | sha256sum | cut -c1-16)
DIR=$CACHE/$KEY
BINS=(kube-apiserver kube-proxy)

print_paths() {
  ln -sfn "$KEY" "$CACHE/current"
  for b in "${BINS[@]}"; do echo "$DIR/bin/$b"; done
  echo "$CACHE/bin/kubectl"
}

if [ -f "$DIR/ok" ]; then print_paths; exit 0; fi

mkdir -p "$CACHE"
# One build at a time: parallel CI suites calling this wait for the first.
exec 9>"$CACHE/.lock"
if ! flock -n 9; then
  log "another build holds $CACHE/.lock; waiting"
  flock 9
fi
if [ -f "$DIR/ok" ]; then print_paths; exit 0; fi

rm -rf "$DIR"
mkdir -p "$DIR/bin"
# The tree is built at one fixed path (under the lock), so the Go build cache
# kept in $CACHE/gocache (its keys include -trimpath=<tree>) is reused by the
# next cold build after an input changes.
WORK=$CACHE/work
rm -rf "$WORK"
mkdir -p "$WORK"
chown _apt "$WORK" 2>/dev/null || true  # apt-get source downloads as _apt
BUILD_LOG=$DIR/build.log
log "cold build (key $KEY: kubernetes $SRC_VERSION, reflect2 $REFLECT2_VERSION, $GO_VERSION); log $BUILD_LOG"
start=$(date +%s)
TREE=

save_gocache() {
  if [ -n "$TREE" ] && [ -d "$TREE/_output/local/go/cache" ]; then
    rm -rf "$CACHE/gocache" && mv "$TREE/_output/local/go/cache" "$CACHE/gocache"
  fi
}

fail() {
  save_gocache
  log "build failed ($1); last lines of $BUILD_LOG:"
  tail -n 60 "$BUILD_LOG" >&2 || true
  exit 1
}

(
  set -euo pipefail
  cd "$WORK"
  echo "== apt-get source kubernetes=$SRC_VERSION"
  apt-get source -qq "kubernetes=$SRC_VERSION"
) >"$BUILD_LOG" 2>&1 || fail "apt-get source"

TREE=$(find "$WORK" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -1)
[ -n "$TREE" ] && [ -f "$TREE/cmd/kube-apiserver/apiserver.go" ] || fail "no source tree under $WORK"
# hack/lib/golang.sh puts GOCACHE at _output/local/go/cache: seed it from the last build.
if [ -d "$CACHE/gocache" ]; then
  mkdir -p "$TREE/_output/local/go"
  mv "$CACHE/gocache" "$TREE/_output/local/go/cache"
fi
UPSTREAM=${SRC_VERSION#*really}
UPSTREAM=${UPSTREAM%%-*}
case "$UPSTREAM" in
  [0-9]*.[0-9]*.[0-9]*) ;;
  *) UPSTREAM=${SRC_VERSION%%[+-]*} ;;
esac
MINOR=$(echo "$UPSTREAM" | cut -d. -f2)

(
  set -euo pipefail
  cd "$TREE"
  # Go >= 1.18 changed the runtime internals that reflect2 1.0.1 reaches into
  # (kube-apiserver panics at start); 1.0.2 has the same API.
  echo "== replacing vendor/github.com/modern-go/reflect2 with Debian's $REFLECT2_VERSION"
  rm -rf vendor/github.com/modern-go/reflect2
  mkdir -p vendor/github.com/modern-go/reflect2
  rsync -a --copy-links --exclude '*_test.go' --exclude 'test*/' \
    /usr/share/gocode/src/github.com/modern-go/reflect2/ vendor/github.com/modern-go/reflect2/
  # No .git in the tarball: the version the binaries report comes from this file.
  cat >"$DIR/version.env" <<EOF
KUBE_GIT_VERSION='v$UPSTREAM'
KUBE_GIT_MAJOR='1'
KUBE_GIT_MINOR='$MINOR'
KUBE_GIT_COMMIT='debian-$SRC_VERSION'
KUBE_GIT_TREE_STATE='clean'
EOF
  export KUBE_GIT_VERSION_FILE=$DIR/version.env
  # hack/lib/golang.sh sets GOPATH (a symlinked tree under _output) and GOCACHE itself.
  export GO111MODULE=off GOFLAGS=-p=2 GOMAXPROCS=2
  export GOTOOLCHAIN=local GOPROXY=off
  export PATH=$(dirname "$GO"):$PATH
  export KUBE_VERBOSE=2 KUBE_BUILD_PLATFORMS=linux/$(dpkg --print-architecture)
  # The generated OpenAPI definitions are not in the tarball; kube-apiserver needs them.
  echo "== make gen_openapi"
  nice -n 19 ionice -c3 make gen_openapi
  echo "== build ${BINS[*]}"
  nice -n 19 ionice -c3 hack/make-rules/build.sh "${BINS[@]/#/cmd/}"
) >>"$BUILD_LOG" 2>&1 || fail "compile"

ARCH=$(dpkg --print-architecture)
for b in "${BINS[@]}"; do
  f=$TREE/_output/local/bin/linux/$ARCH/$b
  [ -x "$f" ] || f=$(find "$TREE/_output" -path "$TREE/_output/local/go/cache" -prune -o -type f -name "$b" -perm -u+x -print 2>/dev/null | head -1)
  [ -n "$f" ] || fail "$b not produced"
  install -m 0755 "$f" "$DIR/bin/$b"
done
# Both binaries run and report 1.20 (test/lab/kube-apiserver.test.ts then
# proves the server starts and serves, which reflect2 1.0.1 would not).
"$DIR/bin/kube-apiserver" --version >>"$BUILD_LOG" 2>&1 || fail "kube-apiserver --version"
"$DIR/bin/kube-proxy" --version >>"$BUILD_LOG" 2>&1 || fail "kube-proxy --version"
save_gocache
[ "${WEFT_KUBE_KEEP_SRC:-0}" = 1 ] || rm -rf "$WORK"
echo "built in $(( $(date +%s) - start ))s" >>"$BUILD_LOG"
touch "$DIR/ok"
log "built in $(( $(date +%s) - start ))s: $("$DIR/bin/kube-apiserver" --version)"
print_paths
