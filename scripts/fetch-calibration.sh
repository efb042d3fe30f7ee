#!/usr/bin/env bash
# Fetches the calibration photos: real photographs, kept apart from the dev benchmark and the
# test photos, used to learn the centring mean (and PCA-whitening) of the raw CNN vectors.
# See docs/CALIBRATION-DATA.md.
#
#   bash scripts/fetch-calibration.sh [--out DIR]
#
# Downloads the pinned Debian bookworm packages listed in tests/fixtures/calibration-photos.sha256
# into .cache/debs/ (`apt-get download PKG=VERSION`, nothing is installed), checks each .deb and
# every selected file against its pinned SHA-256, and writes the photos to DIR (default
# .cache/calibration/) as `<source>-<stem>.jpg`: EXIF orientation applied, alpha flattened onto
# white, RGB, longer side <= 1024, JPEG quality 92, made with Debian's /usr/bin/python3 + Pillow.
# DIR/calibration.tsv lists every photo (name, kind, source file, hashes, size).
#
# Idempotent: a stamp (DIR/.complete, a hash of the pins file and this script) makes a rerun a
# fast no-op. Any missing package, missing file or hash mismatch is reported and exits non-zero,
# leaving an earlier complete DIR untouched.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pins="$root/tests/fixtures/calibration-photos.sha256"
cache="$root/.cache/debs"
out="$root/.cache/calibration"
py=/usr/bin/python3
max_side=1024
quality=92

