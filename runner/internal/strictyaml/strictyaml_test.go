package strictyaml

import (
	"strings"
	"testing"
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
		{"base: &b {n: 1}\na:\n  <<: *b\n", 1, 1, `unknown field "base"`},
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
