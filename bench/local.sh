#!/usr/bin/env bash
# Benchmarks of the local cake (`wikikube up`), printed as a table:
#  - time from nothing running to the first page, with warm images (and with a cold image cache
#    when --cold is given: minutes, it rebuilds every image);
#  - Main_Page requests per second and p99 latency at 2 and 8 connections, side by side:
#      cake-https  through the whole cake: tls -> httpd -> php-fpm
#      cake-http   the cake's httpd straight: httpd -> php-fpm
#      plain       a plain apache2 on the host, proxying to the same php-fpm's socket
#    and the cake's overhead as a ratio to the plain apache.
# Usage: bench/local.sh [SECONDS_PER_RUN] [--cold]     (needs root, podman, wrk, apache2)
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
cold="${2:-}"
export CONTAINERS_CONF="$PWD/crates/image/containers.conf"

cargo build --release -q -p wikikube-cli -p edge -p mcrouter -p redis-proxy
wikikube="${CARGO_TARGET_DIR:-$PWD/target}/release/wikikube"
work="$(mktemp -d)"
chmod 755 "$work"
trap 'umount "$work/socket" 2>/dev/null || true;
      WIKIKUBE_STATE_DIR="$work/state" "$wikikube" down "$work/site" --purge >/dev/null 2>&1 || true;
      [ -f "$work/httpd.pid" ] && kill "$(cat "$work/httpd.pid")" 2>/dev/null; rm -rf "$work"' EXIT

cp -r examples/farm "$work/site"
sed -i 's/name = "farm"/name = "benchfarm"/' "$work/site/site.toml"
sed -i -e 's/host.containers.internal:11211/host.containers.internal:31211/' \
  -e 's/https_port = 8443, http_port = 8080/https_port = 38443, http_port = 38080/' \
  -e 's/https_port = 8444, http_port = 8081/https_port = 38444, http_port = 38081/' \
  -e 's/port = 3306/port = 33306/' \
  "$work/site/environments/local.toml"
export WIKIKUBE_STATE_DIR="$work/state"

first_page() {
  local start=$1
  until curl -sf -o /dev/null -H "Host: en.farm.test" http://127.0.0.1:38080/wiki/Main_Page; do
    sleep 0.1
  done
  awk -v now="$(date +%s.%N)" -v start="$start" 'BEGIN { printf "%.1f", now - start }'
}

rows=()
if [ "$cold" = "--cold" ]; then
  start=$(date +%s.%N)
  "$wikikube" up "$work/site" --cache "$work/cold-cache" >/dev/null 2>&1
  rows+=("up, cold image cache, to first page|$(first_page "$start") s")
  "$wikikube" down "$work/site" --purge >/dev/null
fi
"$wikikube" up "$work/site" >/dev/null 2>&1   # warms the cache and installs the wikis
"$wikikube" down "$work/site" >/dev/null
start=$(date +%s.%N)
"$wikikube" up "$work/site" >/dev/null 2>&1
rows+=("up, warm images, to first page|$(first_page "$start") s")

# A plain apache on the host, in front of the same php-fpm: its socket lives on a podman volume,
# under a directory only root may enter; a bind mount lets apache's www-data workers reach it.
volume_dir=$(podman volume inspect benchfarm-mw-web-main-shared-socket --format '{{.Mountpoint}}')
socket_dir="$work/socket"
mkdir -p "$socket_dir"
mount --bind "$volume_dir" "$socket_dir"
cat > "$work/httpd.conf" <<CONF
ServerRoot /etc/apache2
ServerName localhost
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule proxy_module /usr/lib/apache2/modules/mod_proxy.so
LoadModule proxy_fcgi_module /usr/lib/apache2/modules/mod_proxy_fcgi.so
User www-data
Group www-data
Listen 127.0.0.1:38090
PidFile $work/httpd.pid
DefaultRuntimeDir $work
Mutex file:$work default
ErrorLog $work/httpd-error.log
ProxyPassMatch "^/wiki/" "unix:$socket_dir/fpm-www.sock|fcgi://localhost/srv/mediawiki/docroot/w/index.php"
CONF
apache2 -f "$work/httpd.conf" -k start
sleep 1

measure() { # NAME URL CONNECTIONS -> "rps p99"
  local out
  out=$(wrk -t2 -c"$3" -d"${duration}s" --latency -H "Host: en.farm.test" "$2" 2>&1)
  local rps p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  local errors
  errors=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  echo "$rps $p99 ${errors:-0}"
}
for connections in 2 8; do
  for target in "plain|http://127.0.0.1:38090/wiki/Main_Page" \
                "cake-http|http://127.0.0.1:38080/wiki/Main_Page" \
                "cake-https|https://127.0.0.1:38443/wiki/Main_Page"; do
    name=${target%%|*}; url=${target#*|}
    read -r rps p99 errors < <(measure "$name" "$url" "$connections")
    declare "rps_${name//-/_}_$connections=$rps"
    rows+=("$name, $connections connections|$rps req/s, p99 $p99, non-2xx $errors")
  done
  plain=$(eval echo "\$rps_plain_$connections")
  for name in cake_http cake_https; do
    value=$(eval echo "\$rps_${name}_$connections")
    ratio=$(awk -v a="$value" -v b="$plain" 'BEGIN { printf "%.2f", a / b }')
    rows+=("${name//_/-} / plain, $connections connections|$ratio")
  done
done

printf '\n%-45s %s\n' "measure" "figure"
for row in "${rows[@]}"; do
  printf '%-45s %s\n' "${row%%|*}" "${row#*|}"
done
