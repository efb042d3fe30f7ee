#!/usr/bin/env bash
# Runs every test project against the Release build made by setup. Prints one closing line
# "N passed, N failed, N skipped" summed over the projects; exits non-zero on any failure.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
results="$root/.cache/test-results"; rm -rf "$results"; mkdir -p "$results"
status=0
for proj in tests/*/*.csproj; do
  name=$(basename "$proj" .csproj)
  echo "== $name"
  dotnet test "$proj" -c Release --no-build --nologo -v:quiet \
    --logger "trx;LogFileName=$name.trx" --results-directory "$results" "$@" || status=1
done
# Sum the counters of every TRX file into the closing line.
python3 - "$results" <<'PY'
import glob, re, sys
p = f = s = 0
for path in glob.glob(sys.argv[1] + "/*.trx"):
    m = re.search(r'<Counters [^>]*', open(path, encoding="utf-8").read())
    if not m:
        continue
    c = dict(re.findall(r'(\w+)="(\d+)"', m.group(0)))
    p += int(c.get("passed", 0)); f += int(c.get("failed", 0)) + int(c.get("error", 0)) + int(c.get("timeout", 0))
    # xunit's skipped tests are counted only in "total" (outcome NotExecuted), not in notExecuted.
    s += int(c.get("total", 0)) - int(c.get("passed", 0)) - int(c.get("failed", 0)) - int(c.get("error", 0)) - int(c.get("timeout", 0))
print(f"{p} passed, {f} failed, {s} skipped")
PY
exit $status
