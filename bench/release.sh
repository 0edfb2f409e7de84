#!/usr/bin/env bash
# From editing one MediaWiki setting in the site to the canary running it: wikikube's own time
# for each stage of `wikikube release` (build, push to Debian's docker-registry on loopback,
# render by digest, diff, deploy against the simulated API server, record), first release and
# the median of 3 edits. See crates/release/benches/release.rs for what is and is not measured.
# Usage: bench/release.sh      (needs docker-registry, mmdebstrap; images cached in
#        WIKIKUBE_BENCH_CACHE, default ~/.cache/wikikube: the first run builds them cold)
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench -p wikikube-release --bench release "$@"
