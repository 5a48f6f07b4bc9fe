package schema_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/nemoclaw/nemoclaw/schema"
)

// reference compiles the embedded schemas with a complete draft 2020-12
// implementation (test-only: it is too slow to start for the binary).
func reference(t *testing.T) map[string]*jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	entries, _ := fs.ReadDir(schema.Files, ".")
	for _, e := range entries {
		data, _ := fs.ReadFile(schema.Files, e.Name())
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.AddResource("https://nemoclaw.dev/schema/"+e.Name(), doc); err != nil {
			t.Fatal(err)
		}
	}
	out := map[string]*jsonschema.Schema{}
	for _, n := range []string{schema.Blueprint, schema.Policy, schema.Preset, schema.Tiers} {
		s, err := c.Compile("https://nemoclaw.dev/schema/" + n)
		if err != nil {
			t.Fatalf("%s is not a valid draft 2020-12 schema: %v", n, err)
		}
		out[n] = s
	}
	return out
}

func generic(t *testing.T, file string) (any, bool) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil || v == nil {
		return nil, false
	}
	return norm(v), true
}

func norm(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = norm(e)
		}
	case []any:
		for i, e := range x {
			x[i] = norm(e)
		}
	case int:
		return int64(x)
	}
	return v
}

// TestAgreesWithReference checks that the built-in validator and a complete
// 2020-12 implementation accept and reject the same documents.
func TestAgreesWithReference(t *testing.T) {
	ref := reference(t)
	cases := map[string][]string{
		schema.Policy: glob("../runner/policy/testdata/invalid/*.yaml", "../runner/policy/testdata/valid/*.yaml",
			"../blueprints/default/policies/*.yaml", "../runner/blueprint/testdata/nemoclaw-shaped-2026/policies/openclaw-sandbox*.yaml"),
		schema.Preset: glob("../runner/policy/testdata/valid/presets/*.yaml", "../blueprints/default/policies/presets/*.yaml",
			"../runner/blueprint/testdata/nemoclaw-shaped-2026/policies/presets/*.yaml"),
		schema.Blueprint: glob("../runner/blueprint/testdata/invalid/*.yaml", "../runner/blueprint/testdata/nemoclaw-*/blueprint.yaml", "../blueprints/default/blueprint.yaml"),
		schema.Tiers:     glob("../runner/blueprint/testdata/nemoclaw-shaped-2026/policies/tiers.yaml"),
	}
	checked := 0
	for name, files := range cases {
		for _, f := range files {
			doc, ok := generic(t, f)
			if !ok {
				continue
			}
			ours, err := schema.Validate(name, doc)
			if err != nil {
				t.Fatal(err)
			}
			theirs := ref[name].Validate(doc)
			if (len(ours) == 0) != (theirs == nil) {
				t.Errorf("%s against %s: ours %v, reference %v", f, name, ours, theirs)
			}
			checked++
		}
	}
	if checked < 60 {
		t.Errorf("only %d documents compared", checked)
	}
}

func glob(patterns ...string) []string {
	var out []string
	for _, p := range patterns {
		m, _ := filepath.Glob(p)
		out = append(out, m...)
	}
	return out
}

func TestMessages(t *testing.T) {
	tests := []struct {
		doc  map[string]any
		loc  string
		want string
	}{
		{map[string]any{}, "", "missing property 'version'"},
		{map[string]any{"version": int64(2)}, "version", "value must be 1"},
		{map[string]any{"version": int64(1), "x": true}, "", "additional property 'x' is not allowed"},
		{map[string]any{"version": int64(1), "landlock": map[string]any{"compatibility": "x"}}, "landlock/compatibility", "value must be one of 'best_effort'"},
		{map[string]any{"version": int64(1), "resources": map[string]any{"pids": int64(0)}}, "resources/pids", "minimum: got 0, want 1"},
		{map[string]any{"version": int64(1), "filesystem_policy": map[string]any{"read_only": []any{"usr"}}}, "filesystem_policy/read_only/0", "'usr' does not match pattern '^/'"},
		{map[string]any{"version": "1"}, "version", "got string, want integer"},
	}
	for _, tt := range tests {
		vs, err := schema.Validate(schema.Policy, tt.doc)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, v := range vs {
			if strings.Join(v.Location, "/") == tt.loc && strings.Contains(v.Message, tt.want) {
				found = true
			}
		}
		if !found {
			t.Errorf("%v: violations %s lack %q at %q", tt.doc, fmt.Sprint(vs), tt.want, tt.loc)
		}
	}
}
