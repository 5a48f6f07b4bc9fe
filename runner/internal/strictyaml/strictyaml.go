// Package strictyaml decodes YAML into Go structs strictly: unknown keys,
// duplicate keys, wrong scalar types and multiple documents are errors that
// carry the file, line and column, so every mistake a user can make in a
// blueprint or policy points at the exact spot.
package strictyaml

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// MaxSize is the largest document accepted (OpenShell's policy limit too).
const MaxSize = 4 << 20

// Problem is one error or warning located in a file.
type Problem struct {
	// File is the path as the user named it.
	File string `json:"file"`
	// Line and Column are 1-based; 0 when unknown.
	Line   int `json:"line,omitempty"`
	Column int `json:"column,omitempty"`
	// Path is the field path, e.g. network_policies.github.endpoints[0].port.
	Path string `json:"path,omitempty"`
	// Message says what is wrong and what would be valid.
	Message string `json:"message"`

	// err is a sentinel the problem stands for (ErrEmpty), for errors.Is.
	err error
}

// ErrEmpty is what the Problem for a document without content unwraps to,
// for callers to whom a missing or empty file means "nothing configured".
var ErrEmpty = errors.New("document is empty")

// Unwrap returns the sentinel the problem stands for, if any.
func (p *Problem) Unwrap() error { return p.err }

// Error formats the problem as file:line:col: path: message (path: message
// for a problem found in a value that came from no file).
func (p *Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
		if p.Column > 0 {
			fmt.Fprintf(&b, ":%d", p.Column)
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Problems is a list of problems; as an error it prints one per line.
type Problems []*Problem

// Error joins the problems, one per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Err returns ps as an error, or nil when empty.
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	ps.Sort()
	return ps
}

// Sort orders problems by file, line and column.
func (ps Problems) Sort() {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}

// AsProblems extracts the problems from err (nil when err holds none).
func AsProblems(err error) Problems {
	var ps Problems
	if errors.As(err, &ps) {
		return ps
	}
	var p *Problem
	if errors.As(err, &p) {
		return Problems{p}
	}
	return nil
}

// Doc is a decoded document: its root node keeps positions for later
// semantic checks.
type Doc struct {
	File string
	Root *yaml.Node
}

// Decode parses data strictly into out (a pointer to a struct). file names
// the source in errors.
func Decode(file string, data []byte, out any) (*Doc, error) {
	doc, err := Parse(file, data)
	if err != nil {
		return nil, err
	}
	var ps Problems
	w := walker{file: file, problems: &ps}
	w.walk(doc.Root, reflect.TypeOf(out).Elem(), "")
	if len(ps) > 0 {
		return doc, ps.Err()
	}
	if err := doc.Root.Decode(out); err != nil {
		return doc, syntaxProblem(file, err)
	}
	return doc, nil
}

// Parse reads data as exactly one YAML document into a node tree, refusing
// what Decode refuses before any type is looked at: oversized input, more
// than one document, and anchors and aliases.
//
// Anchors and aliases are refused, not budgeted: an alias makes a node
// reachable many times over, so a few hundred bytes can stand for billions
// of nodes ("billion laughs") for every reader that follows them (the
// strict walker, yaml.v3's decoder, the schema check, the validator). No
// policy, preset, blueprint, trust policy or lock file needs them; writing
// the value out keeps every document as large as what it means. yaml.v3's
// parse into a node tree does not expand aliases, so the refusal comes
// before any expansion.
func Parse(file string, data []byte) (*Doc, error) {
	if len(data) > MaxSize {
		return nil, &Problem{File: file, Message: fmt.Sprintf("file is %d bytes; the limit is %d", len(data), MaxSize)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Problem{File: file, Line: 1, Column: 1, Message: "document is empty", err: ErrEmpty}
		}
		return nil, syntaxProblem(file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &Problem{File: file, Line: extra.Line, Column: extra.Column, Message: "more than one YAML document; put everything in one document"}
	} else if !errors.Is(err, io.EOF) {
		return nil, syntaxProblem(file, err)
	}
	if n := firstAnchor(&root); n != nil {
		return nil, anchorProblem(file, n)
	}
	return &Doc{File: file, Root: &root}, nil
}

// firstAnchor returns the first node, in document order, that defines an
// anchor or is an alias. It never follows an alias, so its work is linear in
// the size of the text.
func firstAnchor(n *yaml.Node) *yaml.Node {
	if n.Anchor != "" || n.Kind == yaml.AliasNode {
		return n
	}
	for _, c := range n.Content {
		if a := firstAnchor(c); a != nil {
			return a
		}
	}
	return nil
}

// anchorProblem locates the refusal of an anchor or alias node.
func anchorProblem(file string, n *yaml.Node) *Problem {
	what := "anchor &" + n.Anchor
	if n.Kind == yaml.AliasNode {
		what = "alias *" + n.Value
	}
	return &Problem{File: file, Line: n.Line, Column: n.Column, Message: fmt.Sprintf("YAML anchors and aliases are not supported (%s); write the value out", what)}
}

// lineRe finds yaml.v3's position in its messages; compiled on first use,
// not at every nemoclaw start.
var lineRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`line (\d+)(?:, column (\d+))?`) })

