package egress

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Printable escapes what a terminal would act on instead of print: C0 and
// C1 controls (ESC sequences repaint the screen), DEL, invalid UTF-8 and
// the Unicode format characters that reorder text (bidi overrides). Every
// agent-controlled string (program path, host, path, method) goes through
// it before a human sees it.
func Printable(s string) string {
	clean := true
	for _, r := range s {
		if !printableRune(r) || r == '\\' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case !printableRune(r) && r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		case !printableRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
		i += n
	}
	return b.String()
}

func printableRune(r rune) bool {
	return r != utf8.RuneError && (r == ' ' || unicode.IsPrint(r))
}
