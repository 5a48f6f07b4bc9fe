#!/usr/bin/env bash
# The plugin hop (issue 15): a synthetic backend in-process vs through the
# plugin host, and the vLLM plugin vs a fake OpenAI server called directly,
# same run. See bench/inference/plugin/main.go.
#
#   bench/inference/plugin.sh [-calls N] [-dur 2s] [-c 8] [-chunks 1000]
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -m 755 "$work/plugins"
chmod 755 "$work"
go build -o "$work/plugins/nemoclaw-inference-bench" ./bench/inference/plugin
go build -o "$work/plugins/nemoclaw-inference-vllm" ./plugins/inference-vllm
"$work/plugins/nemoclaw-inference-bench" -dir "$work/plugins" "$@"
