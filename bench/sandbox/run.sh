#!/usr/bin/env bash
# Sandbox start-up benchmark: `nemoclaw sandbox run -- /bin/true` with full
# isolation (user/mount/pid/net/ipc/uts namespaces, Landlock, seccomp) against
# bubblewrap and firejail, in the same run. Prints median wall times, the
# ratios to each peer, and nemoclaw's peak RSS. A "library" row runs the same
# isolation through runner/sandbox alone (bench/sandbox/startonly), which
# separates the sandbox's cost from the CLI's start-up, policy loading and
# egress proxy set-up.
#
#   bench/sandbox/run.sh            # builds ./cmd/nemoclaw first
#   NEMOCLAW_BIN_DIR=bin bench/sandbox/run.sh    # what make bench does
#   NEMOCLAW=/path/to/nemoclaw RUNS=200 bench/sandbox/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-100}
WARMUP=${WARMUP:-10}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
if [[ -z "${NEMOCLAW:-}" && -n "${NEMOCLAW_BIN_DIR:-}" && -x "$NEMOCLAW_BIN_DIR/nemoclaw" ]]; then
  NEMOCLAW="$NEMOCLAW_BIN_DIR/nemoclaw"
fi
if [[ -z "${NEMOCLAW:-}" ]]; then
  go build -o "$work/nemoclaw" ./cmd/nemoclaw
  NEMOCLAW="$work/nemoclaw"
fi
go build -o "$work/startonly" ./bench/sandbox/startonly
export NEMOCLAW_HOME="$work/home"
for t in hyperfine bwrap firejail python3 /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "bench/sandbox: $t is required (apt-get install hyperfine bubblewrap firejail time)" >&2; exit 1; }
done

ours="$NEMOCLAW sandbox run --no-tty -- /bin/true"
# The same sandbox through the library alone: no cobra, no policy file
# loading, no egress proxy — what the isolation itself costs.
lib="$work/startonly /bin/true"
bwrap="bwrap --unshare-all --die-with-parent --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp /bin/true"
firejail="firejail --quiet --noprofile --net=none /bin/true"

# Sanity: each command really runs.
for c in "$ours" "$lib" "$bwrap" "$firejail"; do $c </dev/null >/dev/null || { echo "bench/sandbox: '$c' failed" >&2; exit 1; }; done

hyperfine -N --style none --warmup "$WARMUP" --runs "$RUNS" --export-json "$work/h.json" \
  -n nemoclaw "$ours" -n library "$lib" -n bwrap "$bwrap" -n firejail "$firejail" >/dev/null

# Peak RSS (max over 20 runs) of nemoclaw: GNU time reports the largest
# resident set of the process tree it waited for.
rss=0
for _ in $(seq 20); do
  k=$( { /usr/bin/time -f '%M' $ours </dev/null >/dev/null; } 2>&1 | tail -1)
  (( k > rss )) && rss=$k
done

python3 - "$work/h.json" "$rss" <<'PY'
import json, statistics, sys
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
med = {k: statistics.median(v["times"]) * 1000 for k, v in res.items()}
p90 = {k: sorted(v["times"])[int(len(v["times"]) * 0.9)] * 1000 for k, v in res.items()}
print("sandbox start to /bin/true exit (median of %d runs, same run)" % len(res["nemoclaw"]["times"]))
print("%-10s %10s %10s %14s %14s" % ("tool", "median ms", "p90 ms", "nemoclaw ratio", "library ratio"))
for k in ("nemoclaw", "library", "bwrap", "firejail"):
    print("%-10s %10.2f %10.2f %13.2fx %13.2fx" % (k, med[k], p90[k], med["nemoclaw"] / med[k], med["library"] / med[k]))
print()
print("nemoclaw / bwrap    = %.2fx  (goal <= 1.00x)" % (med["nemoclaw"] / med["bwrap"]))
print("nemoclaw / firejail = %.2fx  (goal <= 0.25x)" % (med["nemoclaw"] / med["firejail"]))
print("library  / bwrap    = %.2fx  (runner/sandbox alone: same isolation, no CLI)" % (med["library"] / med["bwrap"]))
print("nemoclaw peak RSS   = %.1f MiB" % (int(sys.argv[2]) / 1024))
PY
