#!/usr/bin/env bash
# Fetches the real photos the tests use (Debian package `scratch`, its 480x360 JPEG backgrounds),
# checks every file against the pinned SHA-256 list, and derives the variants the tests need
# (PNG, WebP, EXIF-rotated JPEG, grey, crops, broken files) with Debian's Pillow.
# Idempotent: does nothing when test-data/ is complete for the current pins.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
pins="$root/tests/fixtures/test-photos.sha256"
out="$root/test-data"
cache="$root/.cache/debs"
pkg="scratch=1.4.0.6~dfsg1-6.1"
stamp="$out/.complete"
want=$(cat "$pins" "$root/scripts/make-test-variants.py" | sha256sum | cut -c1-64)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then exit 0; fi

mkdir -p "$cache"
deb=$(ls "$cache"/scratch_1.4.0.6~dfsg1-6.1_all.deb 2>/dev/null || true)
if [[ -z "$deb" ]]; then
  (cd "$cache" && apt-get download "$pkg" >/dev/null 2>&1) || {
    echo "fetch-test-data: 'apt-get download $pkg' failed (run apt-get update?)" >&2; exit 1; }
  deb=$(ls "$cache"/scratch_1.4.0.6~dfsg1-6.1_all.deb)
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
dpkg -x "$deb" "$tmp"
rm -rf "$out"; mkdir -p "$out/photos"
src="$tmp/usr/share/scratch/Media"
(cd "$src" && sha256sum --quiet -c "$pins") || { echo "fetch-test-data: pinned hashes do not match the package" >&2; exit 1; }
while read -r _ rel; do
  cp "$src/$rel" "$out/photos/$(basename "$(dirname "$rel")" | tr 'A-Z' 'a-z')-$(basename "$rel")"
done < "$pins"
/usr/bin/python3 "$root/scripts/make-test-variants.py" "$out/photos" "$out/variants"
echo "$want" > "$stamp"
echo "test data: $(ls "$out/photos" | wc -l) photos, $(ls "$out/variants" | wc -l) variants in $out"
