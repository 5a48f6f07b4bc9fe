#!/usr/bin/env bash
# `nemoclaw sandbox list` over 50 sandboxes: 45 records on disk (stopped,
# and running ones whose supervisor died) and 5 running detached
# supervisors, each of which list asks for its policy generation and
# pending approvals over its control socket. Goal: <= 20 ms.
#
#   bench/supervisor/run.sh                         # builds ./cmd/nemoclaw first
#   NEMOCLAW_BIN_DIR=bin bench/supervisor/run.sh    # what make bench does
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-100}
work=$(mktemp -d)
export NEMOCLAW_HOME="$work/home"
cleanup() {
  for n in $(seq 1 5); do "$NEMOCLAW" sandbox stop --stop-timeout 0s "live$n" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
if [[ -z "${NEMOCLAW:-}" && -n "${NEMOCLAW_BIN_DIR:-}" && -x "$NEMOCLAW_BIN_DIR/nemoclaw" ]]; then
  NEMOCLAW="$NEMOCLAW_BIN_DIR/nemoclaw"
fi
if [[ -z "${NEMOCLAW:-}" ]]; then
  go build -o "$work/nemoclaw" ./cmd/nemoclaw
  NEMOCLAW="$work/nemoclaw"
fi
command -v hyperfine >/dev/null || { echo "bench/supervisor: hyperfine is required (apt-get install hyperfine)" >&2; exit 1; }
mkdir -p "$NEMOCLAW_HOME/sandboxes"
python3 - "$NEMOCLAW_HOME/sandboxes" <<'PY'
import json, os, sys
root = sys.argv[1]
for i in range(45):
    d = os.path.join(root, "rec%02d" % i)
    os.mkdir(d, 0o700)
    dead = i % 2 == 1
    rec = {"v": 1, "name": "rec%02d" % i, "state": "running" if dead else "stopped",
           "supervisor_pid": 4194000 + i, "supervisor_start": 1, "init_pid": 4194100 + i, "init_start": 1,
           "started": "2026-01-01T00:00:00Z", "blueprint": "embedded:default", "version": "0.1.0",
           "command": ["sleep", "1000"]}
    if not dead:
        rec["ended"], rec["exit_code"] = "2026-01-01T01:00:00Z", 0
    with open(os.path.join(d, "supervisor.json"), "w") as f:
        json.dump(rec, f)
PY
for n in $(seq 1 5); do "$NEMOCLAW" sandbox run --detach --name "live$n" -- sleep 1000 >/dev/null; done
[[ $("$NEMOCLAW" sandbox list -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') == 50 ]] ||
  { echo "bench/supervisor: list does not show 50 sandboxes" >&2; exit 1; }
hyperfine -N --style none --warmup 5 --runs "$RUNS" --export-json "$work/h.json" \
  -n list "$NEMOCLAW sandbox list" -n list-json "$NEMOCLAW sandbox list -o json" -n version "$NEMOCLAW version" >/dev/null 2>"$work/err" ||
  { cat "$work/err" >&2; exit 1; }
python3 - "$work/h.json" <<'PY'
import json, statistics, sys
res = {r["command"]: r["times"] for r in json.load(open(sys.argv[1]))["results"]}
print("nemoclaw sandbox list, 50 sandboxes (45 on disk, 5 running), median of %d runs" % len(res["list"]))
for k in ("list", "list-json", "version"):
    v = res[k]
    print("%-10s median %6.2f ms  p90 %6.2f ms" % (k, statistics.median(v) * 1000, sorted(v)[int(len(v) * 0.9)] * 1000))
print("list: %.2f ms (goal <= 20 ms); `nemoclaw version` is the process start-up alone" % (statistics.median(res["list"]) * 1000))
PY
