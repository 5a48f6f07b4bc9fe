package strictyaml

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type inner struct {
	N int    `yaml:"n"`
	S string `yaml:"s"`
}

type outer struct {
	A    inner            `yaml:"a"`
	L    []inner          `yaml:"l"`
	M    map[string]inner `yaml:"m"`
	B    bool             `yaml:"b"`
	Skip string           `yaml:"-"`
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		doc       string
		line, col int
		want      string
	}{
		{"a: {n: 1, x: 2}\n", 1, 11, `unknown field "x"; valid fields here: n, s`},
		{"a:\n  n: 1\n  n: 2\n", 3, 3, `duplicate key "n" (first defined at line 2)`},
		{"m:\n  k: {n: 1}\n  k: {n: 2}\n", 3, 3, `duplicate key "k"`},
		{"l: {n: 1}\n", 1, 4, "expected a list, got a mapping"},
		{"a: [1]\n", 1, 4, "expected a mapping (key: value pairs), got a list"},
		{"a: {n: x}\n", 1, 8, `expected an integer, got the string "x"`},
		{"b: 1\n", 1, 4, "expected true or false, got the integer 1"},
		{"base: &b {n: 1}\na:\n  <<: *b\n", 1, 7, "YAML anchors and aliases are not supported (anchor &b); write the value out"},
		{"a:\n  <<: {n: 1}\n", 2, 3, "merge keys"},
		{"a: {n: 1}\n---\na: {n: 2}\n", 2, 1, "more than one YAML document"},
		{"", 1, 1, "document is empty"},
		{"Skip: x\n", 1, 1, `unknown field "Skip"`},
		{"a: {n: 1\n", 1, 0, "did not find expected"},
	}
	for _, tt := range tests {
		var o outer
		_, err := Decode("f.yaml", []byte(tt.doc), &o)
		ps := AsProblems(err)
		if len(ps) == 0 {
			t.Errorf("%q: no problem (err %v)", tt.doc, err)
			continue
		}
		p := ps[0]
		if p.File != "f.yaml" || p.Line != tt.line || p.Column != tt.col || !strings.Contains(p.Message, tt.want) {
			t.Errorf("%q: got %v, want f.yaml:%d:%d %q", tt.doc, p, tt.line, tt.col, tt.want)
		}
	}
}

func TestDecodeAndLocate(t *testing.T) {
	var o outer
	doc, err := Decode("f.yaml", []byte("a: {n: 1, s: x}\nl:\n  - {n: 2}\n  - {n: 3}\nm:\n  k: {s: y}\nb: true\n"), &o)
	if err != nil {
		t.Fatal(err)
	}
	if o.A.N != 1 || len(o.L) != 2 || o.L[1].N != 3 || o.M["k"].S != "y" || !o.B {
		t.Fatalf("decoded %+v", o)
	}
	if n, ok := doc.Locate("l", "1", "n"); !ok || n.Line != 4 || n.Column != 9 {
		t.Errorf("Locate l[1].n = %v %v", n, ok)
	}
	if n, ok := doc.Locate("m", "missing"); ok || n.Line != 6 {
		t.Errorf("Locate of a missing key should stop at its parent: %v %v", n, ok)
	}
	if k := doc.KeyOf("m", "k"); k.Line != 6 || k.Column != 3 {
		t.Errorf("KeyOf m.k at %d:%d", k.Line, k.Column)
	}
	p := doc.Problem([]string{"l", "0", "n"}, "bad %d", 7)
	if p.Error() != "f.yaml:3:9: l[0].n: bad 7" {
		t.Errorf("Problem = %q", p.Error())
	}
	if g, err := doc.Generic(); err != nil || g.(map[string]any)["l"].([]any)[1].(map[string]any)["n"] != int64(3) {
		t.Errorf("Generic = %v, %v", g, err)
	}
}

func TestSizeLimit(t *testing.T) {
	var o outer
	_, err := Decode("big.yaml", make([]byte, MaxSize+1), &o)
	if err == nil || !strings.Contains(err.Error(), "the limit is") {
		t.Errorf("oversized document: %v", err)
	}
}

func TestProblemsSortAndJoin(t *testing.T) {
	ps := Problems{{File: "b", Line: 1, Message: "x"}, {File: "a", Line: 9, Message: "y"}, {File: "a", Line: 2, Column: 3, Message: "z"}}
	err := ps.Err()
	if err.Error() != "a:2:3: z\na:9: y\nb:1: x" {
		t.Errorf("sorted = %q", err.Error())
	}
	if Problems(nil).Err() != nil {
		t.Error("empty Problems is an error")
	}
}

