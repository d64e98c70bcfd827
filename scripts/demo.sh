#!/usr/bin/env bash
# Sets everything up, then mounts the embedded default (cache.config.json: ./demo on ./mnt).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
node dist/src/cli/main.js mount
node dist/src/cli/main.js status ./mnt
echo
echo "Try: ls -l ./mnt; cat ./mnt/docs/hello.txt; node dist/src/cli/main.js status ./mnt --json"
echo "Unmount with: node dist/src/cli/main.js umount ./mnt"
