#!/usr/bin/env bash
# Blueprint pull + verify, cold and warm cache, against a plain oras-go copy
# of the same artifact from the same loopback registry. Prints ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."
go run ./bench/pull "$@"
