// Command nemoclaw-inference-nvidia is nemoclaw's inference plugin for the
// NVIDIA API catalog (https://integrate.api.nvidia.com/v1) and NIM
// endpoints, both OpenAI-compatible. The key comes from the route's
// credential (the profile's credential_env, read by nemoclaw on the host).
package main

import (
	"github.com/nemoclaw/nemoclaw/plugins/inference-nvidia/nvidia"
	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

func main() { sdk.Serve(nvidia.New()) }
