package inference

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// object is a JSON object's top-level members in order, values raw: the
// router reads and rewrites only what it must (model, stream) and passes
// the rest on byte for byte.
type object struct {
	keys []string
	vals []json.RawMessage
}

// parseObject reads a request body strictly: one JSON object, no trailing
// data, no member given twice (parsers disagree on which copy wins, so the
// router and the backend could read different models).
func parseObject(b []byte) (*object, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("must be a JSON object")
	}
	o := &object{}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("not JSON: %w", err)
		}
		k, _ := tok.(string)
		if seen[k] {
			return nil, fmt.Errorf("member %s is given twice", strconv.Quote(clip(k)))
		}
		seen[k] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("not JSON: member %s: %w", strconv.Quote(clip(k)), err)
		}
		o.keys = append(o.keys, k)
		o.vals = append(o.vals, v)
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return o, nil
}

func (o *object) get(k string) (json.RawMessage, bool) {
	for i, kk := range o.keys {
		if kk == k {
			return o.vals[i], true
		}
	}
	return nil, false
}

// set replaces member k (or appends it) with v encoded as JSON.
func (o *object) set(k string, v any) {
	b, _ := json.Marshal(v)
	for i, kk := range o.keys {
		if kk == k {
			o.vals[i] = b
			return
		}
	}
	o.keys = append(o.keys, k)
	o.vals = append(o.vals, b)
}

// encode writes the object back.
func (o *object) encode() []byte {
	n := 2
	for i := range o.keys {
		n += len(o.keys[i]) + len(o.vals[i]) + 4
	}
	out := make([]byte, 0, n)
	out = append(out, '{')
	for i, k := range o.keys {
		if i > 0 {
			out = append(out, ',')
		}
		kb, _ := json.Marshal(k)
		out = append(out, kb...)
		out = append(out, ':')
		out = append(out, o.vals[i]...)
	}
	return append(out, '}')
}

// modelStream reads "model" (a string, or absent) and "stream" (a boolean,
// null, or absent).
func (o *object) modelStream() (string, bool, error) {
	var model string
	if v, ok := o.get("model"); ok {
		if err := json.Unmarshal(v, &model); err != nil || (len(v) > 0 && v[0] != '"') {
			return "", false, fmt.Errorf("\"model\" must be a string, got %s", clip(string(v)))
		}
	}
	var stream bool
	if v, ok := o.get("stream"); ok && string(v) != "null" {
		if string(v) != "true" && string(v) != "false" {
			return "", false, fmt.Errorf("\"stream\" must be true or false, got %s", clip(string(v)))
		}
		stream = string(v) == "true"
	}
	return model, stream, nil
}
