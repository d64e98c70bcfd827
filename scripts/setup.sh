#!/usr/bin/env bash
# Sets up everything cachefs needs on a Debian machine, as root: the system packages (FUSE,
# libfuse2 for fuse-native, bindfs for the benchmarks' baseline, a C toolchain to build the
# patched fuse-native and better-sqlite3), the npm packages (npm ci) and the build.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(fuse libfuse2 bindfs g++ make python3 ca-certificates)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ! command -v node >/dev/null 2>&1; then missing+=(nodejs npm); fi
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing packages: ${missing[*]}; run this script as root (or apt-get install them)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "setup: cachefs needs Node.js 20 or newer (found $(node --version))" >&2
  exit 1
fi

if [ ! -e /dev/fuse ]; then
  echo "setup: /dev/fuse is missing: this machine cannot mount FUSE file systems" >&2
  exit 1
fi

# npm ci also patches and rebuilds fuse-native (postinstall), see scripts/rebuild-fuse-native.mjs.
npm ci --no-audit --no-fund
npm run build
echo "setup: done"
