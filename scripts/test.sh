#!/usr/bin/env bash
# Sets everything up, then runs the whole test suite (real FUSE mounts). CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm test
