#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, runs every test
# (unit tests without root, lab tests in network namespaces with real etcd).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
[ -d node_modules ] && [ -f native/build/Release/weft_native.node ] || npm ci
npm test
