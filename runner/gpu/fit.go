package gpu

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Need is what a profile asks of the host's GPUs (blueprint's gpu:).
type Need struct {
	Count                int     `json:"count,omitempty"`
	MinMemoryGiB         float64 `json:"min_memory_gib,omitempty"`
	MinComputeCapability string  `json:"min_compute_capability,omitempty"`
}

// Fit reports whether inv (or detectErr, Detect's error) meets n, and in
// one sentence why or why not. A GPU in MIG mode counts by its instances,
// each with its own memory.
func Fit(inv *Inventory, detectErr error, n Need) (bool, string) {
	if n.Count <= 0 && n.MinMemoryGiB <= 0 && n.MinComputeCapability == "" {
		return true, "needs no GPU"
	}
	count := max(n.Count, 1)
	want := fmt.Sprintf("needs %d GPU(s)", count)
	if n.MinMemoryGiB > 0 {
		want += fmt.Sprintf(" with >= %g GiB", n.MinMemoryGiB)
	}
	if n.MinComputeCapability != "" {
		want += " and compute capability >= " + n.MinComputeCapability
	}
	switch {
	case errors.Is(detectErr, ErrNoDriver):
		return false, want + "; this host has no NVIDIA driver"
	case detectErr != nil:
		return false, want + "; NVML failed: " + detectErr.Error()
	case inv == nil || len(inv.Devices) == 0:
		return false, want + "; this host has no NVIDIA GPU"
	}
	var fits, why []string
	for _, d := range inv.Devices {
		for _, u := range units(d) {
			label := fmt.Sprintf("GPU %d", d.Index)
			if u.MIG != nil {
				label = fmt.Sprintf("MIG %d:%d", d.Index, u.MIG.Index)
			}
			gib := float64(u.MemoryTotalBytes) / GiB
			switch {
			case n.MinMemoryGiB > 0 && gib+0.05 < n.MinMemoryGiB:
				why = append(why, fmt.Sprintf("%s has %.0f GiB", label, gib))
			case n.MinComputeCapability != "" && !ccAtLeast(d.ComputeCapability, n.MinComputeCapability):
				why = append(why, fmt.Sprintf("%s has compute capability %s", label, d.ComputeCapability))
			default:
				fits = append(fits, fmt.Sprintf("%s (%s, %.0f GiB)", label, strings.TrimSpace(u.Name), gib))
			}
		}
	}
	if len(fits) >= count {
		return true, want + "; fits " + strings.Join(fits[:count], ", ")
	}
	msg := fmt.Sprintf("%s; only %d fit", want, len(fits))
	if len(why) > 0 {
		msg += ": " + strings.Join(why, ", ")
	}
	return false, msg
}

// ccAtLeast compares "major.minor" compute capabilities.
func ccAtLeast(have, want string) bool {
	hm, hn, ok1 := parseCC(have)
	wm, wn, ok2 := parseCC(want)
	if !ok1 || !ok2 {
		return false
	}
	return hm > wm || (hm == wm && hn >= wn)
}

func parseCC(s string) (int, int, bool) {
	a, b, ok := strings.Cut(s, ".")
	if !ok {
		return 0, 0, false
	}
	x, err1 := strconv.Atoi(a)
	y, err2 := strconv.Atoi(b)
	return x, y, err1 == nil && err2 == nil
}
