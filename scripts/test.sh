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
# Print each failed test with its message and output (CI shows only this log), then sum the
# counters of every TRX file into the closing line.
python3 - "$results" <<'PY'
import glob, re, sys
import xml.etree.ElementTree as ET
ns = {"t": "http://microsoft.com/schemas/VisualStudio/TeamTest/2010"}
for path in sorted(glob.glob(sys.argv[1] + "/*.trx")):
    for r in ET.parse(path).getroot().iterfind(".//t:UnitTestResult", ns):
        if r.get("outcome") not in ("Failed", "Error", "Timeout"):
            continue
        print(f"\n---- FAILED {r.get('testName')} ({r.get('duration')})")
        for tag in ("ErrorInfo/t:Message", "ErrorInfo/t:StackTrace", "StdOut"):
            e = r.find("t:Output/t:" + tag, ns)
            if e is not None and e.text:
                text = e.text.strip()
                print(text if len(text) <= 6000 else text[:3000] + "\n[...]\n" + text[-3000:])
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
