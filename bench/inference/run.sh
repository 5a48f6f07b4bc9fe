#!/usr/bin/env bash
# Inference router (proxy -> router -> backend -> fake OpenAI server) vs the
# client calling the fake server directly, same run (see router/main.go).
set -euo pipefail
cd "$(dirname "$0")/../.."
go build -o bench/out/inference-router-bench ./bench/inference/router
exec bench/out/inference-router-bench "$@"
