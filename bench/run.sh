#!/usr/bin/env bash
# Runs every benchmark under bench/ side by side with its peers and prints
# ratios. Each suite is a run.sh in its own directory.
set -euo pipefail
cd "$(dirname "$0")"
status=0
for suite in */run.sh; do
  echo "=== bench: $(dirname "$suite")"
  bash "$suite" || { echo "bench $(dirname "$suite") failed"; status=1; }
  echo
done
exit $status
