package policy

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ParseBytes parses a byte quantity: a plain number of bytes, or a number
// with a decimal (k, M, G, T) or binary (Ki, Mi, Gi, Ti) suffix, e.g.
// "512Mi", "2G", "1.5Gi". Suffixes are case-insensitive except that "m"
// (milli) is refused as ambiguous.
func ParseBytes(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, errors.New("empty byte quantity")
	}
	i := len(t)
	for i > 0 && (t[i-1] < '0' || t[i-1] > '9') && t[i-1] != '.' {
		i--
	}
	num, suf := t[:i], t[i:]
	if suf == "m" {
		return 0, fmt.Errorf("byte quantity %q: \"m\" is ambiguous; use M (10^6) or Mi (2^20)", s)
	}
	mult := float64(1)
	switch strings.ToLower(suf) {
	case "", "b":
	case "k", "kb":
		mult = 1e3
	case "m", "mb":
		mult = 1e6
	case "g", "gb":
		mult = 1e9
	case "t", "tb":
		mult = 1e12
	case "ki", "kib":
		mult = 1 << 10
	case "mi", "mib":
		mult = 1 << 20
	case "gi", "gib":
		mult = 1 << 30
	case "ti", "tib":
		mult = 1 << 40
	default:
		return 0, fmt.Errorf("byte quantity %q: unknown suffix %q (valid: k, M, G, T, Ki, Mi, Gi, Ti)", s, suf)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("byte quantity %q: want a non-negative number with an optional suffix such as 512Mi", s)
	}
	b := v * mult
	if b >= math.MaxUint64/2 {
		return 0, fmt.Errorf("byte quantity %q: too large", s)
	}
	return uint64(b), nil
}

// ParseCPU parses a CPU quantity ("1.5", "2", "500m") into millicores.
func ParseCPU(s string) (int, error) {
	t := strings.TrimSpace(s)
	if strings.HasSuffix(t, "m") {
		n, err := strconv.Atoi(strings.TrimSuffix(t, "m"))
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("cpu quantity %q: want a positive number of millicores such as 500m", s)
		}
		return n, nil
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v <= 0 || v > 1e6 || math.IsNaN(v) {
		return 0, fmt.Errorf("cpu quantity %q: want a positive number of CPUs such as 1.5 or 500m", s)
	}
	return int(math.Ceil(v * 1000)), nil
}