die() { echo "fetch-calibration: error: $*" >&2; exit 1; }
usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) [[ $# -ge 2 && -n "$2" ]] || die "--out needs a directory"; out="$2"; shift 2 ;;
    --out=*) out="${1#--out=}"; [[ -n "$out" ]] || die "--out needs a directory"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
out="${out%/}"
[[ -f "$pins" ]] || die "pins file $pins not found"

stamp="$out/.complete"
want=$(cat "$pins" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-64)
expected=$(grep -c $'^file\t' "$pins")
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
   && [[ "$(find "$out" -maxdepth 1 -type f -name '*.jpg' | wc -l)" -eq "$expected" ]]; then
  echo "calibration: up to date, $expected photos in $out" >&2
  exit 0
fi

# ---------------------------------------------------------------- prerequisites
command -v apt-get >/dev/null || die "apt-get not found (this script needs Debian's apt)"
command -v dpkg-deb >/dev/null || die "dpkg-deb not found"
[[ -x "$py" ]] || die "$py not found: install Debian's python3 (apt-get install python3 python3-pil)"
"$py" -c 'import PIL' 2>/dev/null || die "$py cannot import PIL: apt-get install python3-pil"
if [[ -e "$out" && ! -f "$stamp" && -n "$(ls -A "$out" 2>/dev/null)" ]]; then
  die "$out is not empty and holds no earlier calibration set (no .complete): refusing to overwrite it"
fi

# ---------------------------------------------------------------- download the pinned .debs
mkdir -p "$cache"
t0=$(date +%s)
declare -a debs=()
while IFS=$'\t' read -r kind pkg ver sha; do
  [[ "$kind" == deb ]] || continue
  deb="$cache/${pkg}_${ver//:/%3a}_all.deb"
  if [[ -f "$deb" && "$(sha256sum < "$deb" | cut -c1-64)" != "$sha" ]]; then
    echo "fetch-calibration: cached $(basename "$deb") does not match its pin; downloading it again" >&2
    rm -f "$deb"
  fi
  if [[ ! -f "$deb" ]]; then
    tmp=$(mktemp -d "$cache/.download.XXXXXX")
    if ! (cd "$tmp" && apt-get download "$pkg=$ver") >"$tmp/log" 2>&1; then
      tail -n 5 "$tmp/log" | sed 's/^/    /' >&2
      rm -rf "$tmp"
      die "'apt-get download $pkg=$ver' failed: the pinned package version is missing from the apt
    sources (run 'apt-get update' first; if bookworm no longer carries $ver, pick a new version
    and re-pin its files in $pins)"
    fi
    got=$(find "$tmp" -maxdepth 1 -name '*.deb')
    [[ $(printf '%s\n' "$got" | grep -c .) -eq 1 ]] || { rm -rf "$tmp"; die "apt-get download $pkg=$ver produced: $got"; }
    have=$(sha256sum < "$got" | cut -c1-64)
    if [[ "$have" != "$sha" ]]; then
      rm -rf "$tmp"
      die "$pkg=$ver: downloaded .deb has sha256 $have, pinned $sha"
    fi
    mv "$got" "$deb"
    rm -rf "$tmp"
  fi
  debs+=("$pkg=$deb")
done < "$pins"
[[ ${#debs[@]} -gt 0 ]] || die "no 'deb' records in $pins"
t1=$(date +%s)

# ---------------------------------------------------------------- verify + convert
partial="$out.partial"
rm -rf "$partial"
mkdir -p "$partial"
if ! "$py" - "$pins" "$partial" "$max_side" "$quality" "${debs[@]}" <<'PYEOF'
import concurrent.futures, hashlib, io, os, subprocess, sys, tarfile
from PIL import Image, ImageOps

pins_path, out_dir, max_side, quality = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
deb_of = dict(a.split("=", 1) for a in sys.argv[5:])
version_of, wanted, problems, names = {}, {}, [], set()
for n, line in enumerate(open(pins_path, encoding="utf-8"), 1):
    if not line.strip() or line.startswith("#"):
        continue
    f = line.rstrip("\n").split("\t")
    if f[0] == "deb" and len(f) == 4:
        version_of[f[1]] = f[2]
    elif f[0] == "file" and len(f) == 6:
        _, pkg, path, sha, name, kind = f
        if name in names or not name.endswith(".jpg") or "/" in name:
            problems.append(f"pins line {n}: bad or repeated output name {name!r}")
        names.add(name)
        wanted.setdefault(pkg, {})[path] = (sha, name, kind)
    else:
        problems.append(f"pins line {n}: malformed record {line.strip()[:80]!r}")
for pkg in wanted:
    if pkg not in deb_of:
        problems.append(f"{pkg}: files are pinned but the package has no 'deb' record")


def convert(data):
    im = Image.open(io.BytesIO(data))
    im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im)
    im = im.convert("RGB")
    if max(im.size) > max_side:
        s = max_side / max(im.size)
        im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue(), im.size


def process(pkg):
    """Stream the package's data tarball, verify and convert the pinned files. -> (rows, problems)"""
    todo, rows, probs = dict(wanted[pkg]), [], []
    p = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb_of[pkg]], stdout=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=p.stdout, mode="r|") as tar:
            for m in tar:
                path = m.name[2:] if m.name.startswith("./") else m.name.lstrip("/")
                if path not in todo:
                    continue
                sha, name, kind = todo.pop(path)
                if not m.isfile():
                    probs.append(f"{pkg}: {path} is not a regular file in the package")
                    continue
                data = tar.extractfile(m).read()
                got = hashlib.sha256(data).hexdigest()
                if got != sha:
                    probs.append(f"{pkg}: {path} has sha256 {got}, pinned {sha}")
                    continue
                try:
                    jpg, size = convert(data)
                except Exception as e:  # undecodable image
                    probs.append(f"{pkg}: {path} could not be converted: {e}")
                    continue
                with open(os.path.join(out_dir, name), "wb") as fh:
                    fh.write(jpg)
                rows.append((name, kind, pkg, version_of[pkg], path, sha,
                             hashlib.sha256(jpg).hexdigest(), size[0], size[1]))
    finally:
        p.stdout.close()
        rc = p.wait()
    if rc:
        probs.append(f"{pkg}: dpkg-deb --fsys-tarfile {deb_of[pkg]} failed ({rc})")
    probs += [f"{pkg}: {path} is missing from the package" for path in sorted(todo)]
    return rows, probs


rows = []
if not problems:
    workers = max(1, min(len(wanted), os.cpu_count() or 1))
    with concurrent.futures.ProcessPoolExecutor(workers) as ex:
        # largest package first so it overlaps with the small ones
        order = sorted(wanted, key=lambda k: -os.path.getsize(deb_of[k]))
        for r, pr in ex.map(process, order):
            rows += r
            problems += pr
if problems:
    print("fetch-calibration: PROBLEMS (nothing was written to the output directory):", file=sys.stderr)
    for pr in problems:
        print("  " + pr, file=sys.stderr)
    sys.exit(2)
rows.sort()
with open(os.path.join(out_dir, "calibration.tsv"), "w", encoding="utf-8") as fh:
    fh.write("name\tkind\tpackage\tversion\tpath\tsource_sha256\tjpeg_sha256\twidth\theight\n")
    for r in rows:
        fh.write("\t".join(map(str, r)) + "\n")
kinds = {}
for r in rows:
    kinds[r[1]] = kinds.get(r[1], 0) + 1
print(f"calibration: {len(rows)} photos ({', '.join(f'{v} {k}' for k, v in sorted(kinds.items()))})",
      file=sys.stderr)
PYEOF
then
  rm -rf "$partial"
  die "verification or conversion failed (see above)"
fi

n=$(find "$partial" -maxdepth 1 -type f -name '*.jpg' | wc -l)
[[ "$n" -eq "$expected" ]] || { rm -rf "$partial"; die "wrote $n photos, expected $expected"; }
rm -rf "$out"
mv "$partial" "$out"
echo "$want" > "$stamp"
echo "calibration: $n photos in $out (download/check $((t1 - t0))s, convert $(( $(date +%s) - t1 ))s)" >&2