// billionLaughs is the classic alias bomb: levels anchors of fan aliases
// each, standing for fan^levels scalars in a few hundred bytes.
func billionLaughs(levels, fan int) string {
	var b strings.Builder
	b.WriteString("l:\n  - &a0 {n: 1}\n")
	for i := 1; i <= levels; i++ {
		fmt.Fprintf(&b, "  - &a%d [%s]\n", i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), fan), ", "))
	}
	return b.String()
}

// TestAnchorsAndAliasesRefused: every anchor or alias is refused at the
// first one in the text, before the walker, the decoder or a caller follows
// any alias (issue 13 item 21: the walker followed them without a budget).
func TestAnchorsAndAliasesRefused(t *testing.T) {
	tests := []struct {
		name, doc string
		line, col int
		what      string
	}{
		{"scalar anchor unused", "a: {n: 1, s: &x y}\n", 1, 14, "anchor &x"},
		{"mapping anchor", "a: &m {n: 1}\nl: [*m]\n", 1, 4, "anchor &m"},
		{"anchor in a list", "l:\n  - &i {n: 1}\n  - *i\n", 2, 5, "anchor &i"},
		{"anchor on an unknown key", "x: &u 1\na: {n: 1}\n", 1, 4, "anchor &u"},
		{"merge key through an alias", "a: &b {n: 1}\nm:\n  k:\n    <<: *b\n", 1, 4, "anchor &b"},
		{"billion laughs", billionLaughs(9, 9), 2, 5, "anchor &a0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o outer
			_, err := Decode("f.yaml", []byte(tt.doc), &o)
			ps := AsProblems(err)
			if len(ps) != 1 {
				t.Fatalf("want exactly one problem, got %d: %v", len(ps), err)
			}
			want := fmt.Sprintf("f.yaml:%d:%d: YAML anchors and aliases are not supported (%s); write the value out", tt.line, tt.col, tt.what)
			if ps[0].Error() != want {
				t.Errorf("got  %q\nwant %q", ps[0].Error(), want)
			}
		})
	}
}

// TestWalkerNeverFollowsAliases: a node tree built without Parse (so with
// an alias in it) is refused by the walker at the alias, not expanded.
func TestWalkerNeverFollowsAliases(t *testing.T) {
	var ps Problems
	target := &yaml.Node{Kind: yaml.MappingNode}
	alias := &yaml.Node{Kind: yaml.AliasNode, Value: "a", Alias: target, Line: 3, Column: 4}
	walker{file: "f.yaml", problems: &ps}.walk(alias, reflect.TypeOf(inner{}), "a")
	if len(ps) != 1 || !strings.Contains(ps[0].Message, "alias *a") || ps[0].Line != 3 {
		t.Errorf("walker on an alias: %v", ps)
	}
}

func TestEmptyIsErrEmpty(t *testing.T) {
	for _, doc := range []string{"", "# only a comment\n", "\n\n"} {
		var o outer
		if _, err := Decode("f.yaml", []byte(doc), &o); !errors.Is(err, ErrEmpty) {
			t.Errorf("%q: %v is not ErrEmpty", doc, err)
		}
	}
	var o outer
	if _, err := Decode("f.yaml", []byte("a: {n: x}\n"), &o); errors.Is(err, ErrEmpty) {
		t.Errorf("a type error is ErrEmpty: %v", err)
	}
}

// FuzzDecode: never panics, and nothing it accepts holds an anchor or an
// alias. The seeds include anchors, aliases, merge keys and alias bombs.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"a: {n: 1, s: x}\nl:\n  - {n: 2}\nm:\n  k: {s: y}\nb: true\n",
		"a: &a {n: 1}\nl: [*a, *a]\n",
		"m: {k: &v {n: 1}, j: *v}\n",
		"a:\n  <<: &b {n: 1}\n",
		"l: [&x {n: 1}, *x, *y]\n",
		"a: &r [*r]\n",
		"*x\n",
		"&x a: 1\n",
		billionLaughs(9, 9),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var o outer
		doc, err := Decode("fuzz.yaml", data, &o)
		if err != nil {
			return
		}
		if n := firstAnchor(doc.Root); n != nil {
			t.Fatalf("accepted a document with %v at %d:%d", anchorProblem("fuzz.yaml", n).Message, n.Line, n.Column)
		}
	})
}
