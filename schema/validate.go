package schema

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// This is a validator for the subset of JSON Schema draft 2020-12 that
// nemoclaw's schemas use (type, properties, required, additionalProperties,
// $ref across the embedded files, enum, const, pattern, length, range,
// items, uniqueItems, minProperties, oneOf). It exists because general
// validators compile every meta-schema in package init, which costs every
// nemoclaw process — including each sandbox init — about 10 ms. A test
// checks that it agrees with a full 2020-12 implementation.

// Violation is one schema failure at an instance location.
type Violation struct {
	// Location is the JSON pointer split into tokens.
	Location []string
	// Message says what is wrong.
	Message string
}

var (
	docsMu   sync.Mutex
	docs     = map[string]map[string]any{}
	patterns sync.Map // pattern string -> *regexp.Regexp
)

// schemaDoc returns the parsed schema file name, parsing it on first use: a
// process that checks one policy reads only the schemas that needs.
func schemaDoc(name string) (map[string]any, error) {
	docsMu.Lock()
	defer docsMu.Unlock()
	if d, ok := docs[name]; ok {
		return d, nil
	}
	data, err := fs.ReadFile(Files, name)
	if err != nil {
		return nil, fmt.Errorf("no schema named %q", name)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("schema %s: %w", name, err)
	}
	docs[name] = m
	return m, nil
}

// Validate checks doc (plain maps/lists/scalars, as decoded from YAML)
// against the named schema and returns every violation found; an error only
// when the schema itself is broken.
func Validate(name string, doc any) ([]Violation, error) {
	root, err := schemaDoc(name)
	if err != nil {
		return nil, err
	}
	v := &validation{}
	v.check(name, root, doc, nil)
	if v.err != nil {
		return nil, v.err
	}
	return v.out, nil
}

type validation struct {
	out []Violation
	err error
}

func (v *validation) fail(loc []string, format string, a ...any) {
	v.out = append(v.out, Violation{Location: append([]string(nil), loc...), Message: fmt.Sprintf(format, a...)})
}

// resolve follows a $ref relative to file.
func (v *validation) resolve(file, ref string) (string, map[string]any) {
	target, frag, _ := strings.Cut(ref, "#")
	if target == "" {
		target = file
	}
	d, err := schemaDoc(target)
	if err != nil {
		v.err = fmt.Errorf("schema %s: $ref %q: %w", file, ref, err)
		return "", nil
	}
	node := any(d)
	for _, tok := range strings.Split(strings.TrimPrefix(frag, "/"), "/") {
		if tok == "" {
			continue
		}
		m, ok := node.(map[string]any)
		if !ok {
			v.err = fmt.Errorf("schema %s: $ref %q does not resolve", file, ref)
			return "", nil
		}
		node = m[tok]
	}
	m, ok := node.(map[string]any)
	if !ok {
		v.err = fmt.Errorf("schema %s: $ref %q does not resolve to a schema", file, ref)
		return "", nil
	}
	return target, m
}

// check validates inst against schema s (from file) at loc.
func (v *validation) check(file string, s map[string]any, inst any, loc []string) {
	if v.err != nil {
		return
	}
	if ref, ok := s["$ref"].(string); ok {
		f, target := v.resolve(file, ref)
		if target == nil {
			return
		}
		v.check(f, target, inst, loc)
	}
	if t, ok := s["type"].(string); ok && !hasType(inst, t) {
		v.fail(loc, "got %s, want %s", typeName(inst), t)
		return
	}
	if c, ok := s["const"]; ok && !equal(c, inst) {
		v.fail(loc, "value must be %s", quote(c))
	}
	if e, ok := s["enum"].([]any); ok {
		found := false
		for _, c := range e {
			if equal(c, inst) {
				found = true
				break
			}
		}
		if !found {
			alts := make([]string, len(e))
			for i, c := range e {
				alts[i] = quote(c)
			}
			v.fail(loc, "value must be one of %s", strings.Join(alts, ", "))
		}
	}
	switch x := inst.(type) {
	case string:
		v.checkString(s, x, loc)
	case map[string]any:
		v.checkObject(file, s, x, loc)
	case []any:
		v.checkArray(file, s, x, loc)
	default:
		if f, ok := number(inst); ok {
			if min, ok := number(s["minimum"]); ok && f < min {
				v.fail(loc, "minimum: got %s, want %s", fmtNum(f), fmtNum(min))
			}
			if max, ok := number(s["maximum"]); ok && f > max {
				v.fail(loc, "maximum: got %s, want %s", fmtNum(f), fmtNum(max))
			}
		}
	}
	if alts, ok := s["oneOf"].([]any); ok {
		matches := 0
		var best []Violation
		for _, a := range alts {
			am, _ := a.(map[string]any)
			sub := &validation{}
			sub.check(file, am, inst, loc)
			if sub.err != nil {
				v.err = sub.err
				return
			}
			if len(sub.out) == 0 {
				matches++
			} else if best == nil || len(sub.out) < len(best) {
				best = sub.out
			}
		}
		switch {
		case matches == 0 && len(best) == 1:
			v.out = append(v.out, best...)
		case matches == 0:
			v.fail(loc, "value matches none of the allowed forms")
		case matches > 1:
			v.fail(loc, "value matches more than one of the allowed forms")
		}
	}
}

