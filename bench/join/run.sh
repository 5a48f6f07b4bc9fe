#!/usr/bin/env bash
# Exec into a running sandbox against cold starts (issue 18's benchmark):
# Sandbox.Exec and `nemoclaw sandbox exec NAME --` of /bin/true, bwrap … /bin/true
# and `nemoclaw sandbox run -- /bin/true`, interleaved in one run, with the
# floor of a separate client (bench/join/floor). See bench/join/main.go.
#
#   bench/join/run.sh                          # builds ./cmd/nemoclaw first
#   NEMOCLAW_BIN_DIR=bin RUNS=400 bench/join/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ -z "${NEMOCLAW:-}" && -n "${NEMOCLAW_BIN_DIR:-}" && -x "$NEMOCLAW_BIN_DIR/nemoclaw" ]]; then
  NEMOCLAW="$NEMOCLAW_BIN_DIR/nemoclaw"
fi
if [[ -z "${NEMOCLAW:-}" ]]; then
  go build -o "$work/nemoclaw" ./cmd/nemoclaw
  NEMOCLAW="$work/nemoclaw"
fi
command -v bwrap >/dev/null || { echo "bench/join: bwrap is required (apt-get install bubblewrap)" >&2; exit 1; }
go build -o "$work/join" ./bench/join
go build -o "$work/floor" ./bench/join/floor
"$work/join" -runs "${RUNS:-200}" -rounds "${ROUNDS:-10}" -nemoclaw "$NEMOCLAW" -floor "$work/floor"
