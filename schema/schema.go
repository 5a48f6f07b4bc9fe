// Package schema embeds nemoclaw's JSON Schemas (draft 2020-12) for the
// blueprint, the sandbox policy, policy presets and NemoClaw's policy tiers,
// and validates decoded documents against them.
package schema

import "embed"

// Files holds the schema documents, for editors and external tools.
//
//go:embed *.schema.json
var Files embed.FS

// Names of the embedded schemas.
const (
	Blueprint = "blueprint.schema.json"
	Policy    = "policy.schema.json"
	Preset    = "preset.schema.json"
	Tiers     = "tiers.schema.json"
)