func (v *validation) checkString(s map[string]any, x string, loc []string) {
	n := float64(len([]rune(x)))
	if min, ok := number(s["minLength"]); ok && n < min {
		v.fail(loc, "minLength: got %s, want %s", fmtNum(n), fmtNum(min))
	}
	if max, ok := number(s["maxLength"]); ok && n > max {
		v.fail(loc, "maxLength: got %s, want %s", fmtNum(n), fmtNum(max))
	}
	if p, ok := s["pattern"].(string); ok {
		re, err := compile(p)
		if err != nil {
			v.err = err
			return
		}
		if !re.MatchString(x) {
			v.fail(loc, "'%s' does not match pattern '%s'", x, p)
		}
	}
}

func (v *validation) checkObject(file string, s map[string]any, x map[string]any, loc []string) {
	if req, ok := s["required"].([]any); ok {
		for _, r := range req {
			if k, _ := r.(string); k != "" {
				if _, has := x[k]; !has {
					v.fail(loc, "missing property '%s'", k)
				}
			}
		}
	}
	if min, ok := number(s["minProperties"]); ok && float64(len(x)) < min {
		v.fail(loc, "minProperties: got %d, want %s", len(x), fmtNum(min))
	}
	props, _ := s["properties"].(map[string]any)
	keys := make([]string, 0, len(x))
	for k := range x {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		at := append(append([]string(nil), loc...), k)
		if ps, ok := props[k].(map[string]any); ok {
			v.check(file, ps, x[k], at)
			continue
		}
		switch ap := s["additionalProperties"].(type) {
		case bool:
			if !ap {
				v.fail(loc, "additional property '%s' is not allowed", k)
			}
		case map[string]any:
			v.check(file, ap, x[k], at)
		}
	}
}

func (v *validation) checkArray(file string, s map[string]any, x []any, loc []string) {
	if min, ok := number(s["minItems"]); ok && float64(len(x)) < min {
		v.fail(loc, "minItems: got %d, want %s", len(x), fmtNum(min))
	}
	if u, _ := s["uniqueItems"].(bool); u {
		for i := range x {
			for j := 0; j < i; j++ {
				if equal(x[i], x[j]) {
					v.fail(loc, "items at %d and %d are equal", j, i)
				}
			}
		}
	}
	if items, ok := s["items"].(map[string]any); ok {
		for i, e := range x {
			v.check(file, items, e, append(append([]string(nil), loc...), strconv.Itoa(i)))
		}
	}
}

func compile(p string) (*regexp.Regexp, error) {
	if re, ok := patterns.Load(p); ok {
		return re.(*regexp.Regexp), nil
	}
	re, err := regexp.Compile(p)
	if err != nil {
		return nil, fmt.Errorf("schema pattern %q: %w", p, err)
	}
	patterns.Store(p, re)
	return re, nil
}

// number returns a JSON number as float64.
func number(x any) (float64, bool) {
	switch n := x.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint64:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

func hasType(x any, t string) bool {
	switch t {
	case "object":
		_, ok := x.(map[string]any)
		return ok
	case "array":
		_, ok := x.([]any)
		return ok
	case "string":
		_, ok := x.(string)
		return ok
	case "boolean":
		_, ok := x.(bool)
		return ok
	case "null":
		return x == nil
	case "number":
		_, ok := number(x)
		return ok
	case "integer":
		f, ok := number(x)
		return ok && f == math.Trunc(f)
	}
	return false
}

func typeName(x any) string {
	switch x.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case bool:
		return "boolean"
	}
	switch x.(type) {
	case int, int64, uint64:
		return "integer"
	}
	if _, ok := number(x); ok {
		return "number"
	}
	return fmt.Sprintf("%T", x)
}

// equal compares JSON values, treating all numbers alike.
func equal(a, b any) bool {
	fa, na := number(a)
	fb, nb := number(b)
	if na || nb {
		return na && nb && fa == fb
	}
	return reflect.DeepEqual(a, b)
}

func quote(x any) string {
	if s, ok := x.(string); ok {
		return "'" + s + "'"
	}
	if f, ok := number(x); ok {
		return fmtNum(f)
	}
	return fmt.Sprint(x)
}

// fmtNum prints integers with thousands separators, like 65,535.
func fmtNum(f float64) string {
	if f != math.Trunc(f) || math.Abs(f) >= 1e15 {
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	s := strconv.FormatInt(int64(math.Abs(f)), 10)
	var b strings.Builder
	if f < 0 {
		b.WriteByte('-')
	}
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}
