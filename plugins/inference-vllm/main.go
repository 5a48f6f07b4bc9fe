// Command nemoclaw-inference-vllm is nemoclaw's inference plugin for vLLM
// and other OpenAI-compatible servers (provider_type openai): by default a
// vLLM on the host's 127.0.0.1:8000, reached from the host side so that the
// sandbox's policy needs no hole for it.
package main

import (
	"github.com/nemoclaw/nemoclaw/plugins/inference-vllm/vllm"
	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

func main() { sdk.Serve(vllm.New()) }
