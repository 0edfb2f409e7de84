#!/usr/bin/env bash
# From editing one MediaWiki setting in the site to an environment that runs the change by
# digest: wikikube's own time for each step, printed as a table.
#   build+push   `wikikube build --push` after the edit (warm cache: only the config layer and
#                the app image change), to Debian's docker-registry on loopback, recording the
#                digests in pushed-images.toml
#   render       `wikikube render --env eqiad`: every release now names the new app digest
# The first build and push (before the edit) is printed too, for comparison. Applying to a
# cluster and the rollout are not included: there is no cluster here (deploy's own figures are
# in bench/deploy.sh, against the simulation).
# Usage: bench/release.sh [PORT]      (needs docker-registry; uses ~/.cache/wikikube)
set -euo pipefail
cd "$(dirname "$0")/.."
port="${1:-35000}"
registry="127.0.0.1:$port"

cargo build --release -q -p wikikube-cli -p edge -p mcrouter
wikikube="$PWD/target/release/wikikube"
work="$(mktemp -d)"
trap '[ -n "${registry_pid:-}" ] && kill "$registry_pid" 2>/dev/null; rm -rf "$work"' EXIT

cp -r examples/farm "$work/site"
sed -i "s#registry.farm.test#$registry#" "$work/site/environments/production.toml"
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

seconds() {
  local start end
  start=$(date +%s.%N)
  "$@" >"$work/last.log" 2>&1 || { cat "$work/last.log" >&2; exit 1; }
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN { print b - a }'
}

first=$(seconds "$wikikube" build "$work/site" --push "$registry")
sed -i 's/wgSitename = "Farm English"/wgSitename = "Farm English (edited)"/' "$work/site/site.toml"
build=$(seconds "$wikikube" build "$work/site" --push "$registry")
render=$(seconds "$wikikube" render "$work/site" --env eqiad --out "$work/out")

app=$(grep -A1 '"'"$registry"'/wikikube/app"' "$work/site/pushed-images.toml" | sed -n 's/^digest = "\(.*\)"/\1/p')
grep -q "image: $registry/wikikube/app@$app" "$work/out/"*deployment-mw-web-main.yaml \
  || { echo "the render does not name the pushed app digest $app" >&2; exit 1; }

printf '%-28s %8s\n' step seconds
printf '%-28s %8.2f\n' "first build+push" "$first" "edit -> build+push" "$build" \
  "render by digest" "$render"
printf '%-28s %8.2f\n' "edit -> render by digest" "$(awk -v a="$build" -v b="$render" 'BEGIN { print a + b }')"
