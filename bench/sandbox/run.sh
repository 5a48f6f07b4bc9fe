#!/usr/bin/env bash
# Sandbox start-up benchmark: `nemoclaw sandbox run -- /bin/true` with full
# isolation (user/mount/pid/net/ipc/uts namespaces, Landlock, seccomp) against
# bubblewrap and firejail, in the same run. Prints median wall times, the
# ratios to each peer, and nemoclaw's peak RSS. A "library" row runs the same
# isolation through runner/sandbox alone (bench/sandbox/startonly), which
# separates the sandbox's cost from the CLI's start-up, policy loading and
# egress proxy set-up. Three "floor" rows show what no change to nemoclaw's
# own code can remove: the smallest Go program built like nemoclaw (cgo),
# a program linking all that nemoclaw links whose main returns at once
# (bench/sandbox/floor), and /bin/true alone.
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
# Built as make build builds nemoclaw, so that their start-up compares.
go build -trimpath -ldflags '-s -w' -o "$work/" ./bench/sandbox/floor/cgo ./bench/sandbox/floor/linked
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

# This VM's speed drifts by ±20% within minutes, and hyperfine measures one
# command's runs in a block before the next command's: a drift between
# blocks showed up as 1.13x-1.63x for the same build. So the runs go in
# ROUNDS interleaved rounds (each command's block in every round), and the
# medians are over all rounds.
ROUNDS=${ROUNDS:-10}
per=$(( (RUNS + ROUNDS - 1) / ROUNDS ))
for r in $(seq "$ROUNDS"); do
  w=0
  (( r == 1 )) && w=$WARMUP
  # Its warnings (outliers, in rounds this short) go to a file, shown only
  # if it fails.
  hyperfine -N --style none --warmup "$w" --runs "$per" --export-json "$work/h$r.json" \
    -n nemoclaw "$ours" -n library "$lib" -n bwrap "$bwrap" -n firejail "$firejail" \
    -n go-cgo "$work/cgo" -n linked "$work/linked" -n true /bin/true >/dev/null 2>"$work/hyperfine.err" ||
    { cat "$work/hyperfine.err" >&2; exit 1; }
done

# Peak RSS (max over 20 runs) of nemoclaw: GNU time reports the largest
# resident set of the process tree it waited for.
rss=0
for _ in $(seq 20); do
  k=$( { /usr/bin/time -f '%M' $ours </dev/null >/dev/null; } 2>&1 | tail -1)
  (( k > rss )) && rss=$k
done

python3 - "$rss" "$work"/h*.json <<'PY'
import json, statistics, sys
times = {}
for f in sys.argv[2:]:
    for r in json.load(open(f))["results"]:
        times.setdefault(r["command"], []).extend(r["times"])
med = {k: statistics.median(v) * 1000 for k, v in times.items()}
p90 = {k: sorted(v)[int(len(v) * 0.9)] * 1000 for k, v in times.items()}
print("sandbox start to /bin/true exit (median of %d runs in %d interleaved rounds, same run)" % (len(times["nemoclaw"]), len(sys.argv) - 2))
print("%-10s %10s %10s %14s %14s" % ("tool", "median ms", "p90 ms", "nemoclaw ratio", "library ratio"))
for k in ("nemoclaw", "library", "bwrap", "firejail"):
    print("%-10s %10.2f %10.2f %13.2fx %13.2fx" % (k, med[k], p90[k], med["nemoclaw"] / med[k], med["library"] / med[k]))
print()
print("nemoclaw / bwrap    = %.2fx  (goal <= 1.00x)" % (med["nemoclaw"] / med["bwrap"]))
print("nemoclaw / firejail = %.2fx  (goal <= 0.25x)" % (med["nemoclaw"] / med["firejail"]))
print("library  / bwrap    = %.2fx  (runner/sandbox alone: same isolation, no CLI)" % (med["library"] / med["bwrap"]))
print("nemoclaw peak RSS   = %.1f MiB" % (int(sys.argv[1]) / 1024))
print()
# The launcher must be running (Go runtime, package initialisation) before
# it can plan the sandbox, and the agent starts only once the plan is made:
# the linked program's start and exit plus the agent's own run are spent
# one after the other, whatever nemoclaw's code does.
floor = med["linked"] + med["true"]
print("floor: what no change to nemoclaw's own code removes")
print("%-44s %7.2f ms = %.2fx bwrap" % ("Go program with cgo, empty main", med["go-cgo"], med["go-cgo"] / med["bwrap"]))
print("%-44s %7.2f ms = %.2fx bwrap" % ("all nemoclaw links, empty main (linked)", med["linked"], med["linked"] / med["bwrap"]))
print("%-44s %7.2f ms" % ("/bin/true alone", med["true"]))
print("%-44s %7.2f ms = %.2fx bwrap" % ("floor: linked + /bin/true", floor, floor / med["bwrap"]))
print("%-44s %7.2f ms = %.2fx the floor" % ("nemoclaw", med["nemoclaw"], med["nemoclaw"] / floor))
PY
