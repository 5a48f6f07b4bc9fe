// Package blueprints embeds the blueprints that ship inside the nemoclaw
// binary: the default blueprint (a coding agent, deny-by-default) and its
// presets, and the OpenClaw blueprint that `nemoclaw onboard` applies.
package blueprints

import "embed"

// FS holds the embedded blueprint directories; "default" is the default one.
//
//go:embed default openclaw
var FS embed.FS

// DefaultDir is the directory of the default blueprint inside FS.
const DefaultDir = "default"

// OpenClawDir is the directory of the OpenClaw blueprint inside FS.
const OpenClawDir = "openclaw"