// syntaxProblem turns a yaml.v3 error into a Problem with its line.
func syntaxProblem(file string, err error) *Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	p := &Problem{File: file, Message: msg}
	if m := lineRe().FindStringSubmatch(msg); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		if m[2] != "" {
			p.Column, _ = strconv.Atoi(m[2])
		}
		p.Message = strings.TrimSpace(strings.TrimPrefix(strings.Replace(msg, m[0], "", 1), ":"))
	}
	return p
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

type walker struct {
	file     string
	problems *Problems
}

func (w walker) add(n *yaml.Node, path, format string, a ...any) {
	*w.problems = append(*w.problems, &Problem{File: w.file, Line: n.Line, Column: n.Column, Path: path, Message: fmt.Sprintf(format, a...)})
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// walk checks n against t: keys, duplicates and scalar kinds.
func (w walker) walk(n *yaml.Node, t reflect.Type, path string) {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) > 0 {
			w.walk(n.Content[0], t, path)
		}
		return
	case yaml.AliasNode:
		// Parse refuses aliases; never follow one (each would multiply the work).
		*w.problems = append(*w.problems, anchorProblem(w.file, n))
		return
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return // the type validates itself
	}
	switch t.Kind() {
	case reflect.Interface:
		w.untyped(n, path)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.add(n, path, "expected a mapping (key: value pairs), got %s", describe(n))
			return
		}
		fields := structFields(t)
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
				w.add(k, path, "YAML merge keys (<<) are not supported; write the fields out")
				continue
			}
			if prev, dup := seen[k.Value]; dup {
				w.add(k, join(path, k.Value), "duplicate key %q (first defined at line %d)", k.Value, prev)
				continue
			}
			seen[k.Value] = k.Line
			f, ok := fields[k.Value]
			if !ok {
				w.add(k, join(path, k.Value), "unknown field %q; valid fields here: %s", k.Value, strings.Join(sortedKeys(fields), ", "))
				continue
			}
			w.walk(v, f, join(path, k.Value))
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.add(n, path, "expected a mapping, got %s", describe(n))
			return
		}
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				w.add(k, path, "map keys must be plain strings")
				continue
			}
			if prev, dup := seen[k.Value]; dup {
				w.add(k, join(path, k.Value), "duplicate key %q (first defined at line %d)", k.Value, prev)
				continue
			}
			seen[k.Value] = k.Line
			w.walk(v, t.Elem(), join(path, k.Value))
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.add(n, path, "expected a list, got %s", describe(n))
			return
		}
		for i, item := range n.Content {
			w.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			w.add(n, path, "expected a string, got %s", describe(n))
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			w.add(n, path, "expected true or false, got %s", describe(n))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			w.add(n, path, "expected an integer, got %s", describe(n))
		}
	case reflect.Float32, reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
			w.add(n, path, "expected a number, got %s", describe(n))
		}
	}
}

