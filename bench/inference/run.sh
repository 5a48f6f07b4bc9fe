#!/usr/bin/env bash
# Inference router (proxy -> router -> backend -> fake OpenAI server) vs the
# client calling the fake server directly, same run: the backend in process,
# and through nemoclaw's plugin host and the real vLLM plugin process (see
# router/main.go).
#
#   bench/inference/run.sh [-n 2000] [-long 30] [-d 5s] [-c 16]
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The plugin host refuses a plugin directory writable by anyone else.
chmod 755 "$work"
mkdir -m 755 "$work/plugins"
go build -o bench/out/inference-router-bench ./bench/inference/router
go build -o "$work/plugins/nemoclaw-inference-vllm" ./plugins/inference-vllm
bench/out/inference-router-bench -plugin-dir "$work/plugins" "$@"
