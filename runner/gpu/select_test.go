package gpu

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	tests := []struct {
		in   string
		want Request
		err  string
	}{
		{"all", Request{All: true}, ""},
		{"2", Request{Count: 2}, ""},
		{"0", Request{}, ""},
		{"device=1", Request{Devices: []string{"1"}}, ""},
		{"0,1", Request{Devices: []string{"0", "1"}}, ""},
		{gpuUUID(3) + ", " + migUUID(0) + ",1:0", Request{Devices: []string{gpuUUID(3), migUUID(0), "1:0"}}, ""},
		{"", Request{}, "empty"},
		{"-1", Request{}, "negative"},
		{"gpu0", Request{}, "want an index"},
		{"0:x", Request{}, "GPU:MIG"},
		{"GPU-../../etc", Request{}, "not a GPU or MIG UUID"},
		{",", Request{}, "no device"},
		{"device=", Request{}, "no device"},
	}
	for _, tt := range tests {
		got, err := ParseRequest(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got.String() != tt.want.String() || got.All != tt.want.All || got.Count != tt.want.Count {
			t.Errorf("%q = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{"all", "3", "0,1", "device=2", gpuUUID(1), "0:1", "MIG-x,GPU-y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRequest(s)
		if err != nil {
			return
		}
		for _, d := range r.Devices {
			if d == "" || strings.ContainsAny(d, ", /") {
				t.Fatalf("%q parsed to device %q", s, d)
			}
		}
		// A parsed request selects without panicking on any host.
		for _, h := range []string{"a100", "mig", "none"} {
			inv, _ := Detect(Config{Lib: hosts()[h]})
			_, _ = Select(inv, r, nil)
		}
	})
}

func uuids(sel []Selected) string {
	var out []string
	for _, s := range sel {
		out = append(out, s.UUID)
	}
	return strings.Join(out, " ")
}

func TestSelect(t *testing.T) {
	tests := []struct {
		name  string
		host  string
		req   string
		inUse map[string]string
		share bool
		want  []string
		err   string
	}{
		{"all of a100", "a100", "all", nil, false, []string{gpuUUID(0), gpuUUID(1), gpuUUID(2), gpuUUID(3), gpuUUID(4), gpuUUID(5), gpuUUID(6), gpuUUID(7)}, ""},
		{"count takes the lowest free", "h100", "2", map[string]string{gpuUUID(0): "other"}, false, []string{gpuUUID(1), gpuUUID(2)}, ""},
		{"uuid is stable whatever the order", "h100", gpuUUID(5) + "," + gpuUUID(2), nil, false, []string{gpuUUID(2), gpuUUID(5)}, ""},
		{"index", "a100", "device=3", nil, false, []string{gpuUUID(3)}, ""},
		{"mixed picks both", "mixed", "2", nil, false, []string{gpuUUID(0), gpuUUID(1)}, ""},
		{"mig by uuid", "mig", migUUID(1), nil, false, []string{migUUID(1)}, ""},
		{"mig by index pair", "mig", "0:0", nil, false, []string{migUUID(0)}, ""},
		{"all on mig host gives instances", "mig", "all", nil, false, []string{migUUID(0), migUUID(1), gpuUUID(1)}, ""},
		{"count skips the MIG GPU", "mig", "1", nil, false, []string{gpuUUID(1)}, ""},
		{"count too big names why", "mig", "2", nil, false, nil, "GPU 0 is in MIG mode"},
		{"whole MIG GPU refused", "mig", "device=0", nil, false, nil, "is in MIG mode and cannot be used whole; name its MIG devices instead: " + migUUID(0)},
		{"in use refused", "a100", gpuUUID(4), map[string]string{gpuUUID(4): "agent-1"}, false, nil, `in use by running sandbox "agent-1"`},
		{"in use shared", "a100", gpuUUID(4), map[string]string{gpuUUID(4): "agent-1"}, true, []string{gpuUUID(4)}, ""},
		{"all with one in use", "a100", "all", map[string]string{gpuUUID(7): "b"}, false, nil, "in use"},
		{"count in use", "mixed", "2", map[string]string{gpuUUID(1): "b"}, false, nil, `GPU 1 is in use by sandbox "b"`},
		{"named twice", "a100", "1," + gpuUUID(1), nil, false, nil, "twice"},
		{"mig and its parent", "mig", migUUID(0) + ",0", nil, false, nil, "MIG mode"},
		{"unknown uuid", "a100", "GPU-00000000-dead", nil, false, nil, "no GPU has UUID"},
		{"unknown mig", "mig", "MIG-00000000-dead", nil, false, nil, "no MIG device"},
		{"index out of range", "mixed", "device=2", nil, false, nil, "GPU 2 does not exist; this host has 2 (0-1)"},
		{"no gpu", "none", "1", nil, false, nil, "no NVIDIA GPU"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := detect(t, tt.host)
			r, err := ParseRequest(tt.req)
			if err != nil {
				t.Fatal(err)
			}
			r.Shared = tt.share
			sel, err := Select(inv, r, tt.inUse)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q (selected %s)", err, tt.err, uuids(sel))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := uuids(sel); got != strings.Join(tt.want, " ") {
				t.Fatalf("selected %s\nwant     %s", got, strings.Join(tt.want, " "))
			}
		})
	}
}

