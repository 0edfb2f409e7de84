#!/usr/bin/env bash
# Prints the time wikikube takes to diff and deploy 5 deployments x 3 releases in 2 clusters,
# against the loopback simulation of an API server (no rollout time: our own overhead only).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench -p wikikube-deploy --bench deploy -j 2 "$@"
