package gpu

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Request is which GPUs a sandbox asks for: all of them, a count, or a list
// of devices by index, GPU UUID or MIG UUID (or NVIDIA's "GPU:MIG" index
// pair). The zero Request asks for none.
type Request struct {
	All     bool     `json:"all,omitempty"`
	Count   int      `json:"count,omitempty"`
	Devices []string `json:"devices,omitempty"`
	// Shared allows devices another running sandbox holds.
	Shared bool `json:"shared,omitempty"`
}

// Empty reports whether r asks for no GPU.
func (r Request) Empty() bool { return !r.All && r.Count == 0 && len(r.Devices) == 0 }

// String is r as --gpus takes it.
func (r Request) String() string {
	switch {
	case r.All:
		return "all"
	case r.Count > 0:
		return strconv.Itoa(r.Count)
	default:
		return strings.Join(r.Devices, ",")
	}
}

// ParseRequest reads a --gpus value: "all", a count ("2"), or a
// comma-separated list of indexes, GPU-… and MIG-… UUIDs and "GPU:MIG"
// index pairs ("0,GPU-5e…,MIG-3f…"). A lone number is a count, as with
// docker's --gpus; "device=1" names GPU 1 alone (docker's spelling too).
// UUIDs are what stay stable across reboots; indexes follow NVML's order.
func ParseRequest(s string) (Request, error) {
	s = strings.TrimSpace(s)
	list, named := strings.CutPrefix(s, "device=")
	switch {
	case named:
		s = list
	case s == "":
		return Request{}, errors.New("--gpus: empty; want all, a count or a list of devices")
	case s == "all":
		return Request{All: true}, nil
	}
	if n, err := strconv.Atoi(s); err == nil && !named {
		if n < 0 {
			return Request{}, fmt.Errorf("--gpus %s: a count must not be negative", s)
		}
		return Request{Count: n}, nil
	}
	var r Request
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if err := checkDeviceRef(part); err != nil {
			return Request{}, fmt.Errorf("--gpus %s: %w", s, err)
		}
		r.Devices = append(r.Devices, part)
	}
	if len(r.Devices) == 0 {
		return Request{}, fmt.Errorf("--gpus %q: no device named", s)
	}
	return r, nil
}

// checkDeviceRef accepts an index, a GPU-/MIG- UUID or "GPU:MIG".
func checkDeviceRef(ref string) error {
	switch {
	case strings.HasPrefix(ref, "GPU-"), strings.HasPrefix(ref, "MIG-"):
		if len(ref) < 8 || strings.ContainsAny(ref, " /\\\x00") {
			return fmt.Errorf("%q is not a GPU or MIG UUID", ref)
		}
		return nil
	}
	a, b, pair := strings.Cut(ref, ":")
	if _, err := strconv.ParseUint(a, 10, 16); err != nil {
		return fmt.Errorf("%q: want an index, GPU-<uuid>, MIG-<uuid> or GPU:MIG indexes", ref)
	}
	if pair {
		if _, err := strconv.ParseUint(b, 10, 16); err != nil {
			return fmt.Errorf("%q: want GPU:MIG indexes such as 0:1", ref)
		}
	}
	return nil
}

// Selected is one device handed to a sandbox: a whole GPU or one MIG
// instance of one.
type Selected struct {
	// Index and Minor are the (parent) GPU's NVML index and /dev/nvidiaN.
	Index int `json:"index"`
	Minor int `json:"minor"`
	// UUID is the device's: the GPU's, or the MIG instance's.
	UUID string `json:"uuid"`
	// ParentUUID is the GPU of a MIG instance ("" for a whole GPU).
	ParentUUID       string `json:"parent_uuid,omitempty"`
	Name             string `json:"name"`
	MemoryTotalBytes uint64 `json:"memory_total_bytes"`
	// MIG is the instance, nil for a whole GPU.
	MIG *MIGDevice `json:"mig,omitempty"`
}

// InUseError refuses a device another running sandbox holds.
type InUseError struct {
	UUID, Sandbox string
}

func (e *InUseError) Error() string {
	return fmt.Sprintf("GPU %s is in use by running sandbox %q; stop it, pick another device, or pass --gpus-shared to share it", e.UUID, e.Sandbox)
}

