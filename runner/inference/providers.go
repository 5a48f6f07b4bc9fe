package inference

import (
	"fmt"
	"sort"
	"strings"

	"github.com/nemoclaw/nemoclaw/runner/blueprint"
)

// PluginFor names the plugin that serves a blueprint profile: the
// profile's plugin field when set (a plugin name, or its binary name
// nemoclaw-inference-NAME), else the built-in backend of NemoClaw's
// provider_type (nvidia and nim: nvidia; openai and vllm: vllm, the
// OpenAI-compatible pass-through; ollama: ollama), from the one table
// blueprint validation also checks against (blueprint.KnownProviders).
func PluginFor(providerType, plugin string) (string, error) {
	if plugin != "" {
		name := strings.TrimPrefix(plugin, BinaryPrefix)
		if !validName(name) {
			return "", fmt.Errorf("plugin %q is not a plugin name: give NAME of a binary %sNAME (lowercase letters, digits, - and _)", plugin, BinaryPrefix)
		}
		return name, nil
	}
	bin, ok := blueprint.KnownProviders[providerType]
	if !ok {
		known := make([]string, 0, len(blueprint.KnownProviders))
		for k := range blueprint.KnownProviders {
			known = append(known, k)
		}
		sort.Strings(known)
		return "", fmt.Errorf("provider_type %q has no built-in backend (%s); set the profile's plugin to a custom backend", providerType, strings.Join(known, ", "))
	}
	return strings.TrimPrefix(bin, BinaryPrefix), nil
}
