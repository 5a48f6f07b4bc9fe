package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	"go.yaml.in/yaml/v3"

	"github.com/nemoclaw/nemoclaw/runner/internal/strictyaml"
	"github.com/nemoclaw/nemoclaw/schema"
)

// Problem and Problems are located errors and warnings (file:line:col).
type (
	Problem  = strictyaml.Problem
	Problems = strictyaml.Problems
)

// UnmarshalYAML accepts a plain glob string as well as {glob, any}.
func (q *QueryMatcher) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag != "!!str" || n.Value == "" {
			return fmt.Errorf("line %d, column %d: expected a glob string, {glob: G} or {any: [G, ...]}", n.Line, n.Column)
		}
		q.Glob = n.Value
		return nil
	case yaml.MappingNode:
		type plain QueryMatcher
		var p plain
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i].Value; k != "glob" && k != "any" {
				return fmt.Errorf("line %d, column %d: unknown field %q; valid fields here: any, glob", n.Content[i].Line, n.Content[i].Column, k)
			}
		}
		if err := n.Decode(&p); err != nil {
			return err
		}
		*q = QueryMatcher(p)
		return nil
	}
	return fmt.Errorf("line %d, column %d: expected a glob string, {glob: G} or {any: [G, ...]}", n.Line, n.Column)
}

// Parse decodes and validates a policy document. Warnings are dropped; use
// Check to get them.
func Parse(file string, data []byte) (*Policy, error) {
	p, _, err := Check(file, data)
	return p, err
}

// LoadFile reads and validates the policy at path.
func LoadFile(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	return Parse(path, data)
}

// Check decodes data strictly, validates it against the JSON Schema and the
// semantic rules, and returns the policy, its warnings (including fields kept
// but not enforced) and an error listing every problem found.
func Check(file string, data []byte) (*Policy, Problems, error) {
	var p Policy
	doc, err := decodeChecked(file, data, &p, schema.Policy)
	if err != nil {
		return nil, nil, err
	}
	v := &validator{doc: doc}
	v.policy(&p, nil)
	if err := v.errs.Err(); err != nil {
		return nil, v.warns, err
	}
	return &p, v.warns, nil
}

// Validate checks a policy that comes from no file (one merged from presets
// or received over a sandbox's control socket) with the rules Check applies
// to a file: the JSON Schema and the semantic rules, so that a policy Check
// accepts is one Validate accepts. Its problems name the field path, without
// a position. The egress proxy compiles only a policy Validate accepts.
func Validate(p *Policy) error {
	if p == nil {
		return &Problem{Message: "no policy"}
	}
	g, err := jsonGeneric(p)
	if err != nil {
		return err
	}
	vs, err := schema.Validate(schema.Policy, g)
	if err != nil {
		return fmt.Errorf("schema %s: %w", schema.Policy, err)
	}
	var ps Problems
	for _, v := range vs {
		ps = append(ps, (*strictyaml.Doc)(nil).Problem(v.Location, "%s (schema %s)", v.Message, schema.Policy))
	}
	if err := ps.Err(); err != nil {
		return err
	}
	v := &validator{}
	v.policy(p, nil)
	return v.errs.Err()
}

// jsonGeneric returns p as plain JSON data (integers as int64), the form the
// schema validator reads.
func jsonGeneric(p *Policy) (any, error) {
	data, err := json.Marshal(p)
	if err != nil {
		return nil, &Problem{Message: fmt.Sprintf("policy is not plain data: %v", err)}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var g any
	if err := dec.Decode(&g); err != nil {
		return nil, fmt.Errorf("decode policy: %w", err)
	}
	return intsAsInt64(g), nil
}

// intsAsInt64 turns JSON numbers into int64 where they are integers, as the
// YAML decoder does, so "type: integer" holds for both.
func intsAsInt64(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = intsAsInt64(e)
		}
	case []any:
		for i, e := range x {
			x[i] = intsAsInt64(e)
		}
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		f, _ := x.Float64()
		return f
	}
	return v
}

// IsPreset reports whether data is a preset (a document with a top-level
// preset: key) rather than a policy. It reads data as Check does, so an
// anchor or a second document is never followed here either.
func IsPreset(data []byte) bool {
	doc, err := strictyaml.Parse("", data)
	if err != nil {
		return false
	}
	_, ok := doc.Locate("preset")
	return ok
}

// ParsePreset decodes and validates a preset document.
func ParsePreset(file string, data []byte) (*Preset, Problems, error) {
	var pr Preset
	doc, err := decodeChecked(file, data, &pr, schema.Preset)
	if err != nil {
		return nil, nil, err
	}
	v := &validator{doc: doc}
	v.networkPolicies(pr.NetworkPolicies, []string{"network_policies"})
	v.unenforcedNetwork(pr.NetworkPolicies, []string{"network_policies"})
	if err := v.errs.Err(); err != nil {
		return nil, v.warns, err
	}
	return &pr, v.warns, nil
}

// LoadPresetFile reads and validates the preset at path.
func LoadPresetFile(path string) (*Preset, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read preset: %w", err)
	}
	pr, _, err := ParsePreset(path, data)
	return pr, err
}

// decodeChecked decodes strictly into out and validates the document against
// the named schema, locating every violation in the file.
func decodeChecked(file string, data []byte, out any, schemaName string) (*strictyaml.Doc, error) {
	doc, err := strictyaml.Decode(file, data, out)
	if err != nil {
		return nil, err
	}
	if err := SchemaCheck(doc, schemaName); err != nil {
		return nil, err
	}
	return doc, nil
}

// SchemaCheck validates a decoded document against an embedded JSON Schema.
func SchemaCheck(doc *strictyaml.Doc, schemaName string) error {
	g, err := doc.Generic()
	if err != nil {
		return err
	}
	vs, err := schema.Validate(schemaName, g)
	if err != nil {
		return fmt.Errorf("schema %s: %w", schemaName, err)
	}
	var ps Problems
	for _, v := range vs {
		ps = append(ps, doc.Problem(v.Location, "%s (schema %s)", v.Message, schemaName))
	}
	return ps.Err()
}
