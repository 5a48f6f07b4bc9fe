package schema

import (
	"encoding/json"
	"io/fs"
	"strings"
	"testing"
)

// TestEveryFieldDescribed walks every schema and requires a description on
// every property, so editors and `nemoclaw` can explain each field.
func TestEveryFieldDescribed(t *testing.T) {
	entries, err := fs.ReadDir(Files, ".")
	if err != nil {
		t.Fatal(err)
	}
	defs := map[string]map[string]any{}
	docs := map[string]map[string]any{}
	for _, e := range entries {
		data, _ := fs.ReadFile(Files, e.Name())
		var doc map[string]any
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		docs[e.Name()] = doc
		if d, ok := doc["$defs"].(map[string]any); ok {
			for k, v := range d {
				if m, ok := v.(map[string]any); ok {
					defs[e.Name()+"#/$defs/"+k] = m
				}
			}
		}
	}
	described := func(file string, prop map[string]any) bool {
		if _, ok := prop["description"]; ok {
			return true
		}
		ref, _ := prop["$ref"].(string)
		if ref == "" {
			return false
		}
		if strings.HasPrefix(ref, "#") {
			ref = file + ref
		}
		d, ok := defs[ref]
		_, has := d["description"]
		return ok && has
	}
	count := 0
	var walk func(file, path string, node any)
	walk = func(file, path string, node any) {
		switch n := node.(type) {
		case map[string]any:
			if props, ok := n["properties"].(map[string]any); ok {
				for name, p := range props {
					pm, _ := p.(map[string]any)
					count++
					if !described(file, pm) {
						t.Errorf("%s: %s.%s has no description", file, path, name)
					}
				}
			}
			for k, v := range n {
				walk(file, path+"/"+k, v)
			}
		case []any:
			for _, v := range n {
				walk(file, path, v)
			}
		}
	}
	for name, doc := range docs {
		walk(name, "", doc)
	}
	if count < 80 {
		t.Errorf("only %d properties found; the walk is broken", count)
	}
}

func TestValidate(t *testing.T) {
	vs, err := Validate(Policy, map[string]any{"version": int64(2), "bogus": true})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 2 {
		t.Fatalf("violations = %+v, want 2", vs)
	}
	vs, err = Validate(Preset, map[string]any{
		"preset":           map[string]any{"name": "x", "description": "d"},
		"network_policies": map[string]any{"a": map[string]any{"endpoints": []any{map[string]any{"host": "a.example.com", "port": int64(443)}}}},
	})
	if err != nil || len(vs) != 0 {
		t.Fatalf("valid preset: %v %v", vs, err)
	}
	if _, err := Validate("nope.json", nil); err == nil {
		t.Error("unknown schema accepted")
	}
}