// untyped checks a value kept as written (e.g. a middleware's config): it
// must be plain JSON data, since policies are copied and sent as JSON. A
// non-string key or an infinite or NaN number would otherwise decode and
// fail only later, far from the file.
func (w walker) untyped(n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || k.Tag != "!!str" {
				w.add(k, path, "keys here must be strings, got %s; quote the key", describe(k))
				continue
			}
			w.untyped(v, join(path, k.Value))
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			w.untyped(item, fmt.Sprintf("%s[%d]", path, i))
		}
	case yaml.ScalarNode:
		if n.Tag == "!!float" {
			var f float64
			if err := n.Decode(&f); err == nil && (math.IsInf(f, 0) || math.IsNaN(f)) {
				w.add(n, path, "%s is not a finite number; write a finite number or quote it", n.Value)
			}
		}
	case yaml.AliasNode:
		*w.problems = append(*w.problems, anchorProblem(w.file, n))
	}
}

// describe names a node's kind for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str":
			return fmt.Sprintf("the string %q", n.Value)
		case "!!int":
			return "the integer " + n.Value
		case "!!bool":
			return "the boolean " + n.Value
		case "!!float":
			return "the number " + n.Value
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// structFields maps YAML keys to field types.
func structFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = f.Type
	}
	return m
}

func sortedKeys(m map[string]reflect.Type) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Locate returns the node at path (keys and decimal indices), or the
// deepest node found on the way; ok is false when path was not found whole.
func (d *Doc) Locate(path ...string) (n *yaml.Node, ok bool) {
	if d == nil || d.Root == nil {
		return nil, false
	}
	n = d.Root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, seg := range path {
		next := child(n, seg)
		if next == nil {
			return n, false
		}
		n = next
	}
	return n, true
}

func child(n *yaml.Node, seg string) *yaml.Node {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == seg {
				return n.Content[i+1]
			}
		}
	case yaml.SequenceNode:
		if i, err := strconv.Atoi(seg); err == nil && i >= 0 && i < len(n.Content) {
			return n.Content[i]
		}
	}
	return nil
}

// KeyOf returns the key node of the mapping entry at path, for errors that
// are about a key (e.g. an unknown profile name); falls back to Locate.
func (d *Doc) KeyOf(path ...string) *yaml.Node {
	if len(path) == 0 {
		n, _ := d.Locate()
		return n
	}
	parent, ok := d.Locate(path[:len(path)-1]...)
	if ok && parent.Kind == yaml.MappingNode {
		last := path[len(path)-1]
		for i := 0; i+1 < len(parent.Content); i += 2 {
			if parent.Content[i].Value == last {
				return parent.Content[i]
			}
		}
	}
	n, _ := d.Locate(path...)
	return n
}

// Problem builds a Problem located at path in d; a nil d (a value that came
// from no file) gives a problem with the path alone.
func (d *Doc) Problem(path []string, format string, a ...any) *Problem {
	p := &Problem{Path: DisplayPath(path), Message: fmt.Sprintf(format, a...)}
	if d == nil {
		return p
	}
	p.File = d.File
	if n, _ := d.Locate(path...); n != nil {
		p.Line, p.Column = n.Line, n.Column
	}
	return p
}

// DisplayPath renders ["a","b","0","c"] as a.b[0].c.
func DisplayPath(path []string) string {
	var b strings.Builder
	for _, seg := range path {
		if _, err := strconv.Atoi(seg); err == nil {
			fmt.Fprintf(&b, "[%s]", seg)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(seg)
	}
	return b.String()
}

// Generic returns the document as plain maps, lists and scalars (for JSON
// Schema validation).
func (d *Doc) Generic() (any, error) {
	var v any
	if err := d.Root.Decode(&v); err != nil {
		return nil, syntaxProblem(d.File, err)
	}
	return normalize(v), nil
}

// normalize makes YAML-decoded values JSON-like (map[string]any, float64 is
// left to the validator which accepts ints).
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = normalize(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
		return x
	case int:
		return int64(x)
	case uint64:
		return int64(x)
	}
	return v
}
