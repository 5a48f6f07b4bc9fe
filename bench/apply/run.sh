#!/usr/bin/env bash
# Warm `blueprint apply` to agent exit, on the embedded default blueprint,
# with the full isolation stack and the egress proxy attached.
#
# Peer: NemoClaw's warm onboarding takes about 300 s (its CI budget is 390 s);
# it cannot run here (Docker + K3s), so its figure is cited, not measured.
# Goal (DESIGN.md §12): <= 100 ms.
set -euo pipefail
BIN="${NEMOCLAW_BIN_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/bin}"
NC="$BIN/nemoclaw"
export NEMOCLAW_HOME="$(mktemp -d)"
trap 'rm -rf "$NEMOCLAW_HOME"' EXIT
RUNS="${RUNS:-30}"
"$NC" blueprint apply --no-tty -- /bin/true # warm the workspace and caches
out=$(mktemp)
errs=$(mktemp)
# Its warnings (outliers, on this shared VM) go to a file, shown only if it
# fails.
hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$out" \
  "$NC blueprint apply --no-tty -- /bin/true" >/dev/null 2>"$errs" || { cat "$errs" >&2; exit 1; }
rm -f "$errs"
median_ms=$(python3 -c "import json,sys; r=json.load(open('$out'))['results'][0]; print('%.1f' % (r['median']*1000))")
rm -f "$out"
python3 - "$median_ms" <<'PY'
import sys
ms = float(sys.argv[1])
nemo_s = 300.0
print(f"{'what':44s} {'median':>10s}")
print(f"{'nemoclaw blueprint apply -- /bin/true':44s} {ms:8.1f}ms")
print(f"{'NemoClaw warm onboarding (cited)':44s} {nemo_s*1000:8.0f}ms")
print(f"ratio nemoclaw/NemoClaw = {ms/(nemo_s*1000):.6f}  (goal: <= 100 ms; {'met' if ms <= 100 else 'NOT met'})")
PY
