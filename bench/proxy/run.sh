#!/usr/bin/env bash
# Egress proxy vs direct vs tinyproxy vs squid, same run (see main.go).
set -euo pipefail
cd "$(dirname "$0")/../.."
go build -o bench/out/proxy-bench ./bench/proxy
exec bench/out/proxy-bench "$@"
