#!/usr/bin/env bash
# Inference router (proxy -> router -> backend -> fake OpenAI server) vs the
# client calling the fake server directly, same run: the backend in process,
# and through nemoclaw's plugin host and the real vLLM plugin process (see
# router/main.go).
#
#   bench/inference/run.sh [-n 2000] [-long 30] [-d 5s] [-c 16] [-cpuprofile router.prof]
#   BASE_REV=<commit> bench/inference/run.sh ...   (that commit's vLLM plugin too, same run)
#   PLUGIN_CPUPROFILE=/tmp/plugin.prof [PLUGIN_CPUSPAN=20s] bench/inference/run.sh ...
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The plugin host refuses a plugin directory writable by anyone else.
chmod 755 "$work"
mkdir -m 755 "$work/plugins"
go build -o bench/out/inference-router-bench ./bench/inference/router
if [ -n "${PLUGIN_CPUPROFILE:-}" ]; then
	# The vLLM plugin with a CPU profile of its first PLUGIN_CPUSPAN (20s).
	go build -ldflags "-X main.profile=$PLUGIN_CPUPROFILE -X main.span=${PLUGIN_CPUSPAN:-20s}" \
		-o "$work/plugins/nemoclaw-inference-vllm" ./bench/inference/vllmprof
else
	go build -o "$work/plugins/nemoclaw-inference-vllm" ./plugins/inference-vllm
fi
if [ -n "${BASE_REV:-}" ]; then
	# Before/after in one run: the vLLM plugin as of BASE_REV too, as
	# "vllmbase", interleaved with the current one.
	mkdir "$work/base"
	git archive "$BASE_REV" | tar -x -C "$work/base"
	(cd "$work/base" && go build -o "$work/plugins/nemoclaw-inference-vllmbase" ./plugins/inference-vllm)
	set -- -plugins vllmbase,vllm "$@"
fi
bench/out/inference-router-bench -plugin-dir "$work/plugins" "$@"
