package openaicompat

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// ErrEventTooLong is returned by EventScanner when one event exceeds its limit.
var ErrEventTooLong = errors.New("server-sent event exceeds the size limit")

// EventScanner reads the data of server-sent events (the WHATWG
// EventSource format that OpenAI-compatible servers stream): "data:" lines,
// joined with newlines when an event has several, dispatched at a blank
// line; comments (":") and the event, id and retry fields are skipped. It
// holds at most one event, bounded by the limit given to NewEventScanner.
type EventScanner struct {
	sc   *bufio.Scanner
	max  int
	data []byte
	err  error
}

// NewEventScanner reads events from r, none larger than max bytes.
func NewEventScanner(r io.Reader, max int) *EventScanner {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 16<<10), max+len("data: \r\n"))
	return &EventScanner{sc: sc, max: max}
}

// Scan advances to the next event with data; it returns false at the end
// of the input or on an error (see Err). An event still open when the
// input ends is dispatched too: whether it is whole is the caller's check
// (its JSON must parse).
func (s *EventScanner) Scan() bool {
	s.data = s.data[:0]
	have := false
	for s.sc.Scan() {
		line := s.sc.Bytes()
		if len(line) == 0 {
			if have {
				return true
			}
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		if len(field) == 0 || !bytes.Equal(field, []byte("data")) {
			continue // a comment, or a field other than data
		}
		value = bytes.TrimPrefix(value, []byte(" "))
		if have {
			s.data = append(s.data, '\n')
		}
		if len(s.data)+len(value) > s.max {
			s.err = fmt.Errorf("%w (%d bytes)", ErrEventTooLong, s.max)
			return false
		}
		s.data = append(s.data, value...)
		have = true
	}
	if err := s.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("%w (%d bytes)", ErrEventTooLong, s.max)
		}
		s.err = err
		return false
	}
	return have
}

// Data is the current event's data; it is valid until the next Scan.
func (s *EventScanner) Data() []byte { return s.data }

// Err is the error that ended scanning, nil at a clean end of input.
func (s *EventScanner) Err() error { return s.err }
