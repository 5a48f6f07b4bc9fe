#!/usr/bin/env bash
# Builds the real Ollama server (CPU only, cgo with its vendored llama.cpp)
# and a tiny random-weight llama model for the inference plugin's real-server
# test, into the e2e tool cache. Idempotent: a finished step is not redone.
#
#   e2e/tools/ollama.sh            build into $NEMOCLAW_E2E_TOOLS, else
#                                  ${XDG_CACHE_HOME:-~/.cache}/nemoclaw-e2e-tools
#
# Result: $CACHE/ollama-v0.17.4/ollama and $CACHE/ollama-v0.17.4/tiny-llama.gguf.
#
# The module zip lacks llama.cpp's vendor/ directory: Debian's
# nlohmann-json3-dev and libstb-dev supply two of its headers (the Makefile
# installs them), and a stub miniaudio.h the third, which loses only audio
# input (its decoder always fails, so an audio attachment is refused).
set -euo pipefail

VERSION=v0.17.4
MOD=github.com/ollama/ollama
CACHE=${NEMOCLAW_E2E_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/nemoclaw-e2e-tools}
DIR=$CACHE/ollama-$VERSION
BIN=$DIR/ollama
MODEL=$DIR/tiny-llama.gguf
HERE=$(cd "$(dirname "$0")" && pwd)

mkdir -p "$DIR"
# One build at a time across concurrent `make` runs and test processes.
exec 9>"$CACHE/ollama.lock"
flock 9

for h in /usr/include/nlohmann/json.hpp /usr/include/stb/stb_image.h; do
	[ -f "$h" ] || { echo "ollama.sh: $h is missing: apt-get install nlohmann-json3-dev libstb-dev" >&2; exit 1; }
done

export GOFLAGS=-mod=mod GOTOOLCHAIN=local

if [ ! -x "$BIN" ]; then
	start=$(date +%s)
	inc=$DIR/include
	mkdir -p "$inc/miniaudio"
	cp "$HERE/miniaudio_stub.h" "$inc/miniaudio/miniaudio.h"
	# GOBIN keeps the binary out of ~/go/bin; the temporary name makes an
	# interrupted build leave no half-written "ollama" behind.
	tmp=$(mktemp -d "$DIR/gobin.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	CGO_ENABLED=1 CGO_CPPFLAGS="-I$inc" GOBIN="$tmp" \
		go install -trimpath -ldflags=-s "$MOD@$VERSION"
	mv "$tmp/ollama" "$BIN"
	echo "ollama.sh: built $MOD@$VERSION in $(( $(date +%s) - start ))s into $BIN"
fi

# The model is rewritten when its generator changes.
src_sum=$(sha256sum "$HERE/tinymodel/main.go" | cut -d' ' -f1)
if [ ! -s "$MODEL" ] || [ "$(cat "$MODEL.src" 2>/dev/null)" != "$src_sum" ]; then
	start=$(date +%s)
	# The generator imports Ollama's own GGUF writer, so it is a module of
	# its own here in the cache: nemoclaw's go.mod never names Ollama.
	gen=$DIR/tinymodel
	mkdir -p "$gen"
	# Without its ignore tag: there it is the module's one file.
	sed '/^\/\/go:build ignore$/d' "$HERE/tinymodel/main.go" >"$gen/main.go"
	if [ ! -f "$gen/go.mod" ]; then
		(cd "$gen" && go mod init nemoclaw.local/tinymodel >/dev/null 2>&1 && go mod edit -require="$MOD@$VERSION")
	fi
	(cd "$gen" && go mod tidy >/dev/null && CGO_ENABLED=0 go build -o tinymodel . && ./tinymodel "$MODEL.tmp")
	mv "$MODEL.tmp" "$MODEL"
	echo "$src_sum" >"$MODEL.src"
	echo "ollama.sh: wrote $MODEL ($(stat -c %s "$MODEL") bytes) in $(( $(date +%s) - start ))s"
fi
