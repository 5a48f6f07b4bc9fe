package ollama

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// ndjson reads Ollama's streamed answers: one JSON object per line, each
// line at most MaxLineBytes, ending with an object whose "done" is true.
type ndjson struct {
	sc   *bufio.Scanner
	path string
}

func newNDJSON(r io.Reader, path string) *ndjson {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLineBytes)
	return &ndjson{sc: sc, path: path}
}

// next decodes the next non-empty line into v. It returns io.EOF at the
// end of the body, and an *sdk.Error for an over-long or malformed line,
// a transport failure, or an {"error": "..."} line.
func (s *ndjson) next(v any) error {
	for s.sc.Scan() {
		line := bytes.TrimSpace(s.sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var e olError
		if err := json.Unmarshal(line, &e); err != nil {
			return badGateway("Ollama's %s stream has a line that is not JSON: %v", s.path, err)
		}
		if e.Error != "" {
			msg := e.Error
			if len(msg) > maxErrorMessage {
				msg = msg[:maxErrorMessage] + "…"
			}
			return badGateway("Ollama's %s stream failed: %s", s.path, msg)
		}
		if err := json.Unmarshal(line, v); err != nil {
			return badGateway("Ollama's %s stream has a line that is not the JSON its API documents: %v", s.path, err)
		}
		return nil
	}
	err := s.sc.Err()
	switch {
	case err == nil:
		return io.EOF
	case errors.Is(err, bufio.ErrTooLong):
		return badGateway("Ollama's %s stream has a line longer than %d bytes", s.path, MaxLineBytes)
	default:
		if isSDKError(err) { // the idle timeout, from idleBody
			return err
		}
		return upstreamErr(err, "read Ollama's %s stream", s.path)
	}
}

// truncated is the error for a stream that ended before its final object.
func truncated(path string) error {
	return badGateway("Ollama's %s stream ended before its final message (no \"done\": true): the answer is incomplete", path)
}
