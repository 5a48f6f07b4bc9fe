package policy

import (
	"fmt"
	"strconv"

	"github.com/nemoclaw/nemoclaw/runner/internal/strictyaml"
	"github.com/nemoclaw/nemoclaw/schema"
)

// TierAccess values: how much of a preset a tier grants.
const (
	TierAccessRead      = "read"
	TierAccessReadWrite = "read-write"
)

// Tiers is NemoClaw's policies/tiers.yaml: named postures, each a bundle of
// presets added on top of the base policy. nemoclaw loads and checks it and
// reports each tier; a blueprint selects presets by name with presets:.
type Tiers struct {
	// Tiers are the postures, from the narrowest to the widest.
	Tiers []*Tier `yaml:"tiers" json:"tiers"`
}

// Tier is one named posture.
type Tier struct {
	// Name identifies the tier (restricted, balanced, open).
	Name string `yaml:"name" json:"name"`
	// Label is the display name.
	Label string `yaml:"label,omitempty" json:"label,omitempty"`
	// Description says what the tier allows.
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// Presets are the presets the tier adds, by name.
	Presets []*TierPreset `yaml:"presets" json:"presets"`
}

// TierPreset names one preset of a tier and the access it grants.
type TierPreset struct {
	// Name is the preset's name (preset.name of a file in policies/presets).
	Name string `yaml:"name" json:"name"`
	// Access is read (GET only) or read-write.
	Access string `yaml:"access,omitempty" json:"access,omitempty"`
}

// IsTiers reports whether data is a tiers document (a top-level tiers: key)
// rather than a policy or a preset. It reads data as Check does, so an
// anchor or a second document is never followed here either.
func IsTiers(data []byte) bool {
	doc, err := strictyaml.Parse("", data)
	if err != nil {
		return false
	}
	_, ok := doc.Locate("tiers")
	return ok
}

// ParseTiers decodes and validates a tiers document: strictly, against
// tiers.schema.json, and with unique tier names and unique presets per tier.
// Whether each preset exists is the blueprint's check: it knows the presets.
func ParseTiers(file string, data []byte) (*Tiers, Problems, error) {
	var t Tiers
	doc, err := decodeChecked(file, data, &t, schema.Tiers)
	if err != nil {
		return nil, nil, err
	}
	v := &validator{doc: doc}
	seen := map[string]bool{}
	for i, tier := range t.Tiers {
		tp := []string{"tiers", strconv.Itoa(i)}
		if tier == nil {
			v.errf(tp, "empty tier; give it a name and presets")
			continue
		}
		if seen[tier.Name] {
			v.errf(at(tp, "name"), "tier %q is defined twice; give each tier its own name", tier.Name)
		}
		seen[tier.Name] = true
		inTier := map[string]bool{}
		for j, pr := range tier.Presets {
			pp := at(tp, "presets", strconv.Itoa(j))
			if pr == nil {
				v.errf(pp, "empty preset entry; write {name: NAME, access: read-write}")
				continue
			}
			if inTier[pr.Name] {
				v.errf(at(pp, "name"), "preset %q is listed twice in tier %q; keep one", pr.Name, tier.Name)
			}
			inTier[pr.Name] = true
		}
	}
	if err := v.errs.Err(); err != nil {
		return nil, v.warns, err
	}
	return &t, v.warns, nil
}

// Find returns the tier named name.
func (t *Tiers) Find(name string) (*Tier, bool) {
	for _, tier := range t.Tiers {
		if tier != nil && tier.Name == name {
			return tier, true
		}
	}
	return nil, false
}

// Names lists the tier names in file order.
func (t *Tiers) Names() []string {
	var out []string
	for _, tier := range t.Tiers {
		if tier != nil {
			out = append(out, tier.Name)
		}
	}
	return out
}

// String renders the tier for plan output: name and its presets.
func (tp *TierPreset) String() string {
	if tp.Access == "" {
		return tp.Name
	}
	return fmt.Sprintf("%s (%s)", tp.Name, tp.Access)
}