// Select resolves r against inv. inUse maps device UUIDs to the running
// sandbox that holds them (Claims.InUse); those are skipped by a count and
// refused by name unless r.Shared. A count takes whole GPUs that are not in
// MIG mode, lowest index first: a MIG-enabled GPU cannot run CUDA as a
// whole, and which of its instances fit is for the user to say (by UUID).
func Select(inv *Inventory, r Request, inUse map[string]string) ([]Selected, error) {
	if r.Empty() {
		return nil, nil
	}
	if inv == nil || len(inv.Devices) == 0 {
		return nil, fmt.Errorf("--gpus %s: this host has no NVIDIA GPU", r)
	}
	held := func(uuid string) error {
		if who, ok := inUse[uuid]; ok && !r.Shared {
			return &InUseError{UUID: uuid, Sandbox: who}
		}
		return nil
	}
	var out []Selected
	switch {
	case r.All:
		for _, d := range inv.Devices {
			for _, s := range units(d) {
				if err := held(s.UUID); err != nil {
					return nil, fmt.Errorf("--gpus all: %w", err)
				}
				out = append(out, s)
			}
		}
	case r.Count > 0:
		var why []string
		for _, d := range inv.Devices {
			if len(out) == r.Count {
				break
			}
			switch {
			case d.MIGEnabled:
				why = append(why, fmt.Sprintf("GPU %d is in MIG mode (name its MIG devices by UUID)", d.Index))
			case held(d.UUID) != nil:
				why = append(why, fmt.Sprintf("GPU %d is in use by sandbox %q", d.Index, inUse[d.UUID]))
			default:
				out = append(out, units(d)[0])
			}
		}
		if len(out) < r.Count {
			msg := fmt.Sprintf("--gpus %d: only %d of %d GPU(s) are free", r.Count, len(out), len(inv.Devices))
			if len(why) > 0 {
				msg += ": " + strings.Join(why, "; ")
			}
			return nil, errors.New(msg)
		}
	default:
		seen := map[string]bool{}
		for _, ref := range r.Devices {
			s, err := resolve(inv, ref)
			if err != nil {
				return nil, err
			}
			if seen[s.UUID] {
				return nil, fmt.Errorf("--gpus: %s names device %s twice", ref, s.UUID)
			}
			seen[s.UUID] = true
			if err := held(s.UUID); err != nil {
				return nil, err
			}
			out = append(out, s)
		}
	}
	// A MIG instance and its whole GPU never go together: the whole GPU
	// would give the sandbox every instance.
	parents := map[string]bool{}
	for _, s := range out {
		if s.MIG == nil {
			parents[s.UUID] = true
		}
	}
	for _, s := range out {
		if s.MIG != nil && parents[s.ParentUUID] {
			return nil, fmt.Errorf("--gpus: MIG device %s and its whole GPU %d were both named", s.UUID, s.Index)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Index != out[j].Index {
			return out[i].Index < out[j].Index
		}
		return out[i].MIG != nil && out[j].MIG != nil && out[i].MIG.Index < out[j].MIG.Index
	})
	return out, nil
}

// units are what of d can be handed out: d itself, or its MIG instances.
func units(d Device) []Selected {
	if !d.MIGEnabled {
		return []Selected{{Index: d.Index, Minor: d.Minor, UUID: d.UUID, Name: d.Name, MemoryTotalBytes: d.MemoryTotalBytes}}
	}
	var out []Selected
	for i := range d.MIGDevices {
		m := d.MIGDevices[i]
		out = append(out, Selected{Index: d.Index, Minor: d.Minor, UUID: m.UUID, ParentUUID: d.UUID,
			Name: d.Name + " " + m.Name, MemoryTotalBytes: m.MemoryTotalBytes, MIG: &m})
	}
	return out
}

// resolve finds one device reference in inv.
func resolve(inv *Inventory, ref string) (Selected, error) {
	switch {
	case strings.HasPrefix(ref, "GPU-"):
		for _, d := range inv.Devices {
			if strings.EqualFold(d.UUID, ref) {
				return whole(d, ref)
			}
		}
		return Selected{}, fmt.Errorf("--gpus: no GPU has UUID %s (nemoclaw gpu lists them)", ref)
	case strings.HasPrefix(ref, "MIG-"):
		for _, d := range inv.Devices {
			for _, s := range units(d) {
				if s.MIG != nil && strings.EqualFold(s.UUID, ref) {
					return s, nil
				}
			}
		}
		return Selected{}, fmt.Errorf("--gpus: no MIG device has UUID %s (nemoclaw gpu lists them)", ref)
	}
	a, b, pair := strings.Cut(ref, ":")
	gi, _ := strconv.Atoi(a)
	if gi >= len(inv.Devices) {
		return Selected{}, fmt.Errorf("--gpus: GPU %d does not exist; this host has %d (0-%d)", gi, len(inv.Devices), len(inv.Devices)-1)
	}
	d := inv.Devices[gi]
	if !pair {
		return whole(d, ref)
	}
	mi, _ := strconv.Atoi(b)
	for _, s := range units(d) {
		if s.MIG != nil && s.MIG.Index == mi {
			return s, nil
		}
	}
	return Selected{}, fmt.Errorf("--gpus: GPU %d has no MIG device %d", gi, mi)
}

// whole hands out d itself, which a GPU in MIG mode cannot be.
func whole(d Device, ref string) (Selected, error) {
	if d.MIGEnabled {
		var ids []string
		for _, m := range d.MIGDevices {
			ids = append(ids, m.UUID)
		}
		return Selected{}, fmt.Errorf("--gpus: GPU %s (index %d) is in MIG mode and cannot be used whole; name its MIG devices instead: %s", ref, d.Index, strings.Join(ids, ", "))
	}
	return units(d)[0], nil
}
