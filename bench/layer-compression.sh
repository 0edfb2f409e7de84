#!/usr/bin/env bash
# Layer compression: gzip -1 (the format and level wikikube writes, crates/image/src/layer/tar.rs)
# against gzip -6 and zstd at a few levels, on the real layers of a built site: compressed size, the
# time to compress (the build's cost, once per layer) and to decompress (every node's pull).
#
# Usage: bench/layer-compression.sh [CACHE_DIR] [LAYERS] [ROUNDS]
#   CACHE_DIR: an image cache holding a built site (default ~/.cache/wikikube; build one with
#   `wikikube build examples/farm` or `make up` first); LAYERS: how many of its largest layer
#   blobs to use (default 4); ROUNDS: timing rounds per codec and layer, median kept (default 3).
# Needs gzip and zstd (Debian packages gzip, zstd). Every codec runs on one core, as the
# builder compresses a layer on one core; the codecs alternate within each round, so a busy
# machine slows them alike (read the ratios).
set -euo pipefail
cache="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/wikikube}"
layers="${2:-4}"
rounds="${3:-3}"
for tool in gzip zstd python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install $tool)" >&2; exit 1; }
done
blobs="$cache/blobs/sha256"
[ -d "$blobs" ] || { echo "no image cache at $cache: build a site first" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The largest gzip blobs (layers; manifests and configs are JSON) with distinct content.
mapfile -t picked < <(
  for blob in $(ls -S "$blobs"); do
    [ "$(head -c2 "$blobs/$blob" | od -An -tx1 | tr -d ' ')" = "1f8b" ] && echo "$blob"
  done | head -n "$layers"
)
[ ${#picked[@]} -gt 0 ] || { echo "no gzip layer in $cache" >&2; exit 1; }

codecs=("gzip -1" "gzip -6" "zstd -1" "zstd -3" "zstd -9")
# Prints the seconds the shell command $1 takes.
seconds() {
  local start end
  start=$(date +%s.%N)
  sh -c "$1" </dev/null
  end=$(date +%s.%N)
  python3 -c "print(f'{$end - $start:.4f}')"
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

total_tar=0
total_blob=0
declare -A size comp decomp last_size
for codec in "${codecs[@]}"; do size[$codec]=0; comp[$codec]=0; decomp[$codec]=0; done
echo "layer | tar MB | $(printf '%s MB / c s / d s | ' "${codecs[@]}")"
for blob in "${picked[@]}"; do
  gzip -dc "$blobs/$blob" > "$work/layer.tar"
  tar_bytes=$(stat -c %s "$work/layer.tar")
  total_blob=$((total_blob + $(stat -c %s "$blobs/$blob")))
  total_tar=$((total_tar + tar_bytes))
  # Read once so that the first codec does not pay for the page cache.
  cat "$work/layer.tar" > /dev/null
  declare -A c_times=() d_times=()
  for _ in $(seq "$rounds"); do
    for codec in "${codecs[@]}"; do
      tool=${codec%% *}
      threads=""
      [ "$tool" = zstd ] && threads="-T1 -q"
      c=$(seconds "$codec $threads -c '$work/layer.tar' > '$work/out'")
      d=$(seconds "$tool -dc '$work/out' > /dev/null")
      c_times[$codec]+="$c "
      d_times[$codec]+="$d "
      last_size[$codec]=$(stat -c %s "$work/out")
    done
  done
  line="${blob:0:12} | $(python3 -c "print(f'{$tar_bytes/1e6:.1f}')")"
  for codec in "${codecs[@]}"; do
    c=$(tr ' ' '\n' <<<"${c_times[$codec]}" | sed '/^$/d' | median)
    d=$(tr ' ' '\n' <<<"${d_times[$codec]}" | sed '/^$/d' | median)
    s=${last_size[$codec]}
    size[$codec]=$((size[$codec] + s))
    comp[$codec]=$(python3 -c "print(${comp[$codec]} + $c)")
    decomp[$codec]=$(python3 -c "print(${decomp[$codec]} + $d)")
    line+=" | $(python3 -c "print(f'{$s/1e6:.1f} / {$c:.2f} / {$d:.2f}')")"
  done
  echo "$line"
  unset c_times d_times
done

echo
echo "all ${#picked[@]} layers: $(python3 -c "print(f'{$total_tar/1e6:.1f}')") MB of tar"
echo "codec | MB | ratio to tar | compress MB/s | decompress MB/s"
# The builder's own blobs, for their size: flate2's zlib-rs at level 1, a quicker and looser
# level 1 than GNU gzip's (its speed is in docs/benchmarks.md, "Images at scale").
echo "wikikube's blobs (zlib-rs level 1) | $(python3 -c "print(f'{$total_blob/1e6:.1f} | {$total_tar/$total_blob:.2f}')") | | "
for codec in "${codecs[@]}"; do
  python3 -c "
s, c, d, t = ${size[$codec]}, ${comp[$codec]}, ${decomp[$codec]}, $total_tar
print(f'$codec | {s/1e6:.1f} | {t/s:.2f} | {t/1e6/c:.0f} | {t/1e6/d:.0f}')"
done
# X > 1: the codec is ahead of gzip -1 (the format and level the builder writes): smaller,
# faster; `wikikube_blob` compares sizes with the builder's own blobs.
base="gzip -1"
for codec in "${codecs[@]}"; do
  [ "$codec" = "$base" ] && continue
  name=${codec// /}
  python3 -c "
print(f'ratio case=$name metric=size value={${size[$base]}/${size[$codec]}:.3f}')
print(f'ratio case=$name metric=compress_speed value={${comp[$base]}/${comp[$codec]}:.3f}')
print(f'ratio case=$name metric=decompress_speed value={${decomp[$base]}/${decomp[$codec]}:.3f}')
print(f'ratio case=$name metric=size_against_wikikube_blob value={$total_blob/${size[$codec]}:.3f}')"
done
