#!/usr/bin/env bash
# `nemoclaw onboard` of OpenClaw, unattended: time to a running agent
# (onboard returns once `openclaw gateway run` runs in its sandbox) and to
# the gateway serving ("http server listening" in its log), with the tools
# tree already installed (re-run, or a second sandbox) and, with FRESH=1,
# from npm's warm cache into a new tree (npm install of ~330 packages).
#
# Peers: the same `openclaw gateway run` started directly on the host (same
# tools tree and config, no sandbox) to the gateway serving, measured in the
# same run; NemoClaw's warm onboarding takes about 300 s (its CI budget is
# 390 s); it cannot run here (Docker + K3s), so its figure is cited.
# Goal (DESIGN.md §12): <= 5 s to a running agent with a warm npm cache.
set -euo pipefail
BIN="${NEMOCLAW_BIN_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/bin}"
NC="$BIN/nemoclaw"
RUNS="${RUNS:-5}"
CACHE="${NEMOCLAW_E2E_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/nemoclaw-e2e-tools}/openclaw-tools"
command -v npm >/dev/null || { echo "bench onboard: npm is not installed (Debian package npm)"; exit 1; }
export NEMOCLAW_HOME="$(mktemp -d)"
cleanup() {
  for d in "$NEMOCLAW_HOME"/sandboxes/*; do [ -d "$d" ] && "$NC" sandbox destroy --force "$(basename "$d")" >/dev/null 2>&1 || true; done
  rm -rf "$NEMOCLAW_HOME"
}
trap cleanup EXIT
mkdir -p "$CACHE"
export NVIDIA_API_KEY=bench-placeholder # a usable profile; no model call is made
now() { date +%s.%N; }
if [ "${FRESH:-0}" = 1 ]; then
  fresh_home="$NEMOCLAW_HOME"
  t0=$(now); "$NC" onboard --yes --name fresh >/dev/null; t1=$(now)
  "$NC" sandbox destroy --force fresh >/dev/null
  fresh_s=$(echo "$t1 - $t0" | bc)
  rm -rf "$fresh_home/tools"
fi
ln -sfn "$CACHE" "$NEMOCLAW_HOME/tools"
"$NC" onboard --yes --name warmup >/dev/null # installs into the cache once
"$NC" sandbox destroy --force warmup >/dev/null
run_s=() ready_s=()
for i in $(seq 1 "$RUNS"); do
  t0=$(now)
  "$NC" onboard --yes --name "b$i" >/dev/null
  t1=$(now)
  log="$NEMOCLAW_HOME/sandboxes/b$i/agent.log"
  until grep -q "http server listening" "$log" 2>/dev/null; do
    sleep 0.2
    if [ "$(echo "$(now) - $t0 > 300" | bc)" = 1 ]; then echo "bench onboard: gateway b$i did not start" >&2; exit 1; fi
  done
  t2=$(now)
  run_s+=("$(echo "$t1 - $t0" | bc)") ready_s+=("$(echo "$t2 - $t0" | bc)")
  "$NC" sandbox destroy --force "b$i" >/dev/null
done
# The peer: the same gateway, same tree and config, straight on the host.
tree=$(readlink -f "$NEMOCLAW_HOME"/tools/v-*)
direct_s=()
for i in $(seq 1 "$RUNS"); do
  d="$NEMOCLAW_HOME/direct$i"
  mkdir -p "$d/.openclaw"
  cp "$NEMOCLAW_HOME/sandboxes/b$i/workspace/.openclaw/openclaw.json" "$d/.openclaw/" 2>/dev/null ||
    "$NC" onboard --yes --name "c$i" >/dev/null && cp "$NEMOCLAW_HOME/sandboxes/c$i/workspace/.openclaw/openclaw.json" "$d/.openclaw/" && "$NC" sandbox destroy --force "c$i" >/dev/null
  t0=$(now)
  env -i HOME="$d" PATH="$tree/bin:/usr/bin:/bin" OPENCLAW_CONFIG_PATH="$d/.openclaw/openclaw.json" OPENCLAW_STATE_DIR="$d/.openclaw-data" \
    OPENCLAW_NO_AUTO_UPDATE=1 openclaw gateway run >"$d/gw.log" 2>&1 &
  gw=$!
  until grep -q "http server listening" "$d/gw.log" 2>/dev/null; do
    sleep 0.2
    if [ "$(echo "$(now) - $t0 > 300" | bc)" = 1 ]; then echo "bench onboard: direct gateway did not start" >&2; kill "$gw"; exit 1; fi
  done
  direct_s+=("$(echo "$(now) - $t0" | bc)")
  kill "$gw"; wait "$gw" 2>/dev/null || true
done
python3 - "${FRESH_S:-${fresh_s:-}}" "${run_s[*]}" "${ready_s[*]}" "${direct_s[*]}" <<'PY'
import statistics, sys
fresh = sys.argv[1]
run = [float(x) for x in sys.argv[2].split()]
ready = [float(x) for x in sys.argv[3].split()]
direct = [float(x) for x in sys.argv[4].split()]
nemo = 300.0
med = statistics.median
print(f"{'what':58s} {'median':>9s} {'range':>17s}")
print(f"{'onboard, tools tree present, to agent running':58s} {med(run):8.3f}s {min(run):7.3f}-{max(run):.3f}s")
print(f"{'onboard, tools tree present, to gateway serving':58s} {med(ready):8.3f}s {min(ready):7.3f}-{max(ready):.3f}s")
print(f"{'openclaw gateway run on the host, no sandbox (peer)':58s} {med(direct):8.3f}s {min(direct):7.3f}-{max(direct):.3f}s")
print(f"ratio serving in sandbox / on the host = {med(ready)/med(direct):.2f}")
if fresh:
    print(f"{'onboard, new tools tree from npm warm cache, to running':58s} {float(fresh):8.3f}s")
print(f"{'NemoClaw warm onboarding (cited)':58s} {nemo:8.0f}s")
print(f"ratio to running / NemoClaw = {med(run)/nemo:.5f}; to serving / NemoClaw = {med(ready)/nemo:.4f}  (goal: <= 5 s to a running agent; {'met' if med(run) <= 5 else 'NOT met'})")
PY
