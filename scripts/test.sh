#!/usr/bin/env bash
# Runs every test project against the Release build made by setup, then the browser test of the web
# page (tests/web: Debian chromium driven by playwright-core against the real gateway). Prints one
# closing line "N passed, N failed, N skipped" summed over all of them; exits non-zero on any failure.
# Arguments go to `dotnet test` (e.g. --filter ...); the browser test then is left out.
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
if [[ $# -eq 0 ]]; then
  echo "== web page in a real browser (node --test tests/web/browser.test.mjs)"
  node --test --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$results/web.tap" tests/web/browser.test.mjs || status=1
else
  echo "== web page: browser test left out (arguments were given for dotnet test)"
fi
# Print each failed test with its message and output (CI shows only this log), then sum the
# counters of every TRX file and of the browser test's TAP report into the closing line.
python3 - "$results" $# <<'PY'
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
# The browser test: node's TAP report ends with "# pass N", "# fail N", ... counters.
web = sys.argv[1] + "/web.tap"
if sys.argv[2] == "0":
    try:
        tap = open(web, encoding="utf-8").read()
        counts = {k: int(v) for k, v in re.findall(r'^# (pass|fail|cancelled|skipped|todo) (\d+)$', tap, re.M)}
        if "pass" not in counts:
            raise ValueError("no counters: the run stopped early")
        for name in re.findall(r'^\s*not ok \d+ - (.*)$', tap, re.M):
            print(f"\n---- FAILED web: {name} (details in the spec output above)")
        p += counts.get("pass", 0)
        f += counts.get("fail", 0) + counts.get("cancelled", 0)
        s += counts.get("skipped", 0) + counts.get("todo", 0)
    except (OSError, ValueError) as e:
        print(f"\n---- FAILED web: the browser test did not report ({e}); see its output above")
        f += 1
print(f"{p} passed, {f} failed, {s} skipped")
PY
exit $status