func TestClaims(t *testing.T) {
	root := t.TempDir()
	alive := map[int]bool{100: true, 200: true, 300: true}
	c := &Claims{Root: root, Alive: func(pid int, start uint64) bool { return alive[pid] && start == 7 }}
	inv := detect(t, "h100")

	sel, releaseA, err := c.Claim("a", 100, 7, inv, Request{Count: 2})
	if err != nil || uuids(sel) != gpuUUID(0)+" "+gpuUUID(1) {
		t.Fatalf("claim a: %s, %v", uuids(sel), err)
	}
	// b asks for GPU 1 by UUID: a holds it.
	_, _, err = c.Claim("b", 200, 7, inv, Request{Devices: []string{gpuUUID(1)}})
	var iu *InUseError
	if !errors.As(err, &iu) || iu.Sandbox != "a" {
		t.Fatalf("claim b of a's GPU: %v", err)
	}
	// A count steps around a's GPUs.
	sel, releaseB, err := c.Claim("b", 200, 7, inv, Request{Count: 1})
	if err != nil || uuids(sel) != gpuUUID(2) {
		t.Fatalf("claim b: %s, %v", uuids(sel), err)
	}
	// a restarting under its own name sees its old claim as its own.
	if _, _, err := c.Claim("a", 100, 7, inv, Request{Devices: []string{gpuUUID(0)}}); err != nil {
		t.Fatalf("a again: %v", err)
	}
	// a's supervisor dies (or the pid is reused: another start time): its
	// claim no longer holds.
	alive[100] = false
	if _, _, err := c.Claim("c", 300, 7, inv, Request{Devices: []string{gpuUUID(0)}}); err != nil {
		t.Fatalf("claim of a dead sandbox's GPU: %v", err)
	}
	releaseA()
	releaseB()
	if _, err := os.Stat(filepath.Join(root, "b", ClaimFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("release left %v", err)
	}
	inUse, err := c.InUse("")
	if err != nil || inUse[gpuUUID(0)] != "c" || len(inUse) != 1 {
		t.Fatalf("in use = %v, %v", inUse, err)
	}
}

func TestFit(t *testing.T) {
	tests := []struct {
		host string
		need Need
		ok   bool
		why  string
	}{
		{"a100", Need{Count: 1, MinMemoryGiB: 40, MinComputeCapability: "8.0"}, true, "fits GPU 0"},
		{"a100", Need{Count: 1, MinMemoryGiB: 80}, false, "only 0 fit: GPU 0 has 40 GiB"},
		{"h100", Need{Count: 8, MinMemoryGiB: 80, MinComputeCapability: "9.0"}, true, "GPU 7"},
		{"h100", Need{Count: 1, MinComputeCapability: "10.0"}, false, "compute capability 9.0"},
		{"mixed", Need{Count: 1, MinMemoryGiB: 80}, true, "GPU 1 (NVIDIA H100"},
		{"mixed", Need{Count: 2, MinMemoryGiB: 80}, false, "only 1 fit"},
		{"mig", Need{Count: 1, MinMemoryGiB: 16}, true, "MIG 0:0"},
		{"mig", Need{Count: 3, MinMemoryGiB: 16}, false, "MIG 0:1 has 5 GiB"},
		{"none", Need{Count: 1}, false, "no NVIDIA GPU"},
		{"none", Need{}, true, "needs no GPU"},
	}
	for _, tt := range tests {
		ok, why := Fit(detect(t, tt.host), nil, tt.need)
		if ok != tt.ok || !strings.Contains(why, tt.why) {
			t.Errorf("%s %+v = %v %q; want %v %q", tt.host, tt.need, ok, why, tt.ok, tt.why)
		}
	}
	if ok, why := Fit(nil, ErrNoDriver, Need{Count: 1}); ok || !strings.Contains(why, "no NVIDIA driver") {
		t.Errorf("no driver: %v %q", ok, why)
	}
}
