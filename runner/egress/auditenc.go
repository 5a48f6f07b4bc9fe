package egress

import (
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// appendEvent encodes e as one JSON object, as encoding/json would, without
// reflection: the audit log is written once per request on the hot path.
func appendEvent(b []byte, e *Event) []byte {
	b = append(b, `{"time":"`...)
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendField(b, "class", e.Class, false)
	b = appendField(b, "activity", e.Activity, false)
	b = appendField(b, "decision", e.Decision, false)
	b = appendField(b, "sandbox", e.Sandbox, true)
	b = appendField(b, "host", e.Host, false)
	if e.Port != 0 {
		b = append(b, `,"port":`...)
		b = strconv.AppendInt(b, int64(e.Port), 10)
	}
	b = appendField(b, "method", e.Method, true)
	b = appendField(b, "path", e.Path, true)
	b = appendField(b, "binary", e.Binary, true)
	if e.Pid != 0 {
		b = append(b, `,"pid":`...)
		b = strconv.AppendInt(b, int64(e.Pid), 10)
	}
	b = appendField(b, "rule", e.Rule, true)
	b = appendField(b, "reason", e.Reason, true)
	if e.Status != 0 {
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(e.Status), 10)
	}
	if e.Gen != 0 {
		b = append(b, `,"generation":`...)
		b = strconv.AppendUint(b, e.Gen, 10)
	}
	b = appendField(b, "model", e.Model, true)
	b = appendField(b, "plugin", e.Plugin, true)
	for _, f := range []struct {
		k string
		v int64
	}{{"prompt_tokens", e.PromptTokens}, {"completion_tokens", e.CompletionTokens}, {"latency_us", e.LatencyUs}, {"ttfb_us", e.TTFBUs}} {
		if f.v != 0 {
			b = append(b, ',', '"')
			b = append(b, f.k...)
			b = append(b, '"', ':')
			b = strconv.AppendInt(b, f.v, 10)
		}
	}
	if e.Count != 0 {
		b = append(b, `,"count":`...)
		b = strconv.AppendInt(b, e.Count, 10)
	}
	return append(b, '}')
}

func appendField(b []byte, k, v string, omitEmpty bool) []byte {
	if omitEmpty && v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, k...)
	b = append(b, '"', ':')
	return appendJSONString(b, v)
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s for JSON; invalid UTF-8 becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c == '\b':
				b = append(b, '\\', 'b')
			case c == '\f':
				b = append(b, '\\', 'f')
			case c < 0x20 || c == 0x7f || c == '<' || c == '>' || c == '&':
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&15])
		case r < 0x10000 && !unicode.IsPrint(r):
			// C1 controls and bidi overrides: a terminal showing the log
			// would act on them.
			b = append(b, '\\', 'u', hexDigits[r>>12], hexDigits[r>>8&15], hexDigits[r>>4&15], hexDigits[r&15])
		default:
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}
