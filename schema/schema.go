// Package schema embeds nemoclaw's JSON Schemas (draft 2020-12) for the
// blueprint, the sandbox policy and policy presets, and validates decoded
// documents against them.
package schema

import (
	"embed"
	"fmt"
	"io/fs"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Files holds the schema documents, for `nemoclaw schema` and editors.
//
//go:embed *.schema.json
var Files embed.FS

// Names of the embedded schemas.
const (
	Blueprint = "blueprint.schema.json"
	Policy    = "policy.schema.json"
	Preset    = "preset.schema.json"
)

const base = "https://nemoclaw.dev/schema/"

var (
	once     sync.Once
	compiled map[string]*jsonschema.Schema
	errInit  error
)

func load() {
	c := jsonschema.NewCompiler()
	entries, err := fs.ReadDir(Files, ".")
	if err != nil {
		errInit = err
		return
	}
	for _, e := range entries {
		f, err := Files.Open(e.Name())
		if err != nil {
			errInit = err
			return
		}
		doc, err := jsonschema.UnmarshalJSON(f)
		f.Close()
		if err != nil {
			errInit = fmt.Errorf("schema %s: %w", e.Name(), err)
			return
		}
		if err := c.AddResource(base+e.Name(), doc); err != nil {
			errInit = fmt.Errorf("schema %s: %w", e.Name(), err)
			return
		}
	}
	compiled = map[string]*jsonschema.Schema{}
	for _, n := range []string{Blueprint, Policy, Preset} {
		s, err := c.Compile(base + n)
		if err != nil {
			errInit = fmt.Errorf("compile schema %s: %w", n, err)
			return
		}
		compiled[n] = s
	}
}

// Violation is one schema failure at an instance location.
type Violation struct {
	// Location is the JSON pointer split into tokens.
	Location []string
	// Message says what is wrong.
	Message string
}

// Validate checks doc (plain maps/lists/scalars) against the named schema and
// returns the leaf violations; an error only when the schema itself is broken.
func Validate(name string, doc any) ([]Violation, error) {
	once.Do(load)
	if errInit != nil {
		return nil, errInit
	}
	s, ok := compiled[name]
	if !ok {
		return nil, fmt.Errorf("no schema named %q", name)
	}
	err := s.Validate(doc)
	if err == nil {
		return nil, nil
	}
	ve, ok := err.(*jsonschema.ValidationError)
	if !ok {
		return nil, err
	}
	var out []Violation
	collect(ve, &out)
	return out, nil
}

// collect flattens the error tree to its leaves, which name the precise cause.
func collect(ve *jsonschema.ValidationError, out *[]Violation) {
	if len(ve.Causes) == 0 {
		*out = append(*out, Violation{Location: ve.InstanceLocation, Message: ve.ErrorKind.LocalizedString(printer)})
		return
	}
	for _, c := range ve.Causes {
		collect(c, out)
	}
}

// printer renders schema messages in English.
var printer = message.NewPrinter(language.English)
