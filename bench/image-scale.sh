#!/usr/bin/env bash
# Images at Wikimedia's scale: generates a MediaWiki-like tree from a seed (core, 180 extensions,
# 4 skins, l10n for 435 languages: 185,624 files, 2.6 GB, 3.0 GB on disk) and measures the app image's
# MediaWiki layers (wikikube_image::stack, the layers `wikikube build` makes from code) through a
# cold build, a no-op rebuild, a one-file config change, a one-file change in one extension, one
# message changed in three languages, a one-file change in core, and adding a second version;
# each is pushed to Debian's docker-registry on loopback. Prints a Markdown table.
#
# Why 2.6 GB and not Wikimedia's ~9 GB: the tree, the build cache (compressed layers, two
# versions) and the registry's copy must fit in the 8 GB this machine's shared disk can spare
# (~30 GB free, another engineer's builds beside us); the file count, which drives the cost of a
# no-op build, is Wikimedia's. SCALE multiplies the file counts (SCALE=0.1 for a quick try).
#
# Usage: bench/image-scale.sh [WORK_DIR]   (needs docker-registry; WORK_DIR is removed after)
#   INCREMENTAL=0 measures whole-group layers only (no base + changes layers); VERSION=0 leaves
#   out adding a second version (~0.8 GB less of cache and registry); ZSTD=1 writes zstd layers
#   (build.toml's `[layers] compression = "zstd"`) instead of gzip.
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d /var/tmp/image-scale.XXXXXX)}"
scale="${SCALE:-1}"
port="${PORT:-35018}"
registry="127.0.0.1:$port"
mkdir -p "$work"
trap '[ -n "${registry_pid:-}" ] && kill "$registry_pid" 2>/dev/null; rm -rf "$work"' EXIT

cat > "$work/registry.yml" <<YAML
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: $registry
log:
  level: warn
YAML
docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
registry_pid=$!
until curl -sf -o /dev/null "http://$registry/v2/"; do sleep 0.1; done

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r), $(date -u +%F)"
args=("$work/run" --registry "$registry" --scale "$scale")
[ "${INCREMENTAL:-1}" = 0 ] && args+=(--whole)
[ "${VERSION:-1}" = 0 ] && args+=(--no-version)
[ "${ZSTD:-0}" = 1 ] && args+=(--zstd)
cargo bench -q -p wikikube-image --bench image_scale -- "${args[@]}"
du -sh "$work/run/srv" "$work/run/cache" "$work/registry" 2>/dev/null || true
