#!/usr/bin/env bash
# Image build figures: cold build of every image, warm no-op build, rebuild after a one-line
# config change, and layer hashing+compression throughput against single-core sha256 and gzip.
# Usage: bench/image.sh [SITE_DIR]   (default examples/farm). Needs mmdebstrap, bubblewrap, patch.
set -euo pipefail
cd "$(dirname "$0")/.."
site="${1:-examples/farm}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target-image}"
cargo build -q --release -p wikikube-image --example build
bin="$CARGO_TARGET_DIR/release/examples/build"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
secs() { local s=$(date +%s.%N); "$@" > "$work/out.txt" 2>&1; echo "$(date +%s.%N) - $s" | bc; }

cold=$(secs "$bin" "$site" --cache "$work/cache")
echo "cold build, all images (mmdebstrap included): ${cold} s"
grep "layers written" "$work/out.txt"
warm=$(secs "$bin" "$site" --cache "$work/cache")
echo "warm no-op build: ${warm} s (target < 2 s)"
change=$(secs "$bin" "$site" --cache "$work/cache" --set-config 'srv/mediawiki/wikiversions.json={"enwiki":"php-1.39","dewiki":"php-1.39"}')
echo "rebuild after a one-line config change: ${change} s (target < 5 s)"
grep -E "^app" "$work/out.txt"

# Single-core limits on the same machine: sha256 and gzip -1 over the biggest layer blob's tar.
blob=$(ls -S "$work/cache/blobs/sha256" | head -1)
gzip -dc "$work/cache/blobs/sha256/$blob" > "$work/layer.tar"
mb=$(( $(stat -c %s "$work/layer.tar") / 1000000 ))
t=$(secs sha256sum "$work/layer.tar"); echo "sha256sum: $(echo "$mb / $t" | bc) MB/s"
t=$(secs sh -c "gzip -1 -c '$work/layer.tar' > /dev/null"); echo "gzip -1 (one core): $(echo "$mb / $t" | bc) MB/s"
