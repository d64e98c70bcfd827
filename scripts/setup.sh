#!/usr/bin/env bash
# Sets up everything cachefs needs on a Debian machine, as root: the system packages (fuse3 for
# fusermount3: cachefs speaks the FUSE protocol itself and needs no libfuse; bindfs for the
# benchmarks' baseline, a C toolchain in case better-sqlite3 must be built; nfs-ganesha + its VFS backend, libnfs-utils, iproute2,
# gcc and libc6-dev for the test/benchmark NFS server of scripts/nfs-server.sh), the npm
# packages (npm ci) and the build.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# nfs-ganesha* / libnfs-utils / iproute2 / gcc / libc6-dev: scripts/nfs-server.sh (a real NFS
# server on 127.0.0.1 for the tests and benchmarks; gcc + libc6-dev build its LD_PRELOAD shim).
# libnfs-dev: bench/hoard.ts builds its libnfs tree-copy baseline against it.
# strace: test/data-integrity.test.ts checks that fsync while disconnected reaches the disk.
# git, sqlite3, rsync, tar: the real tools the tests run in the mount (test/offline-trip.test.ts,
# test/real-tools.test.ts), connected and offline.
APT_PACKAGES=(fuse3 bindfs g++ make python3 ca-certificates
  nfs-ganesha nfs-ganesha-vfs libnfs-utils libnfs-dev iproute2 gcc libc6-dev strace
  git sqlite3 rsync tar)
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
  # Where systemd runs, installing nfs-ganesha (and rpcbind, one of its Depends) would start the
  # packaged services on 0.0.0.0:2049 / :111: a temporary policy-rc.d (exit 101) forbids that.
  created_policy_rc=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    created_policy_rc=1
  fi
  apt_rc=0
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || apt_rc=$?
  if [ "$created_policy_rc" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  [ "$apt_rc" = 0 ] || exit "$apt_rc"
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

npm ci --no-audit --no-fund
npm run build
echo "setup: done"
