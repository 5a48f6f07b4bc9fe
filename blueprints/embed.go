// Package blueprints embeds the blueprints that ship inside the nemoclaw
// binary: the default blueprint (a coding agent, deny-by-default) and its
// presets.
package blueprints

import "embed"

// FS holds the embedded blueprint directories; "default" is the default one.
//
//go:embed default
var FS embed.FS

// DefaultDir is the directory of the default blueprint inside FS.
const DefaultDir = "default"
