#!/usr/bin/env bash
# Benchmarks of the train (issue 16), printed as a table:
#  - adding a second MediaWiki version to an app image that carries one: `wikikube build` of the
#    example farm with only 1.39.17-wmf.1, then with the second version added under a name no
#    earlier run used (its code, patch and l10n layers are built; the first version's are reused);
#  - the same build again with nothing changed, for scale;
#  - a promotion when the image carries the version (`wikikube train promote group1
#    NEW` on the running local farm: update.php for the two moved wikis, the farm
#    converged with the new wikiversions, site.toml written) and the rollback, to the first page
#    served by the new version.
# Usage: bench/train.sh       (needs root and podman; uses ~/.cache/wikikube as the warm cache)
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF="$PWD/crates/image/containers.conf"

cargo build --release -q -p wikikube-cli -p edge -p mcrouter -p redis-proxy
wikikube="${CARGO_TARGET_DIR:-$PWD/target}/release/wikikube"
work="$(mktemp -d)"
chmod 755 "$work"
trap 'WIKIKUBE_STATE_DIR="$work/state" "$wikikube" down "$work/site" --purge >/dev/null 2>&1 || true;
      rm -rf "$work"' EXIT

cp -r examples/farm "$work/site"
sed -i 's/name = "farm"/name = "trainbench"/' "$work/site/site.toml"
sed -i -e 's/host.containers.internal:11211/host.containers.internal:32211/' \
  -e 's/https_port = 8443, http_port = 8080/https_port = 39443, http_port = 39080/' \
  -e 's/https_port = 8444, http_port = 8081/https_port = 39444, http_port = 39081/' \
  -e 's/local_https_port = 8445/local_https_port = 39445/' \
  -e 's/port = 3306/port = 34306/' \
  "$work/site/environments/local.toml"
export WIKIKUBE_STATE_DIR="$work/state"
# The second version gets a name no earlier run has built (as each week's branch is new), so its
# code, patch and l10n layers are built here; its code is Debian's package, whose unpacked tree
# is cached as in any build.
new="1.39.17-wmf.$(date +%s)"
mv "$work/site/patches/1.39.17-wmf.2" "$work/site/patches/$new"
sed -i "s/1\.39\.17-wmf\.2/$new/g" "$work/site/site.toml"
full="$work/site/site.toml.full"
cp "$work/site/site.toml" "$full"
# One version: the second one and the group on it go.
python3 - "$work/site/site.toml" "$new" <<'PY'
import re, sys
path, new = sys.argv[1:3]
text = open(path).read()
text = re.sub(r'\[versions\."' + re.escape(new) + r'"\]\ncode = .*\npatches = .*\n', '', text)
text = text.replace(f'version = "{new}"', 'version = "1.39.17-wmf.1"')
open(path, 'w').write(text)
PY

seconds() {
  local start
  start=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  awk -v now="$(date +%s.%N)" -v start="$start" 'BEGIN { printf "%.1f", now - start }'
}

first_version() {
  curl -s -H "Host: $1" "http://127.0.0.1:39080/wiki/Main_Page" |
    grep -o 'content="MediaWiki [^"]*"' | sed 's/content="MediaWiki //; s/"//'
}

rows=()
"$wikikube" build "$work/site" >/dev/null 2>&1
cp "$full" "$work/site/site.toml"
rows+=("add a second version to a built app image|$(seconds "$wikikube" build "$work/site") s")
rows+=("the same build again, nothing changed|$(seconds "$wikikube" build "$work/site") s")

"$wikikube" up "$work/site" >/dev/null 2>&1
[ "$(first_version en.farm.test)" = "1.39.17-wmf.1" ] || { echo "enwiki is not on wmf.1" >&2; exit 1; }
rows+=("train promote group1 (2 wikis), image carries the version|$(seconds "$wikikube" train promote group1 "$new" "$work/site" --env local) s")
[ "$(first_version en.farm.test)" = "$new" ] || { echo "enwiki did not move" >&2; exit 1; }
rows+=("train rollback group1|$(seconds "$wikikube" train rollback group1 "$work/site" --env local) s")
[ "$(first_version en.farm.test)" = "1.39.17-wmf.1" ] || { echo "enwiki did not move back" >&2; exit 1; }

printf '%-60s %s\n' "case" "time"
for row in "${rows[@]}"; do
  printf '%-60s %s\n' "${row%%|*}" "${row#*|}"
done
